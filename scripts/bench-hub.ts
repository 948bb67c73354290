// npm run bench:hub — krkns's publish throughput and publish→delivered latency, over the tailnet
// (a real krkns process, a publisher and a subscriber node) beside the same hub code on plain
// loopback HTTP with no tailnet (the ceiling): on SQLite (group commit), and on PostgreSQL with one
// replica and with two (two hubs on one database, publishers spread over both). `--write` replaces
// the table in README.md.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { identifyAdmin, type SendAttempt } from '@krkn/hub';
import { PostgresStore, SqliteStore, type HubStore } from '@krkn/hub-store';
import { TailnetNode, serveFastify, tailnetAgent } from '@krkn/tailnet';
import { startPostgres, startTailnet, type Postgres } from '@krkn/testnet';
import { benchHub, offlineNode } from './bench-hub-fixture.js';
import { benchGrowth, growthOnly } from './bench-hub-growth.js';
import { measuredOn, writeReadmeSection } from './bench-report.js';

// Events per throughput run: over the tailnet, on loopback with SQLite (fast enough to need more for a
// stable figure), and on PostgreSQL (whose one-at-a-time deliveries to the one subscriber drain slowly).
const TAILNET_EVENTS = 1_000;
const LOOPBACK_EVENTS = 4_000;
const POSTGRES_EVENTS = 1_000;
// How long the queue may take to drain after a throughput run, before the latency run starts.
const DRAIN_TIMEOUT_MS = 300_000;
const CONCURRENCY = 32;
const RATE_PER_SECOND = 200;
const RATE_SECONDS = 5;
const BODY = Buffer.from(JSON.stringify({ action: 'completed', repository: 'krkn', payload: 'x'.repeat(1500) }));

/** Publishes one event and resolves with its id (after the 202). */
type Publish = (topic: string, body: Buffer) => Promise<string>;

interface Results {
  throughput: number;
  p50: number;
  p99: number;
  delivered: number;
}

async function main(): Promise<void> {
  if (growthOnly(process.argv)) {
    console.log(await benchGrowth());
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'krkn-bench-hub-'));
  const results: Record<string, Results> = {};
  /** Columns that failed, with why: the rest of the run still measures (and the table says so). */
  const failed: string[] = [];
  let pg: Postgres | undefined;
  const record = (name: string, r: Results): void => {
    results[name] = r;
    console.error(`${name}: ${JSON.stringify(r)}`); // a run cut short still shows what it measured
  };
  try {
    try {
      record('krkns over the tailnet (SQLite)', await overTailnet(dir));
    } catch (err) {
      failed.push(`krkns over the tailnet (SQLite): ${(err as Error).message}`);
      console.error(`krkns over the tailnet (SQLite) failed:`, err);
    }
    // The anchor: the same, with the store fsyncing on the event loop as before (leases and outcomes too).
    const anchor = SqliteStore.open(join(dir, 'anchor.db'), { fsyncOnEventLoop: true });
    record('loopback, SQLite, fsync on the event loop (anchor)', await onLoopback([anchor], LOOPBACK_EVENTS));
    record(
      'loopback, SQLite (ceiling)',
      await onLoopback([SqliteStore.open(join(dir, 'loopback.db'))], LOOPBACK_EVENTS),
    );
    pg = await startPostgres(); // fsync on, as in production
    const pgStore = async (database: string) => PostgresStore.open(pg!.url(database), { password: pg!.password });
    const single = [await pgStore(await pg.createDatabase())];
    record('loopback, PostgreSQL, 1 replica', await onLoopback(single, POSTGRES_EVENTS));
    const shared = await pg.createDatabase();
    record(
      'loopback, PostgreSQL, 2 replicas',
      await onLoopback([await pgStore(shared), await pgStore(shared)], POSTGRES_EVENTS),
    );
  } finally {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const table = `${render(results, failed)}\n${await benchGrowth()}`;
  console.log(table);
  if (process.argv.includes('--write')) writeReadmeSection('bench:hub', table);
}

/** A subscriber app that records when each event arrives. */
function subscriberApp(arrivals: Map<string, number>): FastifyInstance {
  const app = Fastify({ bodyLimit: 1 << 20 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, b, done) => done(null, b));
  app.post('/in', async (req) => {
    arrivals.set(String(req.headers['x-krkn-event-id']), performance.now());
    return 'ok';
  });
  return app;
}

async function overTailnet(dir: string): Promise<Results> {
  const tailnet = await startTailnet();
  const user = await tailnet.createUser('bench');
  const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  const main = new URL('../apps/krkns/dist/main.js', import.meta.url).pathname;
  const krkns = spawn(
    process.execPath,
    [
      main,
      'run',
      '--hostname',
      'hub',
      '--state-dir',
      join(dir, 'krkns'),
      '--control-url',
      tailnet.url,
      '--log-level',
      'warn',
    ],
    {
      env: { ...process.env, TS_AUTHKEY: authKey, TS_DEBUG_USE_DERP_HTTP: '1' },
    },
  );
  let out = '';
  krkns.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const mk = (h: string) =>
    new TailnetNode({
      hostname: h,
      stateDir: join(dir, h),
      controlUrl: tailnet.url,
      authKey,
      logger: pino({ level: 'silent' }),
      engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
    });
  const publisher = mk('publisher');
  const subscriber = mk('subscriber');
  try {
    await Promise.all([publisher.up(), subscriber.up()]);
    const deadline = Date.now() + 60_000;
    while (!/ready: node \S+ \((100\.[\d.]+)/.test(out)) {
      if (Date.now() > deadline || krkns.exitCode !== null) throw new Error(`krkns did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const hubIp = /ready: node \S+ \((100\.[\d.]+)/.exec(out)![1]!;
    await waitPing(publisher, hubIp);
    await waitPing(subscriber, hubIp);
    const arrivals = new Map<string, number>();
    const app = subscriberApp(arrivals);
    await serveFastify(app, subscriber, 8080);
    const subAgent = tailnetAgent(subscriber);
    await httpJson(
      subAgent,
      hubIp,
      80,
      '/subscriptions',
      Buffer.from(JSON.stringify({ topics: ['bench/**'], port: 8080, path: '/in' })),
      'application/json',
    );
    const agent = tailnetAgent(publisher, { maxSockets: CONCURRENCY });
    const publish: Publish = async (topic, body) =>
      eventId(await httpJson(agent, hubIp, 80, `/hooks/${topic}`, body, 'application/json'));
    const r = await measure(publish, arrivals, TAILNET_EVENTS);
    agent.destroy();
    subAgent.destroy();
    await app.close();
    return r;
  } finally {
    krkns.kill('SIGTERM');
    await new Promise((r) => krkns.once('exit', r));
    await Promise.all([publisher.close(), subscriber.close()]);
    await tailnet.stop();
  }
}

/**
 * The hub code without a tailnet: one hub per store (replicas when the stores share a database), each
 * on its own loopback port, publishers spread over them, deliveries posted over loopback.
 */
async function onLoopback(stores: HubStore[], events: number): Promise<Results> {
  const arrivals = new Map<string, number>();
  const sub = subscriberApp(arrivals);
  await sub.listen({ host: '127.0.0.1', port: 0 });
  const subPort = (sub.server.address() as { port: number }).port;
  const loopAgent = new Agent({ keepAlive: true, maxSockets: 4 });
  const send: SendAttempt = async ({ event }, attempt) => {
    const { status } = await httpJson(loopAgent, '127.0.0.1', subPort, '/in', event.body, 'application/json', {
      'x-krkn-event-id': event.id,
      'x-krkn-attempt': String(attempt),
    });
    return status < 300 ? { kind: 'delivered', status } : { kind: 'rejected', status, error: `HTTP ${status}` };
  };
  const hubs = await Promise.all(stores.map((store, i) => loopbackHub(store, send, `loopback-${i}`)));
  await stores[0]!.subscribe({
    nodeId: 'n',
    nodeName: 'loopback',
    address: '127.0.0.1',
    port: subPort,
    path: '/in',
    topics: ['bench/**'],
  });
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let turn = 0;
  const publish: Publish = async (topic, body) => {
    const port = hubs[turn++ % hubs.length]!.port;
    return eventId(await httpJson(agent, '127.0.0.1', port, `/hooks/${topic}`, body, 'application/json'));
  };
  const r = await measure(publish, arrivals, events);
  agent.destroy();
  loopAgent.destroy();
  for (const h of hubs) await h.close();
  await sub.close();
  for (const store of stores) await store.close();
  return r;
}

/** A Hub on `store`, served on a loopback port. */
async function loopbackHub(
  store: HubStore,
  send: SendAttempt,
  replica: string,
): Promise<{ port: number; close(): Promise<void> }> {
  const hub = benchHub({
    store,
    node: offlineNode(replica),
    replica,
    send,
    retentionMs: 86400e3,
    retryScheduleMs: [0, 5000],
  });
  const app = await hub.app(identifyAdmin);
  await app.listen({ host: '127.0.0.1', port: 0 });
  hub.start();
  const port = (app.server.address() as { port: number }).port;
  return {
    port,
    close: async () => {
      await hub.stop(1000);
      await app.close();
    },
  };
}

/** Throughput with CONCURRENCY publishers, then latency at a fixed rate, both until delivered. */
async function measure(publish: Publish, arrivals: Map<string, number>, events: number): Promise<Results> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < events) await publish('bench/throughput', BODY);
    }),
  );
  const throughput = events / ((performance.now() - t0) / 1000);
  await until(() => arrivals.size >= events, DRAIN_TIMEOUT_MS);
  arrivals.clear();

  const sent = new Map<string, number>();
  const jobs: Promise<void>[] = [];
  const total = RATE_PER_SECOND * RATE_SECONDS;
  const paceStart = performance.now();
  for (let i = 0; i < total; i++) {
    const start = performance.now();
    jobs.push(publish('bench/latency', BODY).then((id) => void sent.set(id, start)));
    // Paced by the clock, not by sleeps that add up: event i leaves at i / RATE_PER_SECOND.
    const due = paceStart + ((i + 1) * 1000) / RATE_PER_SECOND;
    await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
  }
  await Promise.all(jobs);
  await until(() => arrivals.size >= total, 120_000);
  const lat = [...sent].map(([id, s]) => arrivals.get(id)! - s).sort((a, b) => a - b);
  return {
    throughput,
    p50: lat[Math.floor(lat.length / 2)]!,
    p99: lat[Math.floor(lat.length * 0.99)]!,
    delivered: lat.length,
  };
}

function eventId(res: { status: number; text: string }): string {
  const id = /"id":"(evt_[^"]+)"/.exec(res.text)?.[1];
  if (res.status !== 202 || !id) throw new Error(`publish: HTTP ${res.status} ${res.text.slice(0, 200)}`);
  return id;
}

function httpJson(
  agent: Agent,
  host: string,
  port: number,
  path: string,
  body: Buffer,
  type: string,
  extra: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': type, 'content-length': body.length, ...extra },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer to POST http://${host}:${port}${path} in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function waitPing(node: TailnetNode, ip: string): Promise<void> {
  for (let i = 0; i < 40; i++) {
    try {
      await node.ping(ip, { timeoutMs: 2000 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`no ping answer from ${ip}`);
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for deliveries');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function render(results: Record<string, Results>, failed: string[]): string {
  const names = Object.keys(results);
  const row = (label: string, f: (r: Results) => string) =>
    `| ${label} | ${names.map((n) => f(results[n]!)).join(' | ')} |`;
  return [
    `${measuredOn()}; ${BODY.length}-byte JSON events.`,
    '',
    `| metric | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---:').join('|')}|`,
    row(
      `publish throughput (${CONCURRENCY} concurrent, committed before 202)`,
      (r) => `${r.throughput.toFixed(0)} events/s`,
    ),
    row(`publish → delivered p50 at ${RATE_PER_SECOND} events/s`, (r) => `${r.p50.toFixed(1)} ms`),
    row('publish → delivered p99', (r) => `${r.p99.toFixed(1)} ms`),
    '',
    ...failed.map((f) => `Not measured in this run: ${f}.\n`),
  ].join('\n');
}

await main();
