// npm run bench:store — the store alone (no HTTP, no tailnet): events/s committed with 32 concurrent
// publishers, SQLite one-commit-per-publish (the anchor: how the store worked before) beside SQLite with
// group commit and PostgreSQL with one and two replicas; then publish and listing cost as the store grows.
// `--write` replaces the table in README.md.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresStore, SqliteStore, type HubStore, type NewEvent } from '@krkn/hub-store';
import { startPostgres } from '@krkn/testnet';
import { measuredOn, writeReadmeSection } from './bench-report.js';

const PUBLISHERS = 32;
const EVENTS = 4_000;
// `--growth 10000,100000,1000000` adds sizes (1M takes minutes and about 2 GB of temp disk).
const GROWTH_SIZES = growthSizes(process.argv);
const BODY = Buffer.from(JSON.stringify({ action: 'completed', repository: 'krkn', payload: 'x'.repeat(1500) }));
const sender = { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'tagged-devices', tags: ['tag:ci'] };
const event = (): NewEvent => ({
  topic: 'ci/build',
  method: 'POST',
  headers: [['Content-Type', 'application/json']],
  body: BODY,
  sender,
});
const matches = (pattern: string, topic: string): boolean => pattern === topic || pattern === 'ci/*';

/** `publishers` loops publishing back to back (each waits for its commit) until `events` are committed. */
async function publishRate(stores: HubStore[], events: number, publishers = PUBLISHERS): Promise<number> {
  let left = events;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: publishers }, async (_, i) => {
      const store = stores[i % stores.length]!;
      while (left > 0) {
        left--;
        await store.publish(event(), matches);
      }
    }),
  );
  return events / ((performance.now() - started) / 1000);
}

/** Delivery-state updates per second: `publishers` loops recording outcomes of owed deliveries. */
async function recordRate(store: HubStore, subscriptionId: string, seqs: number[]): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: PUBLISHERS }, async () => {
      while (next < seqs.length) await store.recordDelivered(subscriptionId, seqs[next++]!, 200);
    }),
  );
  return seqs.length / ((performance.now() - started) / 1000);
}

async function withSubscriber(store: HubStore): Promise<string> {
  const sub = await store.subscribe({
    nodeId: 'n',
    nodeName: 'sub',
    address: '100.64.0.2',
    port: 80,
    path: '/in',
    topics: ['ci/*'],
  });
  return sub.id;
}

async function sqliteRow(dir: string, name: string, maxBatch?: number): Promise<string> {
  // The anchor (one commit per write) is the store before group commit: fsyncs on the event loop too.
  const anchor = { groupCommit: { maxBatch }, fsyncOnEventLoop: true };
  const store = SqliteStore.open(join(dir, `${name}.db`), maxBatch ? anchor : {});
  const subId = await withSubscriber(store);
  const commits = store.commits;
  const publish = await publishRate([store], EVENTS);
  const perCommit = EVENTS / (store.commits - commits);
  const seqs = (await store.listEvents({ limit: EVENTS })).map((e) => e.seq);
  const record = await recordRate(store, subId, seqs);
  await store.close();
  return `| ${name} | ${fmt(publish)} | ${perCommit.toFixed(1)} | ${fmt(record)} |`;
}

async function postgresRows(): Promise<string[]> {
  const pg = await startPostgres({ fsync: true });
  try {
    const rows: string[] = [];
    for (const replicas of [1, 2]) {
      const url = pg.url(await pg.createDatabase());
      const stores = await Promise.all(
        Array.from({ length: replicas }, () => PostgresStore.open(url, { password: pg.password })),
      );
      const subId = await withSubscriber(stores[0]!);
      const groups = () => stores.reduce((n, s) => n + s.publishGroups, 0);
      const before = groups();
      const publish = await publishRate(stores, EVENTS / 2);
      const perCommit = EVENTS / 2 / (groups() - before);
      const seqs = (await stores[0]!.listEvents({ limit: EVENTS })).map((e) => e.seq);
      const record = await recordRate(stores[0]!, subId, seqs);
      await Promise.all(stores.map((s) => s.close()));
      rows.push(
        `| PostgreSQL, ${replicas} replica${replicas > 1 ? 's' : ''} (pool 10 each) ` +
          `| ${fmt(publish)} | ${perCommit.toFixed(1)} | ${fmt(record)} |`,
      );
    }
    return rows;
  } finally {
    await pg.stop();
  }
}

/** Publish rate and listing latency with `size` events already stored. */
async function growthRow(dir: string, size: number): Promise<string> {
  const store = SqliteStore.open(join(dir, `growth-${size}.db`));
  await withSubscriber(store);
  // Preload in big groups (fast), leaving everything pending like a subscriber that is far behind.
  for (let n = 0; n < size; n += 5_000) {
    await Promise.all(Array.from({ length: Math.min(5_000, size - n) }, () => store.publish(event(), matches)));
  }
  const publish = await publishRate([store], 2_000);
  // An id among the newest events: what a client paging through recent events passes as afterId.
  const latest = (await store.listEvents({ since: Date.now() - 1_000, limit: 1 }))[0]!;
  const list = await timeMs(() => store.listEvents({ since: Date.now() - 1_000, limit: 100 }));
  const after = await timeMs(() => store.listEvents({ afterId: latest.id, limit: 100 }));
  const due = await timeMs(() => store.dueDeliveries(Date.now(), new Set(), 10));
  await store.close();
  return `| ${fmt(size)} | ${fmt(publish)} | ${list.toFixed(2)} | ${after.toFixed(2)} | ${due.toFixed(2)} |`;
}

/** Median of 21 runs, in ms. */
async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < 21; i++) {
    const t = performance.now();
    await fn();
    runs.push(performance.now() - t);
  }
  return runs.sort((a, b) => a - b)[10]!;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function growthSizes(argv: string[]): number[] {
  const i = argv.indexOf('--growth');
  if (i < 0) return [10_000, 100_000];
  const sizes = (argv[i + 1] ?? '').split(',').map(Number);
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 5_000)) {
    throw new Error('--growth takes sizes of at least 5000, comma-separated: --growth 10000,100000,1000000');
  }
  return sizes;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'krkn-bench-store-'));
  try {
    const throughput = [
      await sqliteRow(dir, 'SQLite, one commit per write (anchor: the store before)', 1),
      await sqliteRow(dir, 'SQLite, group commit'),
      ...(await postgresRows()),
    ];
    const growth: string[] = [];
    for (const size of GROWTH_SIZES) growth.push(await growthRow(dir, size));
    const table = [
      `${PUBLISHERS} concurrent writers, ${fmt(EVENTS)} events of ${fmt(BODY.length)} B each ` +
        'owed to one subscriber, fsync on:',
      '',
      '| store | publishes/s committed | publishes per commit | delivery updates/s committed |',
      '| --- | ---: | ---: | ---: |',
      ...throughput,
      '',
      'SQLite as it grows (events stored, all still owed); listing and head-of-line times are medians:',
      '',
      '| events stored | publishes/s | list recent 100 (ms) | list after an id (ms) | due heads (ms) |',
      '| ---: | ---: | ---: | ---: | ---: |',
      ...growth,
      '',
      measuredOn(),
      '',
    ].join('\n');
    console.log(table);
    if (process.argv.includes('--write')) writeReadmeSection('bench:store', table);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
