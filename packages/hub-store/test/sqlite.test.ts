// What only the SQLite backend does: the 0600 file, group commit, migrating a file written by an older krkns.

import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore, openStore, type NewEvent, type StoreError } from '@krkn/hub-store';
import { SmallDisk } from '@krkn/testnet';
import { migrations, schemaVersion } from '../src/schema.js';
import { SqliteCore } from '../src/sqlite-core.js';

const sender = { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'tagged-devices', tags: ['tag:ci'] };
const event = (topic: string, body: string): NewEvent => ({
  topic,
  method: 'POST',
  headers: [],
  body: Buffer.from(body),
  sender,
});
const matches = (pattern: string, topic: string): boolean => pattern === topic;
/** A subscriber owed every event on topic `t`. */
const subscriberOfT = { nodeId: 'n', nodeName: 'n', address: '100.64.0.2', port: 1, path: '/', topics: ['t'] };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'krkn-sqlite-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('SqliteStore', () => {
  it('creates its file 0600, for the bare `sqlite` store URL at the default path', async () => {
    const path = join(dir, 'hub.db');
    const store = await openStore('sqlite', { defaultSqlitePath: path });
    expect(store.description).toBe(`sqlite:${path}`);
    await store.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const other = await openStore(`sqlite:${join(dir, 'other.db')}`, { defaultSqlitePath: path });
    expect(other.description).toBe(`sqlite:${join(dir, 'other.db')}`);
    await other.close();
  });

  it('commits publishes that arrive together in one transaction, each resolved only once committed', async () => {
    const path = join(dir, 'hub.db');
    const store = SqliteStore.open(path);
    await store.subscribe({ nodeId: 'n', nodeName: 'n', address: '100.64.0.2', port: 1, path: '/', topics: ['t'] });
    const before = store.commits;
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) => store.publish(event('t', `${i}`), matches)),
    );
    // 300 writes, at most 256 per group: two commits, not 300.
    expect(store.commits - before).toBe(2);
    // Resolved means durable: a separate connection sees every event and what it is owed.
    const raw = new Database(path, { readonly: true });
    const stored = raw.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number };
    const owed = raw.prepare(`SELECT COUNT(*) AS n FROM deliveries WHERE state = 'pending'`).get() as { n: number };
    raw.close();
    expect(stored.n).toBe(300);
    expect(owed.n).toBe(300);
    expect(new Set(results.map((r) => r.event.seq)).size).toBe(300);
    await store.close();
  });

  it('with a window, groups writes that arrive within it (and commits a lone one once it ends)', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'), { groupCommit: { windowMs: 50 } });
    const before = store.commits;
    const first = store.publish(event('t', 'a'), matches);
    await new Promise((r) => setTimeout(r, 10));
    const second = store.publish(event('t', 'b'), matches);
    await Promise.all([first, second]);
    expect(store.commits - before).toBe(1);
    await store.publish(event('t', 'c'), matches);
    expect(store.commits - before).toBe(2);
    await store.close();
  });

  it('writes delivery leases and outcomes at once, outside the group commit, where another handle sees them', async () => {
    const path = join(dir, 'hub.db');
    const store = SqliteStore.open(path);
    const sub = await store.subscribe(subscriberOfT);
    await store.publish(event('t', 'a'), matches);
    const before = store.commits;
    const now = Date.now();
    expect((await store.claimDue('r1', now, 10_000, 10)).map((d) => d.subscription.id)).toEqual([sub.id]);
    expect(store.commits).toBe(before); // no group, so no fsync to wait for
    const other = SqliteStore.open(path); // another process on the same file: the lease still excludes it
    expect(await other.claimDue('r2', now, 10_000, 10)).toEqual([]);
    await store.releaseLease(sub.id, 'r1');
    const [due] = await other.claimDue('r2', now, 10_000, 10);
    expect(due?.subscription.id).toBe(sub.id);
    await store.recordDelivered(sub.id, due!.event.seq, 204, now);
    expect(store.commits).toBe(before);
    expect(await other.deliveriesOf(due!.event.id)).toMatchObject([{ state: 'delivered', lastStatus: 204 }]);
    await other.close();
    await store.close();
  });

  it('hands an event out for delivery only once its fsync has finished, not once it is committed', async () => {
    const path = join(dir, 'hub.db');
    const store = SqliteStore.open(path);
    const sub = await store.subscribe(subscriberOfT);
    const published = store.publish(event('t', 'a'), matches);
    await new Promise((r) => setImmediate(r)); // the group has committed; its fsync runs in the thread pool
    expect(await store.listEvents()).toHaveLength(1);
    expect(await store.claimDue('r1', Date.now(), 10_000, 10)).toEqual([]);
    expect(await store.dueDeliveries(Date.now(), new Set(), 10)).toEqual([]);
    const { event: stored } = await published;
    const [due] = await store.claimDue('r1', Date.now(), 10_000, 10);
    expect([due?.subscription.id, due?.event.id]).toEqual([sub.id, stored.id]);
    await store.close();
  });

  it('keeps a failing write from spoiling the others of its group', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'));
    const sub = await store.subscribe(subscriberOfT);
    const a = store.publish(event('t', 'a'), matches);
    const bad = store.redeliver('evt_missing', matches);
    const b = store.publish(event('t', 'b'), matches);
    const settled = await Promise.allSettled([a, bad, b]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const listed = await store.listEvents();
    const bodies = await Promise.all(listed.map(async (e) => (await store.getEvent(e.id))?.body.toString()));
    expect(bodies).toEqual(['a', 'b']);
    expect((await store.dueDeliveries(Date.now(), new Set(), 10))[0]?.subscription.id).toBe(sub.id);
    await store.close();
  });

  it('migrates a file written by schema 1 forward, keeping its data', async () => {
    const path = join(dir, 'hub.db');
    const v1 = new Database(path);
    v1.exec(migrations[1]!);
    v1.pragma('user_version = 1');
    v1.prepare(
      `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at)
      VALUES ('sub_old', 'n', 'n.krkn.test', '100.64.0.2', 80, '/', '["t"]', 1, 1)`,
    ).run();
    v1.prepare(
      `INSERT INTO events (id, topic, received_at, method, headers, body, sender_ip, sender_node, sender_user,
        sender_tags)
      VALUES ('evt_old', 't', 5, 'POST', '[]', x'00ff', '100.64.0.9', 'ci', 'u', '[]')`,
    ).run();
    v1.prepare(
      `INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at) VALUES ('sub_old',
        1, 'pending', 5, 5)`,
    ).run();
    v1.close();
    const store = SqliteStore.open(path);
    const [due] = await store.claimDue('r1', 10, 1000, 10); // a schema 2 feature on schema 1 data
    expect(due?.event.body).toEqual(Buffer.from([0, 255]));
    expect(due?.subscription.id).toBe('sub_old');
    await store.recordGone('sub_old', 1, 410, 'gone', 11); // schema 3: the subscription's disabled columns
    expect((await store.getSubscription('sub_old'))?.disabled).toEqual({ at: 11, reason: 'gone' });
    await store.heartbeat('r1', 1, 12); // schema 4: the replicas table
    expect((await store.replicas(12)).map((r) => r.name)).toEqual(['r1']);
    expect((await store.getSubscription('sub_old'))?.held).toBeNull(); // schema 5: rows from before are not held
    await store.recordHeld('sub_old', 1, 'another node', 20, 13, 13);
    expect((await store.getSubscription('sub_old'))?.held).toEqual({ at: 13, reason: 'another node' });
    await store.close();
    const check = new Database(path, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(schemaVersion);
    check.close();
  });

  it("migrates a schema 5 file: each subscription's last success is filled from its stored deliveries", async () => {
    const path = join(dir, 'hub.db');
    const v5 = new Database(path);
    for (let v = 1; v <= 5; v++) v5.exec(migrations[v]!);
    v5.pragma('user_version = 5');
    v5.exec(
      `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at)
       VALUES ('sub_a', 'a', 'a.krkn.test', '100.64.0.2', 80, '/', '["t"]', 1, 1),
              ('sub_b', 'b', 'b.krkn.test', '100.64.0.3', 80, '/', '["t"]', 2, 2);
       INSERT INTO events (id, topic, received_at, method, headers, body, sender_ip, sender_node, sender_user,
         sender_tags)
       VALUES ('evt_1', 't', 5, 'POST', '[]', x'00', '100.64.0.9', 'ci', 'u', '[]'),
              ('evt_2', 't', 6, 'POST', '[]', x'00', '100.64.0.9', 'ci', 'u', '[]');
       INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at)
       VALUES ('sub_a', 1, 'delivered', 5, 50), ('sub_a', 2, 'failed', 6, 60), ('sub_b', 2, 'pending', 6, 6);`,
    );
    v5.close();
    const store = SqliteStore.open(path);
    expect(await store.backlogs()).toEqual([
      { subscriptionId: 'sub_a', pending: 0, lastDeliveredAt: 50 },
      { subscriptionId: 'sub_b', pending: 1, lastDeliveredAt: null },
    ]);
    await store.close();
    const check = new Database(path, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(6);
    check.close();
  });

  it('fails writes on a full disk with FULL, committing none of them, and writes again once space frees', async () => {
    const disk = SmallDisk.mount({ bytes: 4 << 20 });
    try {
      const store = SqliteStore.open(join(disk.dir, 'hub.db'));
      const kept = await store.publish(event('t', 'before the disk filled'), matches);
      disk.fill();
      // Bigger than the WAL has ever been: its frames need new space.
      const big = 'x'.repeat(256 << 10);
      const refused = await Promise.allSettled([store.publish(event('t', big), matches), store.heartbeat('r', 1, 2)]);
      for (const r of refused) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason as StoreError;
        expect([err.name, err.code, err.message]).toEqual([
          'StoreError',
          'FULL',
          `the disk holding ${disk.dir}/hub.db is full`,
        ]);
      }
      expect((await store.listEvents()).map((e) => e.id)).toEqual([kept.event.id]);
      expect(await store.replicas()).toEqual([]);

      disk.free();
      const after = await store.publish(event('t', big), matches);
      expect((await store.listEvents()).map((e) => e.id)).toEqual([kept.event.id, after.event.id]);
      await store.close();
    } finally {
      disk.unmount();
    }
  });

  it('opening a new store on a full disk fails with FULL, not CORRUPT', () => {
    const disk = SmallDisk.mount({ bytes: 1 << 20 });
    try {
      disk.fill();
      const path = join(disk.dir, 'hub.db');
      const err = (() => {
        try {
          SqliteStore.open(path);
        } catch (e) {
          return e as StoreError;
        }
        throw new Error('opened a store on a full disk');
      })();
      expect([err.name, err.code, err.message]).toEqual(['StoreError', 'FULL', `the disk holding ${path} is full`]);
    } finally {
      disk.unmount();
    }
  });
});

// A publish owes its event to subscriptions it keeps in memory between writes (SqliteCore's #owners):
// each change to who is owed what must reach the next publish.
describe('SqliteStore, the subscriptions a publish owes to', () => {
  /** The subscription ids an event is owed to. */
  const owed = async (store: SqliteStore, topic: string): Promise<string[]> => {
    const { event: e } = await store.publish(event(topic, 'x'), matches);
    return (await store.deliveriesOf(e.id)).map((d) => d.subscriptionId);
  };

  it('returns the event as stored, without reading it back', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'));
    const input: NewEvent = { ...event('t', 'body'), dedupeKey: 'k', headers: [['x-a', '1']] };
    const { event: published } = await store.publish(input, matches);
    expect(published).toEqual(await store.getEvent(published.id));
    expect(published.headers).not.toBe(input.headers); // not the caller's arrays
    expect(published.sender.tags).not.toBe(input.sender.tags);
    await store.close();
  });

  it('owes events to a subscription made after the last publish, and follows its new topics', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'));
    expect(await owed(store, 't')).toEqual([]);
    const sub = await store.subscribe(subscriberOfT);
    expect(await owed(store, 't')).toEqual([sub.id]);
    await store.subscribe({ ...subscriberOfT, topics: ['u'] }); // same node and port: new topics
    expect(await owed(store, 't')).toEqual([]);
    expect(await owed(store, 'u')).toEqual([sub.id]);
    await store.close();
  });

  it('owes nothing to a subscription removed or expired since the last publish', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'));
    const a = await store.subscribe(subscriberOfT);
    const b = await store.subscribe({ ...subscriberOfT, port: 2 });
    expect(await owed(store, 't')).toEqual([a.id, b.id].sort());
    expect(await store.unsubscribe(a.id)).toBe(true);
    expect(await owed(store, 't')).toEqual([b.id]);
    await store.markOffline(b.id, 1000);
    expect(await store.expire(b.id, 2000)).toBe(true);
    expect(await owed(store, 't')).toEqual([]);
    await store.close();
  });

  it('owes nothing more to a subscription its subscriber answered 410 Gone, and again once it resubscribes', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'));
    const sub = await store.subscribe(subscriberOfT);
    await owed(store, 't');
    const [due] = await store.claimDue('r', Date.now(), 60_000, 10);
    await store.recordGone(sub.id, due!.event.seq, 410, 'gone', Date.now(), 'r');
    expect(await owed(store, 't')).toEqual([]);
    await store.subscribe(subscriberOfT);
    expect(await owed(store, 't')).toEqual([sub.id]);
    await store.close();
  });

  it('keeps owing events to a held or unreachable subscription (its queue waits, it is not dropped)', async () => {
    const store = SqliteStore.open(join(dir, 'hub.db'));
    const sub = await store.subscribe(subscriberOfT);
    await owed(store, 't');
    const [due] = await store.claimDue('r', Date.now(), 60_000, 10);
    await store.recordHeld(sub.id, due!.event.seq, 'not its node', Date.now() + 60_000, Date.now(), Date.now(), 'r');
    expect(await owed(store, 't')).toEqual([sub.id]);
    await store.recordUnreachable(sub.id, due!.event.seq, 'timeout', Date.now() + 60_000, Date.now(), Date.now());
    expect(await owed(store, 't')).toEqual([sub.id]);
    await store.close();
  });

  it('forgets a subscription read inside a transaction that rolled back', () => {
    const core = SqliteCore.open(join(dir, 'hub.db'));
    expect(() =>
      core.transaction(() => {
        core.subscribe(subscriberOfT);
        core.publish(event('t', 'a'), matches); // reads the subscription not yet committed
        throw new Error('roll back');
      }),
    ).toThrow('roll back');
    // Kept, the rolled-back subscription would be owed this event: a foreign key failure.
    const { event: e } = core.publish(event('t', 'b'), matches);
    expect(core.deliveriesOf(e.id)).toEqual([]);
    core.close();
  });

  it('sees subscriptions another process changed in the file', async () => {
    const path = join(dir, 'hub.db');
    const store = SqliteStore.open(path);
    const other = SqliteStore.open(path);
    expect(await owed(store, 't')).toEqual([]);
    const sub = await other.subscribe(subscriberOfT);
    expect(await owed(store, 't')).toEqual([sub.id]);
    await other.unsubscribe(sub.id);
    expect(await owed(store, 't')).toEqual([]);
    await Promise.all([store.close(), other.close()]);
  });
});
