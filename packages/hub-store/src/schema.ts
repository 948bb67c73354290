/**
 * The SQLite database layout. `user_version` numbers it: a database newer than this code is refused
 * rather than misread; an older one is migrated forward in a transaction. PostgreSQL's layout
 * (pg-schema.ts) keeps the same version numbers for the same steps.
 */
export const schemaVersion = 6;

export const migrations: Record<number, string> = {
  1: `
    CREATE TABLE events (
      seq          INTEGER PRIMARY KEY AUTOINCREMENT, -- receipt order
      id           TEXT NOT NULL UNIQUE,              -- stable id sent with every attempt
      topic        TEXT NOT NULL,
      received_at  INTEGER NOT NULL,                  -- ms since epoch
      dedupe_key   TEXT,                              -- Idempotency-Key or a provider delivery id
      method       TEXT NOT NULL,
      headers      TEXT NOT NULL,                     -- JSON [[name, value], ...] as received
      body         BLOB NOT NULL,                     -- raw bytes, never re-encoded
      sender_ip    TEXT NOT NULL,
      sender_node  TEXT NOT NULL,
      sender_user  TEXT NOT NULL,
      sender_tags  TEXT NOT NULL                      -- JSON ["tag:x", ...]
    );
    CREATE UNIQUE INDEX events_dedupe ON events(topic, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE INDEX events_topic ON events(topic, seq);
    CREATE INDEX events_received ON events(received_at);

    CREATE TABLE subscriptions (
      id             TEXT PRIMARY KEY,
      node_id        TEXT NOT NULL,                   -- the subscriber's stable node id (WhoIs)
      node_name      TEXT NOT NULL,
      address        TEXT NOT NULL,                   -- its tailnet IP, from WhoIs, never from the request
      port           INTEGER NOT NULL,
      path           TEXT NOT NULL,
      topics         TEXT NOT NULL,                   -- JSON ["ci/*", ...]
      created_at     INTEGER NOT NULL,
      updated_at     INTEGER NOT NULL,
      offline_since  INTEGER,                         -- set while the subscriber cannot be reached
      probe_at       INTEGER,                         -- while offline: when to try it again
      UNIQUE (node_id, port)
    );

    CREATE TABLE deliveries (
      subscription_id  TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
      event_seq        INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
      state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
      attempts         INTEGER NOT NULL DEFAULT 0,
      next_attempt_at  INTEGER NOT NULL,
      last_status      INTEGER,
      last_error       TEXT,
      updated_at       INTEGER NOT NULL,
      PRIMARY KEY (subscription_id, event_seq)
    );
    CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
    CREATE INDEX deliveries_event ON deliveries(event_seq);
  `,
  // Leases for replicas, and an index for each query the hub runs, so costs stay flat as the store grows:
  // a subscription's pending queue in receipt order (head of line) and by due time (next wake-up).
  2: `
    ALTER TABLE subscriptions ADD COLUMN lease_owner TEXT;
    ALTER TABLE subscriptions ADD COLUMN lease_until INTEGER;
    DROP INDEX deliveries_due;
    CREATE INDEX deliveries_pending_head ON deliveries(subscription_id, event_seq) WHERE state = 'pending';
    CREATE INDEX deliveries_pending_due ON deliveries(subscription_id, next_attempt_at) WHERE state = 'pending';
  `,
  // A subscriber that answered 410 Gone: no event is owed to it until it subscribes again. Each
  // subscription's Standard Webhooks secret, and the rotated-out one while it is still signed with.
  3: `
    ALTER TABLE subscriptions ADD COLUMN disabled_at INTEGER;
    ALTER TABLE subscriptions ADD COLUMN disabled_reason TEXT;
    ALTER TABLE subscriptions ADD COLUMN secret TEXT;
    ALTER TABLE subscriptions ADD COLUMN previous_secret TEXT;
    ALTER TABLE subscriptions ADD COLUMN previous_secret_until INTEGER;
  `,
  // A heartbeat row per replica, for status: which replicas are alive (and, with the leases, what each holds).
  4: `
    CREATE TABLE replicas (
      name        TEXT PRIMARY KEY,                   -- the replica's node name (the lease owner)
      started_at  INTEGER NOT NULL,
      seen_at     INTEGER NOT NULL                    -- its last heartbeat
    );
  `,
  // Deliveries held back because the subscriber's address now answers for another node (WhoIs at delivery
  // does not name the subscription's node_id, stored since schema 1). Rows from before start not held.
  5: `
    ALTER TABLE subscriptions ADD COLUMN held_at INTEGER;   -- set while its deliveries are held back
    ALTER TABLE subscriptions ADD COLUMN held_reason TEXT;
  `,
  // When a subscription last had a delivery succeed, kept on its row: status read it from the deliveries
  // table, which walked every delivery ever made to it (a million for a busy subscriber). Filled from the
  // deliveries still stored.
  6: `
    ALTER TABLE subscriptions ADD COLUMN last_delivered_at INTEGER;
    UPDATE subscriptions SET last_delivered_at = (SELECT MAX(d.updated_at) FROM deliveries d
      WHERE d.subscription_id = subscriptions.id AND d.state = 'delivered');
  `,
};
