// npm run bench:engine — the wasm node beside native tailscaled and plain loopback, in one run.
//
// Every figure is measured here, now, on this machine: join and restart times, HTTP latency and
// request rate, bulk throughput, memory per node, the app thread's event-loop delay while a node
// works, and the artifact size. `--write` replaces the table in README.md.
//
// `--only <substring>` (repeatable) narrows a run: the columns whose names contain one of them (all
// columns if none does), and the rows likewise (all rows if none does). E.g. `--only worker --only
// 'DERP only' --only HTTP --only bulk` measures the data path of the worker mode and its anchor.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildInfo } from '@krkn/tailnet-wasm';
import { TailnetNode, serveFastify, tailnetAgent, type Isolation, type NodeMetrics } from '@krkn/tailnet';
import { startNativeNode, startTailnet, type NativeNode, type Tailnet } from '@krkn/testnet';
import { measuredOn, writeReadmeSection } from './bench-report.js';

const LATENCY_REQUESTS = 300;
const RATE_REQUESTS = 1000;
const RATE_CONCURRENCY = 8;
const BULK_BYTES = 16 << 20;
const JOIN_RUNS = 3;
/** The event-loop delay sampler's timer interval (ms): monitorEventLoopDelay's default. */
const LOOP_SAMPLE_MS = 10;
const IDLE_MS = 35_000;
const TUNED_NODE_STORE_TICK = '20ms';
/**
 * Requests before a column's measurements: the first few hundred over a fresh wasm path run in
 * V8's baseline tiers (JS and wasm alike) and grow Go's heap, and they showed up as the p99.
 */
const WARMUP_REQUESTS = 500;

interface Target {
  send: Send;
  close(): Promise<void>;
  rss?: () => number;
  /** The sending node's data-path counters (wasm only). */
  metrics?: () => Promise<NodeMetrics>;
}

interface Row {
  metric: string;
  values: Record<string, string>;
}

type Send = (path: string, body?: Buffer) => Promise<{ status: number; bytes: number }>;

const columns = ['wasm (worker)', 'wasm (in-thread)', 'native, direct', 'native, DERP only', 'loopback HTTP'] as const;
type Column = (typeof columns)[number];

/** The `--only` substrings: a name is wanted if it contains one, or if none matches any of its kind. */
function selection(argv: string[]): { column(name: string): boolean; row(metric: string): boolean } {
  const only = argv.flatMap((a, i) => (argv[i - 1] === '--only' ? [a] : []));
  const rowNames = [
    'artifact size',
    'cold join',
    'warm restart',
    'node_store_batch_timeout',
    'HTTP latency',
    'requests/s',
    'bulk',
    'event-loop',
    'memory per node',
    'idle whole-process RSS',
  ];
  const pick = (names: readonly string[]) => {
    const hits = only.filter((o) => names.some((n) => n.includes(o)));
    return (name: string) => hits.length === 0 || hits.some((o) => name.includes(o));
  };
  return { column: pick(columns), row: pick(rowNames) };
}

async function main(): Promise<void> {
  const write = process.argv.includes('--write');
  const wanted = selection(process.argv);
  if (write && process.argv.includes('--only'))
    throw new Error('--only measures some rows: it cannot --write the table');
  const state = mkdtempSync(join(tmpdir(), 'krkn-bench-'));
  const tailnet = await startTailnet();
  const rows: Row[] = [];
  const row = (metric: string, values: Partial<Record<Column, string>>): void => {
    rows.push({ metric, values: values });
    console.error(`${metric}: ${JSON.stringify(values)}`);
  };
  try {
    const user = await tailnet.createUser('bench');
    const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
    const info = buildInfo();
    if (wanted.row('artifact size'))
      row('artifact size', {
        'wasm (worker)': mib(info.wasmBytes),
        'native, direct': mib(fileSize(tailnet.tools.tailscaled)),
      });

    if (wanted.row('cold join') || wanted.row('warm restart')) {
      const joins = await measureJoins(tailnet, authKey, state);
      row('cold join (key → Running), median', joins.cold);
      row('warm restart (state → Running), median', joins.warm);
    }
    // headscale applies node writes on a 500 ms tick, two per streamed map request: the same joins
    // against a headscale with a short tick show what of the wait is the server's.
    const tuned = wanted.row('node_store_batch_timeout')
      ? await startTailnet({ nodeStoreBatchTimeout: TUNED_NODE_STORE_TICK })
      : undefined;
    if (tuned) {
      try {
        const tunedUser = await tuned.createUser('bench');
        const tunedKey = await tuned.createPreAuthKey({ user: tunedUser.id, reusable: true });
        const tunedJoins = await measureJoins(tuned, tunedKey, join(state, 'tuned'));
        row(`cold join, headscale node_store_batch_timeout ${TUNED_NODE_STORE_TICK}`, tunedJoins.cold);
        row(`warm restart, headscale node_store_batch_timeout ${TUNED_NODE_STORE_TICK}`, tunedJoins.warm);
      } finally {
        await tuned.stop();
      }
    }
    const dataRows = ['HTTP latency', 'requests/s', 'bulk', 'event-loop', 'memory per node'];
    const measured = dataRows.some((r) => wanted.row(r));

    const loopback = await loopbackTarget();
    const targets: Partial<Record<Column, Target>> = {};
    const start: Record<Column, () => Promise<Target>> = {
      'wasm (worker)': () => wasmPair(tailnet, authKey, state, 'worker'),
      'wasm (in-thread)': () => wasmPair(tailnet, authKey, state, 'thread'),
      'native, direct': () => nativePair(tailnet, authKey, {}, loopback.port),
      'native, DERP only': () => nativePair(tailnet, authKey, { TS_DEBUG_ALWAYS_USE_DERP: '1' }, loopback.port),
      'loopback HTTP': async () => loopback,
    };
    // The idle RSS row compares with native tailscaled's, read from the direct pair.
    const needNative = wanted.row('idle whole-process RSS') && wanted.column('native, direct');
    for (const col of columns) {
      if ((measured && wanted.column(col)) || (col === 'native, direct' && needNative))
        targets[col] = await start[col]();
    }

    const latency: Partial<Record<Column, string>> = {};
    const p99: Partial<Record<Column, string>> = {};
    const rate: Partial<Record<Column, string>> = {};
    const bulk: Partial<Record<Column, string>> = {};
    const rss: Partial<Record<Column, string>> = {};
    const loopDelay: Partial<Record<Column, string>> = {};
    const losses: Partial<Record<Column, string>> = {};
    // Filled before any column runs: filling 16 MiB took the event loop for ~10 ms, inside the
    // window the event-loop row measures.
    const bulkBody = Buffer.alloc(BULK_BYTES, 0x6b);
    for (const col of columns) {
      const t = targets[col];
      if (!t || !measured || !wanted.column(col)) continue;
      await warmUp(t.send);
      if (wanted.row('HTTP latency')) {
        const lat = await latencies(t.send);
        latency[col] = `${lat.p50.toFixed(2)} ms`;
        p99[col] = `${lat.p99.toFixed(2)} ms`;
      }
      if (wanted.row('requests/s')) rate[col] = `${(await requestRate(t.send)).toFixed(0)} req/s`;
      if (wanted.row('bulk') || wanted.row('event-loop')) {
        const delay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
        const before = await t.metrics?.();
        delay.enable();
        bulk[col] = `${(await throughput(t.send, bulkBody)).toFixed(1)} MB/s`;
        delay.disable();
        const after = await t.metrics?.();
        if (before && after) losses[col] = lossSummary(before, after);
        loopDelay[col] = `${loopDelayMs(delay.percentile(99)).toFixed(0)} ms`;
      }
      if (t.rss) rss[col] = mib(t.rss());
    }
    if (wanted.row('HTTP latency')) {
      row('HTTP latency p50 (sequential, keep-alive)', latency);
      row('HTTP latency p99', p99);
    }
    if (wanted.row('requests/s')) row(`requests/s (${RATE_CONCURRENCY} concurrent)`, rate);
    if (wanted.row('bulk')) row(`bulk upload ${BULK_BYTES >> 20} MiB`, bulk);
    if (wanted.row('event-loop')) row('app event-loop delay p99 during bulk', loopDelay);
    if (wanted.row('bulk')) {
      row('bulk, sender: DERP drops / TCP retransmits / RTOs / Go sends → WebSocket msgs', losses);
    }
    if (wanted.row('memory per node')) row('memory per node (RSS)', rss);
    if (wanted.row('idle whole-process RSS')) {
      const idle = await idleRss(tailnet, authKey, state, loopback.port, info.wasmBytes);
      const nativeIdle = targets['native, direct']?.rss?.();
      row(`idle whole-process RSS after ${IDLE_MS / 1000} s: krkns run / krknc listen`, {
        'wasm (worker)': `${mib(idle.krkns)} / ${mib(idle.krknc)}`,
        ...(nativeIdle ? { 'native, direct': `${mib(nativeIdle)} (tailscaled)` } : {}),
      });
      row(`idle krkns run, of which: ${rssParts.map((p) => partNames[p]).join(' / ')} (MiB)`, {
        'wasm (worker)': rssParts.map((p) => (idle.krknsSplit[p] / (1 << 20)).toFixed(1)).join(' / '),
      });
    }
    for (const t of Object.values(targets)) await t.close();
    if (!targets['loopback HTTP']) await loopback.close();
  } finally {
    await tailnet.stop();
    rmSync(state, { recursive: true, force: true });
  }

  const table = render(rows);
  console.log(table);
  if (write) writeReadmeSection('bench:engine', table);
}

async function measureJoins(tailnet: Tailnet, authKey: string, state: string) {
  const cold: Record<string, number[]> = { wasm: [], native: [] };
  const warm: Record<string, number[]> = { wasm: [], native: [] };
  for (let i = 0; i < JOIN_RUNS; i++) {
    const opts = {
      hostname: `join-${i}`,
      stateDir: join(state, `join-${i}`),
      controlUrl: tailnet.url,
      authKey,
      logger: quiet(),
      engineEnv: derpHttp,
    };
    cold.wasm!.push(await timed(async () => (await up(new TailnetNode(opts))).close()));
    warm.wasm!.push(await timed(async () => (await up(new TailnetNode({ ...opts, authKey: undefined }))).close()));
    let native: NativeNode | undefined;
    cold.native!.push(
      await timed(async () => void (native = await startNativeNode(tailnet, { hostname: `njoin-${i}`, authKey }))),
    );
    warm.native!.push(
      await timed(async () => {
        await native!.restart();
      }),
    );
    await native!.stop();
  }
  const fmt = (xs: number[]) => `${(median(xs) / 1000).toFixed(2)} s`;
  return {
    cold: { 'wasm (worker)': fmt(cold.wasm!), 'native, direct': fmt(cold.native!) },
    warm: { 'wasm (worker)': fmt(warm.wasm!), 'native, direct': fmt(warm.native!) },
  };
}

/** `krkns run` and a `krknc listen` subscribed to it, as users start them, left idle. */
async function idleRss(tailnet: Tailnet, authKey: string, state: string, forwardPort: number, moduleBytes: number) {
  const bin = (app: string) => fileURLToPath(new URL(`../apps/${app}/dist/main.js`, import.meta.url));
  const node = (name: string) => ['--hostname', name, '--state-dir', join(state, name), '--control-url', tailnet.url];
  const env = { ...process.env, TS_AUTHKEY: authKey, TS_DEBUG_USE_DERP_HTTP: '1' };
  const krkns = await startApp(
    spawn(process.execPath, [bin('krkns'), 'run', ...node('rss-hub')], { env }),
    /krkns ready:/,
  );
  const krknc = await startApp(
    spawn(
      process.execPath,
      [
        bin('krknc'),
        'listen',
        ...node('rss-laptop'),
        '--server',
        'rss-hub',
        '--topic',
        'bench/**',
        '--forward-to',
        `http://127.0.0.1:${forwardPort}/`,
      ],
      { env },
    ),
    /krknc ready:/,
  );
  try {
    await new Promise((r) => setTimeout(r, IDLE_MS));
    return { krkns: rssOf(krkns.pid), krknc: rssOf(krknc.pid), krknsSplit: rssSplit(krkns.pid!, moduleBytes) };
  } finally {
    await Promise.all([stopApp(krknc), stopApp(krkns)]);
  }
}

async function startApp(child: ChildProcess, ready: RegExp): Promise<ChildProcess> {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line within 60 s:\n${out}`)), 60_000);
    const seen = (chunk: Buffer) => {
      out += chunk.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', seen);
    child.stderr?.on('data', seen);
    child.on('exit', (code) => reject(new Error(`exited with ${code} before its ready line:\n${out}`)));
  });
  return child;
}

async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function up(node: TailnetNode): Promise<TailnetNode> {
  await node.up();
  return node;
}

async function wasmPair(tailnet: Tailnet, authKey: string, state: string, isolation: Isolation) {
  const rssBefore = process.memoryUsage().rss;
  const mk = (name: string) =>
    new TailnetNode({
      hostname: `${name}-${isolation}`,
      stateDir: join(state, `${name}-${isolation}`),
      controlUrl: tailnet.url,
      authKey,
      logger: quiet(),
      engineEnv: derpHttp,
      isolation,
    });
  const server = mk('srv');
  const client = mk('cli');
  await Promise.all([server.up(), client.up()]);
  const rssPerNode = (process.memoryUsage().rss - rssBefore) / 2;
  const app = Fastify({ bodyLimit: BULK_BYTES * 2 });
  routes(app);
  await serveFastify(app, server, 80);
  const agent = tailnetAgent(client, { maxSockets: RATE_CONCURRENCY });
  const host = server.addresses[0]!;
  return {
    send: (path: string, body?: Buffer) => httpSend({ host, port: 80, path, agent }, body),
    rss: () => rssPerNode,
    metrics: () => client.metrics(),
    close: async () => {
      agent.destroy();
      await app.close();
      await Promise.all([server.close(), client.close()]);
    },
  };
}

async function nativePair(tailnet: Tailnet, authKey: string, env: Record<string, string>, targetPort: number) {
  const tag = env.TS_DEBUG_ALWAYS_USE_DERP ? 'derp' : 'direct';
  const [a, b] = await Promise.all([
    startNativeNode(tailnet, { hostname: `na-${tag}`, authKey, env }),
    startNativeNode(tailnet, { hostname: `nb-${tag}`, authKey, env }),
  ]);
  await a.waitForPeer(`nb-${tag}`);
  // The client speaks to a's HTTP proxy; b forwards tailnet connections to its host's loopback.
  const agent = new Agent({ keepAlive: true, maxSockets: RATE_CONCURRENCY });
  const target = `http://${b.ip()}:${targetPort}`;
  return {
    send: (path: string, body?: Buffer) =>
      httpSend({ host: '127.0.0.1', port: a.httpProxyPort, path: `${target}${path}`, agent }, body),
    rss: () => (rssOf(a.pid) + rssOf(b.pid)) / 2,
    close: async () => {
      agent.destroy();
      await Promise.all([a.stop(), b.stop()]);
    },
  };
}

async function loopbackTarget() {
  const app = Fastify({ bodyLimit: BULK_BYTES * 2 });
  routes(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const agent = new Agent({ keepAlive: true, maxSockets: RATE_CONCURRENCY });
  return {
    port,
    send: (path: string, body?: Buffer) => httpSend({ host: '127.0.0.1', port, path, agent }, body),
    close: async () => {
      agent.destroy();
      await app.close();
    },
  };
}

function routes(app: FastifyInstance): void {
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer', bodyLimit: BULK_BYTES * 2 },
    (_r, body, done) => done(null, body),
  );
  app.get('/ping', async () => 'pong');
  app.post('/upload', async (req) => ({ bytes: (req.body as Buffer).length }));
}

function httpSend(
  opts: { host: string; port: number; path: string; agent: Agent },
  body?: Buffer,
): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: opts.host,
        port: opts.port,
        path: opts.path,
        agent: opts.agent,
        method: body ? 'POST' : 'GET',
        headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {},
      },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on('error', reject);
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Sequential, then 8 at a time: the path (DERP connection, keep-alive sockets) and its code warm. */
async function warmUp(send: Send): Promise<void> {
  for (let i = 0; i < WARMUP_REQUESTS / 2; i++) await send('/ping');
  let next = 0;
  const worker = async () => {
    while (next++ < WARMUP_REQUESTS / 2) await send('/ping');
  };
  await Promise.all(Array.from({ length: RATE_CONCURRENCY }, worker));
}

async function latencies(send: Send): Promise<{ p50: number; p99: number }> {
  const xs: number[] = [];
  for (let i = 0; i < LATENCY_REQUESTS; i++) {
    const t0 = performance.now();
    const res = await send('/ping');
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    xs.push(performance.now() - t0);
  }
  xs.sort((a, b) => a - b);
  return { p50: xs[Math.floor(xs.length * 0.5)]!, p99: xs[Math.floor(xs.length * 0.99)]! };
}

async function requestRate(send: Send): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next++ < RATE_REQUESTS) if ((await send('/ping')).status !== 200) throw new Error('bad status');
  };
  await Promise.all(Array.from({ length: RATE_CONCURRENCY }, worker));
  return RATE_REQUESTS / ((performance.now() - t0) / 1000);
}

async function throughput(send: Send, body: Buffer): Promise<number> {
  const t0 = performance.now();
  const res = await send('/upload', body);
  if (res.status !== 200) throw new Error(`upload status ${res.status}`);
  return BULK_BYTES / 1e6 / ((performance.now() - t0) / 1000);
}

function lossSummary(before: NodeMetrics, after: NodeMetrics): string {
  const d = (f: (m: NodeMetrics) => number): number => f(after) - f(before);
  const drops = d((m) => m.derp.dropped + m.derp.errorQueue);
  const ws = `${d((m) => m.webSocket.sendsFromGo)} → ${d((m) => m.webSocket.messagesOut)}`;
  return `${drops} / ${d((m) => m.tcp.retransmits)} / ${d((m) => m.tcp.timeouts)} / ${ws}`;
}

const derpHttp = { TS_DEBUG_USE_DERP_HTTP: '1' };
const quiet = () => pino({ level: 'silent' });

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/**
 * How late the loop ran a sample's timer (ms), from a monitorEventLoopDelay figure (ns). That histogram
 * records the whole interval between its timer's runs (RecordDelta), so an idle loop reads the interval
 * itself; the delay is what exceeds it (nodejs/node#62935: "an implicit floor of resolution ms").
 */
function loopDelayMs(intervalNs: number): number {
  return Math.max(0, intervalNs / 1e6 - LOOP_SAMPLE_MS);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function rssOf(pid: number | undefined): number {
  if (!pid) return 0;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const rssParts = ['file', 'goMemory', 'code', 'module', 'malloc', 'other'] as const;
type RssPart = (typeof rssParts)[number];
const partNames: Record<RssPart, string> = {
  file: 'node and libraries (file pages)',
  goMemory: "Go's wasm memory",
  code: 'compiled code (wasm and JS)',
  module: "V8's copy of the module",
  malloc: 'malloc arenas',
  other: 'V8 heaps and the rest',
};

/**
 * Where a process's resident memory is, from /proc/PID/smaps, by the shape of each mapping: file
 * pages (the node binary mostly); the wasm memory (read-write between PROT_NONE guard reservations
 * of gigabytes); executable anonymous pages (V8's wasm and JS code); a block at least the module's
 * size (V8 keeps a copy of the module's bytes for the module's life; the kernel may merge a neighbouring
 * block into its mapping); glibc's malloc (the brk heap, and
 * its thread arenas, 64 MiB-aligned); the rest, mostly V8's heap pages (main thread and worker).
 */
function rssSplit(pid: number, moduleBytes: number): Record<RssPart, number> {
  const split: Record<RssPart, number> = { file: 0, goMemory: 0, code: 0, module: 0, malloc: 0, other: 0 };
  const maps: { start: number; size: number; perms: string; path: string; rss: number }[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const start = parseInt(head[1]!, 16);
      maps.push({ start, size: parseInt(head[2]!, 16) - start, perms: head[3]!, path: head[4]!, rss: 0 });
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && maps.length > 0) maps[maps.length - 1]!.rss = Number(rss[1]) * 1024;
  }
  const guard = (m: (typeof maps)[number] | undefined) => m?.perms.startsWith('---') === true && m.size >= 1 << 30;
  maps.forEach((m, i) => {
    let part: RssPart = 'other';
    if (m.path.startsWith('/')) part = 'file';
    else if (m.path === '[heap]') part = 'malloc';
    else if (m.path !== '') part = 'other';
    else if (m.perms.includes('x')) part = 'code';
    else if (guard(maps[i - 1]) && guard(maps[i + 1])) part = 'goMemory';
    else if (m.start % (64 << 20) === 0) part = 'malloc';
    else if (m.size >= moduleBytes) part = 'module';
    split[part] += m.rss;
  });
  return split;
}

function fileSize(path: string): number {
  return readFileSync(path).length;
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

function render(rows: Row[]): string {
  const head = `| metric | ${columns.join(' | ')} |\n|---|${columns.map(() => '---:').join('|')}|`;
  const body = rows.map((r) => `| ${r.metric} | ${columns.map((c) => r.values[c] ?? '–').join(' | ')} |`).join('\n');
  return `${measuredOn()}.\n\n${head}\n${body}\n`;
}

await main();
