// Joining, identity and bad input, against a real headscale.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTailnet, waitFor, type HeadscaleUser, type Tailnet } from '@krkn/testnet';
import { TailnetError, TailnetNode, inspectStateDir } from '@krkn/tailnet';
import { stateFileName } from '../src/state.js';
import { captureLogger, nodeOptions, rejectionCode, tempDir } from './helpers.js';

let tailnet: Tailnet;
let user: HeadscaleUser;
let authKey: string;
const state = tempDir();
const open: TailnetNode[] = [];

function node(hostname: string, extra: Parameters<typeof nodeOptions>[3] = {}): TailnetNode {
  const n = new TailnetNode(nodeOptions(tailnet, state.dir, hostname, extra));
  open.push(n);
  return n;
}

beforeAll(async () => {
  tailnet = await startTailnet();
  user = await tailnet.createUser('joiner');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
});

afterAll(async () => {
  await Promise.all(open.map((n) => n.close()));
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await tailnet?.stop();
  state.remove();
});

describe('joining', () => {
  it('joins with an auth key, with its own name and addresses, and keeps its state private', async () => {
    const n = node('keyed', { authKey });
    const st = await n.up();
    expect(st.backendState).toBe('Running');
    expect(st.self.dnsName).toBe(`keyed.${tailnet.domain}`);
    expect(st.self.addresses).toHaveLength(2);
    expect(st.self.addresses[0]).toMatch(/^100\./);
    const registered = (await tailnet.listNodes()).find((hn) => hn.name === 'keyed');
    expect(registered?.ipAddresses).toContain(st.self.addresses[0]);
    expect(statSync(n.stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(n.stateDir, stateFileName)).mode & 0o777).toBe(0o600);
    await n.close();
  });

  it('restarts from persisted state with the same node key and IP, and says why a key is ignored', async () => {
    const first = node('restarter', { authKey });
    const before = await first.up();
    const keyBefore = first.self?.nodeKey;
    await first.close();

    const { logger, lines } = captureLogger();
    const again = node('restarter', { authKey, logger });
    const after = await again.up();
    expect(again.self?.nodeKey).toBe(keyBefore);
    expect(after.self.addresses).toEqual(before.self.addresses);
    const ignored = lines.find((l) => l.msg.includes('auth key ignored'));
    expect(ignored?.level).toBe(30); // info: visible at the default level
    expect(ignored?.msg).toContain('TS_FORCE_LOGIN=1');
    await again.close();

    const keyless = node('restarter'); // no key at all: the identity on disk is enough
    expect((await keyless.up()).self.addresses).toEqual(before.self.addresses);
    await keyless.close();
  });

  it('registers afresh with TS_FORCE_LOGIN=1 and a new key', async () => {
    const first = node('forced', { authKey });
    await first.up();
    const oldKey = first.self?.nodeKey;
    await first.close();

    const newKey = await tailnet.createPreAuthKey({ user: user.id });
    process.env.TS_FORCE_LOGIN = '1';
    try {
      const again = node('forced', { authKey: newKey });
      await again.up();
      expect(again.self?.nodeKey).toBeDefined();
      expect(again.self?.nodeKey).not.toBe(oldKey);
      await again.close();
    } finally {
      delete process.env.TS_FORCE_LOGIN;
    }
  });

  it('an ephemeral node disappears from the control server when closed', async () => {
    const ephemeralKey = await tailnet.createPreAuthKey({ user: user.id, ephemeral: true });
    const n = node('fleeting', { authKey: ephemeralKey, ephemeral: true });
    await n.up();
    expect((await tailnet.listNodes()).map((hn) => hn.name)).toContain('fleeting');
    await n.close();
    await waitFor(async () => ((await tailnet.listNodes()).some((hn) => hn.name === 'fleeting') ? undefined : true), {
      timeoutMs: 10_000,
      what: 'ephemeral node to be deleted',
    });
  });

  it('interactive login: the URL is logged at info level, emitted and written to the state dir; approval brings it up', async () => {
    const { logger, lines } = captureLogger();
    const n = node('interactive', { logger });
    const urlSeen = new Promise<string>((resolve) => n.once('loginUrl', resolve));
    const up = n.up();
    const url = await urlSeen;
    expect(url).toMatch(/\/register\/[\w-]+$/);
    expect(n.loginUrl).toBe(url);
    const line = lines.find((l) => l.msg.includes(url));
    expect(line?.level).toBe(30);
    expect(inspectStateDir(n.stateDir).pendingLogin?.url).toBe(url);
    expect(statSync(join(n.stateDir, 'login-url.json')).mode & 0o777).toBe(0o600);

    await tailnet.approveLogin(url, user);
    const st = await up;
    expect(st.backendState).toBe('Running');
    expect(st.self.dnsName).toBe(`interactive.${tailnet.domain}`);
    expect(inspectStateDir(n.stateDir).pendingLogin).toBeUndefined();
    expect(n.loginUrl).toBeUndefined();
    await n.close();
  });
});

describe('engine failure', () => {
  it('a stopped engine is reported as an exit event, and every call fails with NOT_RUNNING', async () => {
    const n = node('crashing', { authKey });
    await n.up();
    const exited = new Promise<string>((resolve) => n.once('exit', resolve));
    // Stand-in for a crash: the engine host goes away under the node.
    await (n as unknown as { engine: { terminate(): Promise<void> } }).engine.terminate();
    expect(await exited).toContain('closed');
    expect(await rejectionCode(n.status())).toBe('NOT_RUNNING');
    await n.close();
  });
});

describe('bad input', () => {
  it('an invalid auth key fails fast with AUTH_KEY_INVALID', async () => {
    const n = node('badkey', { authKey: 'hskey-auth-not-a-real-key' });
    expect(await rejectionCode(n.up({ controlTimeoutMs: 20_000 }))).toBe('AUTH_KEY_INVALID');
  });

  it('an expired auth key fails with AUTH_KEY_EXPIRED', async () => {
    const expiring = await tailnet.createPreAuthKey({ user: user.id, expiration: '1s' });
    await new Promise((r) => setTimeout(r, 2_000));
    const n = node('oldkey', { authKey: expiring });
    expect(await rejectionCode(n.up({ controlTimeoutMs: 20_000 }))).toBe('AUTH_KEY_EXPIRED');
  });

  it('an unreachable control server fails after the bounded wait with CONTROL_UNREACHABLE', async () => {
    const n = node('nocontrol', { authKey, controlUrl: `http://127.0.0.1:${await closedPort()}` });
    const started = Date.now();
    let err: unknown;
    await n.up({ controlTimeoutMs: 2_000 }).catch((e: unknown) => (err = e));
    expect((err as TailnetError).code).toBe('CONTROL_UNREACHABLE');
    expect((err as Error).message).toContain('ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('an aborted up() rejects with ABORTED', async () => {
    const n = node('aborted'); // no key: it would wait for a login forever
    const ac = new AbortController();
    const up = n.up({ signal: ac.signal });
    await new Promise((r) => n.once('loginUrl', r));
    ac.abort();
    expect(await rejectionCode(up)).toBe('ABORTED');
  });

  it('a second process on the same state dir fails at once, naming the holder', async () => {
    const dir = join(state.dir, 'contested');
    // The lock class is internal to the package: the holder imports it from the built module.
    const stateModule = JSON.stringify(new URL('../dist/state.js', import.meta.url).href);
    const holdLock = `StateLock.acquire(${JSON.stringify(dir)}); console.log('held'); setInterval(() => {}, 1000);`;
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `import { StateLock } from ${stateModule}; ${holdLock}`],
      { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
      });
      const n = node('contested', { authKey, stateDir: dir });
      let err: unknown;
      await n.up().catch((e: unknown) => (err = e));
      expect((err as TailnetError).code).toBe('STATE_LOCKED');
      expect((err as Error).message).toContain(`process ${holder.pid}`);
    } finally {
      holder.kill();
    }
  });

  it('a corrupt state file is reported and left untouched', async () => {
    const n = node('corrupt', { authKey });
    const file = join(n.stateDir, stateFileName);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(n.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(file, '{"_machinekey": "AAAA", truncated');
    expect(await rejectionCode(n.up())).toBe('STATE_CORRUPT');
    expect(readFileSync(file, 'utf8')).toBe('{"_machinekey": "AAAA", truncated');
  });

  it('rejects bad options at construction', () => {
    const code = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        return (err as TailnetError).code;
      }
      return undefined;
    };
    expect(code(() => new TailnetNode({ hostname: 'not_a_label' }))).toBe('BAD_ARGUMENT');
    expect(code(() => new TailnetNode({ hostname: 'ok', controlUrl: 'ftp://x' }))).toBe('BAD_ARGUMENT');
    expect(code(() => new TailnetNode({ hostname: 'ok', tags: ['krkn'] }))).toBe('BAD_ARGUMENT');
  });
});

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}
