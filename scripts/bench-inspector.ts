// npm run bench:inspector — the krkns web inspector's first paint in headless Chromium on a store of
// 100k events, beside the same pages on a store of 1k events (the anchor): paging is by keyset, so
// the two should match. `--write` replaces the table in README.md.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { identifyAdmin } from '@krkn/hub';
import { SqliteStore } from '@krkn/hub-store';
import { inspectorRoutes, pageSize } from '@krkn/inspector';
import { benchHub, offlineNode } from './bench-hub-fixture.js';
import { measuredOn, writeReadmeSection } from './bench-report.js';

const SIZES = [1_000, 100_000];
const RUNS = 7;
const BODY = Buffer.from(JSON.stringify({ action: 'completed', repository: 'krkn', payload: 'x'.repeat(500) }));
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Pages of the inspector, as paths given the ids of the stored events. */
const pages: Record<string, (ids: string[]) => string> = {
  'event list, newest page (live)': () => '/ui/',
  'event list, oldest page (keyset cursor)': (ids) => `/ui/?before=${ids[pageSize]}`,
  'event list, sender filter matching nothing': () => '/ui/?sender=nobody',
  'event page': (ids) => `/ui/events/${ids[Math.floor(ids.length / 2)]}`,
};

async function main(): Promise<void> {
  // On tmpfs, so filling 100k events does not wait for 100k fsyncs (krkns's store syncs each publish);
  // reads come from the page cache either way.
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'krkn-bench-ui-'));
  const browser = await chromium.launch({ executablePath: chromiumPath });
  const results: Record<string, Record<number, Timing>> = {};
  try {
    for (const size of SIZES) {
      for (const [name, ms] of Object.entries(await measure(browser, join(dir, `${size}.db`), size))) {
        (results[name] ??= {})[size] = ms;
      }
    }
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const table = render(results);
  console.log(table);
  if (process.argv.includes('--write')) writeReadmeSection('bench:inspector', table);
}

/** Medians, in ms: until the server's answer starts (the inspector's work) and until first contentful paint. */
interface Timing {
  answer: number;
  paint: number;
}

/** Timings per page, on a store of `size` events each owed to one subscriber. */
async function measure(browser: Browser, db: string, size: number): Promise<Record<string, Timing>> {
  const store = SqliteStore.open(db);
  await store.subscribe({
    nodeId: 'n',
    nodeName: 'subscriber',
    address: '127.0.0.1',
    port: 9,
    path: '/',
    topics: ['bench/**'],
  });
  const ids: string[] = [];
  for (let i = 0; i < size; i++) {
    const input = {
      topic: `bench/t${i % 10}`,
      method: 'POST',
      headers: [['content-type', 'application/json']] as [string, string][],
      body: BODY,
      sender: { ip: '100.64.0.9', node: `publisher${i % 3}`, user: 'ci', tags: [] },
    };
    ids.push((await store.publish(input, () => true)).event.id);
  }
  const hub = benchHub({
    store,
    node: offlineNode('bench'),
    send: async () => ({ kind: 'delivered', status: 200 }),
    retentionMs: 30 * 86400e3,
    retryScheduleMs: [0],
  });
  const app = await hub.app(identifyAdmin);
  await app.register(inspectorRoutes, { prefix: '/ui', hub, identify: identifyAdmin });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const out: Record<string, Timing> = {};
  try {
    for (const [name, path] of Object.entries(pages)) out[name] = await firstPaint(browser, `${base}${path(ids)}`);
  } finally {
    await app.close();
    await store.close();
  }
  return out;
}

/** Medians of RUNS fresh page loads, from navigation start. */
async function firstPaint(browser: Browser, url: string): Promise<Timing> {
  const answers: number[] = [];
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const page = await browser.newPage();
    const res = await page.goto(url);
    if (res?.status() !== 200) throw new Error(`${url} answered ${res?.status()}`);
    const fcp = await page.evaluate(
      'new Promise((resolve) => new PerformanceObserver((l) => resolve(l.getEntriesByName("first-contentful-paint")[0].startTime)).observe({ type: "paint", buffered: true }))',
    );
    times.push(Number(fcp));
    answers.push(Number(await page.evaluate('performance.getEntriesByType("navigation")[0].responseStart')));
    await page.close();
  }
  return { answer: median(answers), paint: median(times) };
}

function median(xs: number[]): number {
  return xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

function render(results: Record<string, Record<number, Timing>>): string {
  const head = `| Page | ${SIZES.map((s) => `${s.toLocaleString('en')} events: answer / first paint`).join(' | ')} |`;
  const rule = `|---|${SIZES.map(() => '---:').join('|')}|`;
  const cell = (t: Timing) => `${t.answer.toFixed(0)} ms / ${t.paint.toFixed(0)} ms`;
  const rows = Object.entries(results).map(([name, r]) => `| ${name} | ${SIZES.map((s) => cell(r[s]!)).join(' | ')} |`);
  const note = `\nMedians of ${RUNS} fresh loads in headless Chromium, inspector on loopback: until the answer starts (the inspector's own work) and until first contentful paint. ${measuredOn()}.\n`;
  return `${[head, rule, ...rows].join('\n')}\n${note}`;
}

await main();
