import { closeSync, fdatasyncSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { CliError, ExitCode } from '@krkn/cli-kit';

/** How many delivered event ids `listen` remembers by default. */
export const defaultSeenCapacity = 10_000;

const idPattern = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The ids of events the local app has accepted, newest last, at most `capacity` of them. Kept in
 * a file of one id per line: each accepted event is one append, flushed to disk (fdatasync) before
 * add() returns, so not even a power cut forgets it (a crash loses at most the line being written;
 * a torn line is skipped on load). The file is rewritten (fsynced, renamed, directory fsynced)
 * with the newest `capacity` ids once it holds twice that many. Only `listen` writes it, under the
 * state lock.
 */
export class SeenEvents {
  private readonly ids: Set<string>;
  private lines: number;

  private constructor(
    readonly path: string,
    readonly capacity: number,
    ids: string[],
    /** The file ends in a torn line: the next append starts on a fresh one. */
    private torn: boolean,
  ) {
    this.ids = new Set(ids.slice(-capacity));
    this.lines = ids.length;
  }

  /** Loads the file (absent: nothing seen yet). */
  static open(path: string, capacity = defaultSeenCapacity): SeenEvents {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new CliError(`cannot read ${path}: ${(err as Error).message}`, ExitCode.STATE);
    }
    const ids = text.split('\n').filter((l) => idPattern.test(l));
    return new SeenEvents(path, capacity, ids, text.length > 0 && !text.endsWith('\n'));
  }

  get size(): number {
    return this.ids.size;
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** Remembers an id (durably, before the caller answers krkns). */
  add(id: string): void {
    if (!idPattern.test(id) || this.ids.has(id)) return;
    this.ids.add(id);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value!);
    writeDurably(this.path, 'a', `${this.torn ? '\n' : ''}${id}\n`);
    this.torn = false;
    if (++this.lines >= 2 * this.capacity) this.compact();
  }

  private compact(): void {
    const tmp = `${this.path}.tmp-${process.pid}`;
    writeDurably(tmp, 'w', [...this.ids].map((id) => `${id}\n`).join(''));
    renameSync(tmp, this.path);
    const dir = openSync(dirname(this.path), 'r'); // the rename itself is durable once its directory is
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    this.lines = this.ids.size;
  }
}

/** Writes (appends, with flag 'a') text to a 0600 file and flushes it to disk before returning. */
function writeDurably(path: string, flag: 'a' | 'w', text: string): void {
  const fd = openSync(path, flag, 0o600);
  try {
    writeSync(fd, text);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
