import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { CliError, ExitCode } from '@krkn/cli-kit';

/** How many delivered event ids `listen` remembers by default. */
export const defaultSeenCapacity = 10_000;

const idPattern = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The ids of events the local app has accepted, newest last, at most `capacity` of them. Kept in
 * a file of one id per line: each accepted event is one append (a crash loses at most the line
 * being written; a torn line is skipped on load), and the file is rewritten with the newest
 * `capacity` ids once it holds twice that many. Only `listen` writes it, under the state lock.
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
    appendFileSync(this.path, `${this.torn ? '\n' : ''}${id}\n`, { mode: 0o600 });
    this.torn = false;
    if (++this.lines >= 2 * this.capacity) this.compact();
  }

  private compact(): void {
    const tmp = `${this.path}.tmp-${process.pid}`;
    writeFileSync(tmp, [...this.ids].map((id) => `${id}\n`).join(''), { mode: 0o600 });
    renameSync(tmp, this.path);
    this.lines = this.ids.size;
  }
}
