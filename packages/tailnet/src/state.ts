import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  chmodSync,
  statSync,
  writeSync,
} from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
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
    return new FileStateStore(path, readState(path) ?? new Map<string, string>());
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
    const encoded = value === null ? undefined : Buffer.from(value).toString('base64');
    // tailscaled rewrites unchanged values (prefs, profiles at every start): skip those fsyncs.
    if (encoded === this.values.get(key)) return;
    if (encoded === undefined) this.values.delete(key);
    else this.values.set(key, encoded);
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
 * An exclusive lock on a state directory, held by this process: two processes on one state
 * directory would fight over the same node key. The `lock` file names its holder: pid on the first
 * line (what older readers parse), then the holder's start time and boot id, so a lock left by a
 * killed process is recognised as stale even when its pid now belongs to someone else (PID 1 of a
 * restarted container finds "itself" in it), and a nonce naming this very acquisition.
 *
 * Node has no flock(), so exclusivity comes from link(2), which never replaces an existing name:
 * the file is written and fsynced under a private name, then linked as `lock` complete.
 * A stale lock is removed only by the one contender that links `lock.takeover-<its nonce>`;
 * a contender that died holding that marker is in turn taken over through its own nonce.
 */
export class StateLock {
  private released = false;

  private constructor(
    private readonly path: string,
    private readonly owner: LockOwner,
  ) {}

  /** Takes the lock or fails at once with STATE_LOCKED naming the holder. A dead holder's lock is taken over. */
  static acquire(dir: string): StateLock {
    ensurePrivateDir(dir);
    const path = join(dir, lockFileName);
    const deadline = Date.now() + takeoverWaitMs;
    for (;;) {
      const me = newOwner(); // fresh each attempt: a marker left by an earlier attempt names a dead claim
      if (linkExclusive(path, me)) return StateLock.held(dir, path, me);
      const current = readOwner(path);
      if (current !== undefined && isLive(current)) throw lockedBy(dir, current);
      const outcome = current === undefined ? 'retry' : takeOver(path, current, me); // undefined: released meanwhile
      if (outcome === 'taken') return StateLock.held(dir, path, me);
      // The lock is changing hands (a live rival is taking a stale lock over): that ends within
      // milliseconds, and the error should name whoever then holds the lock, so look again.
      if (Date.now() > deadline) {
        throw outcome === 'retry'
          ? new TailnetError('STATE_LOCKED', `cannot take the lock ${path}: it keeps changing hands`)
          : lockedBy(dir, outcome);
      }
      if (outcome !== 'retry') sleepSync(5);
    }
  }

  /** The pid of the live process holding dir's lock, if any. */
  static holder(dir: string): number | undefined {
    const owner = readOwner(join(dir, lockFileName));
    return owner !== undefined && isLive(owner) ? owner.pid : undefined;
  }

  private static held(dir: string, path: string, owner: LockOwner): StateLock {
    const lock = new StateLock(path, owner);
    heldLocks.set(owner.nonce, lock);
    removeOldTakeoverMarkers(dir);
    return lock;
  }

  /** Releases the lock if this process still holds it. */
  release(): void {
    if (this.released) return;
    this.released = true;
    heldLocks.delete(this.owner.nonce);
    if (readOwner(this.path)?.nonce === this.owner.nonce) rmSync(this.path, { force: true });
  }
}

// The locks this process holds, by nonce; those still held when it exits are released on the way out.
const heldLocks = new Map<string, StateLock>();
process.on('exit', () => {
  for (const lock of heldLocks.values()) lock.release();
});

// How long acquire() keeps looking while the lock changes hands (stale takeovers under way).
const takeoverWaitMs = 2_000;
const takeoverPrefix = `${lockFileName}.takeover-`;
// A takeover finishes in milliseconds; a marker this old can no longer be read as current by anyone.
const takeoverMarkerTtlMs = 60_000;

/** Who holds a lock (or a takeover marker). `start` and `boot` are unknown off Linux. */
interface LockOwner {
  pid: number;
  start?: string;
  boot?: string;
  nonce: string;
}

function newOwner(): LockOwner {
  const start = startTimeOf(process.pid);
  const boot = bootId();
  return {
    pid: process.pid,
    ...(start ? { start } : {}),
    ...(boot ? { boot } : {}),
    nonce: randomBytes(12).toString('hex'),
  };
}

function ownerText(o: LockOwner): string {
  return `${o.pid}\nstart=${o.start ?? ''} boot=${o.boot ?? ''} nonce=${o.nonce}\n`;
}

/**
 * The owner named by a lock file; undefined when there is no file. A file in the older pid-only
 * format, or garbage, gets a nonce derived from its content, so it can still be taken over once.
 */
function readOwner(path: string): LockOwner | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const [pidLine = '', rest = ''] = text.split('\n');
  const fields = new Map(rest.split(' ').map((kv) => kv.split('=', 2) as [string, string]));
  const pid = Number.parseInt(pidLine, 10);
  return {
    pid: Number.isInteger(pid) && pid > 0 ? pid : 0,
    ...(fields.get('start') ? { start: fields.get('start') } : {}),
    ...(fields.get('boot') ? { boot: fields.get('boot') } : {}),
    nonce: /^[0-9a-f]{24}$/.test(fields.get('nonce') ?? '') ? fields.get('nonce')! : contentNonce(text),
  };
}

function contentNonce(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 24);
}

/** Whether the owner's process still runs: same boot, pid alive, and started when the owner did. */
function isLive(o: LockOwner): boolean {
  if (o.pid === 0) return false;
  if (o.boot !== undefined && bootId() !== undefined && o.boot !== bootId()) return false;
  // Our own pid: either a lock this process holds, or one left by an earlier process with our pid.
  if (o.pid === process.pid) return heldLocks.has(o.nonce);
  try {
    process.kill(o.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const start = startTimeOf(o.pid);
  return o.start === undefined || start === undefined || start === o.start;
}

function lockedBy(dir: string, o: LockOwner): TailnetError {
  return new TailnetError(
    'STATE_LOCKED',
    `state directory ${dir} is in use by process ${o.pid}` +
      (o.pid === process.pid ? ' (this process: another node with the same state directory)' : '') +
      `; stop it first, or give this node its own state directory`,
  );
}

/**
 * Removes the stale lock `stale` and links ours, if this contender wins the right to: 'taken', or the
 * live rival that is taking it over, or 'retry' when the lock changed meanwhile.
 */
function takeOver(path: string, stale: LockOwner, me: LockOwner): 'taken' | 'retry' | LockOwner {
  const dir = dirname(path);
  const claimed = new Set<string>([stale.nonce]);
  let target = stale;
  while (!linkExclusive(join(dir, takeoverPrefix + target.nonce), me)) {
    const rival = readOwner(join(dir, takeoverPrefix + target.nonce));
    if (rival === undefined || claimed.has(rival.nonce)) return 'retry';
    if (isLive(rival)) return rival;
    claimed.add(rival.nonce);
    target = rival; // the rival died mid-takeover: claim its claim
  }
  // Only the holder of stale's marker removes it, and its own holder is gone: nobody else can.
  if (readOwner(path)?.nonce === stale.nonce) rmSync(path, { force: true });
  return linkExclusive(path, me) ? 'taken' : 'retry';
}

/** Creates path with the owner's record, complete and fsynced, or returns false if it exists. */
function linkExclusive(path: string, owner: LockOwner): boolean {
  const tmp = join(dirname(path), `.${lockFileName}-${owner.nonce}-${randomBytes(4).toString('hex')}`);
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, ownerText(owner));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new TailnetError('STATE_IO', `cannot create ${path}: ${(err as Error).message}`, { cause: err });
  } finally {
    rmSync(tmp, { force: true });
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function removeOldTakeoverMarkers(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(takeoverPrefix)) continue;
    const path = join(dir, name);
    try {
      if (Date.now() - statSync(path).mtimeMs > takeoverMarkerTtlMs) rmSync(path, { force: true });
    } catch {
      // removed by another process meanwhile
    }
  }
}

/** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot (Linux); undefined elsewhere. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself hold spaces or ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

let cachedBootId: string | null | undefined;
function bootId(): string | undefined {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId ?? undefined;
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
    identity: holdsIdentity(readState(join(dir, stateFileName)) ?? new Map<string, string>()),
    ...(lockHolder !== undefined ? { lockHolder } : {}),
    ...(pendingLogin ? { pendingLogin } : {}),
  };
}
