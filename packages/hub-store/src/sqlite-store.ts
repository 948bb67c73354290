import { setImmediate as nextTurn } from 'node:timers/promises';
import { GroupCommit, type GroupCommitOptions } from './group-commit.js';
import { SqliteCore } from './sqlite-core.js';
import type {
  HubStore,
  Delivery,
  DueDelivery,
  EventQuery,
  NewEvent,
  NewSubscription,
  Rejection,
  Replica,
  StoreStats,
  StoredEvent,
  Subscription,
  SubscriptionBacklog,
  TopicMatcher,
} from './types.js';

export interface SqliteStoreOptions {
  /** Bounds of the group commit of writes (see {@link GroupCommitOptions}). */
  groupCommit?: Partial<GroupCommitOptions>;
}

/**
 * The embedded store: one SQLite file. Writes arriving together share one transaction and one fsync
 * ({@link GroupCommit}); each write's promise resolves after that commit. Reads, and the delivery
 * leases (see claimDue), answer at once.
 */
export class SqliteStore implements HubStore {
  readonly description: string;
  readonly #core: SqliteCore;
  readonly #writes: GroupCommit;

  private constructor(core: SqliteCore, options: SqliteStoreOptions) {
    this.#core = core;
    this.description = `sqlite:${core.path}`;
    this.#writes = new GroupCommit((fn) => core.transaction(fn), options.groupCommit);
  }

  /** Opens (creating if needed, mode 0600) and migrates the database at path. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    return new SqliteStore(SqliteCore.open(path), options);
  }

  /** Transactions committed so far; against the writes made, shows how well writes are grouped. */
  get commits(): number {
    return this.#writes.groups;
  }

  publish(
    input: NewEvent,
    matches: TopicMatcher,
    now = Date.now(),
  ): Promise<{ event: StoredEvent; duplicate: boolean }> {
    return this.#writes.run(() => this.#core.publish(input, matches, now));
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    return this.#core.getEvent(id);
  }

  async listEvents(q?: EventQuery): Promise<StoredEvent[]> {
    return this.#core.listEvents(q);
  }

  async deliveriesOf(eventId: string): Promise<Delivery[]> {
    return this.#core.deliveriesOf(eventId);
  }

  subscribe(input: NewSubscription, now = Date.now()): Promise<Subscription> {
    return this.#writes.run(() => this.#core.subscribe(input, now));
  }

  async getSubscription(id: string): Promise<Subscription | undefined> {
    return this.#core.getSubscription(id);
  }

  async listSubscriptions(nodeId?: string): Promise<Subscription[]> {
    return this.#core.listSubscriptions(nodeId);
  }

  unsubscribe(id: string): Promise<boolean> {
    return this.#writes.run(() => this.#core.unsubscribe(id));
  }

  async dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): Promise<DueDelivery[]> {
    return this.#core.dueDeliveries(now, busy, limit);
  }

  // Leases are written at once, outside the group commit and without an fsync: a delivery pays its
  // one fsync for recording the outcome, not three. Still in the file, so they exclude another process
  // on it; a power cut may undo a lease, and a crash voids its holder's leases anyway.
  async claimDue(owner: string, now: number, leaseMs: number, limit: number): Promise<DueDelivery[]> {
    return this.#core.unsynced(() => this.#core.claimDue(owner, now, leaseMs, limit));
  }

  async releaseLease(subscriptionId: string, owner: string): Promise<void> {
    this.#core.unsynced(() => this.#core.releaseLease(subscriptionId, owner));
  }

  async nextDueAt(now = Date.now()): Promise<number | null> {
    return this.#core.nextDueAt(now);
  }

  recordDelivered(subscriptionId: string, eventSeq: number, status: number, now = Date.now()): Promise<void> {
    return this.#writes.run(() => this.#core.recordDelivered(subscriptionId, eventSeq, status, now));
  }

  recordRejected(subscriptionId: string, eventSeq: number, outcome: Rejection, now = Date.now()): Promise<void> {
    return this.#writes.run(() => this.#core.recordRejected(subscriptionId, eventSeq, outcome, now));
  }

  recordGone(
    subscriptionId: string,
    eventSeq: number,
    status: number,
    reason: string,
    now = Date.now(),
  ): Promise<void> {
    return this.#writes.run(() => this.#core.recordGone(subscriptionId, eventSeq, status, reason, now));
  }

  recordUnreachable(
    subscriptionId: string,
    eventSeq: number,
    error: string,
    probeAt: number,
    attemptStartedAt: number,
    now = Date.now(),
  ): Promise<void> {
    return this.#writes.run(() =>
      this.#core.recordUnreachable(subscriptionId, eventSeq, error, probeAt, attemptStartedAt, now),
    );
  }

  wake(subscriptionId: string, now = Date.now()): Promise<void> {
    return this.#writes.run(() => this.#core.wake(subscriptionId, now));
  }

  redeliver(eventId: string, matches: TopicMatcher, now = Date.now(), nodeId?: string): Promise<number> {
    return this.#writes.run(() => this.#core.redeliver(eventId, matches, now, nodeId));
  }

  async prune(before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.#writes.run(() => this.#core.pruneBatch(before));
      if (n === 0) return total;
      total += n;
      await nextTurn(); // let publishes and deliveries in between batches
    }
  }

  heartbeat(name: string, startedAt: number, now = Date.now()): Promise<void> {
    return this.#writes.run(() => this.#core.heartbeat(name, startedAt, now));
  }

  async replicas(now = Date.now()): Promise<Replica[]> {
    return this.#core.replicas(now);
  }

  async backlogs(): Promise<SubscriptionBacklog[]> {
    return this.#core.backlogs();
  }

  async stats(): Promise<StoreStats> {
    return this.#core.stats();
  }

  async close(): Promise<void> {
    this.#writes.flushNow();
    this.#core.close();
  }
}
