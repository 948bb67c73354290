import pg from 'pg';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AsyncGroupCommit, type AsyncGroupCommitOptions } from './group-commit.js';
import { pgMigrations } from './pg-schema.js';
import {
  BacklogTrims,
  EVENT_COLUMNS,
  EVENT_WIDTH,
  eventValues,
  firstSince,
  owedTo,
  summaryColumns,
  toDelivery,
  toEvent,
  toEventSummary,
  toSubscription,
  type DeliveryRow,
  type EventRow,
  type EventSummaryRow,
  type SubscriptionRow,
} from './rows.js';
import { schemaVersion } from './schema.js';
import {
  DEFAULT_LIST_LIMIT,
  DEFAULT_MAX_BACKLOG,
  PRUNE_BATCH,
  StoreError,
  backlogLimitReason,
  subscriptionLimit,
  newEventId,
  newSubscriptionId,
  type HubStore,
  type Delivery,
  type DueDelivery,
  type EventQuery,
  type EventSummary,
  type NewEvent,
  type NewSubscription,
  type Rejection,
  type Replica,
  type StoreStats,
  type SubscriptionBacklog,
  type Published,
  type StoredEvent,
  type Subscription,
  type TopicMatcher,
} from './types.js';

export interface PostgresStoreOptions {
  /** The password, read by the caller from a file or the environment: never part of the URL or argv. */
  password?: string | undefined;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Give up connecting after this long (default 5 s). */
  connectTimeoutMs?: number;
  /** Any one statement is cancelled after this long (default 15 s), so a stuck database cannot hold a request. */
  statementTimeoutMs?: number;
  /** Pending deliveries a subscription is owed at most (default DEFAULT_MAX_BACKLOG; see HubStore.publish). */
  maxBacklog?: number;
  /** Bounds of the group commit of publishes (see {@link AsyncGroupCommitOptions}). */
  groupCommit?: Partial<AsyncGroupCommitOptions>;
}

interface PublishRequest {
  input: NewEvent;
  matches: TopicMatcher;
  now: number;
}

type Queryable = pg.Pool | pg.PoolClient;

// Advisory lock keys (any fixed bigint, "krkn" in ASCII + a number).
const MIGRATION_LOCK = 0x6b726b6e_01;
// Receipt order across concurrent publishes. A publish holds this lock SHARED from before it draws its seq
// until it commits, so publishes run (and commit, and fsync) together. Whoever picks heads of line takes it
// EXCLUSIVE first: that waits out every publish holding a drawn-but-uncommitted seq, so it can never see
// seq 11 committed while seq 10 is still to come and deliver 11 first.
const RECEIPT_ORDER_LOCK = 0x6b726b6e_02;
/** Opens a publish's transaction, holding RECEIPT_ORDER_LOCK shared (one round trip: no parameters). */
const BEGIN_PUBLISH = `BEGIN; SELECT pg_advisory_xact_lock_shared(${RECEIPT_ORDER_LOCK})`;
/** Takes RECEIPT_ORDER_LOCK exclusive: waits out publishes still holding a drawn seq. */
const IN_RECEIPT_ORDER = `SELECT pg_advisory_xact_lock(${RECEIPT_ORDER_LOCK})`;
/** Opens a transaction that reads in receipt order (one round trip: no parameters). */
const BEGIN_IN_RECEIPT_ORDER = `BEGIN; ${IN_RECEIPT_ORDER}`;
// One node's subscribes, one at a time (two-key form: "krkn" and a hash of the node id), so counting its
// subscriptions against maxPerNode and adding one cannot race.
const NODE_SUBSCRIBE_LOCK_CLASS = 0x6b726b6e;

// BIGINT columns (ms times, seqs) come back as JS numbers: all of ours fit in 2^53.
const getTypeParser: typeof pg.types.getTypeParser = (oid, format): unknown =>
  oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format);
const types = { getTypeParser };

/** A number as an SQL literal, for a query sent without parameters: only a safe integer passes. */
function integerLiteral(n: number): string {
  if (!Number.isSafeInteger(n)) throw new TypeError(`not an integer: ${n}`);
  return String(n);
}

/** SQLSTATE disk_full: checked before {@link isUnavailable}, whose class 53 would take it for an overload. */
const DISK_FULL = '53100';

/**
 * SQLSTATE classes and socket errors that mean "the database is not there (or overloaded)", not "your query
 * is wrong": 08 connection exceptions, 53 insufficient resources (too many connections), 57 operator
 * intervention (shutdown, statement timeout).
 */
function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (
    typeof code === 'string' &&
    (/^(08|53|57)/.test(code) || /^E(CONN|TIMEDOUT|PIPE|HOSTUNREACH|NOTFOUND|AI_AGAIN)/.test(code))
  ) {
    return true;
  }
  return (
    err instanceof Error &&
    /Connection terminated|timeout exceeded when trying to connect|encountered a connection error/i.test(err.message)
  );
}

/** An answer from the subscriber: it is online, and whatever held its queue is over. */
const ONLINE = 'offline_since = NULL, probe_at = NULL, held_at = NULL, held_reason = NULL';
/** For an outcome's parameters ($6: when the attempt started): the subscription was not renewed since. */
const NOT_RESUBSCRIBED = 'updated_at <= $6';

/** A SET list that assigns each column only where `condition` holds (elsewhere it keeps its value). */
function setIf(condition: string, assignments: Record<string, string>): string {
  return Object.entries(assignments)
    .map(([column, value]) => `${column} = CASE WHEN ${condition} THEN ${value} ELSE ${column} END`)
    .join(', ');
}

/**
 * The shared store: one PostgreSQL database, for one or several krkns replicas. Every write is committed
 * before its promise resolves. Publishes arriving together share one transaction (group commit: a few
 * round trips for the group instead of five per publish); every other write is its own transaction.
 */
export class PostgresStore implements HubStore {
  readonly description: string;
  readonly #pool: pg.Pool;
  readonly #trims: BacklogTrims;
  readonly #publishes: AsyncGroupCommit<PublishRequest, Published>;

  private constructor(description: string, pool: pg.Pool, options: PostgresStoreOptions) {
    this.description = description;
    this.#pool = pool;
    this.#trims = new BacklogTrims(options.maxBacklog ?? DEFAULT_MAX_BACKLOG);
    // A group that failed for the database's sake (unreachable, disk full) is not retried: no publish of it
    // could commit alone either, and after a lost COMMIT reply retrying could store an event twice.
    this.#publishes = new AsyncGroupCommit(
      (group) => this.#publishGroup(group),
      (err) => !(err instanceof StoreError),
      options.groupCommit,
    );
  }

  /** Publish groups committed so far (for benchmarks: publishes per group = publishes / groups). */
  get publishGroups(): number {
    return this.#publishes.groups;
  }

  /**
   * Connects to `url` (postgres://user@host:port/db) and migrates the schema.
   * Throws CONNECT_FAILED (refused, wrong password, no such database) or SCHEMA_TOO_NEW.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const parsed = new URL(url);
    const description = `postgres://${parsed.username}@${parsed.host}${parsed.pathname}`;
    const pool = new pg.Pool({
      // Not connectionString: pg lets the URL's (absent) password override the one given here.
      host: parsed.hostname,
      port: parsed.port ? Number(parsed.port) : 5432,
      user: decodeURIComponent(parsed.username),
      database: decodeURIComponent(parsed.pathname.slice(1)),
      password: options.password,
      ssl: tlsFor(parsed.searchParams.get('sslmode')),
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      statement_timeout: options.statementTimeoutMs ?? 15_000,
      keepAlive: true,
      types,
    });
    // An idle connection dropped by the server must not crash the process; the next query reconnects.
    pool.on('error', () => {});
    try {
      await migrate(pool, description);
    } catch (err) {
      await pool.end();
      if (err instanceof StoreError) throw err;
      const why = (err as Error).message;
      throw new StoreError('CONNECT_FAILED', `cannot use the PostgreSQL store ${description}: ${why}`, { cause: err });
    }
    return new PostgresStore(description, pool, options);
  }

  async #q<R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], on: Queryable = this.#pool): Promise<R[]> {
    try {
      return (await on.query<R>(sql, params)).rows;
    } catch (err) {
      throw this.#translate(err);
    }
  }

  #translate(err: unknown): unknown {
    if (err instanceof StoreError) return err;
    if ((err as { code?: unknown }).code === DISK_FULL) {
      const why = (err as Error).message;
      return new StoreError('FULL', `the PostgreSQL store ${this.description} is out of disk space: ${why}`, {
        cause: err,
      });
    }
    if (!isUnavailable(err)) return err;
    return new StoreError(
      'UNAVAILABLE',
      `the PostgreSQL store ${this.description} is unavailable: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }

  /**
   * Runs `fn` in a transaction on one connection, opened by `begin` (BEGIN, or one of the BEGIN_* below: one
   * round trip for BEGIN and the lock); resolves after COMMIT.
   */
  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw this.#translate(err);
    }
    let broken: Error | undefined;
    // A checked-out client's errors are ours to handle (the pool only watches idle ones): unheard, a
    // connection dropped between two statements would crash the process. The statement fails anyway.
    const onError = (err: Error): void => void (broken = err);
    client.on('error', onError);
    try {
      await this.#q(begin, [], client);
      const result = await fn(client);
      await this.#q('COMMIT', [], client);
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      });
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  publish(input: NewEvent, matches: TopicMatcher, now = Date.now()): Promise<Published> {
    return this.#publishes.run({ input, matches, now });
  }

  /**
   * Commits a group of publishes in one transaction (see {@link AsyncGroupCommit}): one multi-row INSERT of
   * the events (seqs drawn in the group's order), one of their deliveries. A publish whose dedupe key is
   * taken, by an earlier write or by one earlier in the group, comes back as that event, a duplicate.
   */
  async #publishGroup(group: PublishRequest[]): Promise<Published[]> {
    return this.#tx(async (c) => {
      const ids = group.map((p) => newEventId(p.now));
      const rows = group.map(
        (_, i) => `(${Array.from({ length: EVENT_WIDTH }, (_, j) => `$${i * EVENT_WIDTH + j + 1}`).join(', ')})`,
      );
      // One round trip: insert (unless the dedupe key is taken: the unique index waits for a racing
      // publish of the same key to commit) and read the subscriptions to match.
      const inserted = await this.#q<EventRow & { subs: string }>(
        `WITH e AS (INSERT INTO events (${EVENT_COLUMNS}) VALUES ${rows.join(', ')}
                    ON CONFLICT (topic, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING *)
         SELECT e.*, (SELECT COALESCE(json_agg(json_build_array(s.id, s.topics)), '[]')
         FROM subscriptions s WHERE s.disabled_at IS NULL)::text AS subs FROM e`,
        group.flatMap((p, i) => eventValues(ids[i]!, p.input, p.now)),
        c,
      );
      const byId = new Map(inserted.map(({ subs: _subs, ...row }) => [row.id, row]));
      const dupes = group.filter((_, i) => !byId.has(ids[i]!));
      const seen =
        dupes.length === 0
          ? []
          : await this.#q<EventRow>(
              `SELECT e.* FROM events e JOIN unnest($1::text[], $2::text[]) AS k(topic, key)
               ON e.topic = k.topic AND e.dedupe_key = k.key`,
              [dupes.map((p) => p.input.topic), dupes.map((p) => p.input.dedupeKey)],
              c,
            );
      const subs = inserted.length > 0 ? (JSON.parse(inserted[0]!.subs) as [string, string][]) : [];
      const patterns = subs.map(([id, topics]) => [id, JSON.parse(topics) as string[]] as const);
      const owed: { sid: string[]; seq: number[]; at: number[] } = { sid: [], seq: [], at: [] };
      const results = group.map((p, i): Published => {
        const row = byId.get(ids[i]!);
        if (!row) {
          const first = seen.find((r) => r.topic === p.input.topic && r.dedupe_key === p.input.dedupeKey);
          return { event: toEvent(first!), duplicate: true, owedTo: [] };
        }
        const owedTo: string[] = [];
        for (const [sid, topics] of patterns) {
          if (!topics.some((t) => p.matches(t, p.input.topic))) continue;
          owedTo.push(sid);
          owed.sid.push(sid);
          owed.seq.push(row.seq);
          owed.at.push(p.now);
        }
        return { event: toEvent(row), duplicate: false, owedTo };
      });
      if (owed.sid.length > 0) {
        await this.#q(
          `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at)
           SELECT sid, seq, 'pending', at, at FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS o(sid, seq, at)`,
          [owed.sid, owed.seq, owed.at],
          c,
        );
        const trim = [...new Set(owed.sid.filter((id) => this.#trims.due(id)))];
        if (trim.length > 0) await this.#trimBacklogs(trim, group.at(-1)!.now, c);
      }
      return results;
    }, BEGIN_PUBLISH);
  }

  /** Fails, unsent, the pending deliveries of each subscription beyond its newest maxBacklog. */
  async #trimBacklogs(subscriptionIds: string[], now: number, c: pg.PoolClient): Promise<void> {
    const max = this.#trims.maxBacklog;
    await this.#q(
      // MATERIALIZED: each cut is found once; inlined, the planner re-walked the queue for every row it
      // updated (a store probe: 216 publishes/s inlined, 822 materialized).
      `WITH c AS MATERIALIZED (
         SELECT s.id, (SELECT event_seq FROM deliveries x WHERE x.subscription_id = s.id AND x.state = 'pending'
           ORDER BY event_seq DESC LIMIT 1 OFFSET $3) AS cut
         FROM unnest($4::text[]) AS s(id))
       UPDATE deliveries d SET state = 'failed', last_error = $1, updated_at = $2
       FROM c WHERE d.subscription_id = c.id AND d.state = 'pending' AND d.event_seq <= c.cut`,
      [backlogLimitReason(max), now, max, subscriptionIds],
      c,
    );
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    const [row] = await this.#q<EventRow>('SELECT * FROM events WHERE id = $1', [id]);
    return row && toEvent(row);
  }

  async listEvents(q: EventQuery = {}): Promise<EventSummary[]> {
    // In receipt order too: a client paging with afterId must not step past an event still committing.
    return this.#tx(async (c) => this.#listEvents(q, c), BEGIN_IN_RECEIPT_ORDER);
  }

  async #listEvents(q: EventQuery, c: pg.PoolClient): Promise<EventSummary[]> {
    let after = q.afterId ? await this.#seqOf(q.afterId, c) : 0;
    const before = q.beforeId ? await this.#seqOf(q.beforeId, c) : Number.MAX_SAFE_INTEGER;
    if (q.since) {
      const [first] = await this.#q<{ seq: number }>(firstSince('$1'), [q.since], c);
      if (!first) return [];
      after = Math.max(after, first.seq - 1);
    }
    const regexes = q.topicRegexes ?? [];
    const topic = q.topic === undefined ? [] : [q.topic];
    const rows = await this.#q<EventSummaryRow>(
      `SELECT ${summaryColumns('octet_length')} FROM events WHERE seq > $1 AND seq < $2 AND received_at >= $3
       ${topic.map(() => 'AND topic = $5').join('')} ${regexes.map((_, i) => `AND topic ~ $${i + 5 + topic.length}`).join(' ')}
       ORDER BY seq ${q.newestFirst ? 'DESC' : 'ASC'} LIMIT $4`,
      [after, before, q.since ?? 0, q.limit ?? DEFAULT_LIST_LIMIT, ...topic, ...regexes],
      c,
    );
    return rows.map(toEventSummary);
  }

  async #seqOf(eventId: string, c: pg.PoolClient): Promise<number> {
    const [row] = await this.#q<{ seq: number }>('SELECT seq FROM events WHERE id = $1', [eventId], c);
    if (!row) throw new StoreError('NOT_FOUND', `no event ${eventId}`);
    return row.seq;
  }

  async deliveriesOf(eventId: string): Promise<Delivery[]> {
    const rows = await this.#q<DeliveryRow>(
      'SELECT d.* FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE e.id = $1 ORDER BY d.subscription_id',
      [eventId],
    );
    return rows.map(toDelivery);
  }

  async deliveriesOfEvents(eventSeqs: readonly number[]): Promise<Delivery[]> {
    if (eventSeqs.length === 0) return [];
    const rows = await this.#q<DeliveryRow>(
      'SELECT * FROM deliveries WHERE event_seq = ANY($1::bigint[]) ORDER BY event_seq, subscription_id',
      [eventSeqs],
    );
    return rows.map(toDelivery);
  }

  async subscribe(input: NewSubscription, now = Date.now()): Promise<Subscription> {
    return this.#tx(async (c) => {
      if (input.maxPerNode !== undefined) {
        await this.#q(`SELECT pg_advisory_xact_lock(${NODE_SUBSCRIBE_LOCK_CLASS}, hashtext($1))`, [input.nodeId], c);
        const [{ n } = { n: 0 }] = await this.#q<{ n: number }>(
          'SELECT COUNT(*) AS n FROM subscriptions WHERE node_id = $1 AND port <> $2',
          [input.nodeId, input.port],
          c,
        );
        if (n >= input.maxPerNode) throw subscriptionLimit(input);
      }
      const [row] = await this.#q<SubscriptionRow>(
        `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at, secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
         ON CONFLICT (node_id, port) DO UPDATE SET node_name = EXCLUDED.node_name, address = EXCLUDED.address,
           path = EXCLUDED.path, topics = EXCLUDED.topics, updated_at = EXCLUDED.updated_at,
           offline_since = NULL, probe_at = NULL, disabled_at = NULL, disabled_reason = NULL,
           held_at = NULL, held_reason = NULL,
           secret = CASE WHEN $10::bigint IS NOT NULL OR subscriptions.secret IS NULL THEN $9
             ELSE subscriptions.secret END,
           previous_secret = CASE WHEN $10::bigint IS NOT NULL THEN subscriptions.secret
             ELSE subscriptions.previous_secret END,
           previous_secret_until = COALESCE($10::bigint, subscriptions.previous_secret_until)
         RETURNING *`,
        [
          newSubscriptionId(),
          input.nodeId,
          input.nodeName,
          input.address,
          input.port,
          input.path,
          JSON.stringify(input.topics),
          now,
          input.secret ?? null,
          input.secret === undefined ? null : (input.rotateSecretUntil ?? null),
        ],
        c,
      );
      await this.#q(
        `UPDATE deliveries SET next_attempt_at = $1 WHERE subscription_id = $2 AND state = 'pending'`,
        [now, row!.id],
        c,
      );
      return toSubscription(row!);
    });
  }

  async getSubscription(id: string): Promise<Subscription | undefined> {
    const [row] = await this.#q<SubscriptionRow>('SELECT * FROM subscriptions WHERE id = $1', [id]);
    return row && toSubscription(row);
  }

  async listSubscriptions(nodeId?: string): Promise<Subscription[]> {
    const rows =
      nodeId === undefined
        ? await this.#q<SubscriptionRow>('SELECT * FROM subscriptions ORDER BY created_at, id')
        : await this.#q<SubscriptionRow>('SELECT * FROM subscriptions WHERE node_id = $1 ORDER BY created_at, id', [
            nodeId,
          ]);
    return rows.map(toSubscription);
  }

  async unsubscribe(id: string): Promise<boolean> {
    const rows = await this.#q('DELETE FROM subscriptions WHERE id = $1 RETURNING id', [id]);
    return rows.length > 0;
  }

  async dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): Promise<DueDelivery[]> {
    return this.#tx(async (c) => {
      // Each subscription's oldest due pending delivery, through the deliveries_pending_head index.
      const heads = await this.#q<{ sid: string; seq: number }>(
        `SELECT s.id AS sid, h.event_seq AS seq FROM subscriptions s
       CROSS JOIN LATERAL (SELECT event_seq FROM deliveries d
         WHERE d.subscription_id = s.id AND d.state = 'pending'
         AND d.next_attempt_at <= $1 ORDER BY event_seq LIMIT 1) h
       WHERE s.probe_at IS NULL OR s.probe_at <= $1 ORDER BY s.created_at, s.id`,
        [now],
        c,
      );
      return this.#hydrate(heads.filter((h) => !busy.has(h.sid)).slice(0, limit), c);
    }, BEGIN_IN_RECEIPT_ORDER);
  }

  /**
   * One round trip: the receipt-order lock and the claim go as one simple query, which PostgreSQL runs as one
   * transaction, each statement with its own snapshot (so the claim's is taken after the lock). Each delivery
   * to a busy subscriber waits for a claim, so a claim's round trips cap how fast one subscriber's queue
   * drains. The simple protocol takes no parameters: the values are literals, checked or escaped here.
   */
  async claimDue(owner: string, now: number, leaseMs: number, limit: number): Promise<DueDelivery[]> {
    const [at, lease, max] = [now, leaseMs, limit].map(integerLiteral);
    const by = pg.escapeLiteral(owner);
    // SKIP LOCKED: replicas claiming at once each take different subscriptions instead of queueing.
    // One statement: lease the subscriptions, find each one's head (its oldest due delivery), and load the
    // head's delivery and event (their columns share no name) with the leased subscription row.
    const rows = await this.#inReceiptOrder<DeliveryRow & EventRow & { sub: SubscriptionRow }>(
      `WITH c AS (
         SELECT s.id FROM subscriptions s
         WHERE (s.probe_at IS NULL OR s.probe_at <= ${at})
           AND (s.lease_until IS NULL OR s.lease_until <= ${at} OR s.lease_owner = ${by})
           AND EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.subscription_id = s.id AND d.state = 'pending' AND d.next_attempt_at <= ${at})
         ORDER BY s.created_at, s.id LIMIT ${max} FOR UPDATE SKIP LOCKED),
       u AS (UPDATE subscriptions s SET lease_owner = ${by}, lease_until = ${at} + ${lease} FROM c
             WHERE s.id = c.id RETURNING s.*)
       SELECT d.*, e.*, to_jsonb(u) AS sub FROM u
       CROSS JOIN LATERAL (SELECT MIN(d.event_seq) AS seq FROM deliveries d
         WHERE d.subscription_id = u.id AND d.state = 'pending' AND d.next_attempt_at <= ${at}) h
       JOIN deliveries d ON d.subscription_id = u.id AND d.event_seq = h.seq
       JOIN events e ON e.seq = h.seq
       ORDER BY u.created_at, u.id`,
    );
    return rows.map((r) => ({ delivery: toDelivery(r), event: toEvent(r), subscription: toSubscription(r.sub) }));
  }

  /** Runs `statement` (no parameters) after taking RECEIPT_ORDER_LOCK, in one transaction and one round trip. */
  async #inReceiptOrder<R extends pg.QueryResultRow>(statement: string): Promise<R[]> {
    let results: unknown;
    try {
      results = await this.#pool.query(`${IN_RECEIPT_ORDER}; ${statement}`);
    } catch (err) {
      throw this.#translate(err);
    }
    // Several statements in one query answer with one result each.
    return (results as pg.QueryResult<R>[])[1]!.rows;
  }

  /** Loads delivery, event and subscription of each (subscription, seq), in the order given. */
  async #hydrate(heads: { sid: string; seq: number }[], on: Queryable): Promise<DueDelivery[]> {
    if (heads.length === 0) return [];
    const sids = heads.map((h) => h.sid);
    const seqs = heads.map((h) => h.seq);
    // Deliveries with their events in one query (their columns share no name).
    const rows = await this.#q<DeliveryRow & EventRow>(
      `SELECT d.*, e.* FROM deliveries d JOIN unnest($1::text[], $2::bigint[]) AS k(sid, seq)
       ON d.subscription_id = k.sid AND d.event_seq = k.seq JOIN events e ON e.seq = d.event_seq`,
      [sids, seqs],
      on,
    );
    const subs = await this.#q<SubscriptionRow>('SELECT * FROM subscriptions WHERE id = ANY($1::text[])', [sids], on);
    return heads.flatMap((h) => {
      const r = rows.find((x) => x.subscription_id === h.sid && x.event_seq === h.seq);
      const s = subs.find((x) => x.id === h.sid);
      return r && s ? [{ delivery: toDelivery(r), event: toEvent(r), subscription: toSubscription(s) }] : [];
    });
  }

  async releaseLease(subscriptionId: string, owner: string): Promise<void> {
    await this.#q(
      'UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2',
      [subscriptionId, owner],
    );
  }

  async nextDueAt(now = Date.now()): Promise<number | null> {
    const [row] = await this.#q<{ t: number | null }>(
      `SELECT MIN(GREATEST(h.t, COALESCE(s.probe_at, 0),
        CASE WHEN s.lease_until > $1 THEN s.lease_until ELSE 0 END)) AS t
       FROM subscriptions s
       CROSS JOIN LATERAL (SELECT MIN(next_attempt_at) AS t FROM deliveries d
         WHERE d.subscription_id = s.id AND d.state = 'pending') h
       WHERE h.t IS NOT NULL`,
      [now],
    );
    return row?.t ?? null;
  }

  /**
   * Records an attempt's outcome in ONE statement (its own transaction, one round trip instead of five):
   * `deliveries` updates delivery rows, `subscription` is the SET list for the subscription row, and the
   * same UPDATE gives back `owner`'s lease on it, if any. $1 is the subscription id, $2 the owner; the
   * statements' own parameters, `params`, start at $3.
   */
  async #outcome(
    subscriptionId: string,
    owner: string | undefined,
    deliveries: string,
    subscription: string,
    params: unknown[],
  ): Promise<void> {
    const release = `lease_owner = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_owner END,
      lease_until = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_until END`;
    await this.#q(`WITH d AS (${deliveries}) UPDATE subscriptions SET ${subscription}, ${release} WHERE id = $1`, [
      subscriptionId,
      owner ?? null,
      ...params,
    ]);
  }

  async recordDelivered(
    subscriptionId: string,
    eventSeq: number,
    status: number,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#outcome(
      subscriptionId,
      releaseFor,
      `UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_status = $3, last_error = NULL,
         updated_at = $4 WHERE subscription_id = $1 AND event_seq = $5`,
      `${ONLINE}, last_delivered_at = $4`,
      [status, now, eventSeq],
    );
  }

  async recordRejected(
    subscriptionId: string,
    eventSeq: number,
    outcome: Rejection,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#outcome(
      subscriptionId,
      releaseFor,
      `UPDATE deliveries SET attempts = attempts + 1, last_status = $3, last_error = $4, updated_at = $5,
         state = CASE WHEN $6::bigint IS NULL THEN 'failed' ELSE 'pending' END,
         next_attempt_at = COALESCE($6::bigint, next_attempt_at)
       WHERE subscription_id = $1 AND event_seq = $7`,
      ONLINE,
      [outcome.status, outcome.error, now, outcome.retryAt, eventSeq],
    );
  }

  async recordGone(
    subscriptionId: string,
    eventSeq: number,
    status: number,
    reason: string,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    // One UPDATE for the attempted delivery (counted) and every pending one (failed): a statement may not
    // update a row twice.
    await this.#outcome(
      subscriptionId,
      releaseFor,
      `UPDATE deliveries SET attempts = attempts + CASE WHEN event_seq = $6 THEN 1 ELSE 0 END,
         last_status = CASE WHEN event_seq = $6 THEN $3::integer ELSE last_status END,
         state = CASE WHEN state = 'pending' THEN 'failed' ELSE state END,
         last_error = CASE WHEN state = 'pending' THEN $4 ELSE last_error END, updated_at = $5
       WHERE subscription_id = $1 AND (event_seq = $6 OR state = 'pending')`,
      `disabled_at = $5, disabled_reason = $4, ${ONLINE}`,
      [status, reason, now, eventSeq],
    );
  }

  async recordUnreachable(
    subscriptionId: string,
    eventSeq: number,
    error: string,
    probeAt: number,
    attemptStartedAt: number,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#park(subscriptionId, releaseFor, [error, now, probeAt, attemptStartedAt, eventSeq], {
      offline_since: 'COALESCE(offline_since, $4)',
      probe_at: '$5',
      held_at: 'NULL',
      held_reason: 'NULL',
    });
  }

  async recordHeld(
    subscriptionId: string,
    eventSeq: number,
    reason: string,
    probeAt: number,
    attemptStartedAt: number,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#park(subscriptionId, releaseFor, [reason, now, probeAt, attemptStartedAt, eventSeq], {
      held_at: 'COALESCE(held_at, $4)',
      held_reason: '$3',
      probe_at: '$5',
      offline_since: 'NULL',
    });
  }

  /**
   * An attempt that never reached its subscriber: the error ($3) on the delivery (no attempt spent) and `set`
   * on the subscription, unless it subscribed again after the attempt began ($6). `params` are $3 to $7:
   * error, now, probe time, attempt start, event seq.
   */
  async #park(
    subscriptionId: string,
    releaseFor: string | undefined,
    params: [string, number, number, number, number],
    set: Record<string, string>,
  ): Promise<void> {
    await this.#outcome(
      subscriptionId,
      releaseFor,
      'UPDATE deliveries SET last_error = $3, updated_at = $4 WHERE subscription_id = $1 AND event_seq = $7',
      setIf(NOT_RESUBSCRIBED, set),
      params,
    );
  }

  async recordRefused(
    subscriptionId: string,
    eventSeq: number,
    reason: string,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#outcome(
      subscriptionId,
      releaseFor,
      `UPDATE deliveries SET state = 'failed', last_status = NULL, last_error = $3, updated_at = $4
       WHERE subscription_id = $1 AND event_seq = $5`,
      // The address answered for the subscription's own node: whatever held its queue is over.
      'held_at = NULL, held_reason = NULL',
      [reason, now, eventSeq],
    );
  }

  async markOffline(subscriptionId: string, now = Date.now()): Promise<void> {
    await this.#q('UPDATE subscriptions SET offline_since = $1 WHERE id = $2 AND offline_since IS NULL', [
      now,
      subscriptionId,
    ]);
  }

  async expire(subscriptionId: string, offlineBefore: number): Promise<boolean> {
    const rows = await this.#q('DELETE FROM subscriptions WHERE id = $1 AND offline_since <= $2 RETURNING id', [
      subscriptionId,
      offlineBefore,
    ]);
    return rows.length > 0;
  }

  async wake(subscriptionId: string, now = Date.now()): Promise<void> {
    await this.#tx(async (c) => {
      await this.#q('UPDATE subscriptions SET probe_at = NULL WHERE id = $1', [subscriptionId], c);
      await this.#q(
        `UPDATE deliveries SET next_attempt_at = LEAST(next_attempt_at, $1) WHERE subscription_id = $2
          AND state = 'pending'`,
        [now, subscriptionId],
        c,
      );
    });
  }

  async redeliver(eventId: string, matches: TopicMatcher, now = Date.now(), nodeId?: string): Promise<number> {
    return this.#tx(async (c) => {
      const [event] = await this.#q<EventRow>('SELECT * FROM events WHERE id = $1', [eventId], c);
      if (!event) throw new StoreError('NOT_FOUND', `no event ${eventId}`);
      const subs = (await this.#q<SubscriptionRow>('SELECT * FROM subscriptions', [], c)).map(toSubscription);
      const owed = subs
        .filter((s) => (nodeId === undefined || s.nodeId === nodeId) && owedTo(s, event.topic, matches))
        .map((s) => s.id);
      if (owed.length === 0) return 0;
      const rows = await this.#q(
        `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at)
         SELECT unnest($1::text[]), $2, 'pending', $3, $3
         ON CONFLICT (subscription_id, event_seq) DO UPDATE SET state = 'pending', attempts = 0,
           next_attempt_at = EXCLUDED.next_attempt_at, last_error = NULL, last_status = NULL,
           updated_at = EXCLUDED.updated_at
         RETURNING 1`,
        [owed, event.seq, now],
        c,
      );
      return rows.length;
    });
  }

  async prune(before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await this.#q(
        `DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE received_at < $1 AND NOT EXISTS
           (SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq AND d.state = 'pending')
           ORDER BY received_at LIMIT $2) -- by the events_received index, as SQLite's pruneBatch
         RETURNING 1`,
        [before, PRUNE_BATCH],
      );
      if (rows.length === 0) return total;
      total += rows.length;
      await nextTurn();
    }
  }

  async heartbeat(name: string, startedAt: number, now = Date.now()): Promise<void> {
    await this.#q(
      `INSERT INTO replicas (name, started_at, seen_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, seen_at = excluded.seen_at`,
      [name, startedAt, now],
    );
  }

  async replicas(now = Date.now()): Promise<Replica[]> {
    return this.#q<Replica>(
      `SELECT r.name, r.started_at AS "startedAt", r.seen_at AS "seenAt",
         (SELECT COUNT(*) FROM subscriptions s WHERE s.lease_owner = r.name AND s.lease_until > $1) AS leases
       FROM replicas r ORDER BY r.name`,
      [now],
    );
  }

  async backlogs(): Promise<SubscriptionBacklog[]> {
    return this.#q<SubscriptionBacklog>(
      `SELECT s.id AS "subscriptionId", s.last_delivered_at AS "lastDeliveredAt",
         (SELECT COUNT(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.state = 'pending') AS pending
       FROM subscriptions s ORDER BY s.created_at`,
    );
  }

  async stats(): Promise<StoreStats> {
    const [row] = await this.#q<Omit<StoreStats, never>>(
      `SELECT
         (SELECT COUNT(*) FROM events) AS events,
         (SELECT COUNT(*) FROM subscriptions) AS subscriptions,
         (SELECT COUNT(*) FROM subscriptions WHERE offline_since IS NOT NULL) AS "offlineSubscriptions",
         (SELECT COUNT(*) FROM subscriptions WHERE disabled_at IS NOT NULL) AS "disabledSubscriptions",
         (SELECT COUNT(*) FROM subscriptions WHERE held_at IS NOT NULL) AS "heldSubscriptions",
         (SELECT COUNT(*) FROM deliveries WHERE state = 'pending') AS pending,
         (SELECT COUNT(*) FROM deliveries WHERE state = 'delivered') AS delivered,
         (SELECT COUNT(*) FROM deliveries WHERE state = 'failed') AS failed,
         (SELECT MIN(e.received_at) FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE d.state = 'pending')
           AS "oldestPendingAt",
         pg_database_size(current_database()) AS "databaseBytes"`,
    );
    return row!;
  }

  async sizeBytes(): Promise<number> {
    const [row] = await this.#q<{ bytes: number }>('SELECT pg_database_size(current_database()) AS bytes');
    return row!.bytes;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

/** sslmode=require, verify-ca or verify-full: TLS with the server's certificate verified; otherwise plain TCP. */
function tlsFor(sslmode: string | null): boolean {
  return sslmode === 'require' || sslmode === 'verify-ca' || sslmode === 'verify-full';
}

async function migrate(pool: pg.Pool, description: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Replicas starting together: one migrates, the others wait and then find nothing to do.
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS krkn_schema (version INTEGER NOT NULL)');
    const [row] = (await client.query<{ version: number }>('SELECT version FROM krkn_schema')).rows;
    const current = row?.version ?? 0;
    if (current > schemaVersion) {
      throw new StoreError(
        'SCHEMA_TOO_NEW',
        `event store ${description} has schema ${current}; this krkns knows up to ${schemaVersion}: upgrade krkns`,
      );
    }
    for (let v = current + 1; v <= schemaVersion; v++) await client.query(pgMigrations[v]!);
    if (row) await client.query('UPDATE krkn_schema SET version = $1', [schemaVersion]);
    else await client.query('INSERT INTO krkn_schema (version) VALUES ($1)', [schemaVersion]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
