// krkns's bounds on growth, end to end: a real daemon on a real headscale, our nodes as its peers.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubApiError, HubClient } from '@krkn/hub-api';
import { tailnetFetch, type TailnetNode } from '@krkn/tailnet';
import { startTailnet, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';
import { peerNode } from './peers.js';

let tailnet: Tailnet;
let authKey: string;
let krkns: Krkns;
let subscriber: TailnetNode;
let hubUrl: string;
const dir = mkdtempSync(join(tmpdir(), 'krkns-limits-'));
const expiry = '4s';

function clientFor(node: TailnetNode): HubClient {
  return new HubClient(hubUrl, (url, init) => tailnetFetch(node, url, init));
}

async function apiError(promise: Promise<unknown>): Promise<HubApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HubApiError);
  return err as HubApiError;
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('limits');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  subscriber = peerNode(tailnet, { hostname: 'subscriber', authKey, dir });
  [krkns] = await Promise.all([
    Krkns.run({
      controlUrl: tailnet.url,
      stateDir: join(dir, 'krkns'),
      hostname: 'hub',
      authKey,
      args: [
        ['--max-subscriptions-per-node', '2'],
        ['--max-topics-per-subscription', '3'],
        ['--max-backlog', '2'],
        ['--max-store-size', '3MiB'],
        ['--body-limit', '1MiB'],
        ['--subscription-expiry', expiry],
        ['--retry-schedule', '0,1h'],
      ].flat(),
    }),
    subscriber.up(),
  ]);
  hubUrl = `http://${krkns.ip}`;
}, 120_000);

afterAll(async () => {
  await (krkns as Krkns | undefined)?.stop();
  await (subscriber as TailnetNode | undefined)?.close();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('krkns limits over the tailnet', () => {
  it('answers 409 SUBSCRIPTION_LIMIT past the subscriptions per node, 400 TOO_MANY_TOPICS past topics', async () => {
    const hub = clientFor(subscriber);
    for (const port of [8080, 8081]) await hub.subscribe({ topics: ['quiet/a'], port, path: '/in' });
    const third = await apiError(hub.subscribe({ topics: ['quiet/a'], port: 8082, path: '/in' }));
    expect([third.status, third.code]).toEqual([409, 'SUBSCRIPTION_LIMIT']);
    expect(third.message).toMatch(/already holds 2 subscriptions/);
    const wide = await apiError(hub.subscribe({ topics: ['a', 'b', 'c', 'd'], port: 8080, path: '/in' }));
    expect([wide.status, wide.code]).toEqual([400, 'TOO_MANY_TOPICS']);
    expect((await hub.listSubscriptions()).map((s) => s.topics)).toEqual([['quiet/a'], ['quiet/a']]);
  });

  it('fails the oldest pending delivery, unsent and with the reason, past the backlog bound', async () => {
    const hub = clientFor(subscriber);
    // Port 8080 has no listener: every delivery stays pending, the queue grows.
    await hub.subscribe({ topics: ['backlog/t'], port: 8080, path: '/in' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await hub.publish('backlog/t', `event ${i}`)).id);
    const states = await Promise.all(ids.map(async (id) => (await hub.getEvent(id)).deliveries));
    expect(states.map((ds) => ds.map((d) => d.state))).toEqual([['failed'], ['pending'], ['pending']]);
    expect(states[0]![0]!.attempts).toBe(0);
    expect(states[0]![0]!.lastError).toMatch(/^backlog limit: more than 2 deliveries were owed/);
  });

  it('expires the subscription of a node gone from the tailnet past the expiry, with a log line', async () => {
    const gone = peerNode(tailnet, { hostname: 'gone', authKey, dir });
    await gone.up();
    const sub = await clientFor(gone).subscribe({ topics: ['expiry/t'], port: 8080, path: '/in' });
    await gone.close();
    await krkns.waitFor(new RegExp(`"subscription":"${sub.id}"[^\\n]*subscription expired`), 90_000);
    const published = await clientFor(subscriber).publish('expiry/t', 'after');
    expect((await clientFor(subscriber).getEvent(published.id)).deliveries).toEqual([]);
    // The subscriber stayed online all along: none of its subscriptions expired.
    expect(await clientFor(subscriber).listSubscriptions()).toHaveLength(2);
  }, 120_000);

  it('answers 507 STORE_LIMIT past --max-store-size, and krkns stays up', async () => {
    const hub = clientFor(subscriber);
    let refused: HubApiError | undefined;
    for (let i = 0; i < 6 && !refused; i++) {
      refused = await hub.publish('big/t', randomBytes(900 * 1024)).then(
        () => undefined,
        (e: unknown) => e as HubApiError,
      );
    }
    expect(refused).toBeInstanceOf(HubApiError);
    expect([refused!.status, refused!.code]).toEqual([507, 'STORE_LIMIT']);
    expect(refused!.message).toMatch(/--max-store-size/);
    const health = await tailnetFetch(subscriber, `${hubUrl}/healthz`);
    expect(health.status).toBe(200);
  }, 60_000);
});
