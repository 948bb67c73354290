import { setImmediate as nextTurn } from 'node:timers/promises';
import { GroupCommit, type GroupCommitOptions } from './group-commit.js';
import { SqliteCore, fullDisk } from './sqlite-core.js';
import { WalSync } from './wal-sync.js';
import type {
  HubStore,
  Delivery,
  DueDelivery,
  EventQuery,
  EventSummary,
  NewEvent,
  NewSubscription,
  Rejection,
  Replica,
  StoreStats,
  Published,
  StoredEvent,
  Subscription,
  SubscriptionBacklog,
  TopicMatcher,
} from './types.js';

export interface SqliteStoreOptions {
  /** Bounds of the group commit of writes (see {@link GroupCommitOptions}). */
  groupCommit?: Partial<GroupCommitOptions>;
  /** Pending deliveries a subscription is owed at most (default DEFAULT_MAX_BACKLOG; see HubStore.publish). */
  maxBacklog?: number;
  /**
   * How the store worked before the WAL was fsynced off the event loop, for benchmarks' anchor only:
   * every commit fsyncs on the event loop, and leases and attempt outcomes wait for a group's fsync too.
   */
  fsyncOnEventLoop?: boolean;
}

/**
 * The embedded store: one SQLite file. Writes arriving together share one transaction and one fsync
 * ({@link GroupCommit}); each write's promise resolves after that fsync, which runs off the event loop
 * ({@link WalSync}) so requests are served meanwhile. Reads, and the delivery bookkeeping (see
 * claimDue), answer at once.
 */
export class SqliteStore implements HubStore {
  readonly description: string;
  readonly #core: SqliteCore;
  readonly #wal: WalSync | undefined;
  readonly #writes: GroupCommit;
  /** Events committed (so visible) whose fsync has not finished: not handed out for delivery yet. */
  readonly #notDurable = new Set<number>();

  private constructor(core: SqliteCore, options: SqliteStoreOptions) {
    this.#core = core;
    this.description = `sqlite:${core.path}`;
    if (!options.fsyncOnEventLoop) {
      core.deferSyncs();
      this.#wal = WalSync.open(core.path);
    }
    const wal = this.#wal;
    this.#writes = new GroupCommit((fn) => core.transaction(fn), options.groupCommit, wal && (() => wal.sync()));
  }

  /**
   * Runs a write in the group commit, or `atOnce` outside it; a full disk fails it as StoreError FULL (nothing of
   * it committed).
   */
  async #write<T>(work: () => T, atOnce = false): Promise<T> {
    try {
      return atOnce ? work() : await this.#writes.run(work);
    } catch (err) {
      throw fullDisk(this.#core.path, err) ?? err;
    }
  }

  /** Delivery bookkeeping: at once, unless fsyncOnEventLoop sends it through the group commit. */
  #bookkeeping<T>(write: () => T): Promise<T> {
    return this.#write(write, this.#wal !== undefined);
  }

  /** Opens (creating if needed, mode 0600) and migrates the database at path. */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteStore {
    return new SqliteStore(SqliteCore.open(path, options.maxBacklog), options);
  }

  /** Transactions committed so far; against the writes made, shows how well writes are grouped. */
  get commits(): number {
    return this.#writes.groups;
  }

  publish(input: NewEvent, matches: TopicMatcher, now = Date.now()): Promise<Published> {
    let seq: number | undefined;
    const published = this.#write(() => {
      const result = this.#core.publish(input, matches, now);
      if (!result.duplicate) this.#notDurable.add((seq = result.event.seq));
      return result;
    });
    void published.catch(() => undefined).finally(() => seq !== undefined && this.#notDurable.delete(seq));
    return published;
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    return this.#core.getEvent(id);
  }

  async listEvents(q?: EventQuery): Promise<EventSummary[]> {
    return this.#core.listEvents(q);
  }

  async deliveriesOf(eventId: string): Promise<Delivery[]> {
    return this.#core.deliveriesOf(eventId);
  }

  async deliveriesOfEvents(eventSeqs: readonly number[]): Promise<Delivery[]> {
    return this.#core.deliveriesOfEvents(eventSeqs);
  }

  subscribe(input: NewSubscription, now = Date.now()): Promise<Subscription> {
    return this.#write(() => this.#core.subscribe(input, now));
  }

  async getSubscription(id: string): Promise<Subscription | undefined> {
    return this.#core.getSubscription(id);
  }

  async listSubscriptions(nodeId?: string): Promise<Subscription[]> {
    return this.#core.listSubscriptions(nodeId);
  }

  unsubscribe(id: string): Promise<boolean> {
    return this.#write(() => this.#core.unsubscribe(id));
  }

  async dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): Promise<DueDelivery[]> {
    return this.#core.dueDeliveries(now, busy, limit).filter((d) => this.#durable(d));
  }

  /** An event is delivered only once durable; a publish kicks the deliverer again when it is. */
  #durable(due: DueDelivery): boolean {
    return !this.#notDurable.has(due.event.seq);
  }

  // The delivery bookkeeping (leases, attempt outcomes) commits at once and waits for no fsync: a
  // subscriber's next attempt need not wait for one. It is in the file, so leases still exclude another
  // process on it, and the next fsync (any durable write's, or a checkpoint's) makes it durable. A
  // power cut may undo the last few: their holders are gone anyway, and an outcome lost means the
  // event is attempted again (at least once, in receipt order), as after a crash mid-attempt.
  async claimDue(owner: string, now: number, leaseMs: number, limit: number): Promise<DueDelivery[]> {
    const claimed = await this.#bookkeeping(() => this.#core.claimDue(owner, now, leaseMs, limit));
    const early = claimed.filter((d) => !this.#durable(d));
    for (const d of early) await this.releaseLease(d.subscription.id, owner);
    return early.length === 0 ? claimed : claimed.filter((d) => this.#durable(d));
  }

  async releaseLease(subscriptionId: string, owner: string): Promise<void> {
    await this.#bookkeeping(() => this.#core.releaseLease(subscriptionId, owner));
  }

  async nextDueAt(now = Date.now()): Promise<number | null> {
    return this.#core.nextDueAt(now);
  }

  async recordDelivered(
    subscriptionId: string,
    eventSeq: number,
    status: number,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#outcome(subscriptionId, releaseFor, () =>
      this.#core.recordDelivered(subscriptionId, eventSeq, status, now),
    );
  }

  async recordRejected(
    subscriptionId: string,
    eventSeq: number,
    outcome: Rejection,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#outcome(subscriptionId, releaseFor, () =>
      this.#core.recordRejected(subscriptionId, eventSeq, outcome, now),
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
    await this.#outcome(subscriptionId, releaseFor, () =>
      this.#core.recordGone(subscriptionId, eventSeq, status, reason, now),
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
    await this.#outcome(subscriptionId, releaseFor, () =>
      this.#core.recordUnreachable(subscriptionId, eventSeq, error, probeAt, attemptStartedAt, now),
    );
  }

  /** Records an attempt's outcome and gives `releaseFor`'s lease back, in one transaction. */
  #outcome(subscriptionId: string, releaseFor: string | undefined, record: () => void): Promise<void> {
    return this.#bookkeeping(() =>
      this.#core.transaction(() => {
        record();
        if (releaseFor !== undefined) this.#core.releaseLease(subscriptionId, releaseFor);
      }),
    );
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
    await this.#outcome(subscriptionId, releaseFor, () =>
      this.#core.recordHeld(subscriptionId, eventSeq, reason, probeAt, attemptStartedAt, now),
    );
  }

  async recordRefused(
    subscriptionId: string,
    eventSeq: number,
    reason: string,
    now = Date.now(),
    releaseFor?: string,
  ): Promise<void> {
    await this.#outcome(subscriptionId, releaseFor, () =>
      this.#core.recordRefused(subscriptionId, eventSeq, reason, now),
    );
  }

  markOffline(subscriptionId: string, now = Date.now()): Promise<void> {
    return this.#write(() => this.#core.markOffline(subscriptionId, now));
  }

  expire(subscriptionId: string, offlineBefore: number): Promise<boolean> {
    return this.#write(() => this.#core.expire(subscriptionId, offlineBefore));
  }

  wake(subscriptionId: string, now = Date.now()): Promise<void> {
    return this.#write(() => this.#core.wake(subscriptionId, now));
  }

  redeliver(eventId: string, matches: TopicMatcher, now = Date.now(), nodeId?: string): Promise<number> {
    return this.#write(() => this.#core.redeliver(eventId, matches, now, nodeId));
  }

  async prune(before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.#write(() => this.#core.pruneBatch(before));
      if (n === 0) return total;
      total += n;
      await nextTurn(); // let publishes and deliveries in between batches
    }
  }

  heartbeat(name: string, startedAt: number, now = Date.now()): Promise<void> {
    return this.#write(() => this.#core.heartbeat(name, startedAt, now));
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

  async sizeBytes(): Promise<number> {
    return this.#core.sizeBytes();
  }

  async close(): Promise<void> {
    await this.#writes.flushNow();
    this.#core.close();
    await this.#wal?.close();
  }
}
