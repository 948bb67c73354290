// The growth rows of `npm run bench:hub` (alone with `--growth-only` or `--only growth`): publish throughput
// and `GET /events` latency through the real hub over loopback HTTP, with 10k, 100k and 1M events stored,
// on SQLite and on PostgreSQL.
//
// Filling is not what is measured, so it is bulk SQL, one transaction per store, one store per size, with the
// hub closed; a hub is then opened on each filled store and all are measured in turns. The stored events look
// like a busy hub's: nine topics in turn plus a rare one (ops/pager, one event in 1,000), 1 KiB bodies, half
// with a dedupe key, receipt times 0.5 s apart ending now; two subscriptions were owed them (`audit` every one,
// `ci` the ci/ ones), each delivery done: delivered, or failed after 3 attempts (one in 33). Nothing filled is
// pending, so the hub's deliverer works only on what the run publishes (to the live subscriber, bench/**).
// Bounded: the 1M fill takes about a minute per backend here; each step measures for a few seconds.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import pg from 'pg';
import { identifyAdmin } from '@krkn/hub';
import { PostgresStore, SqliteStore, type HubStore } from '@krkn/hub-store';
import { startPostgres, type Postgres } from '@krkn/testnet';
import { benchHub, offlineNode } from './bench-hub-fixture.js';

const SIZES = [10_000, 100_000, 1_000_000];
const CONCURRENCY = 32;
/** Publishes per throughput measurement, per backend (PostgreSQL commits each on its own: fewer). */
const PUBLISHES = { sqlite: 3_000, postgres: 1_000 };
/** GET /events requests per kind and step, one at a time, after WARMUP uncounted ones per kind. */
const GETS = 200;
const WARMUP = 20;
/** Turns each store's publishes are split into (see measure). */
const THROUGHPUT_ROUNDS = 3;
/** How long a stage's deliveries may take to drain after its publishes. */
const DRAIN_TIMEOUT_MS = 300_000;
const SPACING_MS = 500;
const TOPICS = [
  'github/push',
  'github/pull_request',
  'github/workflow_run',
  'ci/build',
  'ci/deploy',
  'stripe/invoice',
  'stripe/charge',
  'sentry/issue',
  'linear/issue',
];
const RARE_TOPIC = 'ops/pager';
const FILL_TOPICS = ['github/**', 'ci/**', 'stripe/**', 'sentry/**', 'linear/**', 'ops/**'];
const BODY = Buffer.from(JSON.stringify({ action: 'completed', repository: 'krkn', payload: 'x'.repeat(1500) }));

type Backend = 'sqlite' | 'postgres';

/**
 * One step's figures: events/s, and per GET kind its median and p99 in ms, and the median of the part spent
 * in the store's listEvents and deliveriesOfEvents (logged, to split a change between the store and HTTP).
 */
interface Step {
  backend: Backend;
  stored: number;
  throughput: number;
  gets: Record<string, { p50: number; p99: number; storeP50: number }>;
  fillSeconds: number;
}

const BACKENDS: readonly Backend[] = ['sqlite', 'postgres'];

/**
 * Whether argv asks for the growth rows only, and on which backends: `--growth-only` (both), `--growth-only
 * sqlite` or `--growth-only postgres` (that one), `--only growth` (both); undefined when it does not.
 */
export function growthOnly(argv: readonly string[]): readonly Backend[] | undefined {
  const at = argv.indexOf('--growth-only');
  if (at >= 0) {
    const one = BACKENDS.find((b) => b === argv[at + 1]);
    return one ? [one] : BACKENDS;
  }
  const only = argv.indexOf('--only');
  return only >= 0 && argv[only + 1] === 'growth' ? BACKENDS : undefined;
}

/** Runs the growth steps on `backends`; resolves with the markdown table (a failed backend says why). */
export async function benchGrowth(backends: readonly Backend[] = BACKENDS): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'krkn-bench-growth-'));
  const steps: Step[] = [];
  const failed: string[] = [];
  let server: Postgres | undefined;
  try {
    for (const backend of backends) {
      const stages: Stage[] = [];
      try {
        // One store per size, filled once, all open together: measured in turns, so drift on the machine
        // (load, frequency, the process warming up) falls on every size alike instead of on the later ones.
        for (const size of SIZES) {
          let fill: Filler;
          let open: () => Promise<HubStore>;
          if (backend === 'sqlite') {
            const path = join(dir, `growth-${size}.db`);
            open = async () => SqliteStore.open(path);
            fill = sqliteFiller(path);
          } else {
            server ??= await startPostgres();
            const url = server.url(await server.createDatabase());
            const password = server.password;
            open = async () => PostgresStore.open(url, { password });
            fill = pgFiller(url, password);
          }
          const t0 = performance.now();
          await prepare(open);
          await fill(size);
          stages.push(await openStage(await open(), size, (performance.now() - t0) / 1000));
        }
        for (const step of await measure(backend, stages)) {
          console.error(`growth ${backend} ${step.stored}: ${JSON.stringify(step)}`);
          steps.push(step);
        }
      } catch (err) {
        failed.push(`${backend}: ${(err as Error).message}`);
        console.error(`growth ${backend} failed:`, err);
      } finally {
        for (const stage of stages) await stage.close();
      }
    }
  } finally {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return render(steps, failed);
}

/** Creates the schema and the fill's subscriptions on a fresh store (then closes it for the fill). */
async function prepare(open: () => Promise<HubStore>): Promise<void> {
  const store = await open();
  for (const [name, topics] of [
    ['audit', FILL_TOPICS],
    ['ci', ['ci/**']],
  ] as const) {
    // Port 9 (discard): never attempted, since nothing filled is pending.
    const sub = { nodeId: `n-${name}`, nodeName: name, address: '127.0.0.1', port: 9, path: '/in' };
    await store.subscribe({ ...sub, topics: [...topics] });
  }
  await store.close();
}

/** Adds events after the newest until `size` are stored (into a store just prepared), with their finished deliveries. */
type Filler = (size: number) => Promise<void>;

/** Receipt time of a store's first filled event: SPACING_MS apart, its last about a minute ago. */
const receiptBase = (size: number): number => Date.now() - size * SPACING_MS - 60_000;

function sqliteFiller(path: string): Filler {
  return async (size) => {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    const { from, n } = db.prepare('SELECT COALESCE(MAX(seq), 0) AS "from", COUNT(*) AS n FROM events').get() as {
      from: number;
      n: number;
    };
    const to = from + size - n;
    const subs = db.prepare('SELECT id, node_name AS name FROM subscriptions').all() as { id: string; name: string }[];
    const id = (name: string) => subs.find((s) => s.name === name)!.id;
    const topics = JSON.stringify(TOPICS);
    db.transaction(() => {
      db.prepare(
        `WITH RECURSIVE i(n) AS (SELECT CAST(@from AS INTEGER) + 1 UNION ALL SELECT n + 1 FROM i WHERE n < @to)
         INSERT INTO events (seq, id, topic, received_at, dedupe_key, method, headers, body, sender_ip, sender_node,
           sender_user, sender_tags)
         SELECT n, printf('evt_fill%017d', n),
           CASE WHEN n % 1000 = 0 THEN @rare ELSE json_extract(@topics, '$[' || (n % 9) || ']') END,
           @base + n * @spacing, CASE WHEN n % 2 = 0 THEN 'delivery-' || n END, 'POST',
           '[["content-type","application/json"],["user-agent","GitHub-Hookshot/1"]]', randomblob(1024),
           '100.64.0.7', 'ci-runner', 'ci@example.com', '["tag:ci"]'
         FROM i`,
      ).run({ from, to, rare: RARE_TOPIC, topics, base: receiptBase(size), spacing: SPACING_MS });
      const owe = (sub: string, where: string) =>
        db
          .prepare(
            `INSERT INTO deliveries (subscription_id, event_seq, state, attempts, next_attempt_at, last_status,
               last_error, updated_at)
             SELECT @sub, seq, CASE WHEN seq % 33 = 0 THEN 'failed' ELSE 'delivered' END,
               CASE WHEN seq % 33 = 0 THEN 3 ELSE 1 END, received_at, CASE WHEN seq % 33 = 0 THEN 500 ELSE 200 END,
               CASE WHEN seq % 33 = 0 THEN 'HTTP 500' END, received_at + 40
             FROM events WHERE seq > @from AND seq <= @to ${where}`,
          )
          .run({ sub, from, to });
      owe(id('audit'), '');
      owe(id('ci'), "AND topic LIKE 'ci/%'");
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
  };
}

function pgFiller(url: string, password: string): Filler {
  return async (size) => {
    const u = new URL(url); // not connectionString: its (absent) password would win over the one given
    const client = new pg.Client({
      host: u.hostname,
      port: Number(u.port),
      user: decodeURIComponent(u.username),
      database: u.pathname.slice(1),
      password,
    });
    await client.connect();
    try {
      const [last] = (
        await client.query<{ from: string; n: string }>(
          'SELECT COALESCE(MAX(seq), 0) AS from, COUNT(*) AS n FROM events',
        )
      ).rows;
      const from = Number(last!.from);
      const to = from + size - Number(last!.n);
      const subs = (await client.query<{ id: string; name: string }>('SELECT id, node_name AS name FROM subscriptions'))
        .rows;
      const id = (name: string) => subs.find((s) => s.name === name)!.id;
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO events (seq, id, topic, received_at, dedupe_key, method, headers, body, sender_ip, sender_node,
           sender_user, sender_tags)
         SELECT n, 'evt_fill' || lpad(n::text, 17, '0'),
           CASE WHEN n % 1000 = 0 THEN $3 ELSE ($4::text[])[n % 9 + 1] END,
           $5 + n * $6, CASE WHEN n % 2 = 0 THEN 'delivery-' || n END, 'POST',
           '[["content-type","application/json"],["user-agent","GitHub-Hookshot/1"]]',
           decode(repeat(md5(n::text), 64), 'hex'), '100.64.0.7', 'ci-runner', 'ci@example.com', '["tag:ci"]'
         FROM generate_series($1::bigint + 1, $2::bigint) AS n`,
        [from, to, RARE_TOPIC, TOPICS, receiptBase(size), SPACING_MS],
      );
      const owe = (sub: string, where: string) =>
        client.query(
          `INSERT INTO deliveries (subscription_id, event_seq, state, attempts, next_attempt_at, last_status,
             last_error, updated_at)
           SELECT $1, seq, CASE WHEN seq % 33 = 0 THEN 'failed' ELSE 'delivered' END,
             CASE WHEN seq % 33 = 0 THEN 3 ELSE 1 END, received_at, CASE WHEN seq % 33 = 0 THEN 500 ELSE 200 END,
             CASE WHEN seq % 33 = 0 THEN 'HTTP 500' END, received_at + 40
           FROM events WHERE seq > $2 AND seq <= $3 ${where}`,
          [sub, from, to],
        );
      await owe(id('audit'), '');
      await owe(id('ci'), "AND topic LIKE 'ci/%'");
      // The hub's own inserts continue after the filled seqs.
      await client.query(`SELECT setval(pg_get_serial_sequence('events', 'seq'), (SELECT MAX(seq) FROM events))`);
      await client.query('COMMIT');
      // Settle the store as weeks of autovacuum and checkpoints would have (and as a DBA does after a bulk
      // load): otherwise the measurement meets the fill's aftermath, the first reads setting hint bits on
      // every filled page, autovacuum starting on the million new rows, and the fill's WAL checkpointed.
      await client.query('VACUUM (ANALYZE)');
      await client.query('CHECKPOINT');
    } finally {
      await client.end();
    }
  };
}

/** A filled store with its hub and subscriber, open while every size is measured. */
interface Stage {
  stored: number;
  fillSeconds: number;
  /** The hub's loopback port. */
  port: number;
  /** Deliveries the subscriber has received. */
  delivered(): number;
  /** Time spent in the store's two reads of a listing so far, summed (the GETs run one at a time). */
  storeMs(): number;
  close(): Promise<void>;
}

/** Opens a hub on a filled store, with a live subscriber for what the run publishes (bench/**). */
async function openStage(store: HubStore, stored: number, fillSeconds: number): Promise<Stage> {
  let delivered = 0;
  const sub = Fastify({ bodyLimit: 1 << 20 });
  sub.removeAllContentTypeParsers();
  sub.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, b, done) => done(null, b));
  sub.post('/in', async () => {
    delivered++;
    return 'ok';
  });
  await sub.listen({ host: '127.0.0.1', port: 0 });
  const subPort = (sub.server.address() as { port: number }).port;
  const sendAgent = new Agent({ keepAlive: true, maxSockets: 4 });
  let storeMs = 0;
  const timed =
    <A extends unknown[], R>(read: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const s = performance.now();
      try {
        return await read(...args);
      } finally {
        storeMs += performance.now() - s;
      }
    };
  // On the instance itself (a wrapper object would lose the class's private fields); it is closed below.
  store.listEvents = timed(store.listEvents.bind(store));
  store.deliveriesOfEvents = timed(store.deliveriesOfEvents.bind(store));
  const hub = benchHub({
    store,
    node: offlineNode('growth'),
    send: async ({ event }) => {
      const { status } = await http(sendAgent, subPort, 'POST', '/in', event.body);
      return status < 300 ? { kind: 'delivered', status } : { kind: 'rejected', status, error: `HTTP ${status}` };
    },
    retentionMs: 30 * 86400e3, // nothing filled is past it: pruning finds nothing to do
    retryScheduleMs: [0, 5000],
  });
  const app = await hub.app(identifyAdmin);
  await app.listen({ host: '127.0.0.1', port: 0 });
  hub.start();
  await store.subscribe({
    nodeId: 'n-live',
    nodeName: 'live',
    address: '127.0.0.1',
    port: subPort,
    path: '/in',
    topics: ['bench/**'],
  });
  return {
    stored,
    fillSeconds,
    port: (app.server.address() as { port: number }).port,
    delivered: () => delivered,
    storeMs: () => storeMs,
    close: async () => {
      sendAgent.destroy();
      await hub.stop(1000);
      await app.close();
      await sub.close();
      await store.close();
    },
  };
}

/**
 * Measures every stage in turns, the order rotated each round: publish throughput over THROUGHPUT_ROUNDS
 * rounds (each stage's deliveries drained before the next stage's turn), then GET /events in rounds of one
 * request per stage and kind.
 */
async function measure(backend: Backend, stages: Stage[]): Promise<Step[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const inTurn = (round: number): Stage[] => stages.map((_, i) => stages[(i + round) % stages.length]!);
  try {
    const perRound = Math.ceil(PUBLISHES[backend] / THROUGHPUT_ROUNDS);
    const publishing = new Map(stages.map((s) => [s, { sent: 0, events: 0, ms: 0 }]));
    // Round -1 is not counted: the publish path's code is not yet optimised in the first stage's first turn.
    for (let round = -1; round < THROUGHPUT_ROUNDS; round++) {
      for (const stage of inTurn(round + 1)) {
        const t = publishing.get(stage)!;
        const ms = await publishBurst(agent, stage.port, perRound);
        t.sent += perRound;
        if (round >= 0) [t.ms, t.events] = [t.ms + ms, t.events + perRound];
        // Listing is measured with the deliverer idle, as on a hub between bursts; and a stage's deliveries
        // must not run on into the next stage's turn.
        await drained(stage, t.sent);
      }
    }
    const kinds = [
      ['first page', () => '/events'],
      ['newest page', () => '/events?order=newest'],
      ['topic ci/build', () => '/events?topic=ci/build'],
      // Ten, not a page of 100: at 10k stored the rare topic has only 10 events, and a step listing 10 times as
      // many rows would measure the page's length, not the store's size. Its 10 newest at 1M span 10k events.
      [`rare topic ${RARE_TOPIC}, 10 newest`, () => `/events?topic=${RARE_TOPIC}&order=newest&limit=10`],
      ['page after a cursor', (s: Stage) => `/events?after=evt_fill${String(s.stored / 2).padStart(17, '0')}`],
    ] as const;
    const times = new Map(stages.map((s) => [s, kinds.map(() => [] as number[])]));
    const inStore = new Map(stages.map((s) => [s, kinds.map(() => [] as number[])]));
    // The first WARMUP rounds are not counted: the code is not yet optimised and the stores' caches are cold.
    for (let round = -WARMUP; round < GETS; round++) {
      for (const stage of inTurn(round + WARMUP)) {
        for (const [k, [, pathOf]] of kinds.entries()) {
          const path = pathOf(stage);
          const s = performance.now();
          const inStore0 = stage.storeMs();
          const r = await http(agent, stage.port, 'GET', path);
          if (round >= 0) {
            times.get(stage)![k]!.push(performance.now() - s);
            inStore.get(stage)![k]!.push(stage.storeMs() - inStore0);
          }
          if (r.status !== 200 || !r.text.includes('"id":"evt_')) {
            throw new Error(`GET ${path} (${stage.stored} stored): HTTP ${r.status} ${r.text.slice(0, 200)}`);
          }
        }
      }
    }
    const sorted = (xs: number[]) => xs.sort((a, b) => a - b);
    return stages.map((stage) => {
      const gets: Step['gets'] = {};
      for (const [k, [kind]] of kinds.entries()) {
        const [t, st] = [sorted(times.get(stage)![k]!), sorted(inStore.get(stage)![k]!)];
        gets[kind] = {
          p50: t[Math.floor(GETS / 2)]!,
          p99: t[Math.floor(GETS * 0.99)]!,
          storeP50: st[Math.floor(GETS / 2)]!,
        };
      }
      const { events, ms } = publishing.get(stage)!;
      return { backend, stored: stage.stored, throughput: events / (ms / 1000), gets, fillSeconds: stage.fillSeconds };
    });
  } finally {
    agent.destroy();
  }
}

/** Publishes `events` to the hub on `port` from CONCURRENCY publishers; resolves with the time it took (ms). */
async function publishBurst(agent: Agent, port: number, events: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < events) {
        const r = await http(agent, port, 'POST', '/hooks/bench/growth', BODY);
        if (r.status !== 202) throw new Error(`publish: HTTP ${r.status} ${r.text.slice(0, 200)}`);
      }
    }),
  );
  return performance.now() - t0;
}

/** Waits until the stage's subscriber has received `events` (PostgreSQL delivers one commit at a time). */
async function drained(stage: Stage, events: number): Promise<void> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  while (stage.delivered() < events) {
    if (Date.now() > deadline)
      throw new Error(`${stage.delivered()} of ${events} delivered after ${DRAIN_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function http(
  agent: Agent,
  port: number,
  method: 'GET' | 'POST',
  path: string,
  body?: Buffer,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-type': 'application/json', 'content-length': body.length } : {};
    const req = request({ host: '127.0.0.1', port, path, method, agent, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer to ${method} ${path} in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

function render(steps: Step[], failed: string[]): string {
  const label = (s: Step) => `${s.backend === 'sqlite' ? 'SQLite' : 'PostgreSQL'}, ${s.stored / 1000}k stored`;
  const row = (name: string, f: (s: Step) => string) => `| ${name} | ${steps.map(f).join(' | ')} |`;
  const kinds = steps[0] ? Object.keys(steps[0].gets) : [];
  // Each figure beside its ratio to the same backend's 10k step (the issue asks for within 25%).
  const ratio = (s: Step, v: (x: Step) => number) => {
    const first = steps.find((x) => x.backend === s.backend)!;
    return `${((v(s) / v(first)) * 100).toFixed(0)}%`;
  };
  return [
    `Growth: a hub on loopback per size, measured in turns: ${CONCURRENCY} concurrent publishers ` +
      `(${THROUGHPUT_ROUNDS} bursts per size), GET /events one at a time (${GETS} per kind and size, in rounds ` +
      `after ${WARMUP} uncounted ones; 100 per page); % of the same backend's 10k figure.`,
    '',
    `| metric | ${steps.map(label).join(' | ')} |`,
    `|---|${steps.map(() => '---:').join('|')}|`,
    row('publish throughput', (s) => `${s.throughput.toFixed(0)} events/s (${ratio(s, (x) => x.throughput)})`),
    ...kinds.map((k) =>
      row(
        `GET /events, ${k}: p50 / p99`,
        (s) => `${s.gets[k]!.p50.toFixed(1)} / ${s.gets[k]!.p99.toFixed(1)} ms (${ratio(s, (x) => x.gets[k]!.p50)})`,
      ),
    ),
    row('fill time (bulk SQL, not measured above)', (s) => `${s.fillSeconds.toFixed(0)} s`),
    '',
    ...failed.map((f) => `Not measured in this run: ${f}.\n`),
  ].join('\n');
}
