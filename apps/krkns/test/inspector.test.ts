// The krkns web inspector in a real headless Chromium, reaching krkns over the real tailnet through
// a native tailscaled peer's HTTP proxy; access is governed by the peers' app-capability grants.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageSize } from '@krkn/inspector';
import { TailnetNode, serveFastify, tailnetFetch } from '@krkn/tailnet';
import { startNativeNode, startTailnet, waitFor, type NativeNode, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';

const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Set to a directory (e.g. docs) to refresh the README's screenshots while the test runs.
const screenshotDir = process.env.KRKN_SCREENSHOTS;

let tailnet: Tailnet;
let krkns: Krkns;
let operator: NativeNode; // has the read right: the browser's way into the tailnet
let outsider: NativeNode; // reaches krkns, but holds no grant
let subscriber: TailnetNode;
let app: FastifyInstance;
let browser: Browser;
let page: Page;
let ui: string;
const received: { id: string; body: Buffer }[] = [];
let subscriberStatus = 200;
const dir = mkdtempSync(join(tmpdir(), 'krkns-ui-'));
const capability = 'krkn.dev/cap/webhooks';

beforeAll(async () => {
  tailnet = await startTailnet();
  await tailnet.setPolicy(
    JSON.stringify({
      tagOwners: { 'tag:hub': ['ui@'], 'tag:ops': ['ui@'], 'tag:other': ['ui@'] },
      grants: [
        { src: ['*'], dst: ['*'], ip: ['*'] },
        {
          src: ['tag:ops'],
          dst: ['tag:hub'],
          app: { [capability]: [{ publish: ['demo/**'], subscribe: ['demo/**'], read: ['demo/**'] }] },
        },
      ],
    }),
  );
  const key = (tag: string) => tailnet.createPreAuthKey({ tags: [tag], reusable: true });
  const [hubKey, opsKey, otherKey] = await Promise.all([key('tag:hub'), key('tag:ops'), key('tag:other')]);
  krkns = await Krkns.run({
    controlUrl: tailnet.url,
    stateDir: join(dir, 'krkns'),
    hostname: 'hub',
    authKey: hubKey,
    args: ['--require-capability'],
  });
  ui = `http://${krkns.ip}/ui`;
  subscriber = new TailnetNode({
    hostname: 'sub',
    stateDir: join(dir, 'sub'),
    controlUrl: tailnet.url,
    authKey: opsKey,
    logger: pino({ level: 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
  });
  [operator, outsider] = await Promise.all([
    startNativeNode(tailnet, { hostname: 'operator', authKey: opsKey }),
    startNativeNode(tailnet, { hostname: 'outsider', authKey: otherKey }),
    subscriber.up(),
  ]);
  app = Fastify();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
  app.post('/in', async (req, reply) => {
    received.push({ id: String(req.headers['x-krkn-event-id']), body: req.body as Buffer });
    return reply.code(subscriberStatus).send();
  });
  await serveFastify(app, subscriber, 8080);
  const subscribe = () =>
    hubFetch('/subscriptions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ topics: ['demo/*'], port: 8080, path: '/in' }),
    });
  await waitFor(async () => ((await subscribe()).status === 201 ? true : undefined), {
    timeoutMs: 30_000,
    what: 'the subscription',
  });
  await operator.waitForPeer('hub');
  browser = await chromium.launch({
    executablePath: chromiumPath,
    proxy: { server: `http://127.0.0.1:${operator.httpProxyPort}` },
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
});

afterAll(async () => {
  // Each may be unset when beforeAll failed part way.
  await (browser as Browser | undefined)?.close();
  await (app as FastifyInstance | undefined)?.close();
  await (subscriber as TailnetNode | undefined)?.close();
  await (krkns as Krkns | undefined)?.stop();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function hubFetch(path: string, init: RequestInit = {}): Promise<Response> {
  return tailnetFetch(subscriber, `http://${krkns.ip}${path}`, init);
}

async function publish(topic: string, body: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await hubFetch(`/hooks/${topic}`, { method: 'POST', body, headers });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

describe('krkns inspector in a browser, over the tailnet', () => {
  let id: string;
  const hostile = '<img src=x id=injected>';
  const payload = { action: 'opened', title: hostile, nested: { n: 1 } };

  it('lists a published event within 1 s without a reload', async () => {
    const res = await page.goto(`${ui}/`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toContain("default-src 'none'");
    await page.waitForSelector('tbody[data-live="open"]', { state: 'attached' }); // the event stream is open
    const sent = Date.now();
    id = await publish('demo/push', JSON.stringify(payload), { 'content-type': 'application/json', 'x-evil': hostile });
    await page.waitForSelector(`tr[data-event="${id}"]`, { timeout: 1_000 });
    expect(Date.now() - sent).toBeLessThan(1_000);
    expect(await page.locator(`tr[data-event="${id}"]`).innerText()).toContain('demo/push');
    await page.waitForSelector(`tr[data-event="${id}"] .state-delivered`, { timeout: 10_000 }); // redrawn after the attempt
    if (screenshotDir) await page.screenshot({ path: join(screenshotDir, 'inspector-events.png') });
  });

  it('shows the body as formatted JSON, hostile text as text, and the delivery timeline', async () => {
    await waitFor(async () => (received.some((r) => r.id === id) ? true : undefined), {
      timeoutMs: 15_000,
      what: 'the delivery',
    });
    await page.click(`tr[data-event="${id}"] a`);
    await page.waitForSelector('#deliveries');
    expect(await page.locator('#body').textContent()).toBe(JSON.stringify(payload, null, 2));
    expect(await page.locator('#injected').count()).toBe(0); // rendered as text, never as markup
    expect(await page.locator('main').innerText()).toContain(hostile);
    const timeline = await page.locator('#deliveries tbody tr').innerText();
    expect(timeline).toMatch(/sub\.\S+\s+delivered\s+1\s+200/);
    await page.click('a[href$="view=hex"]');
    expect(await page.locator('#body').textContent()).toMatch(/^00000000 {2}7b 22 61 63/);
    if (screenshotDir) {
      await page.goto(`${ui}/events/${id}`);
      await page.screenshot({ path: join(screenshotDir, 'inspector-event.png'), fullPage: true });
    }
  });

  it("redelivers on a click to the clicking peer's own subscriptions only", async () => {
    // The operator subscribes itself: its userspace tailscaled hands inbound tailnet TCP to the same loopback port.
    const mine: string[] = [];
    const own = Fastify();
    own.removeAllContentTypeParsers();
    own.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
    own.post('/mine', async (req, reply) => {
      if (req.headers['x-krkn-event-id'] === id) mine.push((req.body as Buffer).toString());
      return reply.code(200).send();
    });
    await own.listen({ host: '127.0.0.1', port: 0 });
    const port = (own.server.address() as AddressInfo).port;
    const body = JSON.stringify({ topics: ['demo/push'], port, path: '/mine' });
    const made = await operator.fetch(`http://${krkns.ip}/subscriptions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(made.status).toBe(201);
    const subscriptionId = (made.json() as { subscription: { id: string } }).subscription.id;
    try {
      await page.goto(`${ui}/events/${id}`);
      await Promise.all([page.waitForURL(`${ui}/events/${id}`), page.click('#redeliver')]);
      await waitFor(async () => (mine.length === 1 ? true : undefined), {
        timeoutMs: 15_000,
        what: "the operator's redelivery",
      });
      expect(mine).toEqual([JSON.stringify(payload)]);
      await new Promise((r) => setTimeout(r, 1_000));
      expect(received.filter((r) => r.id === id)).toHaveLength(1); // another peer's subscription is not flooded
    } finally {
      expect(
        (await operator.fetch(`http://${krkns.ip}/subscriptions/${subscriptionId}`, { method: 'DELETE' })).status,
      ).toBe(200);
      await own.close();
    }
  });

  it('refuses a cross-site form post, and a post without the form token', async () => {
    const attacker = await serveAttackPage(`${ui}/events/${id}/redeliver`);
    try {
      const refused = page.waitForResponse((r) => r.url().endsWith('/redeliver'));
      await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
      const res = await refused;
      expect(res.status()).toBe(403);
      expect(await res.text()).toContain('CROSS_SITE');
    } finally {
      attacker.close();
    }
    const tokenless = await operator.fetch(`${ui}/events/${id}/redeliver`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'csrf=guess',
    });
    expect(tokenless.status).toBe(403);
    expect(tokenless.text()).toContain('form token');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(received.filter((r) => r.id === id)).toHaveLength(1); // neither post redelivered
  });

  it("redraws the event's delivery timeline live after each attempt", async () => {
    await page.goto(`${ui}/events/${id}`);
    await page.waitForSelector('#timeline[data-live="open"]');
    const timelineText = () => page.locator('#deliveries tbody').innerText(); // never reloaded below
    subscriberStatus = 503;
    try {
      expect((await hubFetch(`/events/${id}/redeliver`, { method: 'POST' })).status).toBe(202);
      await expect.poll(timelineText, { timeout: 15_000 }).toMatch(/pending\s+1\s+503/);
      const subRow = page.locator('#deliveries tbody tr', { hasText: /^sub\./ });
      expect(await subRow.locator('td').last().innerText()).toMatch(/^\d{4}-\d\d-\d\dT/); // next attempt
    } finally {
      subscriberStatus = 200;
    }
    await expect.poll(timelineText, { timeout: 15_000 }).toMatch(/delivered\s+2\s+200/);
  });

  it('answers 403 to a peer without the read right: pages, the live stream and the API', async () => {
    for (const path of ['/ui/', `/ui/events/${id}`, '/ui/stream', '/ui/subscribers']) {
      const res = await outsider.fetch(`http://${krkns.ip}${path}`);
      expect(res.status, path).toBe(403);
      expect(res.text()).toContain('MISSING_CAPABILITY');
    }
    const api = await outsider.fetch(`http://${krkns.ip}/events/${id}`);
    expect(api.status).toBe(403);
    expect((api.json() as { error: { code: string } }).error.code).toBe('MISSING_CAPABILITY');
  });

  it('filters by topic, sender and delivery state, and pages back by keyset, newest first', async () => {
    const ids: string[] = [];
    for (let i = 0; i <= pageSize; i++)
      ids.push(await publish('demo/paging', `{"i":${i}}`, { 'content-type': 'application/json' }));
    const rowIds = () =>
      page
        .locator('tbody tr[data-event]')
        .evaluateAll((rows: { getAttribute(name: string): string | null }[]) =>
          rows.map((r) => r.getAttribute('data-event')),
        );
    await page.goto(`${ui}/?topic=demo/paging`);
    expect(await rowIds()).toEqual(ids.slice(1).reverse());
    await Promise.all([page.waitForURL(/before=/), page.click('text=Older events')]);
    expect(await rowIds()).toEqual([ids[0]]);
    await page.goto(`${ui}/?topic=demo/*&sender=nobody`);
    expect(await rowIds()).toEqual([]);
    await page.goto(`${ui}/?topic=demo/push&sender=sub`);
    expect(await rowIds()).toEqual([id]);
    await page.goto(`${ui}/?topic=demo/push&state=delivered`);
    expect(await rowIds()).toEqual([id]);
    await page.goto(`${ui}/?topic=demo/push&state=failed`);
    expect(await rowIds()).toEqual([]);
    expect((await page.goto(`${ui}/?state=bogus`))?.status()).toBe(400);
    expect((await page.goto(`${ui}/?before=evt_gone`))?.status()).toBe(400);
  });

  it('lists subscribers with their state, backlog and last success', async () => {
    await page.goto(`${ui}/subscribers`);
    expect(await page.locator('main tbody').innerText()).toMatch(
      /sub\.\S+\s+100\.[\d.]+:8080\/in\s+demo\/\*\s+online\s+\d+\s+\d{4}-\d\d-\d\dT/,
    );
    if (screenshotDir) await page.screenshot({ path: join(screenshotDir, 'inspector-subscribers.png') });
  });
});

/** A page on another origin that posts a form to krkns as soon as it loads. */
async function serveAttackPage(target: string): Promise<Server> {
  const attack = `<!doctype html><form id=f method=post action="${target}"><input name=csrf value=forged></form>
<script>document.getElementById('f').submit()</script>`;
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(attack));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
