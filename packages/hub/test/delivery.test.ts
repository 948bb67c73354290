// The deliverer against a real SQLite store, a recording SendAttempt and fake timers (Date and
// setTimeout move only when the test says so).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { HubStore, NewEvent } from '@krkn/hub-store';
import { topicMatches } from '@krkn/policy';
import { Deliverer } from '../src/delivery.js';
import type { DeliveryStore } from '../src/ports.js';
import { Recorder, silentLogger, tempStore } from './helpers.js';

const schedule = [0, 5_000, 60_000];
const t0 = Date.parse('2026-01-01T00:00:00Z');

let store: HubStore;
let dispose: () => void;
let rec: Recorder;
let deliverer: Deliverer | undefined;

beforeEach(() => {
  vi.useFakeTimers({ now: t0 });
  draw = 0.5;
  ({ store, dispose } = tempStore());
  rec = new Recorder();
});
afterEach(async () => {
  await deliverer?.stop(0);
  deliverer = undefined;
  vi.useRealTimers();
  dispose();
});

// The jitter's draw: 0.5 is no jitter at all, 0 the most negative, just under 1 the most positive.
let draw = 0.5;

function start(over: DeliveryStore = store, maxConcurrent = 4): Deliverer {
  const options = { retryScheduleMs: schedule, maxConcurrent, logger: silentLogger, random: () => draw };
  deliverer = new Deliverer(over, rec.send, options);
  deliverer.start();
  return deliverer;
}

function publish(topic: string, body = '{}'): string {
  const input: NewEvent = {
    topic,
    method: 'POST',
    headers: [['content-type', 'application/json']],
    body: Buffer.from(body),
    sender: { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'ci', tags: [] },
  };
  return store.publish(input, topicMatches).event.id;
}

function subscribe(name: string, topics = ['ci/**']): string {
  const address = `100.64.0.${name.length}`;
  return store.subscribe({ nodeId: name, nodeName: `${name}.krkn.test`, address, port: 80, path: '/', topics }).id;
}

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);
const deliveryOf = (event: string) => store.deliveriesOf(event)[0]!;

describe('Deliverer', () => {
  it('delivers a due event at once and records the 2xx', async () => {
    subscribe('a');
    const id = publish('ci/build');
    start();
    await advance(0);
    expect(rec.sent).toEqual([{ event: id, subscription: expect.any(String) as unknown, attempt: 1, at: t0 }]);
    expect(deliveryOf(id)).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200 });
  });

  it('retries a rejected delivery on the schedule, then fails it for good after the last entry', async () => {
    subscribe('a');
    const id = publish('ci/build');
    rec.answer = () => ({ kind: 'rejected', status: 500, error: 'HTTP 500' });
    start();
    await advance(0);
    await advance(4_999);
    expect(rec.sent.map((s) => s.attempt)).toEqual([1]);
    await advance(1);
    await advance(60_000);
    expect(rec.sent.map((s) => [s.attempt, s.at - t0])).toEqual([
      [1, 0],
      [2, 5_000],
      [3, 65_000],
    ]);
    expect(deliveryOf(id)).toMatchObject({ state: 'failed', attempts: 3, lastStatus: 500, lastError: 'HTTP 500' });
    await advance(10 * 60_000);
    expect(rec.sent).toHaveLength(3);
  });

  it('spreads retries by the jitter: the lowest draw retries 20% sooner, the highest 20% later', async () => {
    subscribe('a');
    subscribe('bb');
    publish('ci/build');
    rec.answer = () => ({ kind: 'rejected', status: 500, error: 'HTTP 500' });
    const draws = [0, 0.999_999];
    const options = { retryScheduleMs: schedule, maxConcurrent: 4, logger: silentLogger, random: () => draws.shift()! };
    deliverer = new Deliverer(store, rec.send, options);
    deliverer.start();
    await advance(0);
    await advance(3_999);
    expect(rec.sent.map((s) => s.attempt)).toEqual([1, 1]);
    await advance(1); // 5 s - 20%
    expect(rec.sent.map((s) => [s.attempt, s.at - t0])).toEqual([
      [1, 0],
      [1, 0],
      [2, 4_000],
    ]);
    await advance(1_999);
    expect(rec.sent).toHaveLength(3);
    await advance(1); // 5 s + 20%
    expect(rec.sent.at(-1)).toMatchObject({ attempt: 2, at: t0 + 6_000 });
  });

  it('waits as long as a Retry-After asks (never sooner than the schedule), up to one hour', async () => {
    subscribe('a');
    publish('ci/build');
    const retryAfters = [30_000, 1_000, 24 * 3600e3];
    rec.answer = () => ({ kind: 'rejected', status: 429, error: 'HTTP 429', retryAfterMs: retryAfters.shift()! });
    deliverer = new Deliverer(store, rec.send, {
      retryScheduleMs: [0, 5_000, 60_000, 60_000],
      maxConcurrent: 4,
      logger: silentLogger,
      random: () => 0.5,
    });
    deliverer.start();
    await advance(0);
    await advance(29_999);
    expect(rec.sent).toHaveLength(1); // the schedule says 5 s; the subscriber asked for 30 s
    await advance(1);
    expect(rec.sent).toHaveLength(2);
    await advance(59_999);
    expect(rec.sent).toHaveLength(2); // asked for 1 s: the schedule's 60 s still holds
    await advance(1);
    expect(rec.sent).toHaveLength(3);
    await advance(3600e3 - 1); // asked for a day: bounded to an hour
    expect(rec.sent).toHaveLength(3);
    await advance(1);
    expect(rec.sent.map((s) => s.at - t0)).toEqual([0, 30_000, 90_000, 90_000 + 3600e3]);
  });

  it('410 Gone disables the subscription, fails what it was owed, and owes it nothing new until it subscribes again', async () => {
    const sub = subscribe('a');
    const first = publish('ci/one');
    const second = publish('ci/two');
    rec.answer = () => ({ kind: 'gone', status: 410 });
    const d = start();
    await advance(0);
    expect(rec.sent).toHaveLength(1);
    expect(deliveryOf(first)).toMatchObject({ state: 'failed', attempts: 1, lastStatus: 410 });
    expect(deliveryOf(second)).toMatchObject({ state: 'failed', attempts: 0 });
    expect(deliveryOf(second).lastError).toMatch(/410 Gone/);
    expect(store.getSubscription(sub)!.disabled).toEqual({
      at: t0,
      reason: expect.stringMatching(/410 Gone/) as unknown,
    });
    expect(store.stats().disabledSubscriptions).toBe(1);

    const third = publish('ci/three');
    expect(store.deliveriesOf(third)).toEqual([]);
    expect(store.redeliver(first, topicMatches)).toBe(0);
    d.kick();
    await advance(60_000);
    expect(rec.sent).toHaveLength(1);

    rec.answer = () => ({ kind: 'delivered', status: 200 });
    subscribe('a'); // the same node and port: the subscription comes back
    expect(store.getSubscription(sub)!.disabled).toBeNull();
    const fourth = publish('ci/four');
    d.kick();
    await advance(0);
    expect(rec.sent.map((s) => s.event).slice(1)).toEqual([fourth]);
  });

  it('a send that throws counts as a rejection, not a crash', async () => {
    subscribe('a');
    const id = publish('ci/build');
    rec.answer = () => {
      throw new Error('socket hang up');
    };
    start();
    await advance(0);
    expect(deliveryOf(id)).toMatchObject({ state: 'pending', attempts: 1, lastError: 'socket hang up' });
  });

  it('parks an unreachable subscriber without spending attempts, probes it later, and resumes when woken', async () => {
    const sub = subscribe('a');
    const first = publish('ci/one');
    rec.answer = () => ({ kind: 'unreachable', error: 'no route to peer' });
    const d = start();
    await advance(0);
    expect(rec.sent).toHaveLength(1);
    expect(store.getSubscription(sub)!.offlineSince).toBe(t0);
    const second = publish('ci/two');
    d.kick(); // a publish kicks; the parked queue must not move before its probe
    await advance(1_999);
    expect(rec.sent).toHaveLength(1);
    await advance(1); // the first probe, minProbeMs after parking
    expect(rec.sent).toHaveLength(2);
    expect(deliveryOf(first)).toMatchObject({ state: 'pending', attempts: 0, lastError: 'no route to peer' });

    rec.answer = () => ({ kind: 'delivered', status: 204 });
    store.wake(sub); // what Hub does when the netmap shows the subscriber online
    d.kick();
    await advance(1); // the second attempt starts on the next timer turn after the first ends
    expect(rec.sent.slice(2).map((s) => s.event)).toEqual([first, second]);
    expect(deliveryOf(first)).toMatchObject({ state: 'delivered', attempts: 1 });
    expect(store.getSubscription(sub)!.offlineSince).toBeNull();
  });

  it('keeps retry and probe times when the wall clock jumps back an hour (monotonic clock)', async () => {
    const a = subscribe('a');
    const bb = subscribe('bb');
    publish('ci/build');
    rec.answer = (due) =>
      due.subscription.nodeId === 'a'
        ? { kind: 'rejected', status: 500, error: 'HTTP 500' }
        : { kind: 'unreachable', error: 'no route to peer' };
    start();
    await advance(0);
    expect(rec.sent).toHaveLength(2);
    vi.setSystemTime(Date.now() - 3600e3); // an NTP step or `date -s`: timers and performance.now() go on
    await advance(5_000); // the retry of 'a' is due at 5 s; 'bb' is probed at 2 s and 4 s
    const attemptsOf = (sub: string) => rec.sent.filter((s) => s.subscription === sub).map((s) => s.attempt);
    expect({ a: attemptsOf(a), bb: attemptsOf(bb) }).toEqual({ a: [1, 2], bb: [1, 1, 1] });
  });

  it('keeps one attempt in flight per subscriber, in receipt order, while subscribers run side by side', async () => {
    const a = subscribe('a');
    const b = subscribe('bb');
    const ids = [publish('ci/1'), publish('ci/2'), publish('ci/3')];
    rec.hold = true;
    start();
    await advance(0);
    for (let i = 0; i < 3; i++) {
      expect(rec.waiting).toBe(2); // one for a, one for b
      rec.release();
      await advance(0);
    }
    expect(rec.maxInFlight).toBe(2);
    expect(rec.sent.filter((s) => s.subscription === a).map((s) => s.event)).toEqual(ids);
    expect(rec.sent.filter((s) => s.subscription === b).map((s) => s.event)).toEqual(ids);
  });

  it('starts no more subscribers at once than maxConcurrent', async () => {
    for (const name of ['a', 'bb', 'ccc']) subscribe(name);
    publish('ci/1');
    rec.hold = true;
    start(store, 2);
    await advance(0);
    expect(rec.waiting).toBe(2);
    rec.release();
    await advance(0);
    expect(rec.waiting).toBe(1);
    rec.release();
    await advance(0);
    expect(rec.sent).toHaveLength(3);
  });

  it('never hands the same delivery out twice when kicks arrive while a slow store answers', async () => {
    subscribe('a');
    const ids = [publish('ci/1'), publish('ci/2')];
    // An asynchronous store, as a networked database would be: it reads when asked (with the busy
    // set as it is then) and its answer arrives 50 ms later.
    const slow = new Proxy(store, {
      get(target, key, receiver) {
        const value: unknown = Reflect.get(target, key, receiver);
        if (typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          const answer: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          await new Promise((r) => setTimeout(r, 50));
          return answer;
        };
      },
    });
    const d = start(slow);
    for (let i = 0; i < 5; i++) {
      d.kick();
      await advance(10);
    }
    await advance(1_000);
    expect(rec.sent.map((s) => s.event)).toEqual(ids);
  });

  it('survives a store that fails, and tries again', async () => {
    subscribe('a');
    const id = publish('ci/1');
    let failures = 1;
    const flaky: DeliveryStore = {
      dueDeliveries: (...args) => {
        if (failures-- > 0) throw new Error('database is locked');
        return store.dueDeliveries(...args);
      },
      nextDueAt: () => store.nextDueAt(),
      recordDelivered: (...args) => store.recordDelivered(...args),
      recordRejected: (...args) => store.recordRejected(...args),
      recordGone: (...args) => store.recordGone(...args),
      recordUnreachable: (...args) => store.recordUnreachable(...args),
    };
    start(flaky);
    await advance(0);
    expect(rec.sent).toHaveLength(0);
    await advance(1_000);
    expect(rec.sent.map((s) => s.event)).toEqual([id]);
  });

  it('stop() waits for the attempt in flight, then starts no more', async () => {
    subscribe('a');
    const first = publish('ci/1');
    publish('ci/2');
    rec.hold = true;
    const d = start();
    await advance(0);
    let stopped = false;
    const stopping = d.stop(10_000).then(() => (stopped = true));
    await advance(100);
    expect(stopped).toBe(false);
    rec.release();
    await advance(0);
    await stopping;
    expect(deliveryOf(first).state).toBe('delivered');
    await advance(60_000);
    expect(rec.sent.map((s) => s.event)).toEqual([first]);
  });

  it('stop() gives up on an attempt that hangs after timeoutMs', async () => {
    subscribe('a');
    publish('ci/1');
    rec.hold = true;
    const d = start();
    await advance(0);
    let stopped = false;
    const stopping = d.stop(2_000).then(() => (stopped = true));
    await advance(1_999);
    expect(stopped).toBe(false);
    await advance(1);
    await stopping;
    expect(stopped).toBe(true);
    rec.release();
  });
});
