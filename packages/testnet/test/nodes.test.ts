// Native tailscaled peers on one shared tailnet: seeing each other, HTTP through the tailnet,
// ephemeral nodes, refused keys, interactive login.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNativeNode, startTailnet, TestnetError, type NativeNode, type Tailnet } from '../src/index.js';
import { startEchoServer } from './helpers.js';

let tailnet: Tailnet;
let key: string;
let a: NativeNode;
let b: NativeNode;

beforeAll(async () => {
  tailnet = await startTailnet();
  await tailnet.createUser('alice');
  key = await tailnet.createPreAuthKey({ user: 'alice', reusable: true });
  [a, b] = await Promise.all([
    startNativeNode(tailnet, { hostname: 'a', authKey: key }),
    startNativeNode(tailnet, { hostname: 'b', authKey: key }),
  ]);
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
afterAll(() => tailnet?.stop());

describe('two native nodes', () => {
  it('see each other in status and in headscale', async () => {
    const bSeenByA = await a.waitForPeer('b');
    const aSeenByB = await b.waitForPeer('a');
    expect(bSeenByA.TailscaleIPs).toContain(b.ip());
    expect(aSeenByB.TailscaleIPs).toContain(a.ip());
    expect(bSeenByA.DNSName).toBe('b.krkn.test.');
    const self = (await a.status()).Self;
    expect(self.HostName).toBe('a');
    const nodes = await tailnet.listNodes();
    expect(nodes.map((n) => n.name).sort()).toEqual(['a', 'b']);
    expect(nodes.every((n) => n.online && n.user?.name === 'alice' && !n.ephemeral)).toBe(true);
  });

  it('answer a TSMP ping', async () => {
    await b.waitForPeer('a'); // b must know a's key, or a's first WireGuard handshake is dropped
    const pong = await a.ping(b.ip());
    expect(pong).toMatchObject({ nodeName: 'b', ip: b.ip(), via: 'TSMP' });
  });

  it('exchange HTTP through the tailnet, by IP and by MagicDNS name', async () => {
    // b's userspace netstack forwards inbound tailnet connections to the host's 127.0.0.1.
    const server = await startEchoServer();
    try {
      const body = Buffer.from([0x7b, 0x00, 0xff, 0x0a, 0x7d]); // arbitrary bytes survive unchanged
      const byIp = await a.fetch(`http://${b.ip()}:${server.port}/hook?x=1`, {
        method: 'POST',
        body,
        headers: { 'x-test': 'yes' },
      });
      expect(byIp.status).toBe(200);
      expect(byIp.body).toEqual(Buffer.concat([Buffer.from('echo POST /hook?x=1\n'), body]));
      expect(server.seen[0]).toMatchObject({ method: 'POST', url: '/hook?x=1', headers: { 'x-test': 'yes' } });

      const byName = await a.fetch(`http://b.${tailnet.domain}:${server.port}/dns`);
      expect(byName.text()).toBe('echo GET /dns\n');
    } finally {
      await server.close();
    }
  });

  it('reports a port nobody listens on as a failed proxy request, not a hang', async () => {
    const server = await startEchoServer();
    await server.close(); // now nothing listens on that port
    const res = await a.fetch(`http://${b.ip()}:${server.port}/`, { timeoutMs: 10_000 });
    expect(res.status).toBe(502); // tailscaled's proxy is a Go httputil.ReverseProxy
  });

  it('renames a node in headscale', async () => {
    const node = (await tailnet.listNodes()).find((n) => n.name === 'b')!;
    const renamed = await tailnet.renameNode(node.id, 'bee');
    expect(renamed.givenName).toBe('bee');
    const peer = await a.waitForPeer('b');
    expect(peer.DNSName).toMatch(/^(b|bee)\.krkn\.test\.$/); // the new name reaches a with the next map update
  });
});

describe('node lifecycle', () => {
  it('an ephemeral node disappears from headscale on logout', async () => {
    const ephemeralKey = await tailnet.createPreAuthKey({ user: 'alice', ephemeral: true });
    const temp = await startNativeNode(tailnet, { hostname: 'temp', authKey: ephemeralKey, ephemeral: true });
    try {
      const listed = (await tailnet.listNodes()).find((n) => n.name === 'temp');
      expect(listed?.ephemeral).toBe(true);
      await temp.logout();
      expect((await tailnet.listNodes()).some((n) => n.name === 'temp')).toBe(false);
    } finally {
      await temp.stop();
    }
  });

  it('a restarted node comes back on its stored state, with the same address and no key', async () => {
    const c = await startNativeNode(tailnet, { hostname: 'restarted', authKey: key });
    const ipBefore = c.ip();
    const pidBefore = c.pid;
    const st = await c.restart();
    expect(c.pid).not.toBe(pidBefore);
    expect(st.BackendState).toBe('Running');
    expect(st.TailscaleIPs).toContain(ipBefore);
    await c.stop();
  });

  it('an expired pre-auth key is refused by tailscale up', async () => {
    const shortKey = await tailnet.createPreAuthKey({ user: 'alice', expiration: '1s' });
    await new Promise((r) => setTimeout(r, 1_500));
    const err = await startNativeNode(tailnet, { hostname: 'late', authKey: shortKey, timeoutMs: 15_000 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TestnetError);
    expect((err as TestnetError).code).toBe('NODE_UP_FAILED');
    expect((err as TestnetError).message).toMatch(/expired/i);
    expect((await tailnet.listNodes()).some((n) => n.name === 'late')).toBe(false);
  });

  it('an interactive login is approved with approveLogin', async () => {
    const c = await startNativeNode(tailnet, { hostname: 'c' });
    try {
      const loginUrl = await c.startLogin();
      expect(loginUrl.startsWith(`${tailnet.url}/register/`)).toBe(true);
      const node = await tailnet.approveLogin(loginUrl, 'alice');
      expect(node).toMatchObject({ name: 'c', user: { name: 'alice' } });
      const status = await c.waitForRunning();
      expect(status.TailscaleIPs).toContain(node.ipAddresses[0]);
    } finally {
      await c.stop();
    }
  });

  it('expiring a node in headscale logs it out', async () => {
    const d = await startNativeNode(tailnet, { hostname: 'd', authKey: key });
    try {
      const id = (await tailnet.listNodes()).find((n) => n.name === 'd')!.id;
      const expired = await tailnet.expireNode(id);
      expect(expired.expiry!.getTime()).toBeLessThanOrEqual(Date.now());
      await expect
        .poll(async () => (await d.status()).BackendState, { timeout: 15_000, interval: 250 })
        .toBe('NeedsLogin');
      await tailnet.deleteNode(id);
      expect((await tailnet.listNodes()).some((n) => n.id === id)).toBe(false);
    } finally {
      await d.stop();
    }
  });
});

describe('relayed through the embedded DERP', () => {
  it('carries traffic between nodes forced onto DERP (as wasm nodes always are)', async () => {
    const env = { TS_DEBUG_ALWAYS_USE_DERP: '1' };
    const [x, y] = await Promise.all([
      startNativeNode(tailnet, { hostname: 'derp-x', authKey: key, env }),
      startNativeNode(tailnet, { hostname: 'derp-y', authKey: key, env }),
    ]);
    const server = await startEchoServer();
    try {
      await x.waitForPeer('derp-y');
      await y.waitForPeer('derp-x');
      expect((await x.ping(y.ip(), { type: 'disco' })).via).toBe('DERP(krkn)');
      expect((await x.fetch(`http://${y.ip()}:${server.port}/relayed`)).text()).toBe('echo GET /relayed\n');
    } finally {
      await server.close();
      await Promise.all([x.stop(), y.stop()]);
    }
  });
});
