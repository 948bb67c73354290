import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { migrations, schemaVersion } from './schema.js';

/** Who published an event, as WhoIs named the connection's tailnet address. */
export interface Sender {
  ip: string;
  node: string;
  user: string;
  tags: string[];
}

/** An event as stored: the raw body and the headers exactly as received. */
export interface StoredEvent {
  id: string;
  seq: number;
  topic: string;
  receivedAt: number;
  dedupeKey: string | null;
  method: string;
  headers: [string, string][];
  body: Buffer;
  sender: Sender;
}

/** What publish needs. */
export interface NewEvent {
  topic: string;
  dedupeKey?: string | undefined;
  method: string;
  headers: [string, string][];
  body: Buffer;
  sender: Sender;
}

/** A subscriber's standing request for topics, delivered to its own tailnet address. */
export interface Subscription {
  id: string;
  nodeId: string;
  nodeName: string;
  address: string;
  port: number;
  path: string;
  topics: string[];
  createdAt: number;
  updatedAt: number;
  /** Set while the subscriber cannot be reached; its queue waits, attempts are not spent. */
  offlineSince: number | null;
}

/** One event owed to one subscription. */
export interface Delivery {
  subscriptionId: string;
  eventSeq: number;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: number;
  lastStatus: number | null;
  lastError: string | null;
}

/** A delivery ready to be attempted, with what it needs. */
export interface DueDelivery {
  delivery: Delivery;
  event: StoredEvent;
  subscription: Subscription;
}

/** Filters for {@link HubStore.listEvents}. */
export interface EventQuery {
  /** Only events whose topic this predicate accepts. */
  topic?: (topic: string) => boolean;
  /** Only events received after this event id. */
  afterId?: string;
  /** Only events received at or after this time (ms). */
  since?: number;
  /** At most this many (default 100). */
  limit?: number;
}

/** Counts for status pages. */
export interface StoreStats {
  events: number;
  subscriptions: number;
  offlineSubscriptions: number;
  pending: number;
  delivered: number;
  failed: number;
  /** Receipt time of the oldest event still owed to someone (ms), or null. */
  oldestPendingAt: number | null;
  databaseBytes: number;
}

/** The error class of this package. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly code: 'SCHEMA_TOO_NEW' | 'NOT_FOUND' | 'CORRUPT',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface EventRow {
  seq: number;
  id: string;
  topic: string;
  received_at: number;
  dedupe_key: string | null;
  method: string;
  headers: string;
  body: Buffer;
  sender_ip: string;
  sender_node: string;
  sender_user: string;
  sender_tags: string;
}

interface SubscriptionRow {
  id: string;
  node_id: string;
  node_name: string;
  address: string;
  port: number;
  path: string;
  topics: string;
  created_at: number;
  updated_at: number;
  offline_since: number | null;
  probe_at: number | null;
}

interface DeliveryRow {
  subscription_id: string;
  event_seq: number;
  state: Delivery['state'];
  attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
}

/** A new, time-ordered event id: "evt_" + base36 ms + 16 hex of randomness. */
export function newEventId(now = Date.now()): string {
  return `evt_${now.toString(36).padStart(9, '0')}${randomBytes(8).toString('hex')}`;
}

/**
 * krkns's durable storage in one SQLite file (WAL, synchronous=FULL): publish() has committed
 * to disk when it returns, so a 202 is never given for an event a crash could lose.
 */
export class HubStore {
  private readonly db: Database.Database;

  private constructor(
    readonly path: string,
    db: Database.Database,
  ) {
    this.db = db;
  }

  /** Opens (creating if needed, mode 0600) and migrates the database at path. */
  static open(path: string): HubStore {
    const fresh = !existsSync(path);
    let db: Database.Database;
    try {
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new StoreError('CORRUPT', `cannot open event store ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (fresh) chmodSync(path, 0o600);
    migrate(db, path);
    return new HubStore(path, db);
  }

  close(): void {
    this.db.close();
  }

  /**
   * Stores an event and owes it to every subscription whose topics match, in one transaction.
   * With a dedupe key already seen on this topic, returns the first event and stores nothing.
   */
  publish(input: NewEvent, matches: (pattern: string, topic: string) => boolean, now = Date.now()): { event: StoredEvent; duplicate: boolean } {
    return this.db.transaction(() => {
      if (input.dedupeKey) {
        const seen = this.db.prepare('SELECT * FROM events WHERE topic = ? AND dedupe_key = ?').get(input.topic, input.dedupeKey) as EventRow | undefined;
        if (seen) return { event: toEvent(seen), duplicate: true };
      }
      const id = newEventId(now);
      const info = this.db
        .prepare(
          `INSERT INTO events (id, topic, received_at, dedupe_key, method, headers, body, sender_ip, sender_node, sender_user, sender_tags)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          id,
          input.topic,
          now,
          input.dedupeKey ?? null,
          input.method,
          JSON.stringify(input.headers),
          input.body,
          input.sender.ip,
          input.sender.node,
          input.sender.user,
          JSON.stringify(input.sender.tags),
        );
      const seq = Number(info.lastInsertRowid);
      const owe = this.db.prepare(
        `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at) VALUES (?, ?, 'pending', ?, ?)`,
      );
      for (const sub of this.listSubscriptions()) {
        if (sub.topics.some((p) => matches(p, input.topic))) owe.run(sub.id, seq, now, now);
      }
      return { event: this.eventBySeq(seq), duplicate: false };
    })();
  }

  /** The event with this id. */
  getEvent(id: string): StoredEvent | undefined {
    const row = this.db.prepare('SELECT * FROM events WHERE id = ?').get(id) as EventRow | undefined;
    return row && toEvent(row);
  }

  private eventBySeq(seq: number): StoredEvent {
    return toEvent(this.db.prepare('SELECT * FROM events WHERE seq = ?').get(seq) as EventRow);
  }

  /** Events in receipt order, filtered. */
  listEvents(q: EventQuery = {}): StoredEvent[] {
    const limit = q.limit ?? 100;
    let after = 0;
    if (q.afterId) {
      const row = this.db.prepare('SELECT seq FROM events WHERE id = ?').get(q.afterId) as { seq: number } | undefined;
      if (!row) throw new StoreError('NOT_FOUND', `no event ${q.afterId}`);
      after = row.seq;
    }
    const out: StoredEvent[] = [];
    const rows = this.db.prepare('SELECT * FROM events WHERE seq > ? AND received_at >= ? ORDER BY seq').iterate(after, q.since ?? 0);
    for (const row of rows as Iterable<EventRow>) {
      if (q.topic && !q.topic(row.topic)) continue;
      out.push(toEvent(row));
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Deliveries of one event, one per subscription it was owed to. */
  deliveriesOf(eventId: string): Delivery[] {
    const rows = this.db
      .prepare('SELECT d.* FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE e.id = ? ORDER BY d.subscription_id')
      .all(eventId) as DeliveryRow[];
    return rows.map(toDelivery);
  }

  /**
   * Creates or updates the subscription of (nodeId, port). A subscriber that (re)subscribes is
   * online: its waiting queue becomes due now.
   */
  subscribe(input: Omit<Subscription, 'id' | 'createdAt' | 'updatedAt' | 'offlineSince'>, now = Date.now()): Subscription {
    return this.db.transaction(() => {
      const existing = this.db.prepare('SELECT * FROM subscriptions WHERE node_id = ? AND port = ?').get(input.nodeId, input.port) as
        | SubscriptionRow
        | undefined;
      const id = existing?.id ?? `sub_${randomBytes(8).toString('hex')}`;
      this.db
        .prepare(
          `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at)
           VALUES (@id, @nodeId, @nodeName, @address, @port, @path, @topics, @now, @now)
           ON CONFLICT (node_id, port) DO UPDATE SET node_name = @nodeName, address = @address, path = @path,
             topics = @topics, updated_at = @now, offline_since = NULL, probe_at = NULL`,
        )
        .run({ ...input, id, topics: JSON.stringify(input.topics), now });
      this.db.prepare(`UPDATE deliveries SET next_attempt_at = ? WHERE subscription_id = ? AND state = 'pending'`).run(now, id);
      return this.getSubscription(id)!;
    })();
  }

  getSubscription(id: string): Subscription | undefined {
    const row = this.db.prepare('SELECT * FROM subscriptions WHERE id = ?').get(id) as SubscriptionRow | undefined;
    return row && toSubscription(row);
  }

  listSubscriptions(nodeId?: string): Subscription[] {
    const rows = (
      nodeId === undefined
        ? this.db.prepare('SELECT * FROM subscriptions ORDER BY created_at').all()
        : this.db.prepare('SELECT * FROM subscriptions WHERE node_id = ? ORDER BY created_at').all(nodeId)
    ) as SubscriptionRow[];
    return rows.map(toSubscription);
  }

  /** Removes a subscription and what is still owed to it. */
  unsubscribe(id: string): boolean {
    return this.db.prepare('DELETE FROM subscriptions WHERE id = ?').run(id).changes > 0;
  }

  /**
   * The next delivery to attempt for each subscription that has one due, in receipt order,
   * skipping subscriptions in `busy` (one attempt in flight per subscriber keeps its order) and
   * offline subscribers whose next probe is not due.
   */
  dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): DueDelivery[] {
    const heads = this.db
      .prepare(
        `SELECT d.subscription_id AS sub, MIN(d.event_seq) AS seq FROM deliveries d
         JOIN subscriptions s ON s.id = d.subscription_id
         WHERE d.state = 'pending' AND d.next_attempt_at <= @now AND (s.probe_at IS NULL OR s.probe_at <= @now)
         GROUP BY d.subscription_id`,
      )
      .all({ now }) as { sub: string; seq: number }[];
    const out: DueDelivery[] = [];
    for (const { sub, seq } of heads) {
      if (busy.has(sub)) continue;
      const row = this.db.prepare('SELECT * FROM deliveries WHERE subscription_id = ? AND event_seq = ?').get(sub, seq) as DeliveryRow;
      out.push({ delivery: toDelivery(row), event: this.eventBySeq(seq), subscription: this.getSubscription(sub)! });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Earliest time something becomes due (ms), or null when nothing is pending. */
  nextDueAt(): number | null {
    const row = this.db
      .prepare(
        `SELECT MIN(MAX(d.next_attempt_at, COALESCE(s.probe_at, 0))) AS t FROM deliveries d
         JOIN subscriptions s ON s.id = d.subscription_id WHERE d.state = 'pending'`,
      )
      .get() as { t: number | null };
    return row.t;
  }

  /** The subscriber answered 2xx. */
  recordDelivered(subscriptionId: string, eventSeq: number, status: number, now = Date.now()): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?, last_error = NULL, updated_at = ?
           WHERE subscription_id = ? AND event_seq = ?`,
        )
        .run(status, now, subscriptionId, eventSeq);
      this.db.prepare('UPDATE subscriptions SET offline_since = NULL, probe_at = NULL WHERE id = ?').run(subscriptionId);
    })();
  }

  /**
   * The subscriber was reached but did not accept the event (non-2xx, or no answer in time).
   * Spends an attempt; `retryAt` null marks the delivery failed for good.
   */
  recordRejected(subscriptionId: string, eventSeq: number, outcome: { status: number | null; error: string; retryAt: number | null }, now = Date.now()): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE deliveries SET attempts = attempts + 1, last_status = ?, last_error = ?, updated_at = ?,
             state = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END,
             next_attempt_at = COALESCE(?, next_attempt_at)
           WHERE subscription_id = ? AND event_seq = ?`,
        )
        .run(outcome.status, outcome.error, now, outcome.retryAt, outcome.retryAt, subscriptionId, eventSeq);
      this.db.prepare('UPDATE subscriptions SET offline_since = NULL, probe_at = NULL WHERE id = ?').run(subscriptionId);
    })();
  }

  /**
   * The subscriber could not be reached at all (offline, or hidden by policy). Spends no
   * attempt: its whole queue waits until `probeAt`, or until it subscribes again. An attempt
   * that started before the subscriber subscribed again is stale news and parks nothing.
   */
  recordUnreachable(subscriptionId: string, eventSeq: number, error: string, probeAt: number, attemptStartedAt: number, now = Date.now()): void {
    this.db.transaction(() => {
      this.db
        .prepare('UPDATE deliveries SET last_error = ?, updated_at = ? WHERE subscription_id = ? AND event_seq = ?')
        .run(error, now, subscriptionId, eventSeq);
      this.db
        .prepare('UPDATE subscriptions SET offline_since = COALESCE(offline_since, ?), probe_at = ? WHERE id = ? AND updated_at <= ?')
        .run(now, probeAt, subscriptionId, attemptStartedAt);
    })();
  }

  /** Makes a subscriber's waiting queue due now (it came back online). */
  wake(subscriptionId: string, now = Date.now()): void {
    this.db.prepare('UPDATE subscriptions SET probe_at = NULL WHERE id = ?').run(subscriptionId);
    this.db.prepare(`UPDATE deliveries SET next_attempt_at = MIN(next_attempt_at, ?) WHERE subscription_id = ? AND state = 'pending'`).run(now, subscriptionId);
  }

  /**
   * Owes an event again to every subscription that matches it now (only those of node `nodeId`
   * when given), from attempt one. Returns how many deliveries were (re)scheduled.
   */
  redeliver(eventId: string, matches: (pattern: string, topic: string) => boolean, now = Date.now(), nodeId?: string): number {
    const event = this.getEvent(eventId);
    if (!event) throw new StoreError('NOT_FOUND', `no event ${eventId}`);
    return this.db.transaction(() => {
      let n = 0;
      const upsert = this.db.prepare(
        `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at) VALUES (?, ?, 'pending', ?, ?)
         ON CONFLICT (subscription_id, event_seq) DO UPDATE SET state = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at,
           last_error = NULL, last_status = NULL, updated_at = excluded.updated_at`,
      );
      for (const sub of this.listSubscriptions(nodeId)) {
        if (sub.topics.some((p) => matches(p, event.topic))) n += upsert.run(sub.id, event.seq, now, now).changes;
      }
      return n;
    })();
  }

  /** Deletes events received before `before` that nobody is still owed. Returns how many. */
  prune(before: number): number {
    return this.db
      .prepare(
        `DELETE FROM events WHERE received_at < ? AND NOT EXISTS
           (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq AND d.state = 'pending')`,
      )
      .run(before).changes;
  }

  stats(): StoreStats {
    const one = <T>(sql: string): T => this.db.prepare(sql).get() as T;
    const byState = this.db.prepare('SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state').all() as { state: string; n: number }[];
    const count = (s: string) => byState.find((r) => r.state === s)?.n ?? 0;
    const page = one<{ page_count: number }>('PRAGMA page_count').page_count * one<{ page_size: number }>('PRAGMA page_size').page_size;
    return {
      events: one<{ n: number }>('SELECT COUNT(*) AS n FROM events').n,
      subscriptions: one<{ n: number }>('SELECT COUNT(*) AS n FROM subscriptions').n,
      offlineSubscriptions: one<{ n: number }>('SELECT COUNT(*) AS n FROM subscriptions WHERE offline_since IS NOT NULL').n,
      pending: count('pending'),
      delivered: count('delivered'),
      failed: count('failed'),
      oldestPendingAt: one<{ t: number | null }>(
        `SELECT MIN(e.received_at) AS t FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.state = 'pending'`,
      ).t,
      databaseBytes: page,
    };
  }
}

function migrate(db: Database.Database, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > schemaVersion) {
    throw new StoreError('SCHEMA_TOO_NEW', `event store ${path} has schema ${current}; this krkns knows up to ${schemaVersion}: upgrade krkns`);
  }
  db.transaction(() => {
    for (let v = current + 1; v <= schemaVersion; v++) db.exec(migrations[v]!);
    db.pragma(`user_version = ${schemaVersion}`);
  })();
}

function toEvent(r: EventRow): StoredEvent {
  return {
    id: r.id,
    seq: r.seq,
    topic: r.topic,
    receivedAt: r.received_at,
    dedupeKey: r.dedupe_key,
    method: r.method,
    headers: JSON.parse(r.headers) as [string, string][],
    body: r.body,
    sender: { ip: r.sender_ip, node: r.sender_node, user: r.sender_user, tags: JSON.parse(r.sender_tags) as string[] },
  };
}

function toSubscription(r: SubscriptionRow): Subscription {
  return {
    id: r.id,
    nodeId: r.node_id,
    nodeName: r.node_name,
    address: r.address,
    port: r.port,
    path: r.path,
    topics: JSON.parse(r.topics) as string[],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    offlineSince: r.offline_since,
  };
}

function toDelivery(r: DeliveryRow): Delivery {
  return {
    subscriptionId: r.subscription_id,
    eventSeq: r.event_seq,
    state: r.state,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastStatus: r.last_status,
    lastError: r.last_error,
  };
}
