/** Bounds of a group commit. */
export interface GroupCommitOptions {
  /**
   * How long the first write of a group waits for company (ms). 0 (the default) waits only for the
   * current turn of the event loop: writes that arrived together are grouped, a lone write pays no delay.
   */
  windowMs: number;
  /** At most this many writes share one transaction (default 256). */
  maxBatch: number;
}

const DEFAULT_GROUP_COMMIT: GroupCommitOptions = { windowMs: 0, maxBatch: 256 };

interface Pending {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Runs synchronous writes in groups: one transaction, so one fsync, for every write queued in the
 * same window. Each write runs in its own savepoint (one failing write undoes only itself), and its
 * promise settles only after the group's commit and `sync` (when the commit itself does not fsync):
 * a resolved write is on disk.
 */
export class GroupCommit {
  readonly #queue: Pending[] = [];
  readonly #options: GroupCommitOptions;
  #scheduled = false;
  /** Groups committed, waiting for their sync. */
  readonly #syncing = new Set<Promise<void>>();
  /** Groups committed so far (for tests and benchmarks: writes per group = writes / groups). */
  groups = 0;

  constructor(
    /** Runs `fn` in a transaction; nested calls must become savepoints. */
    private readonly transaction: <T>(fn: () => T) => T,
    options: Partial<GroupCommitOptions> = {},
    /**
     * Makes what has committed durable, for a transaction whose commit does not fsync (see WalSync):
     * off the event loop, so the next group forms and commits meanwhile. Without it, commits fsync.
     */
    private readonly sync?: () => Promise<void>,
  ) {
    this.#options = { ...DEFAULT_GROUP_COMMIT, ...options };
  }

  /** Queues `work`; resolves with its result once the transaction it ran in has committed. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.#queue.length >= this.#options.maxBatch) this.#flush();
      else this.#schedule();
    });
  }

  /** Commits everything queued now; resolves once it is durable. */
  async flushNow(): Promise<void> {
    while (this.#queue.length > 0) this.#flush();
    await Promise.allSettled([...this.#syncing]);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    const flush = () => {
      this.#scheduled = false;
      void this.flushNow();
    };
    if (this.#options.windowMs > 0) setTimeout(flush, this.#options.windowMs);
    else setImmediate(flush);
  }

  #flush(): void {
    const group = this.#queue.splice(0, this.#options.maxBatch);
    if (group.length === 0) return;
    const outcomes: ({ ok: true; value: unknown } | { ok: false; err: unknown })[] = [];
    try {
      this.transaction(() => {
        for (const item of group) {
          try {
            outcomes.push({ ok: true, value: this.transaction(item.work) });
          } catch (err) {
            outcomes.push({ ok: false, err });
          }
        }
      });
    } catch (err) {
      // The commit itself failed (disk full, I/O error): nothing of the group is durable.
      for (const item of group) item.reject(err);
      return;
    }
    this.groups++;
    const settle = () => {
      group.forEach((item, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) item.resolve(outcome.value);
        else item.reject(outcome.err);
      });
    };
    if (!this.sync) {
      settle();
      return;
    }
    // The fsync failed: what committed may not be on disk, so no write of the group may say it is.
    const synced = this.sync().then(settle, (err: unknown) => group.forEach((item) => item.reject(err)));
    this.#syncing.add(synced);
    void synced.finally(() => this.#syncing.delete(synced));
  }
}

/** Bounds of an {@link AsyncGroupCommit}: those of a group commit, and how many groups may be in flight. */
export interface AsyncGroupCommitOptions extends GroupCommitOptions {
  /**
   * Groups committing at once (default 4). More than one, so a group stuck on a lock (a racing publish of
   * the same dedupe key) does not stall every write behind it; few, so writes arriving meanwhile queue and
   * form the next group instead of each taking its own transaction.
   */
  inFlight: number;
}

/** A write queued for the next group, with how to settle its promise. */
interface Waiter<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for a store whose transactions are asynchronous (PostgreSQL): the writes queued together
 * go to `commit` as one group (one transaction, one round trip per statement for all of them), and each
 * write's promise settles only after that transaction's COMMIT. If the group fails and `retryAlone` says
 * the error may be one write's fault (not the database's), each write is committed again alone, so a bad
 * write fails only itself.
 */
export class AsyncGroupCommit<I, O> {
  readonly #queue: Waiter<I, O>[] = [];
  readonly #options: AsyncGroupCommitOptions;
  #scheduled = false;
  #inFlight = 0;
  /** Groups committed so far (for tests and benchmarks: writes per group = writes / groups). */
  groups = 0;

  constructor(
    /** Commits `items` in one transaction; resolves after COMMIT with each item's result, in order. */
    private readonly commit: (items: I[]) => Promise<O[]>,
    /** Whether, after the group failed with `err`, each item is worth committing alone. */
    private readonly retryAlone: (err: unknown) => boolean,
    options: Partial<AsyncGroupCommitOptions> = {},
  ) {
    this.#options = { ...DEFAULT_GROUP_COMMIT, inFlight: 4, ...options };
  }

  /** Queues `item`; resolves with its result once the transaction it ran in has committed. */
  run(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#options.inFlight) return;
    this.#scheduled = true;
    const flush = () => {
      this.#scheduled = false;
      this.#flush();
    };
    if (this.#options.windowMs > 0) setTimeout(flush, this.#options.windowMs);
    else setImmediate(flush);
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#options.inFlight) {
      const group = this.#queue.splice(0, this.#options.maxBatch);
      this.#inFlight++;
      void this.#commitGroup(group).finally(() => {
        this.#inFlight--;
        if (this.#queue.length > 0) this.#schedule();
      });
    }
  }

  async #commitGroup(group: Waiter<I, O>[]) {
    try {
      const results = await this.commit(group.map((g) => g.item));
      this.groups++;
      group.forEach((g, i) => g.resolve(results[i]!));
    } catch (err) {
      if (group.length === 1 || !this.retryAlone(err)) {
        for (const g of group) g.reject(err);
        return;
      }
      // One after another, in the group's order: seqs, and which of two writes of one dedupe key is the
      // first, stay as the group would have had them.
      for (const g of group) {
        try {
          const [result] = await this.commit([g.item]);
          this.groups++;
          g.resolve(result!);
        } catch (aloneErr) {
          g.reject(aloneErr);
        }
      }
    }
  }
}
