import { closeSync, fdatasync, openSync } from 'node:fs';

/**
 * fsyncs a SQLite WAL file off the event loop (libuv's thread pool), for a connection whose commits
 * do not sync (synchronous=NORMAL): after sync() resolves, every commit made before it was called is
 * on disk, as synchronous=FULL would have made it, but the event loop served requests meanwhile.
 * Calls that arrive while an fsync runs share the next one.
 */
export class WalSync {
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #closed = false;

  private constructor(private readonly fd: number) {}

  /** Opens the WAL of an open WAL-mode database at `dbPath` (SQLite keeps it while a connection is open). */
  static open(dbPath: string): WalSync {
    return new WalSync(openSync(`${dbPath}-wal`, 'r'));
  }

  /** Resolves once an fsync that began after this call has finished. */
  sync(): Promise<void> {
    if (this.#queued) return this.#queued;
    if (!this.#running) return (this.#running = this.#fsync());
    // One is running, maybe from before the caller's commit: the caller needs the next one.
    this.#queued = this.#running
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return (this.#running = this.#fsync());
      });
    return this.#queued;
  }

  /** Waits for the fsyncs under way, then closes the file (once: the store may be closed twice). */
  async close(): Promise<void> {
    await Promise.allSettled([this.#running, this.#queued]);
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.fd);
  }

  async #fsync(): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
    } finally {
      this.#running = undefined;
    }
  }
}
