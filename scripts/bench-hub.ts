// npm run bench:hub — krkns's publish throughput and publish→delivered latency, over the tailnet
// (a real krkns process, a publisher and a subscriber node) beside the same hub code on plain
// loopback HTTP with no tailnet (the ceiling): on SQLite (group commit), and on PostgreSQL with one
// replica and with two (two hubs on one database, publishers spread over both). `--write` replaces
// the table in README.md.
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { TailnetNode, serveFastify, tailnetAgent } from '@krkn/tailnet';
import { startPostgres, startTailnet, type Postgres } from '@krkn/testnet';
import { openBenchStore, type BenchStore } from './bench-hub-fixture.js';
import type { HubReady, HubStart, HubStopped } from './bench-hub-child.js';
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
  const growthBackends = growthOnly(process.argv);
  if (growthBackends) {
    console.log(await benchGrowth(growthBackends));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'krkn-bench-hub-'));
  const results: Record<string, Results> = {};
  /** Columns that failed, with why: the rest of the run still measures (and the table says so). */
  const failed: string[] = [];
  let pg: Postgres | undefined;
  // `--only <substring>`: run only the columns whose name contains it; the others are absent from the table.
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt < 0 ? undefined : process.argv[onlyAt + 1];
  if (onlyAt >= 0 && !only) throw new Error('--only needs a substring of a column name');
  // README's table is the whole run's: a partial one would drop columns the prose compares against.
  if (only !== undefined && process.argv.includes('--write')) throw new Error('--only and --write do not go together');
  const column = async (name: string, run: () => Promise<Results>): Promise<void> => {
    if (only !== undefined && !name.includes(only)) return;
    results[name] = await run();
    console.error(`${name}: ${JSON.stringify(results[name])}`); // a run cut short still shows what it measured
  };
  try {
    try {
      await column('krkns over the tailnet (SQLite)', () => overTailnet(dir));
    } catch (err) {
      failed.push(`krkns over the tailnet (SQLite): ${(err as Error).message}`);
      console.error(`krkns over the tailnet (SQLite) failed:`, err);
    }
    // The anchor: the same, with the store fsyncing on the event loop as before (leases and outcomes too).
    await column('loopback, SQLite, fsync on the event loop (anchor)', () =>
      onLoopback({ kind: 'sqlite', path: join(dir, 'anchor.db'), fsyncOnEventLoop: true }, 1, LOOPBACK_EVENTS),
    );
    await column('loopback, SQLite (ceiling)', () =>
      onLoopback({ kind: 'sqlite', path: join(dir, 'loopback.db') }, 1, LOOPBACK_EVENTS),
    );
    // A new database per column, on one server (fsync on, as in production); its CPU is counted too.
    const onPostgres = async (replicas: number): Promise<Results> => {
      pg ??= await startPostgres();
      const url = pg.url(await pg.createDatabase());
      const postmaster = Number((await readFile(join(pg.dir, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      return onLoopback({ kind: 'postgres', url, password: pg.password }, replicas, POSTGRES_EVENTS, postmaster);
    };
    await column('loopback, PostgreSQL, 1 replica', () => onPostgres(1));
    await column('loopback, PostgreSQL, 2 replicas', () => onPostgres(2));
  } finally {
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  // With --only, every chosen column may have failed: then there is no table to render, only why.
  if (Object.keys(results).length === 0)
    throw new Error(`no column measured: ${failed.join('; ') || '--only matched none'}`);
  // The growth rows take minutes: a run narrowed by --only leaves them out.
  const table = only === undefined ? `${render(results, failed)}\n${await benchGrowth()}` : render(results, failed);
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
 * The hub code without a tailnet, as krkns runs it: each hub in a process of its own (bench-hub-child.ts),
 * all on `store` (several hubs: replicas on one PostgreSQL database); publishers here spread over them,
 * deliveries to a subscriber here. Prints where the CPU went during the throughput run: each hub, this
 * process (publishers, subscriber) and, when given, the store's server process `serverPid`.
 */
async function onLoopback(store: BenchStore, count: number, events: number, serverPid?: number): Promise<Results> {
  const arrivals = new Map<string, number>();
  const sub = subscriberApp(arrivals);
  await sub.listen({ host: '127.0.0.1', port: 0 });
  const subscriberPort = (sub.server.address() as { port: number }).port;
  // Subscribed before any hub opens the store: a hub may keep what it reads of subscriptions in memory.
  const subscribing = await openBenchStore(store);
  await subscribing.subscribe({
    nodeId: 'n',
    nodeName: 'loopback',
    address: '127.0.0.1',
    port: subscriberPort,
    path: '/in',
    topics: ['bench/**'],
  });
  await subscribing.close();
  const childPath = new URL('./bench-hub-child.ts', import.meta.url).pathname;
  // fork() passes on this process's execArgv: tsx's loader, which runs the child's TypeScript too.
  const children = Array.from({ length: count }, () =>
    fork(childPath, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  try {
    const ports = await Promise.all(
      children.map(
        (child, i) =>
          new Promise<number>((resolve, reject) => {
            child.once('message', (m: HubReady) => resolve(m.port));
            child.once('exit', (code) => reject(new Error(`hub ${i} exited (${code}) before it was ready`)));
            const start: HubStart = { store, replica: `hub-${i}`, subscriberPort };
            child.send(start);
          }),
      ),
    );
    // CPU ms of each hub, this process alone (its children are the hubs, and may be the store's server).
    const cpuNow = (): number[] => [
      ...children.map((c) => cpuMsOfTree(c.pid!)),
      cpuMsOf(process.pid),
      ...(serverPid === undefined ? [] : [cpuMsOfTree(serverPid)]),
    ];
    const names = [
      ...children.map((_, i) => `hub-${i}`),
      'publishers+subscriber',
      ...(serverPid === undefined ? [] : [store.kind]),
    ];
    const anchor = store.kind === 'sqlite' && store.fsyncOnEventLoop ? ' (fsync on the event loop)' : '';
    const what = `${count} hub(s) on ${store.kind}${anchor}`;
    let during: { cpu: number[]; at: number } | undefined;
    let throughputLeft = events;
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    let turn = 0;
    const publish: Publish = async (topic, body) => {
      during ??= { cpu: cpuNow(), at: performance.now() };
      const port = ports[turn++ % count]!;
      const id = eventId(await httpJson(agent, '127.0.0.1', port, `/hooks/${topic}`, body, 'application/json'));
      if (topic === 'bench/throughput' && --throughputLeft === 0) {
        // Where the CPU went during the throughput run (publishes, and the deliveries running meanwhile).
        const used = cpuNow().map((ms, i) => ms - during!.cpu[i]!);
        const wall = performance.now() - during.at;
        console.error(
          `${what}, throughput run: ${wall.toFixed(0)} ms wall, load ${loadavg()[0]!.toFixed(1)}; CPU ms ` +
            `per event: ${names.map((n, i) => `${n} ${(used[i]! / events).toFixed(2)}`).join(', ')}; ` +
            `cores busy: ${(used.reduce((x, y) => x + y, 0) / wall).toFixed(2)}`,
        );
      }
      return id;
    };
    const r = await measure(publish, arrivals, events);
    agent.destroy();
    const stopped = await Promise.all(
      children.map(
        (child) =>
          new Promise<HubStopped>((resolve) => {
            child.once('message', resolve);
            child.send('stop');
          }),
      ),
    );
    const published = events + RATE_PER_SECOND * RATE_SECONDS;
    const groups = stopped.reduce((n, s) => n + ('publishGroups' in s ? s.publishGroups : 0), 0);
    const commits = stopped.reduce((n, s) => n + ('commits' in s ? s.commits : 0), 0);
    console.error(
      store.kind === 'postgres'
        ? `${what}: ${(published / groups).toFixed(1)} publishes per group`
        : // SQLite counts the commits of all its group-committed writes, not of publishes alone.
          `${what}: ${published} publishes, ${commits} commits of all group-committed writes`,
    );
    return r;
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
    await sub.close();
  }
}

/** CPU time (ms) of process `pid` alone, all its threads (Linux /proc; 0 elsewhere). */
function cpuMsOf(pid: number): number {
  return (procStat(pid, [14, 15]) * 1000) / USER_HZ;
}

/** CPU time (ms) of process `pid` and its children, living or reaped (Linux /proc; 0 elsewhere). */
function cpuMsOfTree(pid: number): number {
  const live = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && procStat(p, [PPID]) === pid);
  // utime, stime; for the postmaster also cutime, cstime (the backends it has reaped).
  const total = procStat(pid, [14, 15, 16, 17]) + live.reduce((sum, p) => sum + procStat(p, [14, 15]), 0);
  return (total * 1000) / USER_HZ;
}

const USER_HZ = 100; // on Linux
const PPID = 4; // the parent's pid, in proc(5)'s numbering

/** The sum of `fields` (1-based, as in proc(5): utime is 14) of /proc/<pid>/stat; 0 once it is gone. */
function procStat(pid: number | string, fields: number[]): number {
  try {
    // Fields after the command (which may hold spaces) in parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields.reduce((sum, f) => sum + Number(rest[f - 3]), 0);
  } catch {
    return 0;
  }
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
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': type, 'content-length': body.length },
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
