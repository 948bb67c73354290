// Hostile peers against a tailnet HTTP listener: slow headers, and floods of idle connections.
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTailnet, type Tailnet } from '@krkn/testnet';
import { TailnetNode, serveFastify, tailnetFetch, type TailnetServer, type TailnetSocket } from '@krkn/tailnet';
import { nodeOptions, tempDir } from './helpers.js';

let tailnet: Tailnet;
let server: TailnetNode; // serves the apps under attack
let attacker: TailnetNode; // a peer that opens connections and sends slowly or nothing
let bystander: TailnetNode; // a third node whose requests must still be answered
const apps: FastifyInstance[] = [];
const state = tempDir();

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('limits');
  const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  server = new TailnetNode(nodeOptions(tailnet, state.dir, 'server', { authKey }));
  attacker = new TailnetNode(nodeOptions(tailnet, state.dir, 'attacker', { authKey }));
  bystander = new TailnetNode(nodeOptions(tailnet, state.dir, 'bystander', { authKey }));
  await Promise.all([server.up(), attacker.up(), bystander.up()]);
});

afterAll(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await Promise.all([server?.close(), attacker?.close(), bystander?.close()]);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await tailnet?.stop();
  state.remove();
});

async function serve(port: number, limits: Parameters<typeof serveFastify>[3]): Promise<TailnetServer> {
  const app = Fastify();
  app.get('/healthz', async () => ({ ok: true }));
  apps.push(app);
  return serveFastify(app, server, port, limits);
}

/** Resolves with what the peer got and when (ms after `since`) the server closed the connection. */
function closed(socket: TailnetSocket, since: number): Promise<{ ms: number; received: string }> {
  let received = '';
  socket.on('data', (b: Buffer) => (received += b.toString()));
  socket.on('error', () => undefined);
  // Tailnet sockets are half-open capable: the server's FIN ends the readable side, a reset closes.
  return new Promise((resolve) => {
    const done = (): void => resolve({ ms: performance.now() - since, received });
    socket.once('end', done);
    socket.once('close', done);
  });
}

/** Polls until check() is true; fails after timeoutMs with what it was waiting for. */
async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(50);
  }
}

describe('slow peers', () => {
  it('cuts a peer that trickles its headers (one byte per 500 ms) at the headers timeout, with 408', async () => {
    await serve(8001, { headersTimeoutMs: 3_000 });
    await expect(tailnetFetch(attacker, `http://server:8001/healthz`).then((r) => r.status)).resolves.toBe(200);
    const socket = await attacker.dial('server', 8001);
    const started = performance.now();
    const done = closed(socket, started);
    const request = 'GET /healthz HTTP/1.1\r\nHost: server\r\nX-Padding: ' + 'a'.repeat(200) + '\r\n\r\n';
    let sent = 0;
    const trickle = setInterval(() => {
      if (!socket.destroyed && sent < request.length) socket.write(request[sent++]!);
    }, 500);
    try {
      const { ms, received } = await done;
      expect(sent).toBeGreaterThan(3); // it kept sending: no idle timeout could have cut it
      expect(received).toMatch(/^HTTP\/1\.1 408 /);
      expect(ms).toBeGreaterThanOrEqual(3_000);
      expect(ms).toBeLessThan(5_500); // the timeout, Node's check period (1 s) and the trip back
    } finally {
      clearInterval(trickle);
    }
  });

  it('cuts a connection that never sends a byte at the headers timeout', async () => {
    await serve(8002, { headersTimeoutMs: 2_000 });
    const socket = await attacker.dial('server', 8002);
    const { ms } = await closed(socket, performance.now());
    expect(ms).toBeGreaterThanOrEqual(1_900);
    expect(ms).toBeLessThan(4_500);
  });
});

describe('connection caps', () => {
  it('refuses one peer past its cap while a third node is still answered at once', async () => {
    const perPeer = 8;
    const listener = await serve(8003, { maxConnectionsPerPeer: perPeer, headersTimeoutMs: 60_000 });
    await expect(tailnetFetch(bystander, 'http://server:8003/healthz').then((r) => r.status)).resolves.toBe(200);
    const flood = 200;
    const sockets = await Promise.all(Array.from({ length: flood }, () => attacker.dial('server', 8003)));
    try {
      const outcomes = sockets.map((s) => closed(s, 0));
      // Those past the cap are closed by the server as soon as accepted; the first `perPeer` stay open.
      await until(
        () => listener.dropped === flood - perPeer,
        `${flood - perPeer} drops (at ${listener.dropped})`,
        20_000,
      );
      const closedCount = (
        await Promise.all(outcomes.map((o) => Promise.race([o.then(() => 1), delay(3_000).then(() => 0)])))
      ).reduce((a, b) => a + b, 0);
      expect(closedCount).toBe(flood - perPeer);
      expect(listener.connectionsFrom(attacker.addresses[0]!)).toBe(perPeer);
      const started = performance.now();
      const res = await tailnetFetch(bystander, 'http://server:8003/healthz');
      expect(res.status).toBe(200);
      expect(performance.now() - started).toBeLessThan(1_000);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

describe('idle connections', () => {
  it('cost the engine little memory each: no 64 KiB read buffer before a connection has sent much', async () => {
    const count = 300;
    const listener = await serve(8004, { maxConnectionsPerPeer: count, headersTimeoutMs: 60_000 });
    await expect(tailnetFetch(attacker, 'http://server:8004/healthz').then((r) => r.status)).resolves.toBe(200);
    const before = (await server.metrics()).memory.heapInUse;
    const sockets: TailnetSocket[] = [];
    try {
      // In batches: a burst of SYNs overflows DERP's 32-packet queues and stalls dials on retransmits.
      while (sockets.length < count) {
        const batch = Math.min(25, count - sockets.length);
        sockets.push(...(await Promise.all(Array.from({ length: batch }, () => attacker.dial('server', 8004)))));
      }
      await until(() => listener.connectionsFrom(attacker.addresses[0]!) === count, `${count} held`, 20_000);
      const perConnection = ((await server.metrics()).memory.heapInUse - before) / count;
      // Measured: 9 KiB each (4 KiB buffer, the rest netstack's); 69 KiB with a 64 KiB buffer from the start.
      expect(perConnection, `${(perConnection / 1024).toFixed(1)} KiB per idle connection`).toBeLessThan(32 << 10);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
