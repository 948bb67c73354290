// Traffic between our nodes, and with native tailscaled peers in both directions.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { promisify } from 'node:util';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNativeNode, startTailnet, type NativeNode, type Tailnet } from '@krkn/testnet';
import { TailnetNode, serveFastify, tailnetAgent, tailnetFetch } from '@krkn/tailnet';
import { tailnetMtu } from '@krkn/tailnet-wasm';
import { nodeOptions, rejectionCode, tempDir } from './helpers.js';

const run = promisify(execFile);
let tailnet: Tailnet;
let alpha: TailnetNode; // serves fastify; its engine runs in this thread
let beta: TailnetNode; // the client; its engine runs in a worker
let native: NativeNode;
let app: FastifyInstance;
let hostServer: Server; // a service on the native node's host, reached through the native node
const state = tempDir();

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('traffic');
  const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  alpha = new TailnetNode(nodeOptions(tailnet, state.dir, 'alpha', { authKey, isolation: 'thread' }));
  beta = new TailnetNode(nodeOptions(tailnet, state.dir, 'beta', { authKey }));
  [native] = await Promise.all([startNativeNode(tailnet, { hostname: 'native', authKey }), alpha.up(), beta.up()]);

  app = Fastify({ bodyLimit: 16 << 20 });
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.get('/hello', async (req) => ({
    ip: req.ip,
    caller: (await alpha.whois(req.ip)).node.name,
    address: app.server.address(),
  }));
  app.post('/echo', async (req, reply) => reply.type('application/octet-stream').send(req.body));
  await serveFastify(app, alpha, 80);

  // Echoes POST bodies; answers anything else with the path it saw.
  hostServer = createServer((req, res) => {
    if (req.method !== 'POST') return void res.end(`host service saw ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => res.end(Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => hostServer.listen(0, '127.0.0.1', r));
  await native.waitForPeer('alpha');
});

afterAll(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await app?.close();
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await Promise.all([alpha?.close(), beta?.close()]);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  hostServer?.close();
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await tailnet?.stop();
  state.remove();
});

describe('between two of our nodes', () => {
  it('serves fastify on the tailnet address, reached by MagicDNS name, with the caller named by WhoIs', async () => {
    for (const name of ['alpha', `alpha.${tailnet.domain}`]) {
      const res = await tailnetFetch(beta, `http://${name}/hello`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { ip: string; caller: string; address: { address: string; port: number } };
      expect(body.ip).toBe(beta.addresses[0]);
      expect(body.caller).toBe(`beta.${tailnet.domain}`);
      expect(body.address).toEqual({ address: alpha.addresses[0], family: 'IPv4', port: 80 });
    }
  });

  it(
    "closes an idle keep-alive connection before the server's 5 s keep-alive timeout",
    { timeout: 20_000 },
    async () => {
      const agent = tailnetAgent(beta);
      const idle = () => Object.values(agent.freeSockets).flat().length;
      try {
        await (await tailnetFetch(beta, 'http://alpha/hello', {}, agent)).arrayBuffer();
        await new Promise((r) => setTimeout(r, 200));
        expect(idle()).toBe(1); // kept for the next request
        // Still open when the server closes it (5 s), a request could take it just before the FIN arrives
        // and fail with "socket hang up".
        await new Promise((r) => setTimeout(r, 4_600));
        expect(idle()).toBe(0);
        expect((await tailnetFetch(beta, 'http://alpha/hello', {}, agent)).status).toBe(200);
      } finally {
        agent.destroy();
      }
    },
  );

  it('carries a large body intact in both directions', async () => {
    const payload = randomBytes(4 << 20);
    const res = await tailnetFetch(beta, 'http://alpha/echo', {
      method: 'POST',
      body: payload,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(payload)).toBe(true);
  });

  it('keeps the order of many writes nobody waits for, and half-closes only after them', async () => {
    // beta's writes complete before the engine has them (up to a 1 MiB window), so several are in
    // flight to Go at once; ~3 MiB in 1,500-byte writes also crosses the window's reply twice.
    const server = alpha.listen(7007);
    server.on('connection', (s) => s.pipe(s)); // echoes, and ends when the client does
    try {
      await server.accepting;
      const socket = await beta.dial('alpha', 7007);
      const got: Buffer[] = [];
      socket.on('data', (c: Buffer) => got.push(c));
      const ended = once(socket, 'end');
      const pieces = Array.from({ length: 2000 }, () => randomBytes(1500));
      for (const p of pieces) socket.write(p);
      socket.end();
      await ended;
      expect(Buffer.concat(got).equals(Buffer.concat(pieces))).toBe(true);
      socket.destroy();
    } finally {
      server.close();
    }
  });

  it('counts the data path in metrics(): bytes crossed, DERP packets, WebSocket messages, bridge messages', async () => {
    const before = await beta.metrics();
    const payload = randomBytes(1 << 20);
    const res = await tailnetFetch(beta, 'http://alpha/echo', {
      method: 'POST',
      body: payload,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(Buffer.from(await res.arrayBuffer()).length).toBe(payload.length);
    const after = await beta.metrics();
    const grew = (pick: (m: typeof after) => number): number => pick(after) - pick(before);
    expect(grew((m) => m.crossings.writeBytes)).toBeGreaterThanOrEqual(payload.length);
    expect(grew((m) => m.crossings.dataBytes)).toBeGreaterThanOrEqual(payload.length);
    expect(grew((m) => m.derp.queued)).toBeGreaterThan(payload.length / tailnetMtu);
    expect(grew((m) => m.tcp.segmentsSent)).toBeGreaterThan(payload.length / tailnetMtu);
    // Between our nodes packets are up to tailnetMtu long, not tailscaled's 1280.
    expect(grew((m) => m.tcp.segmentsSent)).toBeLessThan(payload.length / 4096);
    expect(grew((m) => m.webSocket.bytesOut)).toBeGreaterThan(payload.length);
    // The sends of one JS task leave as one WebSocket message (DERP's 4 KiB write buffer splits each
    // large packet in two sends), and no message is over coder/websocket's 32 KiB read limit.
    expect(grew((m) => m.webSocket.sendsFromGo)).toBeGreaterThan(1.5 * grew((m) => m.webSocket.messagesOut));
    expect(grew((m) => m.webSocket.messagesOut)).toBeGreaterThanOrEqual(grew((m) => m.webSocket.bytesOut) / (32 << 10));
    expect(grew((m) => m.webSocket.messagesIn)).toBeGreaterThan(0);
    expect(grew((m) => m.webSocket.eventsToGo)).toBeLessThanOrEqual(grew((m) => m.webSocket.messagesIn));
    expect(grew((m) => m.bridge.toEngine)).toBeGreaterThan(0);
    expect(grew((m) => m.bridge.fromEngine)).toBeGreaterThan(0);
  });

  it('resets connections to ports nobody listens on', async () => {
    expect(await rejectionCode(beta.dial('alpha', 81, { timeoutMs: 5_000 }))).toBe('DIAL_FAILED');
  });

  it('answers a dial on a port pair it closed moments ago (no 60 s TIME-WAIT)', { timeout: 180_000 }, async () => {
    // The server closes first, as an HTTP server does after a `Connection: close` answer: gVisor then keeps
    // the port pair in TIME-WAIT and, behind netstack's forwarder, used to drop a new SYN on it for 60 s.
    // The client's stack picks a random ephemeral port per dial, so dialling on comes round to a port that
    // was closed seconds before; dial until that happened a few times (about 700 dials, ~50k ports).
    const listener = alpha.listen(7001);
    listener.on('connection', (socket) => socket.resume().end('bye'));
    const closedAt = new Map<number, number>(); // beta's source port -> when its last connection ended
    let reopened = 0; // dials on a port closed less than a minute before
    try {
      for (let dials = 0; reopened < 5 && dials < 3_000; dials++) {
        const socket = await beta.dial('alpha', 7001, { timeoutMs: 10_000 });
        if (Date.now() - (closedAt.get(socket.localPort) ?? -Infinity) < 60_000) reopened++;
        socket.resume();
        await once(socket, 'end');
        socket.destroy();
        closedAt.set(socket.localPort, Date.now());
      }
    } finally {
      listener.close();
    }
    expect(reopened).toBe(5);
  });

  it('names unknown peers clearly', async () => {
    expect(await rejectionCode(beta.dial('nosuchpeer', 80))).toBe('UNKNOWN_PEER');
    expect(await rejectionCode(beta.whois('100.100.100.100'))).toBe('UNKNOWN_PEER');
    expect(await rejectionCode(beta.ping('nosuchpeer'))).toBe('UNKNOWN_PEER');
  });

  it('TSMP-pings a peer by name', async () => {
    const pong = await beta.ping('alpha');
    expect(pong.ip).toBe(alpha.addresses[0]);
    expect(pong.latencyMs).toBeGreaterThan(0);
  });

  it('lists its peers in status', async () => {
    const st = await beta.status();
    const names = st.peers.map((p) => p.hostname).sort();
    expect(names).toEqual(['alpha', 'native']);
    expect(st.peers.find((p) => p.hostname === 'native')?.os).toBe('linux');
    expect(st.magicDnsSuffix).toBe(tailnet.domain);
  });
});

describe('with a native tailscaled peer', () => {
  it('curl through the native node reaches our fastify listener', async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '--max-time',
      '15',
      '-x',
      `http://127.0.0.1:${native.httpProxyPort}`,
      `http://${alpha.addresses[0]}/hello`,
    ]);
    const body = JSON.parse(stdout) as { ip: string; caller: string };
    expect(body.ip).toBe(native.ip());
    expect(body.caller).toBe(`native.${tailnet.domain}`);
  });

  it('a port we do not listen on is refused to the native peer too', async () => {
    const res = await native.fetch(`http://${alpha.addresses[0]}:81/`);
    expect(res.status).toBe(502);
  });

  it('our node dials a service on the native node', async () => {
    const { port } = hostServer.address() as { port: number };
    const res = await tailnetFetch(beta, `http://${native.ip()}:${port}/from-wasm`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('host service saw /from-wasm');
  });

  // Our nodes run at tailnetMtu, tailscaled at 1280: TCP must settle on the smaller MSS both ways.
  it('a native peer at MTU 1280 sends our node a body of many packets and gets it back intact', async () => {
    const payload = randomBytes(1 << 20);
    const res = await native.fetch(`http://${alpha.addresses[0]}/echo`, {
      method: 'POST',
      body: payload,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(res.status).toBe(200);
    expect(res.body.equals(payload)).toBe(true);
  });

  it('our node sends a native peer at MTU 1280 a body of many packets and gets it back intact', async () => {
    const { port } = hostServer.address() as { port: number };
    const payload = randomBytes(1 << 20);
    const res = await tailnetFetch(beta, `http://${native.ip()}:${port}/echo`, { method: 'POST', body: payload });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(payload)).toBe(true);
  });

  it('WhoIs names the native node and its user', async () => {
    const who = await beta.whois(native.ip());
    expect(who.node.name).toBe(`native.${tailnet.domain}`);
    expect(who.node.hostname).toBe('native');
    expect(who.user.loginName).toContain('traffic');
  });
});
