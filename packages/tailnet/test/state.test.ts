import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
    expect(readFileSync(join(dir, 'lock'), 'utf8').trim()).toBe(String(process.pid));
    lock.release();
  });
});

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
