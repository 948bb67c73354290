// krkns against a hostile tailnet peer: a flood of idle connections must not starve other peers
// nor grow the daemon without bound.
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from 'node:http';
import { TailnetNode, tailnetAgent, tailnetFetch, type TailnetSocket } from '@krkn/tailnet';
import { startTailnet, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';

// 5,000 idle connections, as the issue asks: about 30 s on the 2-core test machine. (Before our nodes
// dropped TCP TIME-WAIT, a dial that reused a port krkns had just closed hung for 60 s, so floods past
// some 500 stalled.) KRKN_TEST_FLOOD sets another count.
const flood = Number(process.env.KRKN_TEST_FLOOD ?? 5_000);
const perPeerCap = 32;

let tailnet: Tailnet;
let krkns: Krkns;
let attacker: TailnetNode;
let bystander: TailnetNode;
let bystanderAgent: Agent; // a keep-alive client, as a service calling krkns often would be
const dir = mkdtempSync(join(tmpdir(), 'krkns-hostile-'));

function node(hostname: string, authKey: string): TailnetNode {
  return new TailnetNode({
    hostname,
    stateDir: join(dir, hostname),
    controlUrl: tailnet.url,
    authKey,
    logger: pino({ level: 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
  });
}

/** The daemon's resident set, from /proc (kB → MiB). */
function rssMiB(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  return kb / 1024;
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('hostile');
  const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  attacker = node('attacker', authKey);
  bystander = node('bystander', authKey);
  [krkns] = await Promise.all([
    Krkns.run({
      controlUrl: tailnet.url,
      authKey,
      stateDir: join(dir, 'hub'),
      hostname: 'hub',
      args: ['--max-connections-per-peer', String(perPeerCap), '--header-timeout', '60s'],
    }),
    attacker.up(),
    bystander.up(),
  ]);
  bystanderAgent = tailnetAgent(bystander);
});

afterAll(async () => {
  await (krkns as Krkns | undefined)?.stop();
  await Promise.all([(attacker as TailnetNode | undefined)?.close(), (bystander as TailnetNode | undefined)?.close()]);
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a flood of idle connections from one peer', () => {
  it(`refuses connections past the per-peer cap (${flood} opened), keeps answering a third node, and stays bounded`, async () => {
    // Warm both paths up: a fresh node's first request can take seconds (a handshake retry).
    expect((await tailnetFetch(bystander, 'http://hub/healthz', {}, bystanderAgent)).status).toBe(200);
    // (without keep-alive: the attacker's every open connection must be one of the flood's)
    expect((await tailnetFetch(attacker, 'http://hub/healthz', { headers: { connection: 'close' } })).status).toBe(200);
    const rssBefore = rssMiB(krkns.child.pid!);

    const open = new Set<TailnetSocket>();
    let refused = 0;
    const healthz: number[] = [];
    const started = performance.now();
    const probe = setInterval(() => {
      const t = performance.now();
      void tailnetFetch(bystander, 'http://hub/healthz', {}, bystanderAgent).then(
        async (res) => {
          await res.arrayBuffer();
          healthz.push(res.status === 200 ? performance.now() - t : Infinity);
        },
        () => healthz.push(Infinity),
      );
    }, 500);
    try {
      // In batches: a burst of SYNs overflows DERP's 32-packet queues and stalls dials on retransmits.
      const batch = 25;
      for (let opened = 0; opened < flood; opened += batch) {
        if (process.env.KRKN_TEST_DEBUG)
          console.log(`opened ${opened} refused ${refused} at ${(performance.now() - started).toFixed(0)} ms`);
        const sockets = await Promise.all(
          Array.from({ length: Math.min(batch, flood - opened) }, () => dialPersistently()),
        );
        for (const s of sockets) {
          open.add(s);
          // A refused connection is closed by krkns as soon as it is accepted; a held one stays silent.
          onClosed(s, () => {
            if (open.delete(s)) refused++;
            s.destroy();
          });
        }
      }
      await until(
        () => refused === flood - perPeerCap,
        () => `${flood - perPeerCap} refused (${refused}, ${open.size} open)`,
        30_000,
      );
      const elapsed = performance.now() - started;
      const slowestHealthz = Math.max(...healthz);
      console.log(
        `${flood} connections in ${(elapsed / 1000).toFixed(1)} s; krkns RSS ${rssBefore.toFixed(0)} → ${rssMiB(krkns.child.pid!).toFixed(0)} MiB; ${redials} redials; ` +
          `/healthz during the flood (ms): ${healthz.map((ms) => ms.toFixed(0)).join(' ')}`,
      );
      expect(open.size).toBe(perPeerCap);
      expect(slowestHealthz).toBeLessThan(1_000);
      const t = performance.now();
      expect((await tailnetFetch(bystander, 'http://hub/healthz', {}, bystanderAgent)).status).toBe(200);
      expect(performance.now() - t).toBeLessThan(1_000);
      // Refused connections leave nothing behind: the daemon grew by less than 64 MiB (measured with 5,000:
      // 9-32, the heaps' garbage not yet collected), where keeping even 13 KiB of each would pass it.
      expect(rssMiB(krkns.child.pid!) - rssBefore).toBeLessThan(64);
      await krkns.waitFor(/"msg":"connection cap reached: closing new connections"/, 5_000);
    } finally {
      clearInterval(probe);
      for (const s of open) s.destroy();
    }
  }, 300_000);
});

let redials = 0;

/**
 * Dials krkns, again if a SYN went unanswered: DERP drops the oldest packet of a full 32-deep queue
 * (see README, engine facts), and a dial that loses its SYN four times runs out of time.
 */
async function dialPersistently(): Promise<TailnetSocket> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await attacker.dial('hub', 80, { timeoutMs: 5_000 });
    } catch (err) {
      if ((err as { code?: string }).code !== 'TIMEOUT' || attempt === 3) throw err;
      redials++;
    }
  }
}

/** Calls done once the server closed the socket (FIN or reset). */
function onClosed(socket: TailnetSocket, done: () => void): void {
  socket.on('error', () => undefined);
  socket.resume();
  socket.once('end', done);
  socket.once('close', done);
}

async function until(check: () => boolean, what: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
