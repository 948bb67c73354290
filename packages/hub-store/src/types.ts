import { randomFillSync } from 'node:crypto';

/** Who published an event, as WhoIs named the connection's tailnet address. */
export interface Sender {
  ip: string;
  node: string;
  user: string;
  tags: string[];
}

/** An event as listings return it: everything but the body, and the body's length. */
export interface EventSummary {
  id: string;
  seq: number;
  topic: string;
  receivedAt: number;
  dedupeKey: string | null;
  method: string;
  headers: [string, string][];
  sender: Sender;
  /** The body's length in bytes. */
  size: number;
}

/** An event as stored: the raw body and the headers exactly as received. */
export interface StoredEvent extends EventSummary {
  body: Buffer;
}

/** What publish did. */
export interface Published {
  event: StoredEvent;
  /** The dedupe key was seen on this topic: `event` is the first one, and nothing was stored. */
  duplicate: boolean;
  /** The subscriptions now owed the event (none for a duplicate). */
  owedTo: string[];
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

/** What subscribe needs: the rest (id, times, offline state) is the store's. */
export type NewSubscription = Omit<
  Subscription,
  'id' | 'createdAt' | 'updatedAt' | 'offlineSince' | 'disabled' | 'held' | 'secret' | 'previousSecret'
> & {
  /** A fresh signing secret: kept when the subscription is new or has none, or when rotating; else unused. */
  secret?: string;
  /** Rotate: `secret` replaces the stored one, which is still signed with until this time (ms). */
  rotateSecretUntil?: number;
  /**
   * Refuse (SUBSCRIPTION_LIMIT) a new subscription when its node already holds this many; updating one
   * the node holds (same port) is always allowed. Checked in the subscribe transaction, so racing
   * requests cannot overshoot it.
   */
  maxPerNode?: number;
};

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
  /**
   * Set when the subscriber answered 410 Gone (Standard Webhooks: stop sending): nothing is owed to it
   * until it subscribes again.
   */
  disabled: { at: number; reason: string } | null;
  /**
   * Set while its deliveries are held back: its address answered for another node than `nodeId` (a
   * deleted node's address re-issued). Nothing is sent until it is back there or subscribes again.
   */
  held: { at: number; reason: string } | null;
  /** The Standard Webhooks secret ("whsec_...") attempts are signed with; null for one made before schema 3. */
  secret: string | null;
  /** After a rotation: the old secret, also signed with until `until` (ms), so receivers can switch over. */
  previousSecret: { secret: string; until: number } | null;
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

/** How a rejected attempt ended; `retryAt` null marks the delivery failed for good. */
export interface Rejection {
  status: number | null;
  error: string;
  retryAt: number | null;
}

/** Filters for listEvents. */
export interface EventQuery {
  /**
   * Only events whose topic matches every one of these regular expressions, in the syntax JavaScript and
   * PostgreSQL read alike (@krkn/policy's topicPatternsRegex writes them). The filter runs in the query.
   */
  topicRegexes?: readonly string[];
  /**
   * Only events on exactly this topic (as well as the regexes): found through the events_topic index, so a
   * rare topic's page does not walk every event between its matches.
   */
  topic?: string;
  /** Only events received after this event id. */
  afterId?: string;
  /** Only events received before this event id. */
  beforeId?: string;
  /** Newest first (default: receipt order); with beforeId, this pages back through the store. */
  newestFirst?: boolean;
  /** Only events received at or after this time (ms). */
  since?: number;
  /** At most this many (default {@link DEFAULT_LIST_LIMIT}). */
  limit?: number;
}

/** One subscription's queue: how many deliveries it is owed, and when one last succeeded. */
export interface SubscriptionBacklog {
  subscriptionId: string;
  pending: number;
  /**
   * ms since the epoch, or null if nothing was ever delivered to it (kept on the subscription since schema 6, so
   * pruning the event does not forget it; a database from before knew only the deliveries it still stored).
   */
  lastDeliveredAt: number | null;
}

/** Counts for status pages. */
export interface StoreStats {
  events: number;
  subscriptions: number;
  offlineSubscriptions: number;
  /** Subscriptions disabled by a 410 Gone answer. */
  disabledSubscriptions: number;
  /** Subscriptions whose deliveries are held back: their address answers for another node. */
  heldSubscriptions: number;
  pending: number;
  delivered: number;
  failed: number;
  /** Receipt time of the oldest event still owed to someone (ms), or null. */
  oldestPendingAt: number | null;
  databaseBytes: number;
}

/** A krkns replica as its heartbeats show it, with the delivery leases it holds now. */
export interface Replica {
  name: string;
  startedAt: number;
  /** Its last heartbeat (ms). */
  seenAt: number;
  /** Subscriptions whose delivery lease it holds, live at the time asked. */
  leases: number;
}

/** Whether a subscription's topic pattern accepts a topic (the rules live in @krkn/policy). */
export type TopicMatcher = (pattern: string, topic: string) => boolean;

export const DEFAULT_LIST_LIMIT = 100;
/** Pending deliveries a subscription is owed at most, unless the store is opened with another bound. */
export const DEFAULT_MAX_BACKLOG = 10_000;

/** The reason a delivery failed without an attempt: its subscription's backlog passed the bound. */
export function backlogLimitReason(maxBacklog: number): string {
  return `backlog limit: more than ${maxBacklog} deliveries were owed to this subscription; the oldest failed unsent`;
}
/** Retention deletes at most this many events per transaction, so a big backlog never holds the writer long. */
export const PRUNE_BATCH = 1_000;

/**
 * krkns's durable storage, whichever engine holds it. Every write has committed when its promise
 * resolves, so a 202 is never given for an event a crash could lose.
 *
 * Leases (claimDue/releaseLease) let several krkns replicas share one store: a subscription's
 * queue is attempted only by the replica holding its lease, so each subscriber has at most one
 * attempt in flight across all replicas; a replica that dies loses its leases when they expire.
 */
export interface HubStore {
  /** What the store is, for logs and status: "sqlite:/path" or "postgres://user@host:port/db". */
  readonly description: string;
  /**
   * Stores an event and owes it to every subscription whose topics match, in one transaction.
   * With a dedupe key already seen on this topic, returns the first event and stores nothing.
   * A subscription then owed more than the store's backlog bound has its oldest pending deliveries
   * failed, unsent, with {@link backlogLimitReason}: a subscriber that never drains cannot grow the store.
   * (Checked after every hundredth of the bound's deliveries owed to it: see BacklogTrims.)
   */
  publish(input: NewEvent, matches: TopicMatcher, now?: number): Promise<Published>;
  getEvent(id: string): Promise<StoredEvent | undefined>;
  /**
   * Events in receipt order (or newest first), filtered in the query, without their bodies; keyset
   * paging by event id. Throws NOT_FOUND for an unknown afterId or beforeId.
   */
  listEvents(q?: EventQuery): Promise<EventSummary[]>;
  /** Deliveries of one event, one per subscription it was owed to, by subscription id. */
  deliveriesOf(eventId: string): Promise<Delivery[]>;
  /**
   * Deliveries of several events, by their seqs, by event seq then subscription id: a listing's page in one
   * query, not one per event.
   */
  deliveriesOfEvents(eventSeqs: readonly number[]): Promise<Delivery[]>;
  /** Creates or updates the subscription of (nodeId, port); it is online again: its queue is due now. */
  subscribe(input: NewSubscription, now?: number): Promise<Subscription>;
  getSubscription(id: string): Promise<Subscription | undefined>;
  /** All subscriptions (or one node's), oldest first. */
  listSubscriptions(nodeId?: string): Promise<Subscription[]>;
  /** Removes a subscription and what is still owed to it. */
  unsubscribe(id: string): Promise<boolean>;
  /**
   * The next delivery to attempt for each subscription that has one due, in receipt order,
   * skipping subscriptions in `busy` and offline subscribers whose next probe is not due.
   * One replica only: several replicas use {@link claimDue}.
   */
  dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): Promise<DueDelivery[]>;
  /**
   * Like dueDeliveries, across replicas: leases up to `limit` subscriptions that have something due
   * and no live lease of another owner, until `now + leaseMs`, and returns their head deliveries.
   */
  claimDue(owner: string, now: number, leaseMs: number, limit: number): Promise<DueDelivery[]>;
  /** Gives a lease back (the attempt's outcome is recorded). No-op if `owner` no longer holds it. */
  releaseLease(subscriptionId: string, owner: string): Promise<void>;
  /**
   * Earliest time something becomes due (ms), or null when nothing is pending. A subscription under a
   * lease live at `now` counts from the lease's expiry (its holder kicks itself when the attempt ends).
   */
  nextDueAt(now?: number): Promise<number | null>;
  // Each record* takes `releaseFor`, a lease owner: its lease on the subscription is given back in the
  // same transaction as the outcome (as releaseLease would), one commit instead of two.
  /** The subscriber answered 2xx. */
  recordDelivered(
    subscriptionId: string,
    eventSeq: number,
    status: number,
    now?: number,
    releaseFor?: string,
  ): Promise<void>;
  /** Reached, but it did not accept the event: spends an attempt. */
  recordRejected(
    subscriptionId: string,
    eventSeq: number,
    outcome: Rejection,
    now?: number,
    releaseFor?: string,
  ): Promise<void>;
  /**
   * The subscriber answered 410 Gone: this delivery and everything still pending for it fail with
   * `reason`, and the subscription is disabled (new events are not owed to it) until it subscribes again.
   */
  recordGone(
    subscriptionId: string,
    eventSeq: number,
    status: number,
    reason: string,
    now?: number,
    releaseFor?: string,
  ): Promise<void>;
  /**
   * Not reached at all: spends no attempt; the whole queue waits until `probeAt`, or until it subscribes
   * again. An attempt that started before the subscriber subscribed again parks nothing.
   */
  recordUnreachable(
    subscriptionId: string,
    eventSeq: number,
    error: string,
    probeAt: number,
    attemptStartedAt: number,
    now?: number,
    releaseFor?: string,
  ): Promise<void>;
  /**
   * Not sent: the subscriber's address answers for another node. Spends no attempt; the delivery keeps
   * `reason` as its last error and the whole queue is held until `probeAt` (checked again then), or until
   * it subscribes again. An attempt that started before the subscriber subscribed again holds nothing.
   */
  recordHeld(
    subscriptionId: string,
    eventSeq: number,
    reason: string,
    probeAt: number,
    attemptStartedAt: number,
    now?: number,
    releaseFor?: string,
  ): Promise<void>;
  /**
   * Not sent: the subscriber may no longer receive this event (its capability was revoked). The delivery
   * fails with `reason`, no attempt spent; the rest of its queue goes on.
   */
  recordRefused(
    subscriptionId: string,
    eventSeq: number,
    reason: string,
    now?: number,
    releaseFor?: string,
  ): Promise<void>;
  /**
   * Records that the subscriber's node is offline or gone from the netmap: offline since `now` unless it
   * already was. Its queue is not parked (attempts decide that).
   */
  markOffline(subscriptionId: string, now?: number): Promise<void>;
  /**
   * Removes the subscription, with what is still owed to it, if it has been offline since `offlineBefore`
   * or earlier (not if it subscribed again meanwhile). Returns whether it did.
   */
  expire(subscriptionId: string, offlineBefore: number): Promise<boolean>;
  /** Makes a subscriber's waiting queue due now (it came back online). */
  wake(subscriptionId: string, now?: number): Promise<void>;
  /**
   * Owes an event again to every subscription that matches it now (only those of node `nodeId` when
   * given), from attempt one. Returns how many.
   */
  redeliver(eventId: string, matches: TopicMatcher, now?: number, nodeId?: string): Promise<number>;
  /** Records that replica `name` (started at `startedAt`) is alive now: its heartbeat row. */
  heartbeat(name: string, startedAt: number, now?: number): Promise<void>;
  /** Every replica that ever beat, by name, with the leases each holds live at `now`. */
  replicas(now?: number): Promise<Replica[]>;
  /** Deletes events received before `before` that nobody is still owed, in bounded batches. Returns how many. */
  prune(before: number): Promise<number>;
  /** Every subscription's backlog (pending count, last success), for the inspector's subscriber list. */
  backlogs(): Promise<SubscriptionBacklog[]>;
  stats(): Promise<StoreStats>;
  /**
   * Bytes the store's data takes, cheaply. SQLite: pages in use (falls as pruning frees pages).
   * PostgreSQL: the database's size, which does not fall after deletes (space is reused, not returned).
   */
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Why a store call failed.
 * - `SCHEMA_TOO_NEW`: the database was written by a newer krkns; upgrade krkns (never misread it).
 * - `NOT_FOUND`: the event or subscription named does not exist.
 * - `CORRUPT`: the SQLite file cannot be opened as a database.
 * - `BAD_URL`: the store URL or its password source is unusable (a usage error: exit 2).
 * - `CONNECT_FAILED`: the database refused or did not answer when opening (wrong password, host down: exit 4).
 * - `UNAVAILABLE`: the database went away after opening; the call did not commit (answer 503, retry).
 * - `FULL`: the disk holding the database is full (SQLITE_FULL, SQLSTATE 53100); the call did not commit
 *   (answer 507; the same call succeeds once space is freed).
 * - `SUBSCRIPTION_LIMIT`: the node already holds as many subscriptions as subscribe's `maxPerNode` allows.
 */
export type StoreErrorCode =
  | 'SCHEMA_TOO_NEW'
  | 'NOT_FOUND'
  | 'CORRUPT'
  | 'BAD_URL'
  | 'CONNECT_FAILED'
  | 'UNAVAILABLE'
  | 'FULL'
  | 'SUBSCRIPTION_LIMIT';

/** The error class of this package. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The SUBSCRIPTION_LIMIT error of a subscribe refused by its `maxPerNode`. */
export function subscriptionLimit(input: NewSubscription): StoreError {
  const message = `${input.nodeName} already holds ${input.maxPerNode} subscriptions, the most one node may hold`;
  return new StoreError('SUBSCRIPTION_LIMIT', `${message}; delete one or subscribe again on a port it uses`);
}

/**
 * 8 random bytes as 16 hex digits, drawn from a pool the CSPRNG fills 4 KiB at a time: one randomBytes
 * call per event cost about 2% of a loopback publish's CPU (a profile of bench:hub). Each byte is used once.
 */
const randomHex = (() => {
  const pool = Buffer.alloc(4096);
  let used = pool.length;
  return (): string => {
    if (used === pool.length) {
      randomFillSync(pool);
      used = 0;
    }
    used += 8;
    return pool.toString('hex', used - 8, used);
  };
})();

/** A new, time-ordered event id: "evt_" + base36 ms + 16 hex of randomness. */
export function newEventId(now = Date.now()): string {
  return `evt_${now.toString(36).padStart(9, '0')}${randomHex()}`;
}

/** A new subscription id. */
export function newSubscriptionId(): string {
  return `sub_${randomHex()}`;
}
