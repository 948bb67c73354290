// Every HubStore method's behaviour, run against both backends: SQLite and a real PostgreSQL.

import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreError, backlogLimitReason, type HubStore, type NewEvent, type Subscription } from '@krkn/hub-store';
import { postgresBackend, sqliteBackend, type StoreUnderTest } from './backends.js';
import { schemaVersion } from '../src/schema.js';
import { PRUNE_BATCH } from '../src/types.js';

// A deliberately simple matcher: the real topic rules live in @krkn/policy and have their own tests.
const matches = (pattern: string, topic: string): boolean =>
  pattern === topic || (pattern.endsWith('/*') && topic.startsWith(pattern.slice(0, -1)));

const sender = { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'tagged-devices', tags: ['tag:ci'] };
function event(topic: string, body = 'payload', extra: Partial<NewEvent> = {}): NewEvent {
  const headers: [string, string][] = [
    ['X-Hub-Signature-256', 'sha256=abc'],
    ['Content-Type', 'application/json'],
  ];
  return { topic, method: 'POST', headers, body: Buffer.from(body), sender, ...extra };
}

async function rejects(promise: Promise<unknown>, code: StoreError['code']): Promise<StoreError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  expect((err as StoreError).code).toBe(code);
  return err as StoreError;
}

describe.each([sqliteBackend, postgresBackend])('HubStore on $name', (backend) => {
  let t: StoreUnderTest;
  let store: HubStore;
  const sub = (nodeId: string, topics: string[], port = 8080): Promise<Subscription> =>
    store.subscribe({ nodeId, nodeName: `${nodeId}.krkn.test`, address: '100.64.0.20', port, path: '/krkn', topics });

  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());
  beforeEach(async () => {
    t = await backend.fresh();
    store = t.store;
  });
  afterEach(() => t.cleanup());

  it('keeps a heartbeat row per replica, with the live leases each holds', async () => {
    const now = Date.now();
    await sub('n1', ['t']);
    await sub('n2', ['t']);
    await store.publish(event('t', 'x'), matches, now);
    await store.heartbeat('krkns-a', now - 2_000, now - 1_000);
    await store.heartbeat('krkns-b', now - 1_500, now - 1_000);
    await store.heartbeat('krkns-a', now - 2_000, now); // a later beat moves seenAt only
    expect(await store.claimDue('krkns-a', now, 10_000, 1)).toHaveLength(1);
    expect(await store.replicas(now)).toEqual([
      { name: 'krkns-a', startedAt: now - 2_000, seenAt: now, leases: 1 },
      { name: 'krkns-b', startedAt: now - 1_500, seenAt: now - 1_000, leases: 0 },
    ]);
    expect((await store.replicas(now + 10_000))[0]!.leases).toBe(0); // the lease lapsed
  });

  it('keeps raw bodies and headers byte for byte', async () => {
    const raw = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // every byte value, NUL included
    const headers: [string, string][] = [
      ['X-Weird', 'a\u0000b ünï "q" \\'],
      ['x-weird', 'second, same name'],
      ['Empty', ''],
    ];
    const { event: e } = await store.publish(event('github', '', { body: raw, headers, method: 'PUT' }), matches);
    const back = (await store.getEvent(e.id))!;
    expect(back.body.equals(raw)).toBe(true);
    expect(back.headers).toEqual(headers);
    expect(back.method).toBe('PUT');
    expect(back.sender).toEqual(sender);
    expect(back).toEqual(e);
    expect(await store.getEvent('evt_nope')).toBeUndefined();
  });

  it('dedupes by key within a topic, not across topics, also when publishes race', async () => {
    const first = await store.publish(event('github', 'a', { dedupeKey: 'd1' }), matches);
    const again = await store.publish(event('github', 'b', { dedupeKey: 'd1' }), matches);
    const other = await store.publish(event('stripe', 'c', { dedupeKey: 'd1' }), matches);
    expect(again).toEqual({ event: first.event, duplicate: true, owedTo: [] });
    expect(other.duplicate).toBe(false);
    const raced = await Promise.all(
      Array.from({ length: 10 }, () => store.publish(event('race', 'x', { dedupeKey: 'r' }), matches)),
    );
    expect(raced.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(new Set(raced.map((r) => r.event.id)).size).toBe(1);
    expect((await store.stats()).events).toBe(3);
  });

  it('owes each event to matching subscriptions only, head of line in receipt order', async () => {
    const s1 = await sub('n1', ['ci/*']);
    const s2 = await sub('n2', ['github']);
    const published = await store.publish(event('ci/build'), matches);
    expect(published.owedTo).toEqual([s1.id]);
    const a = published.event;
    const b = (await store.publish(event('ci/test'), matches)).event;
    expect((await store.publish(event('other'), matches)).owedTo).toEqual([]);
    const due = await store.dueDeliveries(Date.now(), new Set(), 10);
    expect(due.map((d) => [d.subscription.id, d.event.id, d.delivery.state])).toEqual([[s1.id, a.id, 'pending']]);
    expect(due[0]!.subscription).toEqual(s1);
    await store.recordDelivered(s1.id, a.seq, 200);
    expect((await store.dueDeliveries(Date.now(), new Set(), 10)).map((d) => d.event.id)).toEqual([b.id]);
    expect(await store.dueDeliveries(Date.now(), new Set([s1.id]), 10)).toEqual([]);
    expect(await store.listSubscriptions('n2')).toEqual([s2]);
    const byId = (a: Subscription, b: Subscription) => a.id.localeCompare(b.id);
    expect((await store.listSubscriptions()).sort(byId)).toEqual([s1, s2].sort(byId)); // same ms: either order
    expect((await store.deliveriesOf(a.id)).map((d) => [d.subscriptionId, d.state, d.attempts, d.lastStatus])).toEqual([
      [s1.id, 'delivered', 1, 200],
    ]);
  });

  it('hands out at most `limit` heads, one per subscription', async () => {
    const subs = await Promise.all(['n1', 'n2', 'n3'].map((n) => sub(n, ['t'])));
    await store.publish(event('t'), matches);
    await store.publish(event('t'), matches);
    const due = await store.dueDeliveries(Date.now(), new Set(), 2);
    expect(due).toHaveLength(2);
    expect(new Set(due.map((d) => d.subscription.id)).size).toBe(2);
    expect(due.every((d) => subs.some((s) => s.id === d.subscription.id))).toBe(true);
  });

  it('updates a subscription in place when the same node and port subscribe again', async () => {
    const first = await sub('n1', ['a']);
    const again = await store.subscribe(
      { nodeId: 'n1', nodeName: 'renamed', address: '100.64.0.21', port: 8080, path: '/x', topics: ['b'] },
      first.createdAt + 5,
    );
    expect(again).toMatchObject({
      id: first.id,
      nodeName: 'renamed',
      address: '100.64.0.21',
      path: '/x',
      topics: ['b'],
      createdAt: first.createdAt,
    });
    expect(again.updatedAt).toBe(first.createdAt + 5);
    const otherPort = await sub('n1', ['a'], 9090);
    expect(otherPort.id).not.toBe(first.id);
    expect(await store.getSubscription(first.id)).toEqual(again);
  });

  it('spends attempts on rejections and fails after the last one', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    const now = Date.now();
    await store.recordRejected(s.id, e.seq, { status: 500, error: 'HTTP 500', retryAt: now + 5000 }, now);
    expect(await store.dueDeliveries(now, new Set(), 10)).toEqual([]);
    expect(await store.nextDueAt()).toBe(now + 5000);
    expect((await store.dueDeliveries(now + 5000, new Set(), 10)).map((d) => d.delivery.attempts)).toEqual([1]);
    await store.recordRejected(s.id, e.seq, { status: null, error: 'timed out', retryAt: null }, now);
    expect((await store.deliveriesOf(e.id))[0]).toMatchObject({
      state: 'failed',
      attempts: 2,
      lastStatus: null,
      lastError: 'timed out',
    });
    expect(await store.nextDueAt()).toBeNull();
    expect(await store.stats()).toMatchObject({ failed: 1, pending: 0 });
  });

  it('keeps a subscription secret across subscribes, and on rotation keeps the old one until the overlap ends', async () => {
    const input = { nodeId: 'n1', nodeName: 'n1', address: '100.64.0.1', port: 8080, path: '/', topics: ['t'] };
    const first = await store.subscribe({ ...input, secret: 'whsec_one' }, 1_000);
    expect(first).toMatchObject({ secret: 'whsec_one', previousSecret: null });
    const again = await store.subscribe({ ...input, secret: 'whsec_unused' }, 2_000);
    expect(again).toMatchObject({ id: first.id, secret: 'whsec_one', previousSecret: null });
    const rotated = await store.subscribe({ ...input, secret: 'whsec_two', rotateSecretUntil: 9_000 }, 3_000);
    expect(rotated).toMatchObject({ secret: 'whsec_two', previousSecret: { secret: 'whsec_one', until: 9_000 } });
    expect(await store.getSubscription(first.id)).toEqual(rotated);
    const without = await store.subscribe(input, 4_000); // no secret offered: the stored ones stay
    expect(without).toMatchObject({ secret: 'whsec_two', previousSecret: { secret: 'whsec_one', until: 9_000 } });
  });

  it('disables a subscriber that answered 410 Gone, fails its queue, and owes it nothing until it resubscribes', async () => {
    const s = await sub('n1', ['t']);
    const other = await sub('n2', ['t']);
    const first = (await store.publish(event('t'), matches)).event;
    const second = (await store.publish(event('t'), matches)).event;
    const now = Date.now();
    await store.recordGone(s.id, first.seq, 410, 'gone for good', now);
    const mine = async (id: string) => (await store.deliveriesOf(id)).find((d) => d.subscriptionId === s.id);
    expect(await mine(first.id)).toMatchObject({ state: 'failed', attempts: 1, lastStatus: 410 });
    expect(await mine(second.id)).toMatchObject({ state: 'failed', attempts: 0, lastError: 'gone for good' });
    expect((await store.getSubscription(s.id))?.disabled).toEqual({ at: now, reason: 'gone for good' });
    expect((await store.getSubscription(other.id))?.disabled).toBeNull();
    expect(await store.stats()).toMatchObject({ disabledSubscriptions: 1, pending: 2 });

    const third = (await store.publish(event('t'), matches)).event;
    expect((await store.deliveriesOf(third.id)).map((d) => d.subscriptionId)).toEqual([other.id]);
    expect(await store.redeliver(first.id, matches)).toBe(1); // only the other subscriber
    expect((await store.dueDeliveries(now, new Set(), 10)).every((d) => d.subscription.id === other.id)).toBe(true);

    const back = await sub('n1', ['t']);
    expect(back).toMatchObject({ id: s.id, disabled: null });
    const fourth = (await store.publish(event('t'), matches)).event;
    expect((await store.deliveriesOf(fourth.id)).map((d) => d.subscriptionId).sort()).toEqual([s.id, other.id].sort());
  });

  it('holds an unreachable subscriber queue without spending attempts, until it subscribes again', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    const now = Date.now();
    await store.recordUnreachable(s.id, e.seq, 'dial: no route', now + 60_000, now, now);
    expect(await store.dueDeliveries(now + 1000, new Set(), 10)).toEqual([]);
    expect(await store.nextDueAt()).toBe(now + 60_000); // waits for the probe, though the delivery itself is due
    expect((await store.getSubscription(s.id))?.offlineSince).toBe(now);
    expect((await store.deliveriesOf(e.id))[0]).toMatchObject({ attempts: 0, lastError: 'dial: no route' });
    expect(await store.stats()).toMatchObject({ offlineSubscriptions: 1 });
    await sub('n1', ['t']); // it came back
    expect((await store.dueDeliveries(Date.now(), new Set(), 10)).map((d) => d.event.id)).toEqual([e.id]);
    expect((await store.getSubscription(s.id))?.offlineSince).toBeNull();
  });

  it('holds a queue whose address answers for another node, spending nothing, until it subscribes again', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    const now = Date.now();
    const reason = '100.64.0.20 now answers for node n2, not n1';
    await store.recordHeld(s.id, e.seq, reason, now + 60_000, now, now);
    await store.recordHeld(s.id, e.seq, reason, now + 90_000, now + 1, now + 1); // still held: `at` stays
    expect(await store.dueDeliveries(now + 1000, new Set(), 10)).toEqual([]);
    expect(await store.nextDueAt(now)).toBe(now + 90_000);
    expect(await store.getSubscription(s.id)).toMatchObject({ held: { at: now, reason }, offlineSince: null });
    expect((await store.deliveriesOf(e.id))[0]).toMatchObject({ state: 'pending', attempts: 0, lastError: reason });
    expect(await store.stats()).toMatchObject({ heldSubscriptions: 1, offlineSubscriptions: 0, pending: 1 });

    const back = await sub('n1', ['t']); // the subscriber subscribed again (from wherever it is now)
    expect(back.held).toBeNull();
    expect((await store.dueDeliveries(Date.now(), new Set(), 10)).map((d) => d.event.id)).toEqual([e.id]);
    expect(await store.stats()).toMatchObject({ heldSubscriptions: 0 });
  });

  it('ends a hold once the subscriber is reached; ignores one from an attempt begun before it subscribed', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    await store.recordHeld(s.id, e.seq, 'held', Date.now() - 1000, Date.now(), Date.now());
    expect((await store.dueDeliveries(Date.now(), new Set(), 10)).map((d) => d.event.id)).toEqual([e.id]);
    await store.recordDelivered(s.id, e.seq, 204);
    expect((await store.getSubscription(s.id))?.held).toBeNull();

    const attemptStarted = Date.now() - 1000;
    await sub('n1', ['t']);
    await store.recordHeld(s.id, e.seq, 'late', Date.now() + 60_000, attemptStarted);
    expect((await store.getSubscription(s.id))?.held).toBeNull();
  });

  it('fails a refused delivery without an attempt and goes on with the rest of the queue', async () => {
    const s = await sub('n1', ['t']);
    const first = (await store.publish(event('t', 'a'), matches)).event;
    const second = (await store.publish(event('t', 'b'), matches)).event;
    const now = Date.now();
    await store.recordHeld(s.id, first.seq, 'held', now - 1, now, now);
    await store.recordRefused(s.id, first.seq, 'capability revoked', now);
    expect((await store.deliveriesOf(first.id))[0]).toMatchObject({
      state: 'failed',
      attempts: 0,
      lastStatus: null,
      lastError: 'capability revoked',
    });
    expect((await store.getSubscription(s.id))?.held).toBeNull();
    expect((await store.dueDeliveries(now, new Set(), 10)).map((d) => d.event.id)).toEqual([second.id]);
    expect(await store.stats()).toMatchObject({ failed: 1, pending: 1 });
  });

  it('ignores an unreachable result from an attempt that began before the subscriber came back', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    const attemptStarted = Date.now() - 1000;
    await sub('n1', ['t']); // subscribed again while the attempt was in flight
    await store.recordUnreachable(s.id, e.seq, 'dial timed out', Date.now() + 60_000, attemptStarted);
    expect((await store.getSubscription(s.id))?.offlineSince).toBeNull();
    expect((await store.dueDeliveries(Date.now(), new Set(), 10)).map((d) => d.event.id)).toEqual([e.id]);
  });

  it('marks a subscriber offline once, expires it only past the time given, unless it subscribed again', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    await store.markOffline(s.id, 1000);
    await store.markOffline(s.id, 2000); // already offline: the first time stays
    expect((await store.getSubscription(s.id))?.offlineSince).toBe(1000);
    expect(await store.dueDeliveries(Date.now(), new Set(), 10)).toHaveLength(1); // its queue is not parked
    expect(await store.expire(s.id, 999)).toBe(false);
    expect(await store.expire(s.id, 1000)).toBe(true);
    expect(await store.getSubscription(s.id)).toBeUndefined();
    expect(await store.deliveriesOf(e.id)).toEqual([]);
    const again = await sub('n2', ['t']);
    await store.markOffline(again.id, 1000);
    await sub('n2', ['t']); // subscribed again: online, not expired
    expect(await store.expire(again.id, 5000)).toBe(false);
    expect((await store.getSubscription(again.id))?.offlineSince).toBeNull();
  });

  it('wakes an offline subscriber: its queue is due now, it stays marked offline until reached', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    const now = Date.now();
    await store.recordUnreachable(s.id, e.seq, 'offline', now + 60_000, now, now);
    await store.wake(s.id, now + 10);
    expect((await store.dueDeliveries(now + 10, new Set(), 10)).map((d) => d.event.id)).toEqual([e.id]);
    expect((await store.getSubscription(s.id))?.offlineSince).toBe(now);
    await store.recordDelivered(s.id, e.seq, 204);
    expect((await store.getSubscription(s.id))?.offlineSince).toBeNull();
  });

  it('unsubscribing drops what is still owed', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    expect(await store.unsubscribe(s.id)).toBe(true);
    expect(await store.unsubscribe(s.id)).toBe(false);
    expect(await store.deliveriesOf(e.id)).toEqual([]);
    expect(await store.getSubscription(s.id)).toBeUndefined();
    expect(await store.nextDueAt()).toBeNull();
  });

  it('redelivers an event from attempt one, and prunes only what nobody is owed', async () => {
    const s = await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches, 1000)).event;
    await store.recordRejected(s.id, e.seq, { status: 500, error: 'x', retryAt: null });
    expect(await store.redeliver(e.id, matches)).toBe(1);
    expect((await store.deliveriesOf(e.id))[0]).toMatchObject({ state: 'pending', attempts: 0, lastError: null });
    await rejects(store.redeliver('evt_missing', matches), 'NOT_FOUND');
    expect(await store.prune(Date.now())).toBe(0); // still owed
    await store.recordDelivered(s.id, e.seq, 204);
    expect(await store.prune(Date.now())).toBe(1);
    expect(await store.getEvent(e.id)).toBeUndefined();
  });

  it('prunes a backlog larger than one batch, keeping what is newer', async () => {
    const total = 2_600; // more than two PRUNE_BATCHes
    for (let i = 0; i < total; i += 200) {
      await Promise.all(
        Array.from({ length: 200 }, (_, j) => store.publish(event('old', `${i + j}`), matches, 1000 + i + j)),
      );
    }
    const keep = (await store.publish(event('new'), matches, 10_000_000)).event;
    // Batched: each batch commits on its own, so a reader meanwhile sees the store part-pruned (one
    // transaction for all of it would show it whole, then pruned), and other work goes on between batches.
    let pruned: number | undefined;
    const pruning = store.prune(5_000_000).then((n) => (pruned = n));
    const seen = new Set<number>();
    while (pruned === undefined) {
      seen.add((await store.stats()).events);
      await new Promise((r) => setImmediate(r)); // SQLite's stats() resolves at once: let the prune's fsync end
    }
    await pruning;
    expect(pruned).toBe(total);
    expect([...seen].some((n) => n > 1 && n < total + 1 && (total + 1 - n) % PRUNE_BATCH === 0)).toBe(true);
    expect((await store.listEvents()).map((e) => e.id)).toEqual([keep.id]);
  });

  it('lists events by topic, after an id and since a time', async () => {
    const ids: string[] = [];
    for (const [i, t] of ['a', 'b', 'c'].entries())
      ids.push((await store.publish(event(t), matches, 1000 + i)).event.id);
    expect((await store.listEvents()).map((e) => e.id)).toEqual(ids);
    expect((await store.listEvents({ afterId: ids[0] })).map((e) => e.id)).toEqual(ids.slice(1));
    expect((await store.listEvents({ since: 1002 })).map((e) => e.id)).toEqual([ids[2]]);
    expect(await store.listEvents({ since: 5000 })).toEqual([]);
    expect((await store.listEvents({ topicRegexes: ['^b$'] })).map((e) => e.id)).toEqual([ids[1]]);
    expect((await store.listEvents({ afterId: ids[0], since: 1000, limit: 1 })).map((e) => e.id)).toEqual([ids[1]]);
    await rejects(store.listEvents({ afterId: 'evt_missing' }), 'NOT_FOUND');
  });

  it('filters topics in the query with regular expressions both engines read alike, all of them to match', async () => {
    const topics = ['a.b/c', 'axb/c', 'a.b/c/d', 'a+b/(x)', 'é/[y]', 'ci/build'];
    for (const t of topics) await store.publish(event(t), matches);
    const topicsOf = async (topicRegexes: string[]) => (await store.listEvents({ topicRegexes })).map((e) => e.topic);
    // What @krkn/policy's topicPatternsRegex writes for "a.b/*", "a.b/**", "a+b/*", "é/[y]", and "*/c" or "ci/**".
    expect(await topicsOf(['(^a\\.b/[^/]+$)'])).toEqual(['a.b/c']);
    expect(await topicsOf(['(^a\\.b/.+$)'])).toEqual(['a.b/c', 'a.b/c/d']);
    expect(await topicsOf(['(^a\\+b/[^/]+$)'])).toEqual(['a+b/(x)']);
    expect(await topicsOf(['(^é/\\[y\\]$)'])).toEqual(['é/[y]']);
    expect(await topicsOf(['(^[^/]+/c$)|(^ci/.+$)'])).toEqual(['a.b/c', 'axb/c', 'ci/build']);
    expect(await topicsOf(['(^[^/]+/c$)|(^ci/.+$)', '^a'])).toEqual(['a.b/c', 'axb/c']);
    expect(await topicsOf(['$.'])).toEqual([]);
  });

  it('refuses a node subscriptions past maxPerNode, even racing; an update of one it holds passes', async () => {
    const limited = (nodeId: string, port: number) =>
      store.subscribe({
        nodeId,
        nodeName: `${nodeId}.krkn.test`,
        address: '100.64.0.20',
        port,
        path: '/',
        topics: ['t'],
        maxPerNode: 3,
      });
    const raced = await Promise.allSettled([1, 2, 3, 4, 5].map((port) => limited('n1', port)));
    expect(raced.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    for (const r of raced.filter((x) => x.status === 'rejected')) {
      expect(r.reason).toMatchObject({ code: 'SUBSCRIPTION_LIMIT' });
    }
    const held = (await store.listSubscriptions('n1')).map((x) => x.port);
    expect(held).toHaveLength(3);
    const err = await rejects(limited('n1', 9), 'SUBSCRIPTION_LIMIT');
    expect(err.message).toMatch(/n1\.krkn\.test already holds 3 subscriptions/);
    expect((await limited('n1', held[0]!)).port).toBe(held[0]); // an update of a held one
    expect((await limited('n2', 1)).nodeId).toBe('n2'); // another node has its own count
    expect(await store.listSubscriptions('n1')).toHaveLength(3);
  });

  it('fails the oldest pending deliveries, unsent and with a reason, past the backlog bound', async () => {
    const bounded = await t.open({ maxBacklog: 3 });
    const slow = await sub('slow', ['t']);
    const fast = await sub('fast', ['t']);
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push((await bounded.publish(event('t', `${i}`), matches, 1000 + i)).event.seq);
    // fast drains as it goes: its queue never passes the bound.
    for (const seq of seqs) await bounded.recordDelivered(fast.id, seq, 200, 2000);
    const stateOf = async (subscriptionId: string) =>
      Promise.all(
        seqs.map(async (seq) => {
          const events = await bounded.listEvents();
          const id = events.find((e) => e.seq === seq)!.id;
          const d = (await bounded.deliveriesOf(id)).find((x) => x.subscriptionId === subscriptionId)!;
          return [d.state, d.attempts, d.lastError];
        }),
      );
    const reason = backlogLimitReason(3);
    expect(await stateOf(slow.id)).toEqual([
      ['failed', 0, reason],
      ['failed', 0, reason],
      ['pending', 0, null],
      ['pending', 0, null],
      ['pending', 0, null],
    ]);
    expect((await stateOf(fast.id)).map(([state]) => state)).toEqual(Array(5).fill('delivered'));
    const backlog = (await bounded.backlogs()).find((b) => b.subscriptionId === slow.id);
    expect(backlog?.pending).toBe(3);
  });

  it('trims a long backlog in steps of a hundredth of the bound: about 1 % past it at most', async () => {
    const bounded = await t.open({ maxBacklog: 300 }); // trimmed after every 3 owed
    const slow = await sub('slow', ['t']);
    const pendingCounts: number[] = [];
    for (let i = 0; i < 40; i++) {
      await Promise.all(Array.from({ length: 10 }, () => bounded.publish(event('t'), matches)));
      pendingCounts.push((await bounded.backlogs()).find((b) => b.subscriptionId === slow.id)!.pending);
    }
    // The bound, plus a hundredth of it, plus (PostgreSQL) the 10 racing publishes a trim cannot see yet.
    expect(Math.max(...pendingCounts)).toBeLessThanOrEqual(300 + 3 + 10);
    expect(pendingCounts.at(-1)).toBeGreaterThanOrEqual(300);
    const stats = await bounded.stats();
    expect(stats.pending + stats.failed).toBe(400);
  });

  it('tells its size in bytes, growing as events are stored', async () => {
    const before = await store.sizeBytes();
    expect(before).toBeGreaterThan(0);
    // Random bytes: PostgreSQL would compress a repeated character to almost nothing.
    for (let i = 0; i < 20; i++) await store.publish(event('t', '', { body: randomBytes(50_000) }), matches);
    expect(await store.sizeBytes()).toBeGreaterThan(before + 500_000);
  });

  it('lists events without their bodies, with each body size', async () => {
    const big = (await store.publish(event('big', 'x'.repeat(100_000)), matches)).event;
    const [listed] = await store.listEvents();
    expect(listed).not.toHaveProperty('body');
    expect(listed).toEqual({ ...big, body: undefined, size: 100_000 });
    expect((await store.getEvent(big.id))?.size).toBe(100_000);
  });

  it('finds a rare topic past many pages of others', async () => {
    for (let i = 0; i < 1_200; i += 200)
      await Promise.all(Array.from({ length: 200 }, () => store.publish(event('busy'), matches)));
    const rare = (await store.publish(event('rare'), matches)).event;
    expect((await store.listEvents({ topicRegexes: ['^rare$'] })).map((e) => e.id)).toEqual([rare.id]);
  });

  it('lists the events of one exact topic, with the regexes as well, past many of other topics', async () => {
    const rare = (await store.publish(event('ops/pager'), matches)).event;
    for (let i = 0; i < 600; i += 200)
      await Promise.all(Array.from({ length: 200 }, () => store.publish(event('ops/pagerduty'), matches)));
    const newest = (await store.publish(event('ops/pager'), matches)).event;
    const ids = async (q: Parameters<HubStore['listEvents']>[0]) => (await store.listEvents(q)).map((e) => e.id);
    expect(await ids({ topic: 'ops/pager' })).toEqual([rare.id, newest.id]);
    expect(await ids({ topic: 'ops/pager', newestFirst: true, limit: 1 })).toEqual([newest.id]);
    expect(await ids({ topic: 'ops/pager', afterId: rare.id })).toEqual([newest.id]);
    expect(await ids({ topic: 'ops/pager', topicRegexes: ['^ops/'] })).toEqual([rare.id, newest.id]);
    expect(await ids({ topic: 'ops/pager', topicRegexes: ['^ci/'] })).toEqual([]); // both filters hold
  });

  it('gives the deliveries of a page of events in one call, by event then subscription', async () => {
    const s1 = await sub('n1', ['a', 'b']);
    const s2 = await sub('n2', ['a']);
    const a = (await store.publish(event('a'), matches)).event;
    const b = (await store.publish(event('b'), matches)).event;
    const c = (await store.publish(event('c'), matches)).event; // owed to nobody
    await store.recordDelivered(s1.id, a.seq, 200, 5000);
    const pairs = (await store.deliveriesOfEvents([c.seq, b.seq, a.seq])).map((d) => [d.eventSeq, d.subscriptionId]);
    const [first, second] = [s1.id, s2.id].sort();
    expect(pairs).toEqual([
      [a.seq, first],
      [a.seq, second],
      [b.seq, s1.id],
    ]);
    const [ofA] = (await store.deliveriesOfEvents([a.seq])).filter((d) => d.subscriptionId === s1.id);
    expect(ofA).toEqual((await store.deliveriesOf(a.id)).find((d) => d.subscriptionId === s1.id));
    expect(ofA).toMatchObject({ state: 'delivered', lastStatus: 200 });
    expect(await store.deliveriesOfEvents([])).toEqual([]);
  });

  it('lists events newest first, paging back before an id', async () => {
    const ids: string[] = [];
    for (const [i, t] of ['a', 'b', 'c', 'd'].entries())
      ids.push((await store.publish(event(t), matches, 1000 + i)).event.id);
    const idsOf = async (q: Parameters<HubStore['listEvents']>[0]) => (await store.listEvents(q)).map((e) => e.id);
    expect(await idsOf({ newestFirst: true, limit: 2 })).toEqual([ids[3], ids[2]]);
    expect(await idsOf({ newestFirst: true, beforeId: ids[2] })).toEqual([ids[1], ids[0]]);
    expect(await idsOf({ beforeId: ids[3], afterId: ids[0] })).toEqual([ids[1], ids[2]]);
    expect(await idsOf({ newestFirst: true, since: 1002 })).toEqual([ids[3], ids[2]]);
    await rejects(store.listEvents({ beforeId: 'evt_gone' }), 'NOT_FOUND');
  });

  it('finds a rare old topic newest first, past many pages of newer others', async () => {
    const rare = (await store.publish(event('rare'), matches)).event;
    for (let i = 0; i < 1_200; i += 200)
      await Promise.all(Array.from({ length: 200 }, () => store.publish(event('busy'), matches)));
    const newest = (await store.publish(event('rare'), matches)).event;
    const found = await store.listEvents({ newestFirst: true, topicRegexes: ['^rare$'] });
    expect(found.map((e) => e.id)).toEqual([newest.id, rare.id]);
  });

  it("tells each subscription's backlog and last success", async () => {
    const s1 = await sub('n1', ['t']);
    const s2 = await sub('n2', ['other']);
    const a = (await store.publish(event('t'), matches)).event;
    await store.publish(event('t'), matches);
    await store.recordDelivered(s1.id, a.seq, 200, 5000);
    const byId = new Map((await store.backlogs()).map((x) => [x.subscriptionId, x]));
    expect(byId.size).toBe(2);
    expect(byId.get(s1.id)).toEqual({ subscriptionId: s1.id, pending: 1, lastDeliveredAt: 5000 });
    expect(byId.get(s2.id)).toEqual({ subscriptionId: s2.id, pending: 0, lastDeliveredAt: null });
    await store.recordRejected(s1.id, a.seq + 1, { status: 500, error: 'HTTP 500', retryAt: null }, 6000);
    expect(await store.prune(Date.now() + 1)).toBe(2); // the delivered event is gone; its success is still told
    expect((await store.backlogs())[0]).toEqual({ subscriptionId: s1.id, pending: 0, lastDeliveredAt: 5000 });
  });

  it('commits before resolving: concurrent publishes are all visible to another handle, in receipt order', async () => {
    const s = await sub('n1', ['t']);
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => store.publish(event('t', `${i}`), matches)),
    );
    const other = await t.open();
    for (const r of results) expect((await other.getEvent(r.event.id))?.body.toString()).toBe(r.event.body.toString());
    const seqs = results.map((r) => r.event.seq);
    expect(new Set(seqs).size).toBe(100);
    // The subscriber is owed all of them; heads come in seq order as each is delivered.
    const delivered: number[] = [];
    for (;;) {
      const [head] = await other.dueDeliveries(Date.now(), new Set(), 1);
      if (!head) break;
      delivered.push(head.event.seq);
      await other.recordDelivered(s.id, head.event.seq, 200);
    }
    expect(delivered).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('keeps receipt order for a subscriber while publishes race the delivery loop', async () => {
    const s = await sub('n1', ['t']);
    const deliverer = await t.open(); // another handle: another connection, or another replica
    let publishing = true as boolean; // cleared by the publishers' finally, while the loop awaits
    const publishers = Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = 0; i < 15; i++) await store.publish(event('t'), matches);
      }),
    ).finally(() => (publishing = false));
    const delivered: number[] = [];
    while (publishing || (await deliverer.nextDueAt()) !== null) {
      const [head] = await deliverer.dueDeliveries(Date.now(), new Set(), 1);
      if (!head) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      delivered.push(head.event.seq);
      await deliverer.recordDelivered(s.id, head.event.seq, 200);
    }
    await publishers;
    expect(delivered).toHaveLength(240);
    expect(delivered).toEqual([...delivered].sort((a, b) => a - b));
  });

  it('counts what it holds', async () => {
    const s = await sub('n1', ['t']);
    await sub('n2', ['t']);
    const a = (await store.publish(event('t'), matches, 1234)).event;
    await store.publish(event('t'), matches, 1300);
    await store.recordDelivered(s.id, a.seq, 200);
    const stats = await store.stats();
    expect(stats).toMatchObject({
      events: 2,
      subscriptions: 2,
      offlineSubscriptions: 0,
      pending: 3,
      delivered: 1,
      failed: 0,
      oldestPendingAt: 1234,
    });
    expect(stats.databaseBytes).toBeGreaterThan(0);
  });

  it('survives reopening, and refuses a schema newer than it knows', async () => {
    await sub('n1', ['t']);
    const e = (await store.publish(event('t'), matches)).event;
    await store.close();
    const again = await t.open();
    expect((await again.getEvent(e.id))?.topic).toBe('t');
    expect(await again.stats()).toMatchObject({ events: 1, subscriptions: 1, pending: 1 });
    await again.close();
    await t.setSchemaVersion(99);
    const err = await rejects(t.open(), 'SCHEMA_TOO_NEW');
    expect(err.message).toMatch(new RegExp(`schema 99; this krkns knows up to ${schemaVersion}: upgrade krkns`));
  });

  describe('leases across replicas', () => {
    it('gives each subscription to one owner at a time, until released or expired', async () => {
      const subs = await Promise.all(Array.from({ length: 12 }, (_, i) => sub(`n${i}`, ['t'])));
      await store.publish(event('t'), matches);
      const replicas = [store, await t.open(), await t.open()];
      const now = Date.now();
      const claims = await Promise.all(replicas.map((r, i) => r.claimDue(`replica-${i}`, now, 30_000, 100)));
      const claimed = claims.flatMap((c) => c.map((d) => d.subscription.id));
      expect(claimed.sort()).toEqual(subs.map((s) => s.id).sort()); // every one, each exactly once
      // Nothing more while the leases live; the owner itself may renew.
      expect(await replicas[0]!.claimDue('replica-x', now + 1, 30_000, 100)).toEqual([]);
      const [ownerIndex, owned] = [...claims.entries()].find(([, c]) => c.length > 0)!;
      const mine = owned[0]!.subscription.id;
      const renewed = await replicas[ownerIndex]!.claimDue(`replica-${ownerIndex}`, now + 1, 30_000, 100);
      expect(renewed.map((d) => d.subscription.id).sort()).toEqual(owned.map((d) => d.subscription.id).sort());
      // A release by someone else is ignored; by the owner it frees the subscription for anyone.
      await store.releaseLease(mine, 'replica-x');
      expect(await store.claimDue('replica-x', now + 2, 30_000, 100)).toEqual([]);
      await store.releaseLease(mine, `replica-${ownerIndex}`);
      expect((await store.claimDue('replica-x', now + 2, 30_000, 100)).map((d) => d.subscription.id)).toEqual([mine]);
      // Expired leases (a replica that died) go to whoever claims next; replica-x's lease from now + 2 still lives.
      const later = await store.claimDue('replica-y', now + 30_001, 30_000, 100);
      expect(later.map((d) => d.subscription.id).sort()).toEqual(
        subs
          .map((s) => s.id)
          .filter((id) => id !== mine)
          .sort(),
      );
      expect((await store.claimDue('replica-z', now + 30_002, 30_000, 100)).map((d) => d.subscription.id)).toEqual([
        mine,
      ]);
    });

    it('claims only subscriptions with something due, head first', async () => {
      const idle = await sub('idle', ['nothing']);
      const busy = await sub('busy', ['t']);
      const a = (await store.publish(event('t', 'a'), matches)).event;
      await store.publish(event('t', 'b'), matches);
      const now = Date.now();
      const claimed = await store.claimDue('r1', now, 10_000, 10);
      expect(claimed.map((d) => [d.subscription.id, d.event.id])).toEqual([[busy.id, a.id]]);
      expect(claimed.some((d) => d.subscription.id === idle.id)).toBe(false);
      // While leased, the queue counts as due when the lease runs out; released, it is due again.
      expect(await store.nextDueAt(now)).toBe(now + 10_000);
      await store.releaseLease(busy.id, 'r1');
      expect(await store.nextDueAt(now)).toBe(a.receivedAt);
    });

    it("records an outcome and gives its owner's lease back in one step, another owner's not", async () => {
      const s = await sub('n', ['t']);
      const a = (await store.publish(event('t', 'a'), matches)).event;
      const b = (await store.publish(event('t', 'b'), matches)).event;
      const now = Date.now();
      expect((await store.claimDue('r1', now, 10_000, 10)).map((d) => d.event.id)).toEqual([a.id]);
      await store.recordDelivered(s.id, a.seq, 204, now, 'r2'); // not r2's lease: r1 keeps it
      expect(await store.claimDue('r2', now, 10_000, 10)).toEqual([]);
      await store.recordRejected(s.id, b.seq, { status: 500, error: 'x', retryAt: now }, now, 'r1');
      expect((await store.claimDue('r2', now, 10_000, 10)).map((d) => d.event.id)).toEqual([b.id]);
      expect(await store.deliveriesOf(a.id)).toMatchObject([{ state: 'delivered', lastStatus: 204 }]);
    });

    it('never hands one subscription to two claimers racing many times', async () => {
      const subs = await Promise.all(Array.from({ length: 6 }, (_, i) => sub(`n${i}`, ['t'])));
      await store.publish(event('t'), matches);
      const replicas = [store, await t.open(), await t.open(), await t.open()];
      const base = Date.now();
      for (let round = 0; round < 10; round++) {
        const now = base + round * 1000; // each round after the last round's 500 ms leases expired
        const claims = await Promise.all(replicas.map((r, i) => r.claimDue(`r${i}`, now, 500, 2)));
        const ids = claims.flatMap((c) => c.map((d) => d.subscription.id));
        expect(new Set(ids).size).toBe(ids.length);
        expect(ids.length).toBe(subs.length);
      }
    });
  });
});
