// A restarted node goes Running from the netmap it cached in its state (self node, no peers), the
// way tailscaled does, without waiting for the control server; dials made at once wait for the peers.
// The control server is frozen (SIGSTOP) across the restart, so nothing here can come from it.
// Without the overlay patches (packages/tailnet-wasm/overlay/) there is no cache: up() waits for
// control and the first test fails on its timeout.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTailnet, waitFor, type Tailnet } from '@krkn/testnet';
import { TailnetNode, tailnetFetch } from '@krkn/tailnet';
import { nodeOptions, rejectionCode, startHelloPeer, tempDir } from './helpers.js';

let tailnet: Tailnet;
let alpha: { close(): Promise<void> } | undefined;
let authKey: string;
let frozen = false;
const state = tempDir();
const nodes: TailnetNode[] = [];
const cachePrefix = '_krkn-netmap-cache/';

function freezeControl(on: boolean): void {
  process.kill(tailnet.pid!, on ? 'SIGSTOP' : 'SIGCONT');
  frozen = on;
}

function stateFile(name: string): string {
  return join(state.dir, name, 'tailscaled.state');
}

function cachedKeys(name: string): string[] {
  const values = JSON.parse(readFileSync(stateFile(name), 'utf8')) as Record<string, string>;
  return Object.keys(values).filter((k) => k.startsWith(cachePrefix));
}

function node(name: string, extra: Parameters<typeof nodeOptions>[3] = {}): TailnetNode {
  const n = new TailnetNode(nodeOptions(tailnet, state.dir, name, extra));
  nodes.push(n);
  return n;
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('warm');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  alpha = await startHelloPeer(tailnet, state.dir, authKey);
});

afterAll(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  if (frozen && tailnet) freezeControl(false);
  await Promise.all([alpha?.close(), ...nodes.map((n) => n.close())]);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await tailnet?.stop();
  state.remove();
});

it('restarts Running from its cached netmap while control is frozen; a dial waits for the peers', async () => {
  const first = node('beta', { authKey });
  await first.up();
  const addresses = first.addresses;
  await waitFor(async () => cachedKeys('beta').length === 1, {
    timeoutMs: 10_000,
    what: 'the netmap cache in the state',
  });
  expect(statSync(stateFile('beta')).mode & 0o777).toBe(0o600);
  await first.close();

  freezeControl(true);
  const beta = node('beta');
  const started = Date.now();
  // Measured 1-3 s here under load 10-20 (worker, wasm compile, Go init); control could not answer.
  const status = await beta.up({ controlTimeoutMs: 20_000 });
  const upMs = Date.now() - started;
  expect(status.backendState).toBe('Running');
  expect(status.peersKnown).toBe(false);
  expect(status.peers).toEqual([]);
  expect(beta.addresses).toEqual(addresses);

  // Fetch at once: the dial waits for control's map, which comes once control runs again.
  const fetched = tailnetFetch(beta, 'http://alpha/hello', { signal: AbortSignal.timeout(30_000) });
  await new Promise((r) => setTimeout(r, 1_000));
  freezeControl(false);
  const res = await fetched;
  expect(await res.text(), `up took ${upMs} ms`).toBe('hello');
  expect((await beta.status()).peersKnown).toBe(true);
});

it('a forced login does not go Running from the cached netmap', async () => {
  await waitFor(async () => cachedKeys('beta').length === 1, {
    timeoutMs: 10_000,
    what: 'the netmap cache in the state',
  });
  await Promise.all(nodes.map((n) => n.close()));
  freezeControl(true);
  const forced = node('beta', { authKey, forceLogin: true });
  // The cache would make this Running at once; a forced login must wait for control instead.
  expect(await rejectionCode(forced.up({ controlTimeoutMs: 4_000 }))).toBe('CONTROL_UNREACHABLE');
  freezeControl(false);
  expect(cachedKeys('beta')).toEqual([]);
});

it('logout drops the cached netmap', async () => {
  const gamma = node('gamma', { authKey });
  await gamma.up();
  await waitFor(async () => cachedKeys('gamma').length === 1, {
    timeoutMs: 10_000,
    what: 'the netmap cache in the state',
  });
  await gamma.logout();
  expect(cachedKeys('gamma')).toEqual([]);
});
