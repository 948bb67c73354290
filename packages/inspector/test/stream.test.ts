// The inspector's live stream and escaping against a real Hub and SQLite store on loopback (the
// tailnet path and the browser are covered by apps/krkns/test/inspector.test.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Hub, defaultCredentialHeaders, identifyAdmin, type HubNode } from '@krkn/hub';
import { SqliteStore } from '@krkn/hub-store';
import { html, inspectorRoutes } from '@krkn/inspector';

const node: HubNode = {
  hostname: 'test',
  self: undefined,
  addresses: ['127.0.0.1'],
  state: 'Running',
  loginUrl: undefined,
  status: async () => ({ peers: [], peersKnown: true }),
  on: () => undefined,
  off: () => undefined,
};

let dir: string;
let store: SqliteStore;
let hub: Hub;
let app: FastifyInstance;
let base: string;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'krkn-inspector-'));
  store = SqliteStore.open(join(dir, 'hub.db'));
  hub = new Hub({
    store,
    node,
    logger: pino({ level: 'silent' }),
    send: async () => ({ kind: 'delivered', status: 200 }),
    config: { bodyLimit: 1 << 20, retentionMs: 86400e3, retryScheduleMs: [0], deliveryTimeoutMs: 1000, requireCapability: false, capabilityName: 'x', maxConcurrentDeliveries: 1,
      credentialHeaders: defaultCredentialHeaders },
  });
  app = await hub.app(identifyAdmin);
  const hosts = () => ['127.0.0.1', 'hub', 'hub.krkn.test'];
  await app.register(inspectorRoutes, { prefix: '/ui', hub, identify: identifyAdmin, maxStreams: 1, hosts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

afterEach(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Opens the stream and collects what it sends until it ends. */
function openStream(path = '/ui/stream'): Promise<{ res: IncomingMessage; text: () => string; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    get(`${base}${path}`, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      const ended = new Promise<void>((r) => res.once('end', r));
      resolve({ res, text: () => text, ended });
    }).once('error', reject);
  });
}

async function until(probe: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const publish = (topic: string, body: string) =>
  hub.publish({ kind: 'admin' }, { topic, method: 'POST', headers: [['x-evil', '<script>x</script>']], body: Buffer.from(body) });

describe('inspector live stream', () => {
  it('sends each new event the filters accept as a row, and ends when the hub stops', async () => {
    const stream = await openStream('/ui/stream?topic=keep/*');
    expect(stream.res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(stream.res.headers['content-security-policy']).toContain("default-src 'none'");
    await publish('skip/me', 'no');
    const { id } = await publish('keep/a', 'yes');
    await until(() => stream.text().includes(id), 'the row');
    expect(stream.text()).toContain('event: row\ndata: <tr data-event=');
    expect(stream.text()).not.toContain('skip/me');
    await hub.stop(1_000);
    await stream.ended;
    expect(stream.text()).toMatch(/event: end\ndata: krkns is stopping\n\n$/);
  });

  it('answers 429 beyond its cap of open streams', async () => {
    const first = await openStream();
    const second = await openStream();
    expect(second.res.statusCode).toBe(429);
    await second.ended;
    first.res.destroy();
  });
});

describe('inspector host check', () => {
  /** The status and body of GET /ui/ with the given Host header. */
  function withHost(host: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      get(`${base}/ui/`, { headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      }).once('error', reject);
    });
  }

  it("answers only to krkns's own names, so a DNS-rebound page cannot read it", async () => {
    expect((await withHost('hub')).status).toBe(200);
    expect((await withHost('HUB.krkn.test.:80')).status).toBe(200);
    const rebound = await withHost('evil.example:80');
    expect(rebound.status).toBe(421);
    expect(rebound.body).toContain('MISDIRECTED_HOST');
    expect(rebound.body).toContain('Host &quot;evil.example:80&quot; is not one of');
  });
});

describe('html', () => {
  it('escapes every interpolation that is not markup already', () => {
    const hostile = `"><img src=x onerror='alert(1)'>&`;
    expect(html`<a title="${hostile}">${hostile}${html`<b>ok</b>`}${[hostile]}</a>`.text).toBe(
      '<a title="&quot;&gt;&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;">&quot;&gt;&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;<b>ok</b>&quot;&gt;&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;</a>',
    );
  });
});
