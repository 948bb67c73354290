/**
 * The PostgreSQL database layout, numbered like SQLite's (schema.ts): the same version is the same
 * step. `krkn_schema` holds the version; a database newer than this code is refused rather than misread.
 */
export const pgMigrations: Record<number, string> = {
  1: `
    CREATE TABLE events (
      seq          BIGSERIAL PRIMARY KEY,                -- receipt order
      id           TEXT NOT NULL UNIQUE,
      topic        TEXT NOT NULL,
      received_at  BIGINT NOT NULL,                      -- ms since epoch
      dedupe_key   TEXT,
      method       TEXT NOT NULL,
      headers      TEXT NOT NULL,                        -- JSON text, not jsonb: kept exactly as written
      body         BYTEA NOT NULL,                       -- raw bytes, never re-encoded
      sender_ip    TEXT NOT NULL,
      sender_node  TEXT NOT NULL,
      sender_user  TEXT NOT NULL,
      sender_tags  TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_dedupe ON events(topic, dedupe_key) WHERE dedupe_key IS NOT NULL;
    CREATE INDEX events_topic ON events(topic, seq);
    CREATE INDEX events_received ON events(received_at);

    CREATE TABLE subscriptions (
      id             TEXT PRIMARY KEY,
      node_id        TEXT NOT NULL,
      node_name      TEXT NOT NULL,
      address        TEXT NOT NULL,
      port           INTEGER NOT NULL,
      path           TEXT NOT NULL,
      topics         TEXT NOT NULL,
      created_at     BIGINT NOT NULL,
      updated_at     BIGINT NOT NULL,
      offline_since  BIGINT,
      probe_at       BIGINT,
      UNIQUE (node_id, port)
    );

    CREATE TABLE deliveries (
      subscription_id  TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
      event_seq        BIGINT NOT NULL REFERENCES events(seq) ON DELETE CASCADE,
      state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
      attempts         INTEGER NOT NULL DEFAULT 0,
      next_attempt_at  BIGINT NOT NULL,
      last_status      INTEGER,
      last_error       TEXT,
      updated_at       BIGINT NOT NULL,
      PRIMARY KEY (subscription_id, event_seq)
    );
    CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
    CREATE INDEX deliveries_event ON deliveries(event_seq);
  `,
  2: `
    ALTER TABLE subscriptions ADD COLUMN lease_owner TEXT;
    ALTER TABLE subscriptions ADD COLUMN lease_until BIGINT;
    DROP INDEX deliveries_due;
    CREATE INDEX deliveries_pending_head ON deliveries(subscription_id, event_seq) WHERE state = 'pending';
    CREATE INDEX deliveries_pending_due ON deliveries(subscription_id, next_attempt_at) WHERE state = 'pending';
  `,
  3: `
    ALTER TABLE subscriptions ADD COLUMN disabled_at BIGINT;
    ALTER TABLE subscriptions ADD COLUMN disabled_reason TEXT;
    ALTER TABLE subscriptions ADD COLUMN secret TEXT;
    ALTER TABLE subscriptions ADD COLUMN previous_secret TEXT;
    ALTER TABLE subscriptions ADD COLUMN previous_secret_until BIGINT;
  `,
  4: `
    CREATE TABLE replicas (
      name        TEXT PRIMARY KEY,
      started_at  BIGINT NOT NULL,
      seen_at     BIGINT NOT NULL
    );
  `,
  5: `
    ALTER TABLE subscriptions ADD COLUMN held_at BIGINT;
    ALTER TABLE subscriptions ADD COLUMN held_reason TEXT;
  `,
  6: `
    ALTER TABLE subscriptions ADD COLUMN last_delivered_at BIGINT;
    UPDATE subscriptions SET last_delivered_at = (SELECT MAX(d.updated_at) FROM deliveries d
      WHERE d.subscription_id = subscriptions.id AND d.state = 'delivered');
  `,
};
