// Delivery targets stay honest, on a real headscale whose IPv4 prefix is a /30: two node addresses, one for
// krkns and one for a subscriber. When the ephemeral subscriber leaves, headscale gives its address to the
// next node; krkns must not hand that node the subscriber's events. In capability mode, a revoked grant
// stops deliveries too.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient } from '@krkn/cli-kit';
import { HubApiError, HubClient, type SubscriptionInfo } from '@krkn/hub-api';
import { serveFastify, tailnetFetch, type TailnetNode } from '@krkn/tailnet';
import { startTailnet, waitFor, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';
import { peerNode } from './peers.js';

const capability = 'krkn.dev/cap/webhooks';
const everyoneReaches = { src: ['*'], dst: ['*'], ip: ['*'] };
const jobsGrant = { src: ['*'], dst: ['*'], app: { [capability]: [{ subscribe: ['jobs/**'], read: ['jobs/**'] }] } };

let tailnet: Tailnet;
let ephemeralKey: string;
let krkns: Krkns;
let admin: HubClient;
const dir = mkdtempSync(join(tmpdir(), 'krkns-targets-'));

/** One of our nodes listening on 8080 /in, recording the ids of the events krkns delivers to it. */
class Receiver {
  readonly received: string[] = [];
  readonly node: TailnetNode;
  private app: FastifyInstance | undefined;

  constructor(hostname: string) {
    this.node = peerNode(tailnet, { hostname, authKey: ephemeralKey, dir, ephemeral: true });
  }

  async start(): Promise<this> {
    await this.node.up();
    this.app = Fastify();
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', { parseAs: 'buffer' }, (_r, body, done) => done(null, body));
    this.app.post('/in', async (req, reply) => {
      this.received.push(String(req.headers['x-krkn-event-id']));
      return reply.code(204).send();
    });
    await serveFastify(this.app, this.node, 8080);
    return this;
  }

  /** Subscribes to jobs/** once krkns answers (a fresh node takes a moment to reach it). */
  subscribe(): Promise<SubscriptionInfo> {
    const hub = new HubClient(`http://${krkns.ip}`, (url, init) => tailnetFetch(this.node, url, init));
    return waitFor(() => hub.subscribe({ topics: ['jobs/**'], port: 8080, path: '/in' }), {
      timeoutMs: 20_000,
      what: `${this.node.hostname} subscribing`,
    });
  }

  async stop(): Promise<void> {
    await this.app?.close();
    await this.node.close();
  }
}

const subscription = async (id: string) => (await admin.listSubscriptions()).find((s) => s.id === id)!;
const deliveryOf = async (eventId: string, subscriptionId: string) =>
  (await admin.getEvent(eventId)).deliveries.find((d) => d.subscriptionId === subscriptionId)!;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  tailnet = await startTailnet({ ipv4Prefix: '100.64.0.0/30', ipAllocation: 'random' });
  const user = await tailnet.createUser('targets');
  await tailnet.setPolicy(JSON.stringify({ grants: [everyoneReaches, jobsGrant] }));
  const hubKey = await tailnet.createPreAuthKey({ user: user.id });
  ephemeralKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true, ephemeral: true });
  krkns = await Krkns.run({
    controlUrl: tailnet.url,
    stateDir: join(dir, 'krkns'),
    hostname: 'hub',
    authKey: hubKey,
    args: ['--require-capability', '--retry-schedule', '0,1s,1s'],
  });
  admin = new HubClient('http://admin', new AdminClient(join(dir, 'krkns', 'krkns.sock')).fetch);
}, 90_000);

afterAll(async () => {
  await (krkns as Krkns | undefined)?.stop();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('delivery targets', () => {
  let intruder: Receiver;
  let heldId: string;

  it("holds a deleted subscriber's events when its address is re-issued: the new holder receives nothing", async () => {
    const subscriber = await new Receiver('sub-a').start();
    const sub = await subscriber.subscribe();
    heldId = sub.id;
    const before = await admin.publish('jobs/one', 'for sub-a');
    await waitFor(async () => subscriber.received.includes(before.id) || undefined, {
      timeoutMs: 20_000,
      what: 'the first event at the subscriber',
    });
    const address = subscriber.node.addresses[0]!;
    await subscriber.stop(); // an ephemeral node logs out: headscale deletes it and frees its address
    await waitFor(async () => (await tailnet.listNodes()).every((n) => n.name !== 'sub-a') || undefined, {
      timeoutMs: 15_000,
      what: 'headscale deleting sub-a',
    });

    intruder = await new Receiver('sub-b').start(); // same port and path as sub-a
    expect(intruder.node.addresses[0]).toBe(address); // the /30 had only that address left
    await waitFor(() => intruder.node.ping(krkns.ip, { timeoutMs: 2_000 }), {
      timeoutMs: 20_000,
      what: 'krkns and sub-b knowing each other',
    });

    const after = await admin.publish('jobs/two', 'still for sub-a');
    const held = await waitFor(async () => (await subscription(sub.id)).held ?? undefined, {
      timeoutMs: 20_000,
      what: "sub-a's subscription held",
    });
    expect(held.reason).toContain(`${address} now answers for sub-b.${tailnet.domain}`);
    expect(held.reason).toContain(`not for the subscriber sub-a.${tailnet.domain}`);
    expect(await deliveryOf(after.id, sub.id)).toMatchObject({ state: 'pending', attempts: 0, lastError: held.reason });
    expect((await admin.status()).storage).toMatchObject({ heldSubscriptions: 1, offlineSubscriptions: 0 });
    expect(krkns.stdout + krkns.stderr).toContain('not sent: the target is not the subscriber');
    const page = await tailnetFetch(intruder.node, `http://${krkns.ip}/ui/subscribers`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(`held since ${held.at}`);
    expect(html).toContain(held.reason); // no character in it that HTML escapes

    await pause(5_000); // the held queue is checked again at its probes (2 s, then 2-3 s later)
    expect(intruder.received).toEqual([]);
    expect(await deliveryOf(after.id, sub.id)).toMatchObject({ state: 'pending', attempts: 0 });
  }, 120_000);

  it('in capability mode, a revoked grant fails deliveries to a subscriber unsent, with the reason', async () => {
    const own = await intruder.subscribe(); // sub-b's own subscription: events may go to it
    const granted = await admin.publish('jobs/three', 'for sub-b');
    await waitFor(async () => intruder.received.includes(granted.id) || undefined, {
      timeoutMs: 20_000,
      what: 'an event at sub-b through its own subscription',
    });

    await tailnet.setPolicy(JSON.stringify({ grants: [everyoneReaches] }));
    const hub = new HubClient(`http://${krkns.ip}`, (url, init) => tailnetFetch(intruder.node, url, init));
    await waitFor(
      async () => {
        const err = await hub.subscribe({ topics: ['jobs/**'], port: 8080, path: '/in' }).catch((e: unknown) => e);
        return err instanceof HubApiError && err.code === 'MISSING_CAPABILITY' ? err : undefined;
      },
      { timeoutMs: 20_000, what: 'krkns seeing the grant revoked' },
    );

    const revoked = await admin.publish('jobs/four', 'no longer for sub-b');
    const failed = await waitFor(
      async () => {
        const d = await deliveryOf(revoked.id, own.id);
        return d.state === 'failed' ? d : undefined;
      },
      { timeoutMs: 20_000, what: 'the delivery to sub-b failing' },
    );
    expect(failed).toMatchObject({ attempts: 0, lastStatus: null });
    expect(failed.lastError).toMatch(/^not sent: .*has no grant of the app capability krkn\.dev\/cap\/webhooks/);
    expect(intruder.received).toEqual([granted.id]); // once, through its own subscription; never sub-a's
    expect((await subscription(heldId)).held).not.toBeNull();
    expect(krkns.stdout + krkns.stderr).toContain('not sent: the subscriber may not receive it');
    await intruder.stop();
  }, 120_000);
});
