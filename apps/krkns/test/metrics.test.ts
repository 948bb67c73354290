// krkns's Prometheus metrics end to end: a real daemon on a real headscale, a publisher node, and
// a real Prometheus server (Debian's `prometheus`) scraping krkns's loopback --metrics-listen.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubClient } from '@krkn/hub-api';
import { tailnetFetch, type TailnetNode } from '@krkn/tailnet';
import { startTailnet, tiedToParent, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';
import { peerNode } from './peers.js';

let tailnet: Tailnet;
let authKey: string;
let krkns: Krkns;
let publisher: TailnetNode;
let prometheus: ChildProcess | undefined;
let metricsPort: number;
const dir = mkdtempSync(join(tmpdir(), 'krkns-metrics-'));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('ops');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  metricsPort = await freePort();
  krkns = await Krkns.run({
    controlUrl: tailnet.url,
    stateDir: join(dir, 'krkns'),
    hostname: 'hub',
    authKey,
    args: ['--metrics-listen', `127.0.0.1:${metricsPort}`],
  });
  publisher = peerNode(tailnet, { hostname: 'publisher', authKey, dir });
  await publisher.up();
}, 120_000);

afterAll(async () => {
  if (prometheus?.pid !== undefined && prometheus.exitCode === null) prometheus.kill('SIGTERM');
  await (krkns as Krkns | undefined)?.stop();
  await (publisher as TailnetNode | undefined)?.close();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('krkns metrics', () => {
  it('counts a publish over the tailnet and serves /metrics to an authorised peer', async () => {
    const hub = new HubClient(`http://${krkns.ip}`, (url, init) => tailnetFetch(publisher, url, init));
    const sent = await hub.publish('ci/build', Buffer.from('{"ok":true}'), { 'content-type': 'application/json' });
    expect(sent.id).toMatch(/^evt_/);
    const res = await tailnetFetch(publisher, `http://${krkns.ip}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/^krkn_events_published_total\{outcome="stored"\} 1$/m);
    // krkns's netmap shows the publisher online once control has told it (read per scrape).
    await until(
      async () => {
        const page = await (await tailnetFetch(publisher, `http://${krkns.ip}/metrics`)).text();
        return /^krkn_node_peers\{online="true"\} [1-9]/m.test(page) ? true : undefined;
      },
      'krkns to count the publisher as an online peer',
      30_000,
    );
  }, 60_000);

  it('is scraped by a real Prometheus on the loopback listener, and a counter reads back over its API', async () => {
    const promPort = await freePort();
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        'scrape_configs:',
        '  - job_name: krkns',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${metricsPort}']`,
        '',
      ].join('\n'),
    );
    const args = [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ];
    prometheus = spawn(...tiedToParent('prometheus', args), { stdio: 'ignore' });
    const api = `http://127.0.0.1:${promPort}/api/v1/query?query=`;
    type Answer = { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    const query = async (q: string) =>
      ((await (await fetch(api + encodeURIComponent(q))).json()) as Answer).data.result;
    const stored = await until(
      async () => {
        const r = await query('krkn_events_published_total{outcome="stored"}');
        return r.length > 0 ? r : undefined;
      },
      'Prometheus to scrape krkns',
      60_000,
    );
    expect(stored[0]!.metric).toMatchObject({ job: 'krkns', outcome: 'stored' });
    expect(stored[0]!.value[1]).toBe('1');
    const up = await query('up{job="krkns"}');
    expect(up[0]!.value[1]).toBe('1');
  }, 90_000);

  it('refuses a non-loopback --metrics-listen unless asked for', async () => {
    const args = [
      'run',
      '--state-dir',
      join(dir, 'other'),
      '--control-url',
      tailnet.url,
      '--metrics-listen',
      '0.0.0.0:9464',
    ];
    const r = await Krkns.command(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--metrics-listen: 0\.0\.0\.0 is not a loopback address.*--metrics-listen-remote/);
  });
});
