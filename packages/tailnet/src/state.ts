import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  chmodSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import envPaths from 'env-paths';
import { TailnetError } from './errors.js';

/** The file inside a state directory that holds the node's identity (keys, profile, prefs). */
export const stateFileName = 'tailscaled.state';
/** The file a waiting node writes its login URL to, so it can be found without the logs. */
const loginUrlFileName = 'login-url.json';
const lockFileName = 'lock';
// ipn.CurrentProfileStateKey: present once the node has logged in at least once.
const currentProfileKey = '_current-profile';

/** The default state directory: `<env-paths data dir for "krkn">/<app>/<hostname>`. */
export function defaultStateDir(app: string, hostname: string): string {
  return join(envPaths('krkn', { suffix: '' }).data, app, hostname);
}

/** Creates dir (and parents) and makes sure only the owner can enter it. */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    throw new TailnetError('STATE_IO', `cannot create state directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * Writes a file so that a reader sees either the old or the new content, never a torn one:
 * temp file (0600), fsync, rename over the target, fsync the directory.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dirFd = openSync(join(path, '..'), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/**
 * The node's persisted state: a JSON object of key → base64 value, the same shape tailscaled's
 * own file store uses. Reads are served from memory; every write replaces the file atomically.
 * A file that cannot be parsed is never overwritten: the node would silently get a new identity.
 */
export class FileStateStore {
  private constructor(
    readonly path: string,
    private readonly values: Map<string, string>,
  ) {}

  /** Opens (or starts) the store in dir, creating dir with mode 0700. */
  static open(dir: string): FileStateStore {
    ensurePrivateDir(dir);
    const path = join(dir, stateFileName);
    return new FileStateStore(path, readState(path) ?? new Map());
  }

  /**
   * Whether a usable node identity is persisted. After a logout tailscaled keeps the
   * `_current-profile` pointer but deletes the profile it names: that is no identity.
   */
  hasIdentity(): boolean {
    return holdsIdentity(this.values);
  }

  get(key: string): Uint8Array | null {
    const v = this.values.get(key);
    return v === undefined ? null : Buffer.from(v, 'base64');
  }

  set(key: string, value: Uint8Array | null): void {
    if (value === null) this.values.delete(key);
    else this.values.set(key, Buffer.from(value).toString('base64'));
    const text = JSON.stringify(Object.fromEntries(this.values), null, 1);
    try {
      writeFileAtomic(this.path, text);
    } catch (err) {
      throw new TailnetError('STATE_IO', `cannot write ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** The values in a state file, or undefined when there is none. */
function readState(path: string): Map<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TailnetError('STATE_IO', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseState(path, text);
}

function holdsIdentity(values: Map<string, string>): boolean {
  const current = values.get(currentProfileKey);
  return current !== undefined && values.has(Buffer.from(current, 'base64').toString('utf8'));
}

function parseState(path: string, text: string): Map<string, string> {
  const corrupt = (why: string): TailnetError =>
    new TailnetError(
      'STATE_CORRUPT',
      `state file ${path} is corrupt (${why}). It holds this node's identity, so krkn will not replace it: ` +
        `restore it from a backup, or move it away to register as a new node.`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw corrupt((err as Error).message);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw corrupt('not a JSON object');
  const values = new Map<string, string>();
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v))
      throw corrupt(`key ${JSON.stringify(k)} is not base64`);
    values.set(k, v);
  }
  return values;
}

/**
 * An exclusive lock on a state directory, held by this process (a `lock` file with our pid).
 * Two processes on one state directory would fight over the same node key.
 */
export class StateLock {
  private released = false;

  private constructor(private readonly path: string) {}

  /** Takes the lock or fails at once with STATE_LOCKED naming the holder. A dead holder's lock is taken over. */
  static acquire(dir: string): StateLock {
    ensurePrivateDir(dir);
    const path = join(dir, lockFileName);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        const lock = new StateLock(path);
        heldLocks.add(lock);
        return lock;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new TailnetError('STATE_IO', `cannot create ${path}: ${(err as Error).message}`, { cause: err });
        }
      }
      const holder = readHolder(path);
      if (holder !== undefined && isAlive(holder)) {
        throw new TailnetError(
          'STATE_LOCKED',
          `state directory ${dir} is in use by process ${holder}` +
            (holder === process.pid ? ' (this process: another node with the same state directory)' : '') +
            `; stop it first, or give this node its own state directory`,
        );
      }
      rmSync(path, { force: true }); // stale: its holder is gone
    }
    throw new TailnetError('STATE_LOCKED', `cannot take the lock ${path}`);
  }

  /** The pid of the live process holding dir's lock, if any. */
  static holder(dir: string): number | undefined {
    const pid = readHolder(join(dir, lockFileName));
    return pid !== undefined && isAlive(pid) ? pid : undefined;
  }

  /** Releases the lock if this process still holds it. */
  release(): void {
    if (this.released) return;
    this.released = true;
    heldLocks.delete(this);
    if (readHolder(this.path) === process.pid) rmSync(this.path, { force: true });
  }
}

// Locks still held when the process exits are released on the way out.
const heldLocks = new Set<StateLock>();
process.on('exit', () => {
  for (const lock of heldLocks) lock.release();
});

function readHolder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What a waiting node records in its state directory (`login-url.json`). */
export interface PendingLogin {
  url: string;
  /** ISO time the URL was first seen. */
  since: string;
  /** ISO time the file was last refreshed (the node is still waiting). */
  updated: string;
}

/** Writes (or with null, removes) the pending login URL file in dir. */
export function writePendingLogin(dir: string, login: PendingLogin | null): void {
  const path = join(dir, loginUrlFileName);
  if (login === null) rmSync(path, { force: true });
  else writeFileAtomic(path, `${JSON.stringify(login, null, 2)}\n`);
}

/** Reads the pending login URL file in dir, if a node is (or was last) waiting for login. */
function readPendingLogin(dir: string): PendingLogin | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, loginUrlFileName), 'utf8')) as PendingLogin;
  } catch {
    return undefined;
  }
}

/** What a state directory holds, as {@link inspectStateDir} reads it. */
export interface StateDirView {
  /** A usable node identity is stored: the node starts without a key or login (a logout leaves none). */
  identity: boolean;
  /** The pid of the live process that holds the directory (runs a node on it), if any. */
  lockHolder?: number;
  /** The login URL a node is (or was last) waiting on. */
  pendingLogin?: PendingLogin;
}

/**
 * Reads a state directory without creating or changing anything (a missing directory is an empty
 * one): is there an identity, who holds the lock, is a login pending. Throws STATE_CORRUPT, as
 * starting a node would, for a state file it cannot read.
 */
export function inspectStateDir(dir: string): StateDirView {
  const lockHolder = StateLock.holder(dir);
  const pendingLogin = readPendingLogin(dir);
  return {
    identity: holdsIdentity(readState(join(dir, stateFileName)) ?? new Map()),
    ...(lockHolder !== undefined ? { lockHolder } : {}),
    ...(pendingLogin ? { pendingLogin } : {}),
  };
}
