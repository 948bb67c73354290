// headscale on its own: start/stop, the CLI helpers, typed errors, and cleanup when the process dies.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authIdFromLoginUrl, startTailnet, TestnetError, type Tailnet } from '../src/index.js';

/** The parts of headscale's config.json these tests read. */
interface HeadscaleConfigView {
  derp: { urls: string[]; auto_update_enabled: boolean; server: { stun_listen_addr: string } };
  dns: { nameservers: { global: string[] } };
  logtail: { enabled: boolean };
  policy: { mode: string };
}

async function healthStatus(url: string): Promise<number | string> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) })).status;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Resolves true if something accepts TCP connections on 127.0.0.1:port. */
function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function expectTestnetError(promise: Promise<unknown>, code: string): Promise<TestnetError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TestnetError);
  expect((err as TestnetError).code).toBe(code);
  return err as TestnetError;
}

describe('startTailnet', () => {
  let tailnet: Tailnet;
  beforeAll(async () => {
    tailnet = await startTailnet();
  });
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  afterAll(() => tailnet?.stop());

  it('serves /health on a loopback port with a config that stays offline', async () => {
    expect(tailnet.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await healthStatus(tailnet.url)).toBe(200);
    expect(tailnet.domain).toBe('krkn.test');
    const config = JSON.parse(readFileSync(`${tailnet.dir}/config.json`, 'utf8')) as HeadscaleConfigView;
    expect(config.derp.urls).toEqual([]);
    expect(config.derp.auto_update_enabled).toBe(false);
    expect(config.derp.server.stun_listen_addr).toBe(`127.0.0.1:${tailnet.stunPort}`);
    expect(config.dns.nameservers.global).toEqual([]);
    expect(config.logtail.enabled).toBe(false);
    expect(config.policy.mode).toBe('database');
  });

  it('creates users and pre-auth keys', async () => {
    const alice = await tailnet.createUser('alice');
    expect(alice).toEqual({ id: expect.any(Number) as number, name: 'alice' });
    expect(await tailnet.listUsers()).toContainEqual(alice);
    expect(await tailnet.createPreAuthKey({ user: 'alice', reusable: true, ephemeral: true })).toMatch(/^hskey-auth-/);
    expect(await tailnet.createPreAuthKey({ user: alice.id, expiration: '5m' })).toMatch(/^hskey-auth-/);
    expect(await tailnet.createPreAuthKey({ tags: ['tag:ci'] })).toMatch(/^hskey-auth-/);
    expect(await tailnet.listNodes()).toEqual([]);
  });

  it('throws CLI_FAILED with the command and headscale’s message', async () => {
    await tailnet.createUser('bob');
    const err = await expectTestnetError(tailnet.createUser('bob'), 'CLI_FAILED');
    expect(err.message).toMatch(/UNIQUE constraint failed: users.name/);
    expect(err.details.command).toEqual(expect.arrayContaining(['users', 'create', 'bob']));
    expect(err.details.exitCode).toBe(1);
  });

  it('throws NOT_FOUND for a key of an unknown user', async () => {
    await expectTestnetError(tailnet.createPreAuthKey({ user: 'nobody' }), 'NOT_FOUND');
  });

  it('sets a policy, and rejects an invalid one', async () => {
    await tailnet.setPolicy('{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] }, ], }');
    const err = await expectTestnetError(tailnet.setPolicy('{ "acls": [ { "action": "nope" } ] }'), 'CLI_FAILED');
    expect(err.message).toMatch(/policy set/);
  });

  it('rejects login URLs without /register/<auth-id>', async () => {
    expect(authIdFromLoginUrl('http://127.0.0.1:1/register/hskey-authreq-abc')).toBe('hskey-authreq-abc');
    await expectTestnetError(tailnet.approveLogin('http://127.0.0.1:1/login', 'alice'), 'BAD_LOGIN_URL');
    await expectTestnetError(tailnet.approveLogin('not a url', 'alice'), 'BAD_LOGIN_URL');
  });
});

describe('lifecycle', () => {
  it('runs several tailnets at once and stop() removes process and dir', async () => {
    const [one, two] = await Promise.all([startTailnet(), startTailnet({ domain: 'two.test' })]);
    expect(one.httpPort).not.toBe(two.httpPort);
    expect(one.dir).not.toBe(two.dir);
    await one.stop();
    expect(one.running).toBe(false);
    expect(existsSync(one.dir)).toBe(false);
    expect(await healthStatus(one.url)).not.toBe(200);
    expect(await healthStatus(two.url)).toBe(200);
    await two.stop();
    await two.stop(); // idempotent
  });

  it('refuses work once stopped, and reports a crashed headscale with its log', async () => {
    const stopped = await startTailnet();
    await stopped.stop();
    await expectTestnetError(stopped.createUser('late'), 'HEADSCALE_EXITED');

    const crashed = await startTailnet();
    try {
      process.kill(crashed.pid!, 'SIGKILL');
      await expect.poll(() => crashed.running).toBe(false);
      const err = await expectTestnetError(crashed.listNodes(), 'HEADSCALE_EXITED');
      expect(err.message).toMatch(/killed by SIGKILL/);
      expect(err.details.output).toMatch(/listening and serving HTTP/);
    } finally {
      await crashed.stop();
    }
  });

  it('reports a headscale that refuses to start with its stderr', async () => {
    // headscale requires an ephemeral inactivity timeout above 65s and exits at once otherwise.
    const err = await expectTestnetError(startTailnet({ ephemeralInactivityTimeout: '10s' }), 'HEADSCALE_START_FAILED');
    expect(err.message).toMatch(/inactivity_timeout .* is set too low/);
    expect(err.details.output).toMatch(/inactivity_timeout/);
  });

  it('hands headscale its node store tick (it exits on a non-positive one, so the key is read)', async () => {
    const err = await expectTestnetError(startTailnet({ nodeStoreBatchTimeout: '0s' }), 'HEADSCALE_START_FAILED');
    expect(err.details.output).toMatch(/node_store_batch_timeout must be positive/);
    const fast = await startTailnet({ nodeStoreBatchTimeout: '20ms' });
    try {
      expect(await healthStatus(fast.url)).toBe(200);
    } finally {
      await fast.stop();
    }
  });
});

describe.concurrent('cleanup when the owning process dies', () => {
  const fixture = fileURLToPath(new URL('./fixtures/hold-tailnet.ts', import.meta.url));
  const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

  /** Starts the fixture in a child Node process and resolves with what it printed. */
  function holdTailnet() {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const info = new Promise<{ url: string; dir: string; socksPort: number }>((resolve, reject) => {
      child.stdout.once('data', (c: Buffer) =>
        resolve(JSON.parse(c.toString()) as { url: string; dir: string; socksPort: number }),
      );
      child.once('exit', (code) => reject(new Error(`fixture exited (${code}): ${stderr}`)));
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    return { child, info, exited };
  }

  it.for(['SIGTERM', 'SIGINT'] as const)(
    '%s: kills headscale and tailscaled, removes the dir',
    async (signal, { expect }) => {
      const { child, info, exited } = holdTailnet();
      const { url, dir, socksPort } = await info;
      expect(await healthStatus(url)).toBe(200);
      expect(await tcpOpen(socksPort)).toBe(true);
      child.kill(signal);
      await exited;
      expect(await healthStatus(url)).not.toBe(200);
      expect(await tcpOpen(socksPort)).toBe(false);
      expect(existsSync(dir)).toBe(false);
    },
  );

  it('SIGKILL: children die with their parent (parent-death signal)', async ({ expect }) => {
    const { child, info, exited } = holdTailnet();
    const { url, dir, socksPort } = await info;
    child.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 300)); // the kernel delivers the death signal asynchronously
    expect(await healthStatus(url)).not.toBe(200);
    expect(await tcpOpen(socksPort)).toBe(false);
    await rm(dir, { recursive: true, force: true }); // nobody was left to remove it
  });
});
