// The metrics of a real Hub over a real SQLite store: publishes and attempts counted as they
// happen, store and node figures read per scrape; the page passes `promtool check metrics`
// (Debian's prometheus package); the host listener serves only GET /metrics on loopback.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Hub, type AttemptOutcome, type Caller, type HubNode } from '@krkn/hub';
import { SqliteStore } from '@krkn/hub-store';
import { HubMetrics, parseHostAddress, serveMetricsOnHost, statusClass } from '../src/index.js';

const silent = pino({ level: 'silent' });

class Node extends EventEmitter<{ peers: [] }> implements HubNode {
  readonly hostname = 'hub';
  readonly self = { name: 'hub.krkn.test', relay: 'lab' };
  readonly addresses = ['100.64.0.1'];
  readonly state = 'Running';
  readonly loginUrl = undefined;
  async status() {
    return {
      self: this.self,
      peers: [
        { online: true, addresses: ['100.64.0.2'] },
        { online: false, addresses: ['100.64.0.3'] },
      ],
      peersKnown: true,
    };
  }
  async metrics() {
    return { derp: { sent: 12, dropped: 1 }, version: 'not a number' };
  }
}

const peer: Caller = {
  kind: 'peer',
  ip: '100.64.0.2',
  nodeId: 'n1',
  node: 'sub.krkn.test',
  user: 'u',
  tags: [],
  capMap: {},
};
let dir: string;
let store: SqliteStore;
let hub: Hub;
let answers: AttemptOutcome[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'krkn-metrics-'));
  store = SqliteStore.open(join(dir, 'hub.db'));
  answers = [];
  const config = { bodyLimit: 1024, retentionMs: 86400e3, retryScheduleMs: [0, 60_000], deliveryTimeoutMs: 1000 };
  hub = new Hub({
    store,
    node: new Node(),
    logger: silent,
    send: async () => answers.shift() ?? { kind: 'delivered', status: 204 },
    config: {
      ...config,
      requireCapability: false,
      capabilityName: 'krkn.dev/cap/webhooks',
      maxConcurrentDeliveries: 4,
      credentialHeaders: [],
    },
  });
});
afterEach(async () => {
  await hub.stop(1000);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const publish = (topic: string, body = '{}') =>
  hub.publish(peer, { topic, method: 'POST', headers: [['idempotency-key', body]], body: Buffer.from(body) });

/** The value of one series in a text page, e.g. `krkn_deliveries_total{outcome="delivered",status_class="2xx"}`. */
function valueOf(page: string, series: string): number | undefined {
  const line = page.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function settle(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 10));
}

describe('HubMetrics', () => {
  it('counts publishes and attempts with bounded labels, reads store and node per scrape, and passes promtool', async () => {
    const metrics = new HubMetrics(hub, new Node());
    await hub.subscribe(peer, { topics: ['ci/**'], port: 8080, path: '/', rotateSecret: false, namedTargets: [] });
    answers = [{ kind: 'rejected', status: 503, error: 'HTTP 503' }];
    hub.start();
    await publish('ci/one', 'a');
    await publish('ci/one', 'a'); // same Idempotency-Key: a duplicate
    await publish('ci/two', 'b');
    expect(() => hub.checkPublish(peer, 'Bad Topic')).toThrow();
    await settle(async () => (await hub.status({ kind: 'admin' })).queue.delivered === 1);

    const { contentType, body: page } = await metrics.render();
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(valueOf(page, 'krkn_events_published_total{outcome="stored"}')).toBe(2);
    expect(valueOf(page, 'krkn_events_published_total{outcome="duplicate"}')).toBe(1);
    expect(valueOf(page, 'krkn_events_published_total{outcome="refused"}')).toBe(1);
    expect(valueOf(page, 'krkn_deliveries_total{outcome="rejected",status_class="5xx"}')).toBe(1);
    expect(valueOf(page, 'krkn_deliveries_total{outcome="delivered",status_class="2xx"}')).toBe(1);
    expect(valueOf(page, 'krkn_delivery_duration_seconds_count{outcome="delivered"}')).toBe(1);
    expect(valueOf(page, 'krkn_queue_pending')).toBe(1); // the rejected one waits 60 s
    expect(valueOf(page, 'krkn_queue_oldest_pending_age_seconds')).toBeGreaterThanOrEqual(0);
    expect(valueOf(page, 'krkn_subscriptions{state="online"}')).toBe(1);
    expect(valueOf(page, 'krkn_subscriptions{state="disabled"}')).toBe(0);
    expect(valueOf(page, 'krkn_store_events')).toBe(2);
    expect(valueOf(page, 'krkn_store_bytes')).toBeGreaterThan(0);
    expect(valueOf(page, 'krkn_node_peers{online="true"}')).toBe(1);
    expect(valueOf(page, 'krkn_node_peers{online="false"}')).toBe(1);
    expect(valueOf(page, 'krkn_node_derp_home{region="lab"}')).toBe(1);
    expect(valueOf(page, 'krkn_engine_stat{name="derp_sent"}')).toBe(12);
    expect(page).not.toContain('name="version"');
    expect(page).toContain('process_cpu_user_seconds_total');
    expect(page).not.toContain('ci/one'); // no topic labels unless asked for

    const check = spawnSync('promtool', ['check', 'metrics'], { input: page, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  it('labels counters with the topic only when asked', async () => {
    const metrics = new HubMetrics(hub, new Node(), { topicLabels: true });
    await publish('ci/one');
    const { body } = await metrics.render();
    expect(valueOf(body, 'krkn_events_published_total{outcome="stored",topic="ci/one"}')).toBe(1);
  });

  it('reads a node without engine counters', async () => {
    const { metrics: _m, ...plain } = { status: () => new Node().status(), metrics: undefined };
    const { body } = await new HubMetrics(hub, plain).render();
    expect(body).toContain('krkn_node_peers{online="true"} 1');
    expect(body).not.toContain('krkn_engine_stat{');
  });

  it.each([
    [null, 'none'],
    [204, '2xx'],
    [410, '4xx'],
    [503, '5xx'],
    [0, 'none'],
  ])('status %s is class %s', (status, cls) => {
    expect(statusClass(status)).toBe(cls);
  });
});

describe('the host listener', () => {
  it('takes loopback addresses, and others only when the operator says so', () => {
    expect(parseHostAddress('127.0.0.1:9464', false)).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseHostAddress('[::1]:9464', false)).toEqual({ host: '::1', port: 9464 });
    expect(() => parseHostAddress('0.0.0.0:9464', false)).toThrow(/not a loopback address.*--metrics-listen-remote/);
    expect(parseHostAddress('0.0.0.0:9464', true)).toEqual({ host: '0.0.0.0', port: 9464 });
    for (const bad of ['localhost:9464', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000']) {
      expect(() => parseHostAddress(bad, true), bad).toThrow(/not an IP:port/);
    }
  });

  it('serves GET /metrics and nothing else', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const server = await serveMetricsOnHost(
      { host: '127.0.0.1', port },
      async () => ({ contentType: 'text/plain', body: 'x 1\n' }),
      silent,
    );
    try {
      const base = `http://127.0.0.1:${port}`;
      const ok = await fetch(`${base}/metrics`);
      expect([ok.status, await ok.text()]).toEqual([200, 'x 1\n']);
      expect((await fetch(`${base}/`)).status).toBe(404);
      expect((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    } finally {
      await server.close();
    }
  });
});
