import { chmodSync, existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import {
  BacklogTrims,
  EVENT_COLUMNS,
  EVENT_WIDTH,
  eventValues,
  firstSince,
  insertedEvent,
  owedTo,
  summaryColumns,
  toDelivery,
  toEvent,
  toEventSummary,
  toSubscription,
  type DeliveryRow,
  type EventRow,
  type EventSummaryRow,
  type Owner,
  type SubscriptionRow,
} from './rows.js';
import { migrations, schemaVersion } from './schema.js';
import {
  DEFAULT_LIST_LIMIT,
  DEFAULT_MAX_BACKLOG,
  PRUNE_BATCH,
  StoreError,
  backlogLimitReason,
  subscriptionLimit,
  newEventId,
  newSubscriptionId,
  type Delivery,
  type DueDelivery,
  type EventQuery,
  type EventSummary,
  type NewEvent,
  type NewSubscription,
  type Published,
  type Rejection,
  type Replica,
  type StoreStats,
  type StoredEvent,
  type Subscription,
  type SubscriptionBacklog,
  type TopicMatcher,
} from './types.js';

/** An event's INSERT, built once: it runs on every publish. */
const EVENT_INSERT = `INSERT INTO events (${EVENT_COLUMNS}) VALUES (${Array(EVENT_WIDTH).fill('?').join(', ')})`;

/**
 * krkns's storage in one SQLite file (WAL, synchronous=FULL), synchronously: every method that writes
 * has committed to disk when it returns — unless it runs inside {@link transaction}, whose commit then
 * covers it (that is how {@link SqliteStore} commits a group of publishes with one fsync), or after
 * {@link deferSyncs}.
 */
export class SqliteCore {
  readonly #db: Database.Database;
  /**
   * One transaction wrapper, made once: better-sqlite3's `db.transaction(fn)` builds four wrappers and
   * their properties on every call, and a publish makes two (its own and its group commit's savepoint).
   */
  readonly #inTransaction: (fn: () => unknown) => unknown;
  readonly #statements = new Map<string, Database.Statement>();

  readonly #trims: BacklogTrims;
  /**
   * The subscriptions a publish may owe an event to (not disabled; topics and ids), read once and kept
   * between writes instead of read per event. This process owns the file, so every change to who is owed
   * what passes through this class, which forgets the list on each (subscribe, unsubscribe, expire, a 410
   * Gone) and when a transaction fails (it may have read rows the rollback undid). `dataVersion` catches a
   * commit by another connection (a second process on the file), which SQLite counts there.
   */
  #owners: { dataVersion: number; subs: Owner[] } | undefined;

  private constructor(
    readonly path: string,
    db: Database.Database,
    maxBacklog: number,
  ) {
    this.#db = db;
    this.#inTransaction = db.transaction((fn: () => unknown) => fn());
    this.#trims = new BacklogTrims(maxBacklog);
  }

  /**
   * Opens (creating if needed, mode 0600) and migrates the database at path; a subscription is owed
   * at most `maxBacklog` pending deliveries (see HubStore.publish).
   */
  static open(path: string, maxBacklog = DEFAULT_MAX_BACKLOG): SqliteCore {
    const fresh = !existsSync(path);
    let db: Database.Database;
    try {
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      // 64 MiB of page cache (default 2 MiB): index pages stay cached as the store grows into the 100k events.
      db.pragma('cache_size = -65536');
    } catch (err) {
      throw fullDisk(path, err) ?? new StoreError('CORRUPT', openFailure(path, err), { cause: err });
    }
    if (fresh) chmodSync(path, 0o600);
    db.function('regexp', { deterministic: true }, regexpFunction());
    try {
      migrate(db, path);
    } catch (err) {
      db.close();
      throw fullDisk(path, err) ?? err;
    }
    return new SqliteCore(path, db, maxBacklog);
  }

  close(): void {
    this.#db.close();
  }

  /** Runs `fn` in one transaction (a savepoint when nested): all of it commits, or none of it. */
  transaction<T>(fn: () => T): T {
    try {
      return this.#inTransaction(fn) as T;
    } catch (err) {
      this.#owners = undefined;
      throw err;
    }
  }

  /** The subscriptions an event may be owed to, in listSubscriptions' order (see #owners). */
  #ownerList(): Owner[] {
    const dataVersion = this.#sql('PRAGMA data_version').pluck().get() as number;
    if (this.#owners?.dataVersion !== dataVersion) {
      const subs = this.listSubscriptions()
        .filter((s) => s.disabled === null)
        .map(({ id, topics, disabled }) => ({ id, topics, disabled }));
      this.#owners = { dataVersion, subs };
    }
    return this.#owners.subs;
  }

  /**
   * From now on, commits do not wait for an fsync (synchronous=NORMAL in WAL mode: consistent, and made
   * durable by the next fsync of the WAL file or checkpoint); the caller fsyncs the WAL (see WalSync)
   * before it reports a write durable.
   */
  deferSyncs(): void {
    this.#db.pragma('synchronous = NORMAL');
  }

  /** Prepared once per SQL text: preparing costs more than running for these small statements. */
  #sql(text: string): Database.Statement {
    let statement = this.#statements.get(text);
    if (!statement) {
      statement = this.#db.prepare(text);
      this.#statements.set(text, statement);
    }
    return statement;
  }

  publish(input: NewEvent, matches: TopicMatcher, now = Date.now()): Published {
    return this.transaction(() => {
      if (input.dedupeKey) {
        const seen = this.#sql('SELECT * FROM events WHERE topic = ? AND dedupe_key = ?').get(
          input.topic,
          input.dedupeKey,
        );
        if (seen) return { event: toEvent(seen as EventRow), duplicate: true, owedTo: [] };
      }
      const id = newEventId(now);
      const { lastInsertRowid } = this.#sql(EVENT_INSERT).run(...eventValues(id, input, now));
      const event = insertedEvent(id, Number(lastInsertRowid), input, now);
      const owe = this.#sql(
        `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at) VALUES (?, ?,
          'pending', ?, ?)`,
      );
      const owed: string[] = [];
      for (const sub of this.#ownerList()) {
        if (!owedTo(sub, input.topic, matches)) continue;
        owe.run(sub.id, event.seq, now, now);
        owed.push(sub.id);
        if (this.#trims.due(sub.id)) this.#trimBacklog(sub.id, now);
      }
      return { event, duplicate: false, owedTo: owed };
    });
  }

  /** Fails, unsent, the pending deliveries of a subscription beyond its newest `maxBacklog`. */
  #trimBacklog(subscriptionId: string, now: number): void {
    const max = this.#trims.maxBacklog;
    this.#sql(
      `UPDATE deliveries SET state = 'failed', last_error = @reason, updated_at = @now
       WHERE subscription_id = @sub AND state = 'pending' AND event_seq <= (SELECT event_seq FROM deliveries
         WHERE subscription_id = @sub AND state = 'pending' ORDER BY event_seq DESC LIMIT 1 OFFSET @max)`,
    ).run({ sub: subscriptionId, now, max, reason: backlogLimitReason(max) });
  }

  getEvent(id: string): StoredEvent | undefined {
    const row = this.#sql('SELECT * FROM events WHERE id = ?').get(id) as EventRow | undefined;
    return row && toEvent(row);
  }

  #eventBySeq(seq: number): StoredEvent {
    return toEvent(this.#sql('SELECT * FROM events WHERE seq = ?').get(seq) as EventRow);
  }

  listEvents(q: EventQuery = {}): EventSummary[] {
    let after = q.afterId ? this.#seqOf(q.afterId) : 0;
    const before = q.beforeId ? this.#seqOf(q.beforeId) : Number.MAX_SAFE_INTEGER;
    if (q.since) {
      const first = this.#sql(firstSince('?')).get(q.since) as { seq: number } | undefined;
      if (!first) return [];
      after = Math.max(after, first.seq - 1);
    }
    const regexes = q.topicRegexes ?? [];
    const topic = q.topic === undefined ? [] : [q.topic];
    const rows = this.#sql(
      `SELECT ${summaryColumns('length')} FROM events WHERE seq > ? AND seq < ? AND received_at >= ?
       ${topic.map(() => 'AND topic = ?').join('')} ${regexes.map(() => 'AND topic REGEXP ?').join(' ')}
       ORDER BY seq ${q.newestFirst ? 'DESC' : 'ASC'} LIMIT ?`,
    ).all(after, before, q.since ?? 0, ...topic, ...regexes, q.limit ?? DEFAULT_LIST_LIMIT) as EventSummaryRow[];
    return rows.map(toEventSummary);
  }
  #seqOf(eventId: string): number {
    const row = this.#sql('SELECT seq FROM events WHERE id = ?').get(eventId) as { seq: number } | undefined;
    if (!row) throw new StoreError('NOT_FOUND', `no event ${eventId}`);
    return row.seq;
  }

  deliveriesOf(eventId: string): Delivery[] {
    const rows = this.#sql(
      'SELECT d.* FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE e.id = ? ORDER BY d.subscription_id',
    ).all(eventId) as DeliveryRow[];
    return rows.map(toDelivery);
  }

  deliveriesOfEvents(eventSeqs: readonly number[]): Delivery[] {
    if (eventSeqs.length === 0) return [];
    // One statement per page length (at most 1,000, the listing's limit), each prepared once.
    const rows = this.#sql(
      `SELECT * FROM deliveries WHERE event_seq IN (${eventSeqs.map(() => '?').join(', ')})
       ORDER BY event_seq, subscription_id`,
    ).all(...eventSeqs) as DeliveryRow[];
    return rows.map(toDelivery);
  }

  subscribe(input: NewSubscription, now = Date.now()): Subscription {
    this.#owners = undefined; // new topics, or a disabled subscription enabled again
    return this.transaction(() => {
      if (input.maxPerNode !== undefined) {
        const { n } = this.#sql('SELECT COUNT(*) AS n FROM subscriptions WHERE node_id = ? AND port <> ?').get(
          input.nodeId,
          input.port,
        ) as { n: number };
        if (n >= input.maxPerNode) throw subscriptionLimit(input);
      }
      const row = this.#sql(
        `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at, secret)
         VALUES (@id, @nodeId, @nodeName, @address, @port, @path, @topics, @now, @now, @secret)
         ON CONFLICT (node_id, port) DO UPDATE SET node_name = @nodeName, address = @address, path = @path,
           topics = @topics, updated_at = @now, offline_since = NULL, probe_at = NULL,
           disabled_at = NULL, disabled_reason = NULL, held_at = NULL, held_reason = NULL,
           secret = CASE WHEN @rotateUntil IS NOT NULL OR secret IS NULL THEN @secret ELSE secret END,
           previous_secret = CASE WHEN @rotateUntil IS NOT NULL THEN secret ELSE previous_secret END,
           previous_secret_until = COALESCE(@rotateUntil, previous_secret_until)
         RETURNING *`,
      ).get({
        nodeId: input.nodeId,
        nodeName: input.nodeName,
        address: input.address,
        port: input.port,
        path: input.path,
        id: newSubscriptionId(),
        topics: JSON.stringify(input.topics),
        now,
        secret: input.secret ?? null,
        rotateUntil: input.secret === undefined ? null : (input.rotateSecretUntil ?? null),
      }) as SubscriptionRow;
      this.#sql(`UPDATE deliveries SET next_attempt_at = ? WHERE subscription_id = ? AND state = 'pending'`).run(
        now,
        row.id,
      );
      return toSubscription(row);
    });
  }

  getSubscription(id: string): Subscription | undefined {
    const row = this.#sql('SELECT * FROM subscriptions WHERE id = ?').get(id) as SubscriptionRow | undefined;
    return row && toSubscription(row);
  }

  listSubscriptions(nodeId?: string): Subscription[] {
    const rows = (
      nodeId === undefined
        ? this.#sql('SELECT * FROM subscriptions ORDER BY created_at, id').all()
        : this.#sql('SELECT * FROM subscriptions WHERE node_id = ? ORDER BY created_at, id').all(nodeId)
    ) as SubscriptionRow[];
    return rows.map(toSubscription);
  }

  unsubscribe(id: string): boolean {
    this.#owners = undefined;
    return this.#sql('DELETE FROM subscriptions WHERE id = ?').run(id).changes > 0;
  }

  dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): DueDelivery[] {
    const subs = this.#sql(
      'SELECT * FROM subscriptions WHERE probe_at IS NULL OR probe_at <= ? ORDER BY created_at, id',
    ).all(now) as SubscriptionRow[];
    const out: DueDelivery[] = [];
    for (const sub of subs) {
      if (out.length >= limit) break;
      if (busy.has(sub.id)) continue;
      const head = this.#head(sub, now);
      if (head) out.push(head);
    }
    return out;
  }

  /** A subscription's oldest due pending delivery, through the deliveries_pending_head index. */
  #head(sub: SubscriptionRow, now: number): DueDelivery | undefined {
    const row = this.#sql(
      // INDEXED BY: left to itself, SQLite picks deliveries_pending_due and sorts the whole queue.
      `SELECT * FROM deliveries INDEXED BY deliveries_pending_head
       WHERE subscription_id = ? AND state = 'pending' AND next_attempt_at <= ? ORDER BY event_seq LIMIT 1`,
    ).get(sub.id, now) as DeliveryRow | undefined;
    return (
      row && { delivery: toDelivery(row), event: this.#eventBySeq(row.event_seq), subscription: toSubscription(sub) }
    );
  }

  claimDue(owner: string, now: number, leaseMs: number, limit: number): DueDelivery[] {
    return this.transaction(() => {
      const subs = this.#sql(
        `SELECT * FROM subscriptions WHERE (probe_at IS NULL OR probe_at <= @now)
           AND (lease_until IS NULL OR lease_until <= @now OR lease_owner = @owner) ORDER BY created_at, id`,
      ).all({ now, owner }) as SubscriptionRow[];
      const lease = this.#sql('UPDATE subscriptions SET lease_owner = ?, lease_until = ? WHERE id = ?');
      const out: DueDelivery[] = [];
      for (const sub of subs) {
        if (out.length >= limit) break;
        const head = this.#head(sub, now);
        if (!head) continue;
        lease.run(owner, now + leaseMs, sub.id);
        out.push(head);
      }
      return out;
    });
  }

  releaseLease(subscriptionId: string, owner: string): void {
    this.#sql('UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?').run(
      subscriptionId,
      owner,
    );
  }

  nextDueAt(now = Date.now()): number | null {
    // Per subscription, its earliest pending due time (deliveries_pending_due index), held back by its
    // probe time and by a live lease.
    const row = this.#sql(
      `SELECT MIN(MAX((SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.subscription_id = s.id
        AND d.state = 'pending'),
                      COALESCE(s.probe_at, 0), CASE WHEN s.lease_until > ? THEN s.lease_until ELSE 0 END)) AS t
       FROM subscriptions s`,
    ).get(now) as { t: number | null };
    return row.t;
  }

  recordDelivered(subscriptionId: string, eventSeq: number, status: number, now = Date.now()): void {
    this.transaction(() => {
      this.#sql(
        `UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?, last_error = NULL,
          updated_at = ?
         WHERE subscription_id = ? AND event_seq = ?`,
      ).run(status, now, subscriptionId, eventSeq);
      this.#online(subscriptionId, now);
    });
  }

  recordRejected(subscriptionId: string, eventSeq: number, outcome: Rejection, now = Date.now()): void {
    this.transaction(() => {
      this.#sql(
        `UPDATE deliveries SET attempts = attempts + 1, last_status = ?, last_error = ?, updated_at = ?,
           state = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END,
           next_attempt_at = COALESCE(?, next_attempt_at)
         WHERE subscription_id = ? AND event_seq = ?`,
      ).run(outcome.status, outcome.error, now, outcome.retryAt, outcome.retryAt, subscriptionId, eventSeq);
      this.#online(subscriptionId);
    });
  }

  recordGone(subscriptionId: string, eventSeq: number, status: number, reason: string, now = Date.now()): void {
    this.#owners = undefined; // disabled: owed nothing more
    this.transaction(() => {
      this.#sql(
        `UPDATE deliveries SET attempts = attempts + 1, last_status = ?, updated_at = ? WHERE subscription_id = ?
           AND event_seq = ?`,
      ).run(status, now, subscriptionId, eventSeq);
      this.#sql(
        `UPDATE deliveries SET state = 'failed', last_error = ?, updated_at = ? WHERE subscription_id = ?
           AND state = 'pending'`,
      ).run(reason, now, subscriptionId);
      this.#sql(
        `UPDATE subscriptions SET disabled_at = ?, disabled_reason = ?, offline_since = NULL, probe_at = NULL,
           held_at = NULL, held_reason = NULL WHERE id = ?`,
      ).run(now, reason, subscriptionId);
    });
  }

  /** It answered: no longer offline or held; with `deliveredAt`, a delivery to it succeeded then. */
  #online(subscriptionId: string, deliveredAt: number | null = null): void {
    this.#sql(
      `UPDATE subscriptions SET offline_since = NULL, probe_at = NULL, held_at = NULL, held_reason = NULL,
         last_delivered_at = COALESCE(?, last_delivered_at) WHERE id = ?`,
    ).run(deliveredAt, subscriptionId);
  }

  recordUnreachable(
    subscriptionId: string,
    eventSeq: number,
    error: string,
    probeAt: number,
    attemptStartedAt: number,
    now = Date.now(),
  ): void {
    this.#park(subscriptionId, eventSeq, error, now, attemptStartedAt, {
      sql: 'offline_since = COALESCE(offline_since, ?), probe_at = ?, held_at = NULL, held_reason = NULL',
      params: [now, probeAt],
    });
  }

  recordHeld(
    subscriptionId: string,
    eventSeq: number,
    reason: string,
    probeAt: number,
    attemptStartedAt: number,
    now = Date.now(),
  ): void {
    this.#park(subscriptionId, eventSeq, reason, now, attemptStartedAt, {
      sql: 'held_at = COALESCE(held_at, ?), held_reason = ?, probe_at = ?, offline_since = NULL',
      params: [now, reason, probeAt],
    });
  }

  /**
   * An attempt that never reached its subscriber: `error` on the delivery (no attempt spent) and `set` on the
   * subscription, unless it subscribed again after the attempt began.
   */
  #park(
    subscriptionId: string,
    eventSeq: number,
    error: string,
    now: number,
    attemptStartedAt: number,
    set: { sql: string; params: unknown[] },
  ): void {
    this.transaction(() => {
      this.#sql('UPDATE deliveries SET last_error = ?, updated_at = ? WHERE subscription_id = ? AND event_seq = ?').run(
        error,
        now,
        subscriptionId,
        eventSeq,
      );
      this.#sql(`UPDATE subscriptions SET ${set.sql} WHERE id = ? AND updated_at <= ?`).run(
        ...set.params,
        subscriptionId,
        attemptStartedAt,
      );
    });
  }

  recordRefused(subscriptionId: string, eventSeq: number, reason: string, now = Date.now()): void {
    this.transaction(() => {
      this.#sql(
        `UPDATE deliveries SET state = 'failed', last_status = NULL, last_error = ?, updated_at = ?
         WHERE subscription_id = ? AND event_seq = ?`,
      ).run(reason, now, subscriptionId, eventSeq);
      // The address answered for the subscription's own node: whatever held its queue is over.
      this.#sql('UPDATE subscriptions SET held_at = NULL, held_reason = NULL WHERE id = ?').run(subscriptionId);
    });
  }

  markOffline(subscriptionId: string, now = Date.now()): void {
    this.#sql('UPDATE subscriptions SET offline_since = ? WHERE id = ? AND offline_since IS NULL').run(
      now,
      subscriptionId,
    );
  }

  expire(subscriptionId: string, offlineBefore: number): boolean {
    this.#owners = undefined;
    return (
      this.#sql('DELETE FROM subscriptions WHERE id = ? AND offline_since <= ?').run(subscriptionId, offlineBefore)
        .changes > 0
    );
  }

  wake(subscriptionId: string, now = Date.now()): void {
    this.transaction(() => {
      this.#sql('UPDATE subscriptions SET probe_at = NULL WHERE id = ?').run(subscriptionId);
      this.#sql(
        `UPDATE deliveries SET next_attempt_at = MIN(next_attempt_at, ?) WHERE subscription_id = ?
          AND state = 'pending'`,
      ).run(now, subscriptionId);
    });
  }

  redeliver(eventId: string, matches: TopicMatcher, now = Date.now(), nodeId?: string): number {
    return this.transaction(() => {
      const event = this.getEvent(eventId);
      if (!event) throw new StoreError('NOT_FOUND', `no event ${eventId}`);
      const upsert = this.#sql(
        `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at) VALUES (?, ?,
          'pending', ?, ?)
         ON CONFLICT (subscription_id, event_seq) DO UPDATE SET state = 'pending', attempts = 0,
           next_attempt_at = excluded.next_attempt_at, last_error = NULL, last_status = NULL,
           updated_at = excluded.updated_at`,
      );
      let n = 0;
      for (const sub of this.listSubscriptions(nodeId)) {
        if (owedTo(sub, event.topic, matches)) n += upsert.run(sub.id, event.seq, now, now).changes;
      }
      return n;
    });
  }

  /**
   * Deletes up to `batch` events received before `before` that nobody is still owed, in one transaction. In
   * receipt-time order, so the walk is the events_received index's range before `before` (ORDER BY seq made
   * SQLite scan every event by seq, however few were past retention).
   */
  pruneBatch(before: number, batch = PRUNE_BATCH): number {
    return this.#sql(
      `DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE received_at < ? AND NOT EXISTS
         (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq AND d.state = 'pending')
         ORDER BY received_at LIMIT ?)`,
    ).run(before, batch).changes;
  }

  /** Deletes, batch by batch, every event received before `before` that nobody is still owed. */
  prune(before: number): number {
    let total = 0;
    for (let n = this.pruneBatch(before); n > 0; n = this.pruneBatch(before)) total += n;
    return total;
  }

  heartbeat(name: string, startedAt: number, now = Date.now()): void {
    this.#sql(
      `INSERT INTO replicas (name, started_at, seen_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, seen_at = excluded.seen_at`,
    ).run(name, startedAt, now);
  }

  replicas(now = Date.now()): Replica[] {
    return this.#sql(
      `SELECT r.name, r.started_at AS startedAt, r.seen_at AS seenAt,
         (SELECT COUNT(*) FROM subscriptions s WHERE s.lease_owner = r.name AND s.lease_until > ?) AS leases
       FROM replicas r ORDER BY r.name`,
    ).all(now) as Replica[];
  }

  backlogs(): SubscriptionBacklog[] {
    // Pending ones through the partial pending index: a walk as long as the queue, not every delivery made.
    return this.#sql(
      `SELECT s.id AS subscriptionId, s.last_delivered_at AS lastDeliveredAt,
         (SELECT COUNT(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending') AS pending
       FROM subscriptions s ORDER BY s.created_at`,
    ).all() as SubscriptionBacklog[];
  }

  /** Pages in use (pages freed by pruning are reused before the file grows, so they do not count). */
  sizeBytes(): number {
    const one = (pragma: string): number => this.#db.pragma(pragma, { simple: true }) as number;
    return (one('page_count') - one('freelist_count')) * one('page_size');
  }

  stats(): StoreStats {
    const one = (sql: string): unknown => this.#sql(sql).get();
    const byState = this.#sql('SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state').all() as {
      state: string;
      n: number;
    }[];
    const count = (s: string) => byState.find((r) => r.state === s)?.n ?? 0;
    const pages = (one('PRAGMA page_count') as { page_count: number }).page_count;
    return {
      events: (one('SELECT COUNT(*) AS n FROM events') as { n: number }).n,
      subscriptions: (one('SELECT COUNT(*) AS n FROM subscriptions') as { n: number }).n,
      offlineSubscriptions: (
        one('SELECT COUNT(*) AS n FROM subscriptions WHERE offline_since IS NOT NULL') as { n: number }
      ).n,
      disabledSubscriptions: (
        one('SELECT COUNT(*) AS n FROM subscriptions WHERE disabled_at IS NOT NULL') as { n: number }
      ).n,
      heldSubscriptions: (one('SELECT COUNT(*) AS n FROM subscriptions WHERE held_at IS NOT NULL') as { n: number }).n,
      pending: count('pending'),
      delivered: count('delivered'),
      failed: count('failed'),
      oldestPendingAt: (
        one(`SELECT MIN(e.received_at) AS t FROM deliveries d JOIN events e ON e.seq = d.event_seq
          WHERE d.state = 'pending'`) as { t: number | null }
      ).t,
      databaseBytes: pages * (one('PRAGMA page_size') as { page_size: number }).page_size,
    };
  }
}

/**
 * SQLite's `x REGEXP y` calls `regexp(y, x)`, which it leaves to the application: here JavaScript's
 * RegExp, each source compiled once (a listing passes the same few sources for every row).
 */
function regexpFunction(): (source: unknown, text: unknown) => number {
  const compiled = new Map<string, RegExp>();
  return (source, text) => {
    if (typeof source !== 'string' || typeof text !== 'string') return 0;
    let re = compiled.get(source);
    if (!re) {
      if (compiled.size >= 64) compiled.clear();
      re = new RegExp(source);
      compiled.set(source, re);
    }
    return re.test(text) ? 1 : 0;
  };
}

function migrate(db: Database.Database, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > schemaVersion) {
    throw new StoreError(
      'SCHEMA_TOO_NEW',
      `event store ${path} has schema ${current}; this krkns knows up to ${schemaVersion}: upgrade krkns`,
    );
  }
  db.transaction(() => {
    for (let v = current + 1; v <= schemaVersion; v++) db.exec(migrations[v]!);
    db.pragma(`user_version = ${schemaVersion}`);
  })();
}

/**
 * SQLite's "database or disk is full" (an ENOSPC while writing the database or its WAL) as StoreError
 * FULL; undefined for any other error.
 */
export function fullDisk(path: string, err: unknown): StoreError | undefined {
  if ((err as { code?: unknown } | null)?.code !== 'SQLITE_FULL') return undefined;
  return new StoreError('FULL', `the disk holding ${path} is full`, { cause: err });
}

/** Why the file at `path` cannot be opened, and for a damaged one what the operator can do. */
function openFailure(path: string, err: unknown): string {
  const { code, message } = err as { code?: unknown; message: string };
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    const fix = 'restore it from a backup, or move it aside to start empty';
    return `event store ${path} is corrupt or not a SQLite database (${message}): ${fix}`;
  }
  return `cannot open event store ${path}: ${message}`;
}
