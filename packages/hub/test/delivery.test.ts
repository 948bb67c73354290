// The deliverer against a real SQLite store, a recording SendAttempt and fake timers (Date and
// setTimeout move only when the test says so).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { NewEvent, SqliteStore } from '@krkn/hub-store';
import { topicMatches } from '@krkn/policy';
import { Deliverer } from '../src/delivery.js';
import type { DeliveryStore } from '../src/ports.js';
import { Recorder, silentLogger, tempStore } from './helpers.js';

const schedule = [0, 5_000, 60_000];
const t0 = Date.parse('2026-01-01T00:00:00Z');

let store: SqliteStore;
let dispose: () => Promise<void>;
let rec: Recorder;
let deliverer: Deliverer | undefined;

beforeEach(() => {
  vi.useFakeTimers({ now: t0 });
  draw = 0.5;
  // Each write commits at once, not on a turn of the (faked) event loop: time moves only by advance().
  ({ store, dispose } = tempStore({ groupCommit: { maxBatch: 1 } }));
  rec = new Recorder();
});
afterEach(async () => {
  await deliverer?.stop(0);
  deliverer = undefined;
  vi.useRealTimers();
  await dispose();
});

// The jitter's draw: 0.5 is no jitter at all, 0 the most negative, just under 1 the most positive.
let draw = 0.5;

function start(over: DeliveryStore = store, maxConcurrent = 4): Deliverer {
  const options = { retryScheduleMs: schedule, maxConcurrent, leaseMs: 20_000, logger: silentLogger };
  deliverer = new Deliverer(over, rec.send, { ...options, owner: 'replica-a', random: () => draw });
  deliverer.start();
  return deliverer;
}

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

async function publish(topic: string, body = '{}'): Promise<string> {
  const input: NewEvent = {
    topic,
    method: 'POST',
    headers: [['content-type', 'application/json']],
    body: Buffer.from(body),
    sender: { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'ci', tags: [] },
  };
  return (await store.publish(input, topicMatches)).event.id;
}

async function subscribe(name: string, topics = ['ci/**']): Promise<string> {
  const address = `100.64.0.${name.length}`;
  const input = { nodeId: name, nodeName: `${name}.krkn.test`, address, port: 80, path: '/', topics };
  return (await store.subscribe(input)).id;
}

const deliveryOf = async (event: string) => (await store.deliveriesOf(event))[0]!;

describe('Deliverer', () => {
  it('delivers a due event at once and records the 2xx', async () => {
    await subscribe('a');
    const id = await publish('ci/build');
    start();
    await advance(0);
    expect(rec.sent).toEqual([{ event: id, subscription: expect.any(String) as unknown, attempt: 1, at: t0 }]);
    expect(await deliveryOf(id)).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200 });
  });

  it('retries a rejected delivery on the schedule, then fails it for good after the last entry', async () => {
    await subscribe('a');
    const id = await publish('ci/build');
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
    expect(await deliveryOf(id)).toMatchObject({
      state: 'failed',
      attempts: 3,
      lastStatus: 500,
      lastError: 'HTTP 500',
    });
    await advance(10 * 60_000);
    expect(rec.sent).toHaveLength(3);
  });

  it('spreads retries by the jitter: the lowest draw retries 20% sooner, the highest 20% later', async () => {
    await subscribe('a');
    await subscribe('bb');
    await publish('ci/build');
    rec.answer = () => ({ kind: 'rejected', status: 500, error: 'HTTP 500' });
    const draws = [0, 0.999_999];
    const options = { retryScheduleMs: schedule, maxConcurrent: 4, leaseMs: 20_000, logger: silentLogger };
    deliverer = new Deliverer(store, rec.send, { ...options, owner: 'replica-a', random: () => draws.shift()! });
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
    await subscribe('a');
    await publish('ci/build');
    const retryAfters = [30_000, 1_000, 24 * 3600e3];
    rec.answer = () => ({ kind: 'rejected', status: 429, error: 'HTTP 429', retryAfterMs: retryAfters.shift()! });
    deliverer = new Deliverer(store, rec.send, {
      retryScheduleMs: [0, 5_000, 60_000, 60_000],
      maxConcurrent: 4,
      owner: 'replica-a',
      leaseMs: 20_000,
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
    const sub = await subscribe('a');
    const first = await publish('ci/one');
    const second = await publish('ci/two');
    rec.answer = () => ({ kind: 'gone', status: 410 });
    const d = start();
    await advance(0);
    expect(rec.sent).toHaveLength(1);
    expect(await deliveryOf(first)).toMatchObject({ state: 'failed', attempts: 1, lastStatus: 410 });
    expect(await deliveryOf(second)).toMatchObject({ state: 'failed', attempts: 0 });
    expect((await deliveryOf(second)).lastError).toMatch(/410 Gone/);
    const disabled = { at: t0, reason: expect.stringMatching(/410 Gone/) as unknown };
    expect((await store.getSubscription(sub))!.disabled).toEqual(disabled);
    expect((await store.stats()).disabledSubscriptions).toBe(1);

    const third = await publish('ci/three');
    expect(await store.deliveriesOf(third)).toEqual([]);
    expect(await store.redeliver(first, topicMatches)).toBe(0);
    d.kick();
    await advance(60_000);
    expect(rec.sent).toHaveLength(1);

    rec.answer = () => ({ kind: 'delivered', status: 200 });
    await subscribe('a'); // the same node and port: the subscription comes back
    expect((await store.getSubscription(sub))!.disabled).toBeNull();
    const fourth = await publish('ci/four');
    d.kick();
    await advance(0);
    expect(rec.sent.map((s) => s.event).slice(1)).toEqual([fourth]);
  });

  it('a send that throws counts as a rejection, not a crash', async () => {
    await subscribe('a');
    const id = await publish('ci/build');
    rec.answer = () => {
      throw new Error('socket hang up');
    };
    start();
    await advance(0);
    expect(await deliveryOf(id)).toMatchObject({ state: 'pending', attempts: 1, lastError: 'socket hang up' });
  });

  it('parks an unreachable subscriber without spending attempts, probes it later, and resumes when woken', async () => {
    const sub = await subscribe('a');
    const first = await publish('ci/one');
    rec.answer = () => ({ kind: 'unreachable', error: 'no route to peer' });
    const d = start();
    await advance(0);
    expect(rec.sent).toHaveLength(1);
    expect((await store.getSubscription(sub))!.offlineSince).toBe(t0);
    const second = await publish('ci/two');
    d.kick(); // a publish kicks; the parked queue must not move before its probe
    await advance(1_999);
    expect(rec.sent).toHaveLength(1);
    await advance(1); // the first probe, minProbeMs after parking
    expect(rec.sent).toHaveLength(2);
    expect(await deliveryOf(first)).toMatchObject({ state: 'pending', attempts: 0, lastError: 'no route to peer' });

    rec.answer = () => ({ kind: 'delivered', status: 204 });
    await store.wake(sub); // what Hub does when the netmap shows the subscriber online
    d.kick();
    // Back to back: the first attempt's kick starts the second (a turn of the loop; fake timers count a turn
    // asked for during a tick as 1 ms), long before any timer (10 ms at least) or probe would.
    await advance(2);
    expect(rec.sent.slice(2).map((s) => s.event)).toEqual([first, second]);
    expect(await deliveryOf(first)).toMatchObject({ state: 'delivered', attempts: 1 });
    expect((await store.getSubscription(sub))!.offlineSince).toBeNull();
  });

  it('holds a queue whose address answers for another node: nothing spent, checked again at each probe', async () => {
    const sub = await subscribe('a');
    const first = await publish('ci/one');
    const reason = '100.64.0.1 now answers for b.krkn.test (node b), not for the subscriber';
    rec.answer = () => ({ kind: 'held', reason });
    const d = start();
    await advance(0);
    expect(rec.sent).toHaveLength(1);
    expect((await store.getSubscription(sub))!.held).toEqual({ at: t0, reason });
    expect(await deliveryOf(first)).toMatchObject({ state: 'pending', attempts: 0, lastError: reason });
    const second = await publish('ci/two');
    d.kick(); // a publish kicks; the held queue waits for its probe
    await advance(1_999);
    expect(rec.sent).toHaveLength(1);
    await advance(1); // the probe, minProbeMs after holding: still another node there
    expect(rec.sent.map((s) => [s.event, s.attempt])).toEqual([
      [first, 1],
      [first, 1],
    ]);
    expect((await store.getSubscription(sub))!.held?.at).toBe(t0); // held since the first time

    rec.answer = () => ({ kind: 'delivered', status: 204 }); // the subscriber is back at its address
    await advance(3_999); // held for 2 s: the next probe comes 2 s after the last
    await advance(1);
    expect(rec.sent.slice(2).map((s) => s.event)).toEqual([first, second]);
    expect(await deliveryOf(first)).toMatchObject({ state: 'delivered', attempts: 1 });
    expect((await store.getSubscription(sub))!.held).toBeNull();
  });

  it('fails a refused delivery unsent (capability revoked) and goes on with the next', async () => {
    await subscribe('a');
    const first = await publish('ci/secret');
    const second = await publish('ci/open');
    rec.answer = (due) =>
      due.event.topic === 'ci/secret'
        ? { kind: 'refused', reason: 'not sent: the grant does not allow subscribe on topic ci/secret' }
        : { kind: 'delivered', status: 200 };
    start();
    await advance(0);
    await advance(1);
    expect(rec.sent.map((s) => s.event)).toEqual([first, second]);
    expect(await deliveryOf(first)).toMatchObject({
      state: 'failed',
      attempts: 0,
      lastStatus: null,
      lastError: 'not sent: the grant does not allow subscribe on topic ci/secret',
    });
    expect(await deliveryOf(second)).toMatchObject({ state: 'delivered', attempts: 1 });
  });

  it('keeps retry and probe times when the wall clock jumps back an hour (monotonic clock)', async () => {
    const a = await subscribe('a');
    const bb = await subscribe('bb');
    await publish('ci/build');
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
    const a = await subscribe('a');
    const b = await subscribe('bb');
    const ids = [await publish('ci/1'), await publish('ci/2'), await publish('ci/3')];
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
    for (const name of ['a', 'bb', 'ccc']) await subscribe(name);
    await publish('ci/1');
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

  it('two replicas on one store: one attempt in flight per subscriber, each event once, in order', async () => {
    const a = await subscribe('a');
    const ids = [await publish('ci/1'), await publish('ci/2'), await publish('ci/3')];
    rec.hold = true;
    const options = { retryScheduleMs: schedule, maxConcurrent: 4, leaseMs: 20_000, logger: silentLogger };
    const replicas = ['replica-a', 'replica-b'].map((owner) => new Deliverer(store, rec.send, { ...options, owner }));
    try {
      for (const r of replicas) r.start();
      for (let i = 0; i < ids.length; i++) {
        await advance(0);
        for (const r of replicas) r.kick(); // both look while an attempt is in flight
        await advance(0);
        expect(rec.inFlight).toBe(1);
        rec.release();
      }
      await advance(0);
      expect(rec.maxInFlight).toBe(1);
      expect(rec.sent.map((s) => [s.subscription, s.event])).toEqual(ids.map((id) => [a, id]));
    } finally {
      await Promise.all(replicas.map((r) => r.stop(0)));
    }
  });

  it("takes over a dead replica's subscriber once its lease expires, not before", async () => {
    await subscribe('a');
    const id = await publish('ci/1');
    const options = { retryScheduleMs: schedule, maxConcurrent: 4, leaseMs: 20_000, logger: silentLogger };
    // The dead replica claimed the subscriber and never came back.
    await store.claimDue('replica-dead', Date.now(), options.leaseMs, 10);
    start();
    await advance(19_999);
    expect(rec.sent).toHaveLength(0);
    await advance(1);
    expect(rec.sent.map((s) => s.event)).toEqual([id]);
    expect(await deliveryOf(id)).toMatchObject({ state: 'delivered', attempts: 1 });
  });

  it('never hands the same delivery out twice when kicks arrive while a slow store answers', async () => {
    await subscribe('a');
    const ids = [await publish('ci/1'), await publish('ci/2')];
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

  it('never sends a delivery again that was recorded while a slow claim was out', async () => {
    await subscribe('a');
    const ids = [await publish('ci/1'), await publish('ci/2')];
    rec.hold = true;
    // A claim reads the store when asked but answers 100 ms later, as a transaction of several statements
    // on a networked database can, while recording an attempt and releasing its lease answer at once.
    let claimLagMs = 0;
    const lagging = storeWith({
      claimDue: async (...args) => {
        const answer = await store.claimDue(...args);
        await new Promise((r) => setTimeout(r, claimLagMs));
        return answer;
      },
    });
    const d = start(lagging);
    await advance(10);
    expect(rec.waiting).toBe(1); // ci/1 in flight
    claimLagMs = 100;
    d.kick(); // a publish: the claim reads ci/1 as the head still due, under this replica's own lease
    await advance(10);
    rec.release(); // ci/1 is delivered, recorded and its lease released before the claim answers
    claimLagMs = 0;
    for (let i = 0; i < 3; i++) {
      await advance(100);
      rec.release();
    }
    expect(rec.sent.map((s) => [s.event, s.attempt])).toEqual(ids.map((id) => [id, 1]));
  });

  it('loses no kick that arrives while a pass is finishing: the next event goes out at once, not at the lease', async () => {
    await subscribe('a');
    const ids = [await publish('ci/1'), await publish('ci/2')];
    rec.hold = true;
    // nextDueAt reads when asked and answers 50 ms later; just before it answers, the attempt in flight ends
    // (delivered, recorded, lease given back, kick) within the same turn of the event loop.
    let lagging = false;
    const d = start(
      storeWith({
        nextDueAt: async (...args) => {
          const answer = await store.nextDueAt(...args);
          if (!lagging) return answer;
          await new Promise((r) => setTimeout(r, 50));
          rec.release();
          for (let i = 0; i < 50; i++) await Promise.resolve();
          return answer; // read under the lease: ci/2 due only when it expires, 20 s from now
        },
      }),
    );
    await advance(10);
    expect(rec.waiting).toBe(1); // ci/1 in flight
    lagging = true;
    d.kick();
    await advance(100);
    expect(rec.sent.map((s) => s.event)).toEqual(ids);
  });

  it('a publish owed to nobody, or only to subscribers with an attempt in flight here, starts no pass', async () => {
    const a = await subscribe('a');
    await publish('ci/1');
    rec.hold = true;
    let claims = 0;
    const d = start(storeWith({ claimDue: (...args) => (claims++, store.claimDue(...args)) }));
    await advance(10);
    expect(rec.waiting).toBe(1); // ci/1 in flight to a
    const before = claims;
    d.kick([a]);
    d.kick([]);
    await advance(10);
    expect(claims).toBe(before);
    d.kick([a, 'sub_other']);
    await advance(10);
    expect(claims).toBe(before + 1);
    rec.release();
    await advance(10);
  });

  it('a publish during a pass looks again only if a subscriber it is owed to has no attempt in flight by then', async () => {
    const a = await subscribe('a');
    const b = await subscribe('b', ['other/**']);
    await publish('ci/1');
    rec.hold = true;
    let claims = 0;
    let gate: (() => void) | undefined;
    const d = start(
      storeWith({
        claimDue: async (...args) => {
          claims++;
          await new Promise<void>((resolve) => (gate = resolve));
          return store.claimDue(...args);
        },
      }),
    );
    await advance(0);
    expect(claims).toBe(1);
    d.kick([a]); // during the claim; by the pass's end a has ci/1 in flight: that attempt's end will look
    gate!();
    await advance(10);
    expect(rec.waiting).toBe(1);
    expect(claims).toBe(1);
    d.kick([b]); // b has nothing in flight: a pass looks
    await advance(0);
    expect(claims).toBe(2);
    d.kick([b]); // and a kick owed to b during that pass makes it look once more
    gate!();
    await advance(0);
    expect(claims).toBe(3);
    gate!();
    await advance(10);
    expect(claims).toBe(3);
    rec.release();
  });

  it('survives a store that fails, and tries again', async () => {
    await subscribe('a');
    const id = await publish('ci/1');
    let failures = 1;
    const flaky = storeWith({
      claimDue: async (...args) => {
        if (failures-- > 0) throw new Error('database is locked');
        return store.claimDue(...args);
      },
    });
    start(flaky);
    await advance(0);
    expect(rec.sent).toHaveLength(0);
    await advance(1_000);
    expect(rec.sent.map((s) => s.event)).toEqual([id]);
  });

  it('stop() waits for the attempt in flight, then starts no more', async () => {
    await subscribe('a');
    const first = await publish('ci/1');
    await publish('ci/2');
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
    expect((await deliveryOf(first)).state).toBe('delivered');
    await advance(60_000);
    expect(rec.sent.map((s) => s.event)).toEqual([first]);
  });

  it('stop() gives up on an attempt that hangs after timeoutMs, and records nothing of it when it ends', async () => {
    await subscribe('a');
    const id = await publish('ci/1');
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
    await advance(0);
    // The store may be closing by now: the delivery stays as it was, due again at the next start.
    expect(await deliveryOf(id)).toMatchObject({ state: 'pending', attempts: 0 });
  });
});

/** The test's store as the deliverer sees it, with some methods replaced (to lag, or to fail). */
function storeWith(overrides: Partial<DeliveryStore>): DeliveryStore {
  return {
    claimDue: (...args) => store.claimDue(...args),
    releaseLease: (...args) => store.releaseLease(...args),
    nextDueAt: (...args) => store.nextDueAt(...args),
    recordDelivered: (...args) => store.recordDelivered(...args),
    recordRejected: (...args) => store.recordRejected(...args),
    recordGone: (...args) => store.recordGone(...args),
    recordUnreachable: (...args) => store.recordUnreachable(...args),
    recordHeld: (...args) => store.recordHeld(...args),
    recordRefused: (...args) => store.recordRefused(...args),
    ...overrides,
  };
}
