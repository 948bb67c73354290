// A small file system of its own, to test what a full disk does to the real thing (SQLite, PostgreSQL, krkns).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestnetError } from './errors.js';

export interface SmallDiskOptions {
  /** Its size in bytes (tmpfs rounds up to whole pages). */
  bytes: number;
  /** Who owns its root (e.g. the PostgreSQL server's user, for a tablespace); default the caller. */
  owner?: { uid: number; gid: number };
}

/**
 * A tmpfs of `bytes` mounted on a fresh temp dir. Mounting needs root (CAP_SYS_ADMIN), as CI runs the
 * tests: without it this throws SMALL_DISK_FAILED saying so, so a full-disk test fails instead of passing
 * untested. Fill it with {@link fill}, give the space back with {@link free}, and {@link unmount} when done.
 */
export class SmallDisk {
  readonly dir: string;
  readonly #filler: string;

  private constructor(dir: string) {
    this.dir = dir;
    this.#filler = join(dir, '.filler');
  }

  static mount(options: SmallDiskOptions): SmallDisk {
    const dir = mkdtempSync(join(tmpdir(), 'krkn-small-disk-'));
    const owner = options.owner ? `,uid=${options.owner.uid},gid=${options.owner.gid}` : '';
    const mountOptions = `size=${options.bytes},mode=0700${owner}`;
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', mountOptions, 'krkn-small-disk', dir], { stdio: 'pipe' });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      const output = (err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message;
      const message = `cannot mount a ${options.bytes}-byte tmpfs on ${dir}: full-disk tests need root (CAP_SYS_ADMIN)`;
      throw new TestnetError(
        'SMALL_DISK_FAILED',
        message,
        { command: ['mount', '-t', 'tmpfs'], output },
        { cause: err },
      );
    }
    return new SmallDisk(dir);
  }

  /** Writes a filler file until the file system refuses (ENOSPC): from now on every write needing space fails. */
  fill(): void {
    const fd = openSync(this.#filler, 'a');
    const chunk = Buffer.alloc(4096, 0xff);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      closeSync(fd);
    }
  }

  /** Deletes the filler: the space it took is free again. */
  free(): void {
    rmSync(this.#filler, { force: true });
  }

  /** Unmounts it (lazily, should a process still hold a file in it) and removes the mount point. */
  unmount(): void {
    execFileSync('umount', ['-l', this.dir], { stdio: 'pipe' });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
