import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HubStore, type NewEvent } from '@krkn/hub-store';

// A deliberately simple matcher: the real topic rules live in @krkn/policy and have their own tests.
const matches = (pattern: string, topic: string): boolean =>
  pattern === topic || (pattern.endsWith('/*') && topic.startsWith(pattern.slice(0, -1)));

let dir: string;
let store: HubStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'krkn-store-'));
  store = HubStore.open(join(dir, 'hub.db'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const sender = { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'tagged-devices', tags: ['tag:ci'] };
function event(topic: string, body = 'payload', extra: Partial<NewEvent> = {}): NewEvent {
  return { topic, method: 'POST', headers: [['X-Hub-Signature-256', 'sha256=abc'], ['Content-Type', 'application/json']], body: Buffer.from(body), sender, ...extra };
}
function sub(nodeId: string, topics: string[], port = 8080) {
  return store.subscribe({ nodeId, nodeName: `${nodeId}.krkn.test`, address: '100.64.0.20', port, path: '/krkn', topics });
}

describe('HubStore', () => {
  it('keeps raw bodies and headers byte for byte, in a 0600 file', () => {
    const raw = Buffer.from([0, 255, 10, 13, 0x7b]);
    const { event: e } = store.publish(event('github', '', { body: raw }), matches);
    const back = store.getEvent(e.id)!;
    expect(back.body.equals(raw)).toBe(true);
    expect(back.headers).toEqual([['X-Hub-Signature-256', 'sha256=abc'], ['Content-Type', 'application/json']]);
    expect(back.sender).toEqual(sender);
    expect(statSync(join(dir, 'hub.db')).mode & 0o777).toBe(0o600);
  });

  it('dedupes by key within a topic, not across topics', () => {
    const first = store.publish(event('github', 'a', { dedupeKey: 'd1' }), matches);
    const again = store.publish(event('github', 'b', { dedupeKey: 'd1' }), matches);
    const other = store.publish(event('stripe', 'c', { dedupeKey: 'd1' }), matches);
    expect(again.duplicate).toBe(true);
    expect(again.event.id).toBe(first.event.id);
    expect(other.duplicate).toBe(false);
    expect(store.stats().events).toBe(2);
  });

  it('owes each event to matching subscriptions only, head of line in receipt order', () => {
    const s1 = sub('n1', ['ci/*']);
    const s2 = sub('n2', ['github']);
    const a = store.publish(event('ci/build'), matches).event;
    const b = store.publish(event('ci/test'), matches).event;
    store.publish(event('other'), matches);
    const due = store.dueDeliveries(Date.now(), new Set(), 10);
    expect(due.map((d) => [d.subscription.id, d.event.id])).toEqual([[s1.id, a.id]]);
    store.recordDelivered(s1.id, a.seq, 200);
    expect(store.dueDeliveries(Date.now(), new Set(), 10).map((d) => d.event.id)).toEqual([b.id]);
    expect(store.dueDeliveries(Date.now(), new Set([s1.id]), 10)).toEqual([]);
    expect(store.listSubscriptions('n2')).toEqual([s2]);
  });

  it('spends attempts on rejections and fails after the last one', () => {
    const s = sub('n1', ['t']);
    const e = store.publish(event('t'), matches).event;
    const now = Date.now();
    store.recordRejected(s.id, e.seq, { status: 500, error: 'HTTP 500', retryAt: now + 5000 }, now);
    expect(store.dueDeliveries(now, new Set(), 10)).toEqual([]);
    expect(store.nextDueAt()).toBe(now + 5000);
    store.recordRejected(s.id, e.seq, { status: 500, error: 'HTTP 500', retryAt: null }, now);
    const [d] = store.deliveriesOf(e.id);
    expect(d).toMatchObject({ state: 'failed', attempts: 2, lastStatus: 500 });
    expect(store.stats().failed).toBe(1);
  });

  it('holds an unreachable subscriber queue without spending attempts, until it subscribes again', () => {
    const s = sub('n1', ['t']);
    const e = store.publish(event('t'), matches).event;
    const now = Date.now();
    store.recordUnreachable(s.id, e.seq, 'dial: no route', now + 60_000, now, now);
    expect(store.dueDeliveries(now + 1000, new Set(), 10)).toEqual([]);
    expect(store.getSubscription(s.id)?.offlineSince).toBe(now);
    expect(store.deliveriesOf(e.id)[0]?.attempts).toBe(0);
    sub('n1', ['t']); // it came back
    expect(store.dueDeliveries(Date.now(), new Set(), 10).map((d) => d.event.id)).toEqual([e.id]);
    expect(store.getSubscription(s.id)?.offlineSince).toBeNull();
  });

  it('ignores an unreachable result from an attempt that began before the subscriber came back', () => {
    const s = sub('n1', ['t'], 8080);
    const e = store.publish(event('t'), matches).event;
    const attemptStarted = Date.now() - 1000;
    sub('n1', ['t'], 8080); // subscribed again while the attempt was in flight
    store.recordUnreachable(s.id, e.seq, 'dial timed out', Date.now() + 60_000, attemptStarted);
    expect(store.getSubscription(s.id)?.offlineSince).toBeNull();
    expect(store.dueDeliveries(Date.now(), new Set(), 10).map((d) => d.event.id)).toEqual([e.id]);
  });

  it('redelivers an event from attempt one, and prunes only what nobody is owed', () => {
    const s = sub('n1', ['t']);
    const e = store.publish(event('t'), matches, 1000).event;
    store.recordRejected(s.id, e.seq, { status: 500, error: 'x', retryAt: null });
    expect(store.redeliver(e.id, matches)).toBe(1);
    expect(store.deliveriesOf(e.id)[0]).toMatchObject({ state: 'pending', attempts: 0 });
    expect(store.prune(Date.now())).toBe(0); // still owed
    store.recordDelivered(s.id, e.seq, 204);
    expect(store.prune(Date.now())).toBe(1);
    expect(store.getEvent(e.id)).toBeUndefined();
  });

  it('lists events by topic, after an id and since a time', () => {
    const ids = ['a', 'b', 'c'].map((t, i) => store.publish(event(t), matches, 1000 + i).event.id);
    expect(store.listEvents().map((e) => e.id)).toEqual(ids);
    expect(store.listEvents({ afterId: ids[0] }).map((e) => e.id)).toEqual(ids.slice(1));
    expect(store.listEvents({ since: 1002 }).map((e) => e.id)).toEqual([ids[2]]);
    expect(store.listEvents({ topic: (t) => t === 'b' }).map((e) => e.id)).toEqual([ids[1]]);
    expect(store.listEvents({ limit: 1 })).toHaveLength(1);
  });

  it("tells each subscription's backlog and last success", () => {
    const s1 = sub('n1', ['t']);
    const s2 = sub('n2', ['other']);
    const [a, b] = [store.publish(event('t'), matches).event, store.publish(event('t'), matches).event];
    store.recordDelivered(s1.id, a.seq, 200, 5000);
    const byId = new Map(store.backlogs().map((x) => [x.subscriptionId, x]));
    expect(byId.get(s1.id)).toEqual({ subscriptionId: s1.id, pending: 1, lastDeliveredAt: 5000 });
    expect(byId.get(s2.id)).toEqual({ subscriptionId: s2.id, pending: 0, lastDeliveredAt: null });
    expect(b.seq).toBeGreaterThan(a.seq);
  });

  it('lists events newest first, paging back before an id', () => {
    const ids = ['a', 'b', 'c', 'd'].map((t, i) => store.publish(event(t), matches, 1000 + i).event.id);
    expect(store.listEvents({ newestFirst: true, limit: 2 }).map((e) => e.id)).toEqual([ids[3], ids[2]]);
    expect(store.listEvents({ newestFirst: true, beforeId: ids[2] }).map((e) => e.id)).toEqual([ids[1], ids[0]]);
    expect(store.listEvents({ beforeId: ids[3], afterId: ids[0] }).map((e) => e.id)).toEqual([ids[1], ids[2]]);
    expect(() => store.listEvents({ beforeId: 'evt_gone' })).toThrow(/no event evt_gone/);
  });

  it('survives reopening', () => {
    sub('n1', ['t']);
    const e = store.publish(event('t'), matches).event;
    store.close();
    store = HubStore.open(join(dir, 'hub.db'));
    expect(store.getEvent(e.id)?.topic).toBe('t');
    expect(store.stats()).toMatchObject({ events: 1, subscriptions: 1, pending: 1 });
  });
});
