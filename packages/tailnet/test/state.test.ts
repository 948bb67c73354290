import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { TailnetError, inspectStateDir } from '@krkn/tailnet';
import { FileStateStore, StateLock, stateFileName, writePendingLogin } from '../src/state.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'krkn-state-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TailnetError);
    return (err as TailnetError).code;
  }
  return undefined;
}

describe('FileStateStore', () => {
  it('persists values across opens, in a 0600 file inside a 0700 directory', () => {
    const dir = join(tempDir(), 'node');
    const store = FileStateStore.open(dir);
    expect(store.hasIdentity()).toBe(false);
    store.set('profile-1', new TextEncoder().encode('{}'));
    store.set('_current-profile', new TextEncoder().encode('profile-1'));
    store.set('_machinekey', new Uint8Array([0, 1, 2, 255]));

    const again = FileStateStore.open(dir);
    expect(again.hasIdentity()).toBe(true);
    expect([...(again.get('_machinekey') ?? [])]).toEqual([0, 1, 2, 255]);
    expect(again.get('missing')).toBeNull();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, stateFileName)).mode & 0o777).toBe(0o600);
  });

  it('has no identity after a logout deleted the current profile', () => {
    const dir = tempDir();
    const store = FileStateStore.open(dir);
    store.set('_current-profile', new TextEncoder().encode('profile-1'));
    expect(store.hasIdentity()).toBe(false);
  });

  it('deletes a key when set to null', () => {
    const dir = tempDir();
    FileStateStore.open(dir).set('k', new Uint8Array([1]));
    FileStateStore.open(dir).set('k', null);
    expect(FileStateStore.open(dir).get('k')).toBeNull();
  });

  it('does not rewrite the file for a value that did not change (tailscaled rewrites prefs at every start)', () => {
    const dir = tempDir();
    const store = FileStateStore.open(dir);
    const path = join(dir, stateFileName);
    store.set('k', new Uint8Array([1]));
    const written = statSync(path).ino; // every write renames a new file over the old one
    store.set('k', new Uint8Array([1]));
    store.set('gone', null);
    expect(statSync(path).ino).toBe(written);
    store.set('k', new Uint8Array([2]));
    expect(statSync(path).ino).not.toBe(written);
  });

  it('tightens a state directory that others can read', () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    FileStateStore.open(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it.each([
    ['not JSON', '{"_machinekey": '],
    ['an array', '[1,2]'],
    ['a non-base64 value', '{"_machinekey": "not base64!"}'],
  ])('refuses a corrupt file (%s) and leaves it untouched', (_why, content) => {
    const dir = tempDir();
    const path = join(dir, stateFileName);
    writeFileSync(path, content);
    expect(codeOf(() => FileStateStore.open(dir))).toBe('STATE_CORRUPT');
    expect(readFileSync(path, 'utf8')).toBe(content);
  });
});

describe('StateLock', () => {
  it('fails at once, naming the holder, while the state directory is held', () => {
    const dir = tempDir();
    const lock = StateLock.acquire(dir);
    let message = '';
    try {
      StateLock.acquire(dir);
    } catch (err) {
      message = (err as Error).message;
      expect((err as TailnetError).code).toBe('STATE_LOCKED');
    }
    expect(message).toContain(`process ${process.pid}`);
    lock.release();
    StateLock.acquire(dir).release();
  });

  it('names another process that holds the lock', async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      writeFileSync(join(dir, 'lock'), `${child.pid}\n`);
      let message = '';
      try {
        StateLock.acquire(dir);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toContain(`process ${child.pid}`);
    } finally {
      child.kill();
    }
  });

  it('takes over the lock of a process that is gone', async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => child.once('exit', r));
    writeFileSync(join(dir, 'lock'), `${child.pid}\n`);
    const lock = StateLock.acquire(dir);
    expect(readFileSync(join(dir, 'lock'), 'utf8').split('\n')[0]).toBe(String(process.pid));
    expect(StateLock.holder(dir)).toBe(process.pid);
    lock.release();
    expect(StateLock.holder(dir)).toBeUndefined();
  });

  it('takes over a lock whose pid now belongs to a process started at another time', async () => {
    const dir = tempDir();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      writeFileSync(join(dir, 'lock'), `${child.pid}\nstart=1 boot= nonce=${'0'.repeat(24)}\n`);
      expect(StateLock.holder(dir)).toBeUndefined();
      StateLock.acquire(dir).release();
    } finally {
      child.kill();
    }
  });

  it('takes over a lock naming its own pid that this process does not hold (an earlier PID 1)', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'lock'), `${process.pid}\n`);
    const lock = StateLock.acquire(dir);
    expect(codeOf(() => StateLock.acquire(dir))).toBe('STATE_LOCKED');
    lock.release();
  });

  it('takes over an empty lock file (a holder killed between creating and writing it)', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'lock'), '');
    StateLock.acquire(dir).release();
  });

  it('is free again after its holder, PID 1 of a container, was killed with SIGKILL', async () => {
    const dir = tempDir();
    const first = await contender(dir, { pidNamespace: true });
    expect(first.line).toBe('won 1');
    // From the parent namespace: PID 1 ignores signals sent from inside its own.
    process.kill(-first.child.pid!, 'SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    expect(readFileSync(join(dir, 'lock'), 'utf8').split('\n')[0]).toBe('1'); // left behind, as after kill -9
    const restarted = await contender(dir, { pidNamespace: true });
    expect(restarted.line).toBe('won 1');
    restarted.child.stdin!.end();
  });

  it.each([
    ['a free state directory', (): void => undefined],
    ['a stale lock', (dir: string): void => writeFileSync(join(dir, 'lock'), '999999999\n')],
  ])(
    'lets exactly one of 50 simultaneous starts win %s',
    async (_what, prepare) => {
      const dir = tempDir();
      prepare(dir);
      const go = join(tempDir(), 'go');
      const starts = Array.from({ length: 50 }, () => contender(dir, { go }));
      await new Promise((r) => setTimeout(r, 1_500)); // let them all reach the barrier
      writeFileSync(go, '');
      const results = await Promise.all(starts);
      try {
        const winners = results.filter((r) => r.line.startsWith('won '));
        expect(winners).toHaveLength(1);
        const winner = winners[0]!.child.pid;
        for (const r of results)
          if (r !== winners[0]) expect(r.line).toMatch(new RegExp(`^STATE_LOCKED .*process ${winner}\\b`));
        expect(StateLock.holder(dir)).toBe(winner);
      } finally {
        for (const r of results) r.child.stdin!.end();
      }
    },
    60_000,
  );
});

const contenderScript = fileURLToPath(new URL('./fixtures/lock-contender.mjs', import.meta.url));

/** Starts a process that takes dir's lock (after the go file appears) and resolves with its first line. */
async function contender(
  dir: string,
  opts: { go?: string; pidNamespace?: boolean },
): Promise<{ child: ChildProcess; line: string }> {
  const args = [contenderScript, dir, ...(opts.go ? [opts.go] : [])];
  const child = opts.pidNamespace
    ? spawn('unshare', ['-Urpf', '--mount-proc', process.execPath, ...args], { detached: true })
    : spawn(process.execPath, args);
  let out = '';
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`contender exited ${code} before taking the lock: ${out}`)));
  });
  return { child, line };
}

describe('pending login file', () => {
  it('is written 0600 and removed', () => {
    const dir = tempDir();
    const login = { url: 'http://127.0.0.1:1/register/abc', since: 'a', updated: 'b' };
    writePendingLogin(dir, login);
    expect(inspectStateDir(dir).pendingLogin).toEqual(login);
    expect(statSync(join(dir, 'login-url.json')).mode & 0o777).toBe(0o600);
    writePendingLogin(dir, null);
    expect(inspectStateDir(dir).pendingLogin).toBeUndefined();
  });
});

describe('inspectStateDir', () => {
  const profile = (store: FileStateStore): void => {
    store.set('_current-profile', Buffer.from('profile-1'));
    store.set('profile-1', Buffer.from('{}'));
  };

  it('reads a missing directory as empty, without creating it', () => {
    const dir = join(tempDir(), 'never-started');
    expect(inspectStateDir(dir)).toEqual({ identity: false });
    expect(existsSync(dir)).toBe(false);
  });

  it('sees an identity, and none once a logout has deleted the profile', () => {
    const dir = tempDir();
    const store = FileStateStore.open(dir);
    store.set('_machinekey', new Uint8Array([1]));
    expect(inspectStateDir(dir).identity).toBe(false);
    profile(store);
    expect(inspectStateDir(dir).identity).toBe(true);
    store.set('profile-1', null); // what tailscaled's logout leaves: the pointer, not the profile
    expect(inspectStateDir(dir).identity).toBe(false);
  });

  it('names the live holder of the lock, and not a released one', () => {
    const dir = tempDir();
    const lock = StateLock.acquire(dir);
    expect(inspectStateDir(dir).lockHolder).toBe(process.pid);
    lock.release();
    expect(inspectStateDir(dir).lockHolder).toBeUndefined();
  });

  it('changes nothing in the directory, not even a too-open mode', () => {
    const dir = tempDir();
    profile(FileStateStore.open(dir));
    chmodSync(dir, 0o755);
    expect(inspectStateDir(dir).identity).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o755);
  });

  it('refuses a corrupt state file with STATE_CORRUPT and leaves it alone', () => {
    const dir = tempDir();
    writeFileSync(join(dir, stateFileName), 'not json');
    expect(codeOf(() => inspectStateDir(dir))).toBe('STATE_CORRUPT');
    expect(readFileSync(join(dir, stateFileName), 'utf8')).toBe('not json');
  });
});
