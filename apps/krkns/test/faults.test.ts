// krkns under database faults, as a process: a full disk, a SIGTERM with a slow delivery in flight, a
// corrupt hub.db. A real headscale, real nodes, a real SQLite file (on a small tmpfs for the full disk).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubApiError, HubClient, type HubStatus } from '@krkn/hub-api';
import { TailnetNode, serveFastify, tailnetFetch } from '@krkn/tailnet';
import { SmallDisk, startTailnet, waitFor, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';

let tailnet: Tailnet;
let authKey: string;
let publisher: TailnetNode;
let subscriber: Subscriber;
const dir = mkdtempSync(join(tmpdir(), 'krkns-faults-'));
const running: Krkns[] = [];

function nodeNamed(hostname: string): TailnetNode {
  const logger = pino({ level: 'silent' });
  const engineEnv = { TS_DEBUG_USE_DERP_HTTP: '1' };
  return new TailnetNode({
    hostname,
    stateDir: join(dir, hostname),
    controlUrl: tailnet.url,
    authKey,
    logger,
    engineEnv,
  });
}

/** A subscriber node whose handler takes `delayMs` to answer 204; it notes each attempt as it arrives. */
class Subscriber {
  readonly arrivals: { id: string; attempt: string }[] = [];
  delayMs = 0;
  readonly node = nodeNamed('subscriber');
  private app: FastifyInstance | undefined;

  async start(): Promise<void> {
    await this.node.up();
    const app = Fastify();
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
    app.post('/in', async (req, reply) => {
      const attempt = { id: String(req.headers['x-krkn-event-id']), attempt: String(req.headers['x-krkn-attempt']) };
      this.arrivals.push(attempt);
      await sleep(this.delayMs);
      return reply.code(204).send();
    });
    await serveFastify(app, this.node, 8080);
    this.app = app;
  }

  /** Subscribes to `topic` at krkns `k` (deliveries come to this node's own address). */
  async subscribe(k: Krkns, topic: string): Promise<void> {
    await hubAt(k, this.node).subscribe({ topics: [topic], port: 8080, path: '/in' });
  }

  async waitForArrivals(n: number, k: Krkns): Promise<void> {
    await waitFor(async () => (this.arrivals.length >= n ? true : undefined), {
      timeoutMs: 30_000,
      what: `${n} delivery attempt(s) at the subscriber\n${k.stderr.slice(-3000)}`,
    });
  }

  async close(): Promise<void> {
    await this.app?.close();
    await this.node.close();
  }
}

function hubAt(k: Krkns, from: TailnetNode): HubClient {
  return new HubClient(`http://${k.ip}`, (url, init) => tailnetFetch(from, url, init), 20_000);
}

/** Starts krkns `name` and waits until the publisher and the subscriber reach it. */
async function start(name: string, args: string[] = []): Promise<Krkns> {
  const k = await Krkns.run({ controlUrl: tailnet.url, stateDir: join(dir, name), hostname: name, authKey, args });
  running.push(k);
  for (const from of [publisher, subscriber.node]) {
    await waitFor(async () => (await from.ping(k.ip, { timeoutMs: 2_000 })).latencyMs, {
      timeoutMs: 20_000,
      what: `a ping to krkns ${k.ip}`,
    });
  }
  return k;
}

/** `krkns status` of a stopped krkns: the queue as its store holds it. */
async function storedQueue(name: string): Promise<{ events: number; pending: number; delivered: number }> {
  const r = await Krkns.command(['status', '--state-dir', join(dir, name), '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { queue: HubStatus['queue'] & { events: number } }).queue;
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('faults');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  publisher = nodeNamed('publisher');
  subscriber = new Subscriber();
  await Promise.all([publisher.up(), subscriber.start()]);
});

afterAll(async () => {
  await Promise.all(running.map((k) => k.stop('SIGKILL')));
  await (subscriber as Subscriber | undefined)?.close();
  await (publisher as TailnetNode | undefined)?.close();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('database faults', () => {
  it('a full disk: publishes get 507 INSUFFICIENT_STORAGE, krkns stays up and serves again with space', async () => {
    const disk = SmallDisk.mount({ bytes: 8 << 20 });
    try {
      const k = await start('full', ['--store', `sqlite:${join(disk.dir, 'hub.db')}`]);
      await subscriber.subscribe(k, 'full/t');
      const api = hubAt(k, publisher);
      const before = await api.publish('full/t', 'before the disk filled');
      await subscriber.waitForArrivals(1, k);

      disk.fill();
      const big = 'x'.repeat(1 << 20); // bigger than the WAL has been: its frames need new space
      const refused = (await api.publish('full/t', big).catch((e: unknown) => e)) as HubApiError;
      expect(refused).toBeInstanceOf(HubApiError);
      expect([refused.status, refused.code]).toEqual([507, 'INSUFFICIENT_STORAGE']);
      expect(refused.message).toContain('disk is full');
      // The answer can reach us before krkns's log line crosses its stderr pipe: wait for the line.
      await k.waitFor(/"code":"FULL".*"msg":"request failed"/, 5_000);
      await sleep(1_000); // the delivery loop and the heartbeat meet the full disk meanwhile
      expect(k.child.exitCode).toBeNull();

      disk.free();
      const after = await api.publish('full/t', big);
      await subscriber.waitForArrivals(2, k);
      expect(subscriber.arrivals.map((a) => a.id)).toEqual([before.id, after.id]);
      expect(await k.stop('SIGTERM')).toBe(0);
    } finally {
      subscriber.arrivals.length = 0;
      disk.unmount();
    }
  });

  it('SIGTERM waits for a delivery slower than --shutdown-timeout, records it, and exits 0', async () => {
    const k = await start('drain', ['--shutdown-timeout', '1s']);
    await subscriber.subscribe(k, 'drain/t');
    subscriber.delayMs = 4_000;
    try {
      const { id } = await hubAt(k, publisher).publish('drain/t', 'slow');
      await subscriber.waitForArrivals(1, k);
      expect(await k.stop('SIGTERM', 30_000), k.stderr.slice(-3000)).toBe(0);
      expect(subscriber.arrivals).toEqual([{ id, attempt: '1' }]);
      expect(await storedQueue('drain')).toMatchObject({ events: 1, pending: 0, delivered: 1 });
    } finally {
      subscriber.delayMs = 0;
      subscriber.arrivals.length = 0;
    }
  });

  it('past --drain-timeout the attempt is not recorded: it stays due and goes out again after a restart', async () => {
    const k = await start('cutoff', ['--drain-timeout', '1s']);
    await subscriber.subscribe(k, 'cutoff/t');
    subscriber.delayMs = 6_000;
    try {
      const { id } = await hubAt(k, publisher).publish('cutoff/t', 'too slow');
      await subscriber.waitForArrivals(1, k);
      expect(await k.stop('SIGTERM', 30_000), k.stderr.slice(-3000)).toBe(0);
      expect(k.stderr).toContain('stopped waiting: deliveries cut off are attempted again at the next start');
      expect(await storedQueue('cutoff')).toMatchObject({ events: 1, pending: 1, delivered: 0 });

      subscriber.delayMs = 0;
      const again = await start('cutoff');
      await subscriber.waitForArrivals(2, again);
      // The cut-off attempt spent nothing: the redelivery is attempt 1 again.
      expect(subscriber.arrivals).toEqual([
        { id, attempt: '1' },
        { id, attempt: '1' },
      ]);
      expect(await again.stop('SIGTERM', 30_000)).toBe(0);
      expect(await storedQueue('cutoff')).toMatchObject({ events: 1, pending: 0, delivered: 1 });
    } finally {
      subscriber.delayMs = 0;
      subscriber.arrivals.length = 0;
    }
  });

  it('a corrupt hub.db exits 5 with a message naming the file', async () => {
    const stateDir = join(dir, 'corrupt');
    mkdirSync(stateDir, { mode: 0o700 });
    const db = join(stateDir, 'hub.db');
    writeFileSync(db, Buffer.alloc(64 << 10, 'not a database at all '), { mode: 0o600 });
    const r = await Krkns.command([
      'run',
      '--hostname',
      'corrupt',
      '--state-dir',
      stateDir,
      '--control-url',
      tailnet.url,
    ]);
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toContain(`--store: event store ${db} is corrupt or not a SQLite database`);
    expect(r.stderr).not.toContain('    at '); // a message, not a stack trace
  });

  it('a store that cannot be created on a full disk exits 1 saying so, not 5 (corrupt)', async () => {
    const disk = SmallDisk.mount({ bytes: 1 << 20 });
    try {
      disk.fill();
      const db = join(disk.dir, 'hub.db');
      const stateDir = join(dir, 'nospace');
      const args = ['run', '--store', `sqlite:${db}`, '--state-dir', stateDir, '--control-url', tailnet.url];
      const r = await Krkns.command(args);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`--store: the disk holding ${db} is full`);
    } finally {
      disk.unmount();
    }
  });
});
