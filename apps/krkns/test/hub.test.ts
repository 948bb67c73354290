// krkns end to end: a real daemon on a real headscale, our nodes and a native tailscaled as peers.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubApiError, HubClient } from '@krkn/hub-api';
import { serveFastify, tailnetFetch, type TailnetNode } from '@krkn/tailnet';
import { startNativeNode, startTailnet, waitFor, type NativeNode, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';
import { peerNode } from './peers.js';

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

let tailnet: Tailnet;
let authKey: string;
let krkns: Krkns;
let native: NativeNode;
let publisher: TailnetNode;
let hubUrl: string;
const dir = mkdtempSync(join(tmpdir(), 'krkns-test-'));

/** One of our nodes subscribed to topics, recording what krkns delivers to it. */
class Subscriber {
  readonly received: Received[] = [];
  node!: TailnetNode;
  app!: FastifyInstance;
  status = 200;

  constructor(readonly hostname: string) {}

  async start(topics: string[]): Promise<HubClient> {
    this.node = peerNode(tailnet, { hostname: this.hostname, authKey, dir });
    await this.node.up();
    this.app = Fastify();
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
    this.app.post('/in', async (req, reply) => {
      this.received.push({ headers: req.headers, body: req.body as Buffer });
      return reply.code(this.status).send();
    });
    await serveFastify(this.app, this.node, 8080);
    const client = clientFor(this.node);
    await client.subscribe({ topics, port: 8080, path: '/in' });
    return client;
  }

  async stop(): Promise<void> {
    await this.app.close();
    await this.node.close();
  }

  ids(): string[] {
    return this.received.map((r) => String(r.headers['x-krkn-event-id']));
  }
}

function clientFor(node: TailnetNode): HubClient {
  return new HubClient(hubUrl, (url, init) => tailnetFetch(node, url, init));
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('hub');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  krkns = await Krkns.run({
    controlUrl: tailnet.url,
    stateDir: join(dir, 'krkns'),
    hostname: 'hub',
    authKey,
    args: ['--retry-schedule', '0,1s,1s', '--body-limit', '64KiB'],
  });
  hubUrl = `http://${krkns.ip}`;
  publisher = peerNode(tailnet, { hostname: 'publisher', authKey, dir });
  [native] = await Promise.all([startNativeNode(tailnet, { hostname: 'native', authKey }), publisher.up()]);
  await native.waitForPeer('hub');
});

afterAll(async () => {
  await (krkns as Krkns | undefined)?.stop();
  await (publisher as TailnetNode | undefined)?.close();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('publishing', () => {
  it('accepts an event from one of our nodes, stores it with the sender identity, and answers 202 with its id', async () => {
    const res = await tailnetFetch(publisher, `${hubUrl}/hooks/ci/build`, {
      method: 'POST',
      body: '{"ok":true}',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(202);
    const { id, duplicate } = (await res.json()) as { id: string; duplicate: boolean };
    expect(id).toMatch(/^evt_/);
    expect(duplicate).toBe(false);
    const event = await clientFor(publisher).getEvent(id);
    expect(event.sender).toMatchObject({
      node: `publisher.${tailnet.domain}`,
      ip: publisher.addresses[0],
      user: expect.stringContaining('hub') as unknown,
    });
    expect(Buffer.from(event.bodyBase64, 'base64').toString()).toBe('{"ok":true}');
  });

  it('accepts an event from a native tailscaled peer, through its proxy', async () => {
    const res = await native.fetch(`${hubUrl}/hooks/native`, {
      method: 'POST',
      body: Buffer.from('plain text'),
      headers: { 'content-type': 'text/plain' },
    });
    expect(res.status).toBe(202);
    const { id } = res.json() as { id: string };
    const event = await clientFor(publisher).getEvent(id);
    expect(event.sender.node).toBe(`native.${tailnet.domain}`);
    expect(event.contentType).toBe('text/plain');
  });

  it('dedupes a redelivered GitHub webhook by X-GitHub-Delivery', async () => {
    const client = clientFor(publisher);
    const first = await client.publish('github', '{}', {
      'x-github-delivery': 'delivery-1',
      'content-type': 'application/json',
    });
    const again = await client.publish('github', '{}', {
      'x-github-delivery': 'delivery-1',
      'content-type': 'application/json',
    });
    expect(again).toEqual({ id: first.id, topic: 'github', duplicate: true });
  });

  it.each([
    [
      '413 for a body over the limit',
      `/hooks/big`,
      { method: 'POST', body: randomBytes(70 * 1024) },
      413,
      'BODY_TOO_LARGE',
    ],
    ['400 for a malformed topic', `/hooks/a//b`, { method: 'POST', body: 'x' }, 400, 'BAD_TOPIC'],
    ['404 for an unknown event', `/events/evt_nope`, {}, 404, 'EVENT_NOT_FOUND'],
    ['404 for an unknown route', `/nope`, {}, 404, 'NOT_FOUND'],
    [
      '400 for a subscription without topics',
      `/subscriptions`,
      { method: 'POST', body: '{"port":1}', headers: { 'content-type': 'application/json' } },
      400,
      'BAD_REQUEST',
    ],
    [
      '400 for malformed JSON',
      `/subscriptions`,
      { method: 'POST', body: '{"port":', headers: { 'content-type': 'application/json' } },
      400,
      'BAD_REQUEST',
    ],
    [
      '415 for a subscription that is not JSON',
      `/subscriptions`,
      { method: 'POST', body: '<x/>', headers: { 'content-type': 'application/xml' } },
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
  ])('answers %s with a JSON error code', async (_name, path, init, status, code) => {
    const res = await tailnetFetch(publisher, `${hubUrl}${path}`, init);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it('refuses a subscription that names someone else as the target (no request forgery)', async () => {
    for (const body of [
      { topics: ['x'], port: 80, address: native.ip() },
      { topics: ['x'], port: 80, url: `http://${krkns.ip}:80/` },
    ]) {
      const res = await tailnetFetch(publisher, `${hubUrl}/subscriptions`, {
        method: 'POST',
        body: JSON.stringify(body),
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN_TARGET');
    }
  });
});

describe('browsers on tailnet devices', () => {
  const post = (path: string, headers: Record<string, string>, body: string) =>
    tailnetFetch(publisher, `${hubUrl}${path}`, { method: 'POST', headers, body });
  const codeOf = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

  it('answers 421 to a forged Host (what `curl --resolve evil.example:80:<ip>` sends) and stores nothing', async () => {
    const before = (await clientFor(publisher).listEvents({ topic: 'rebind/**' })).length;
    const res = await post('/hooks/rebind/x', { host: 'evil.example', 'content-type': 'text/plain' }, 'x');
    expect([res.status, await codeOf(res)]).toEqual([421, 'MISDIRECTED_HOST']);
    const read = await tailnetFetch(publisher, `${hubUrl}/events`, { headers: { host: 'evil.example:80' } });
    expect(read.status).toBe(421);
    expect((await clientFor(publisher).listEvents({ topic: 'rebind/**' })).length).toBe(before);
  });

  it('refuses a form-style cross-site POST, and serves stored bodies as sandboxed attachments', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' };
    const res = await post('/hooks/forms/x', { ...form, 'sec-fetch-site': 'cross-site' }, 'a=1');
    expect([res.status, await codeOf(res)]).toEqual([403, 'CROSS_SITE']);
    const { id } = (await (await post('/hooks/forms/x', { 'content-type': 'text/html' }, '<b>hi</b>')).json()) as {
      id: string;
    };
    const body = await tailnetFetch(publisher, `${hubUrl}/events/${id}/body`);
    expect(body.headers.get('x-content-type-options')).toBe('nosniff');
    expect(body.headers.get('content-disposition')).toMatch(/^attachment/);
    expect(body.headers.get('content-security-policy')).toMatch(/^sandbox/);
  });
});

describe('delivery', () => {
  it('delivers the raw body and the signature headers byte for byte, with the krkn headers', async () => {
    const sub = new Subscriber('sub-exact');
    await sub.start(['signed/*']);
    try {
      const body = Buffer.concat([Buffer.from('{"action":"opened","binary":"'), randomBytes(256), Buffer.from('"}')]);
      const signature = `sha256=${createHmac('sha256', 'secret').update(body).digest('hex')}`;
      const { id } = await clientFor(publisher).publish('signed/push', body, {
        'x-hub-signature-256': signature,
        'content-type': 'application/json',
        'X-Custom-Case': 'Kept',
      });
      await waitFor(async () => (sub.received.length > 0 ? true : undefined), {
        timeoutMs: 15_000,
        what: 'the delivery',
      });
      const got = sub.received[0]!;
      expect(got.body.equals(body)).toBe(true);
      expect(got.headers['x-hub-signature-256']).toBe(signature);
      expect(`sha256=${createHmac('sha256', 'secret').update(got.body).digest('hex')}`).toBe(signature);
      expect(got.headers['x-custom-case']).toBe('Kept');
      expect(got.headers['x-krkn-event-id']).toBe(id);
      expect(got.headers['x-krkn-topic']).toBe('signed/push');
      expect(got.headers['x-krkn-attempt']).toBe('1');
      expect(got.headers['x-krkn-sender']).toBe(`publisher.${tailnet.domain}`);
    } finally {
      await sub.stop();
    }
  });

  it("a peer's redeliver reaches only its own subscription; credentials are delivered, never read back", async () => {
    const mine = new Subscriber('sub-mine');
    const theirs = new Subscriber('sub-theirs');
    const client = await mine.start(['own/*']);
    await theirs.start(['own/*']);
    try {
      const headers = { authorization: 'Bearer s3cret', 'content-type': 'text/plain' };
      const { id } = await clientFor(publisher).publish('own/x', 'x', headers);
      const both = () => (mine.received.length === 1 && theirs.received.length === 1 ? true : undefined);
      await waitFor(async () => both(), { timeoutMs: 15_000, what: 'both deliveries' });
      expect(theirs.received[0]!.headers.authorization).toBe('Bearer s3cret');
      const event = await client.getEvent(id);
      expect(event.headers.map(([k]) => k.toLowerCase())).not.toContain('authorization');
      expect(event.withheldHeaders).toEqual(['authorization']);
      expect(await client.redeliver(id)).toEqual({ id, deliveries: 1 });
      const again = () => (mine.received.length === 2 ? true : undefined);
      await waitFor(async () => again(), { timeoutMs: 15_000, what: 'the redelivery' });
      expect(mine.received[1]!.headers['x-krkn-redelivery']).toMatch(/^[0-9a-z]+$/);
      await new Promise((r) => setTimeout(r, 1_000)); // nothing for the other subscriber
      expect(theirs.received).toHaveLength(1);
    } finally {
      await Promise.all([mine.stop(), theirs.stop()]);
    }
  });

  it('retries a subscriber that answers 500 until it accepts, with the same event id', async () => {
    const sub = new Subscriber('sub-flaky');
    await sub.start(['flaky']);
    try {
      sub.status = 500;
      const { id } = await clientFor(publisher).publish('flaky', 'x');
      await waitFor(async () => (sub.received.length >= 2 ? true : undefined), {
        timeoutMs: 15_000,
        what: 'two attempts',
      });
      sub.status = 204;
      await waitFor(
        async () => ((await clientFor(publisher).getEvent(id)).deliveries[0]?.state === 'delivered' ? true : undefined),
        {
          timeoutMs: 15_000,
          what: 'the delivery to succeed',
        },
      );
      expect(new Set(sub.ids())).toEqual(new Set([id]));
      expect(sub.received.map((r) => r.headers['x-krkn-attempt'])).toEqual(['1', '2', '3']);
    } finally {
      await sub.stop();
    }
  });

  it('queues events while a subscriber is offline and delivers all of them, once each and in order, when it is back', async () => {
    const sub = new Subscriber('sub-laptop');
    await sub.start(['laptop/*']);
    await sub.stop(); // the laptop sleeps
    const client = clientFor(publisher);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.publish(`laptop/e${i}`, `event ${i}`)).id);

    const back = new Subscriber('sub-laptop'); // same state dir: same identity and address
    await back.start(['laptop/*']); // subscribing again tells krkns it is back
    await waitFor(async () => (back.received.length >= 5 ? true : undefined), {
      timeoutMs: 30_000,
      what: 'the backlog',
    });
    await new Promise((r) => setTimeout(r, 1_500)); // nothing more may arrive
    try {
      expect(back.ids()).toEqual(ids);
      expect(back.received.map((r) => r.headers['x-krkn-attempt'])).toEqual(['1', '1', '1', '1', '1']);
    } finally {
      await back.stop();
    }
  });

  it('lists subscriptions per caller, and lets only the owner delete one', async () => {
    const sub = new Subscriber('sub-owner');
    const own = await sub.start(['owned']);
    try {
      const [mine] = await own.listSubscriptions();
      expect(mine).toMatchObject({ topics: ['owned'], port: 8080, path: '/in', address: sub.node.addresses[0] });
      const err = await clientFor(publisher)
        .unsubscribe(mine!.id)
        .catch((e: unknown) => e);
      expect((err as HubApiError).code).toBe('NOT_YOURS');
      await own.unsubscribe(mine!.id);
      expect(await own.listSubscriptions()).toEqual([]);
    } finally {
      await sub.stop();
    }
  });
});
