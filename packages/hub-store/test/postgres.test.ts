// What only the PostgreSQL backend does: connecting by URL and password, and living through an outage.

import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pgDriver from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStore, StoreError, openStore, parseStoreUrl, type HubStore } from '@krkn/hub-store';
import { SmallDisk, startPostgres, type Postgres } from '@krkn/testnet';
import { pgMigrations } from '../src/pg-schema.js';

let pg: Postgres;
beforeAll(async () => {
  pg = await startPostgres({ fsync: false });
});
afterAll(() => pg.stop());

const sender = { ip: '100.64.0.9', node: 'ci.krkn.test', user: 'u', tags: [] };
const matches = (pattern: string, topic: string): boolean => pattern === topic;
/** One subscriber node, owed every event of topic `t`. */
const subscriber = { nodeId: 'n', nodeName: 'n', address: '100.64.0.2', port: 80, path: '/', topics: ['t'] };

/** A new database as krkn left it at schema `version`, with `rows` (SQL) inserted: for migration tests. */
async function databaseAtSchema(version: number, rows: string): Promise<string> {
  const database = await pg.createDatabase();
  const { host, port, user, password } = pg;
  const client = new pgDriver.Client({ host, port, user, database, password });
  await client.connect();
  try {
    for (let v = 1; v <= version; v++) await client.query(pgMigrations[v]!);
    await client.query(
      `CREATE TABLE krkn_schema (version INTEGER NOT NULL); INSERT INTO krkn_schema VALUES (${version})`,
    );
    await client.query(rows);
  } finally {
    await client.end();
  }
  return database;
}

async function storeError(promise: Promise<unknown>): Promise<StoreError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  return err as StoreError;
}

describe('store URLs', () => {
  it('names SQLite or PostgreSQL, and refuses a password inside the URL', () => {
    expect(parseStoreUrl('sqlite', '/var/lib/krkns/hub.db')).toEqual({ kind: 'sqlite', path: '/var/lib/krkns/hub.db' });
    expect(parseStoreUrl('sqlite:/tmp/x.db', '/d')).toEqual({ kind: 'sqlite', path: '/tmp/x.db' });
    expect(parseStoreUrl('postgresql://krkn@db:5432/krkn', '/d')).toEqual({
      kind: 'postgres',
      url: 'postgresql://krkn@db:5432/krkn',
    });
    const cases: [string, RegExp][] = [
      ['postgres://krkn:hunter2@db/krkn', /holds a password: remove it/],
      ['postgres://db/krkn', /needs a user, a host and a database/],
      ['postgres://krkn@db', /needs a user, a host and a database/],
      ['mysql://krkn@db/krkn', /unknown store "mysql"/],
      ['sqlite:', /names no file/],
    ];
    for (const [spec, message] of cases) {
      let caught: unknown;
      try {
        parseStoreUrl(spec, '/d');
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(StoreError);
      expect((caught as StoreError).code).toBe('BAD_URL');
      expect((caught as StoreError).message).toMatch(message);
      expect((caught as StoreError).message).not.toContain('hunter2');
    }
  });
});

describe('PostgresStore', () => {
  it('connects with the password from a file; says clearly when the password or database is wrong', async () => {
    const url = pg.url(await pg.createDatabase());
    const store = await openStore(url, { defaultSqlitePath: '/unused', passwordFile: pg.passwordFile });
    expect(store.description).toBe(url);
    await store.close();

    const wrongFile = join(pg.dir, 'wrong-password');
    writeFileSync(wrongFile, 'not-it\n', { mode: 0o600 });
    const wrong = await storeError(openStore(url, { defaultSqlitePath: '/unused', passwordFile: wrongFile }));
    expect(wrong.code).toBe('CONNECT_FAILED');
    expect(wrong.message).toMatch(/password authentication failed for user "krkn"/);

    const missing = await storeError(
      openStore(pg.url('no_such_db'), { defaultSqlitePath: '/unused', password: pg.password }),
    );
    expect(missing.code).toBe('CONNECT_FAILED');
    expect(missing.message).toMatch(/database "no_such_db" does not exist/);

    const noFile = await storeError(
      openStore(url, { defaultSqlitePath: '/unused', passwordFile: join(pg.dir, 'nope') }),
    );
    expect(noFile.code).toBe('BAD_URL');
  });

  it('migrates a schema 4 database forward: its subscriptions start not held, and can be held', async () => {
    const database = await databaseAtSchema(
      4,
      `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at)
       VALUES ('sub_old', 'n', 'n.krkn.test', '100.64.0.2', 80, '/', '["t"]', 1, 1)`,
    );
    const store = await openStore(pg.url(database), { defaultSqlitePath: '/unused', password: pg.password });
    try {
      const event = (
        await store.publish({ topic: 't', method: 'POST', headers: [], body: Buffer.from('x'), sender }, matches, 5)
      ).event;
      expect((await store.getSubscription('sub_old'))?.held).toBeNull();
      await store.recordHeld('sub_old', event.seq, 'another node', 20, 6, 6);
      expect((await store.getSubscription('sub_old'))?.held).toEqual({ at: 6, reason: 'another node' });
    } finally {
      await store.close();
    }
  });

  it("migrates a schema 5 database: each subscription's last success is filled from its stored deliveries", async () => {
    const database = await databaseAtSchema(
      5,
      `INSERT INTO subscriptions (id, node_id, node_name, address, port, path, topics, created_at, updated_at)
       VALUES ('sub_a', 'a', 'a.krkn.test', '100.64.0.2', 80, '/', '["t"]', 1, 1),
              ('sub_b', 'b', 'b.krkn.test', '100.64.0.3', 80, '/', '["t"]', 2, 2);
       INSERT INTO events (id, topic, received_at, method, headers, body, sender_ip, sender_node, sender_user,
         sender_tags)
       VALUES ('evt_1', 't', 5, 'POST', '[]', '\\x00', '100.64.0.9', 'ci', 'u', '[]'),
              ('evt_2', 't', 6, 'POST', '[]', '\\x00', '100.64.0.9', 'ci', 'u', '[]');
       INSERT INTO deliveries (subscription_id, event_seq, state, next_attempt_at, updated_at)
       VALUES ('sub_a', 1, 'delivered', 5, 50), ('sub_a', 2, 'failed', 6, 60), ('sub_b', 2, 'pending', 6, 6);`,
    );
    const store = await openStore(pg.url(database), { defaultSqlitePath: '/unused', password: pg.password });
    try {
      expect(await store.backlogs()).toEqual([
        { subscriptionId: 'sub_a', pending: 0, lastDeliveredAt: 50 },
        { subscriptionId: 'sub_b', pending: 1, lastDeliveredAt: null },
      ]);
    } finally {
      await store.close();
    }
  });

  it('refuses to connect to a closed port with CONNECT_FAILED, within its connect timeout', async () => {
    const started = Date.now();
    const err = await storeError(
      openStore('postgres://krkn@127.0.0.1:1/x', { defaultSqlitePath: '/unused', password: 'x' }),
    );
    expect(err.code).toBe('CONNECT_FAILED');
    expect(Date.now() - started).toBeLessThan(6_000);
  });

  it('fails calls with UNAVAILABLE while the database is down, and recovers by itself', async () => {
    const store: HubStore = await openStore(pg.url(await pg.createDatabase()), {
      defaultSqlitePath: '/unused',
      password: pg.password,
    });
    const before = await store.publish(
      { topic: 't', method: 'POST', headers: [], body: Buffer.from('1'), sender },
      matches,
    );
    await pg.killServer();
    const down = await storeError(
      store.publish({ topic: 't', method: 'POST', headers: [], body: Buffer.from('2'), sender }, matches),
    );
    expect(down.code).toBe('UNAVAILABLE');
    expect((await storeError(store.listEvents())).code).toBe('UNAVAILABLE');
    await pg.startServer();
    const after = await store.publish(
      { topic: 't', method: 'POST', headers: [], body: Buffer.from('3'), sender },
      matches,
    );
    expect((await store.listEvents()).map((e) => e.id)).toEqual([before.event.id, after.event.id]);
    await store.close();
  });

  it('fails writes on a full disk with FULL (SQLSTATE 53100), not UNAVAILABLE; writes again with space', async () => {
    // The database lives in a tablespace on a small tmpfs owned by the server's user (the owner of pg.dir).
    const { uid, gid } = statSync(pg.dir);
    const disk = SmallDisk.mount({ bytes: 64 << 20, owner: { uid, gid } });
    const server = { host: pg.host, port: pg.port, user: pg.user, password: pg.password };
    const admin = new pgDriver.Client({ ...server, database: 'postgres' });
    await admin.connect();
    const database = `full_${Date.now()}`;
    try {
      await admin.query(`CREATE TABLESPACE ${database} LOCATION '${disk.dir}'`);
      await admin.query(`CREATE DATABASE ${database} TABLESPACE ${database}`);
      const store = await openStore(pg.url(database), { defaultSqlitePath: '/unused', password: pg.password });
      const publish = (body: string) =>
        store.publish({ topic: 't', method: 'POST', headers: [], body: Buffer.from(body), sender }, matches);
      const kept = await publish('before the disk filled');
      disk.fill();
      const big = 'x'.repeat(1 << 20); // needs new pages
      const full = await storeError(publish(big));
      expect(full.code).toBe('FULL');
      expect(full.message).toMatch(/^the PostgreSQL store postgres:\/\/.* is out of disk space: .*space/);
      expect((await store.listEvents()).map((e) => e.id)).toEqual([kept.event.id]);

      disk.free();
      const after = await publish(big);
      expect((await store.listEvents()).map((e) => e.id)).toEqual([kept.event.id, after.event.id]);
      await store.close();
    } finally {
      // Space first: the server may still hold dirty pages of this database, and must be able to write them out
      // (a checkpoint, a buffer evicted by another test's session) or it fails every later test on this server.
      // FORCE: the store's sessions may not have ended yet server-side when close() returns.
      disk.free();
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
        await admin.query(`DROP TABLESPACE IF EXISTS ${database}`);
      } finally {
        await admin.end();
        disk.unmount();
      }
    }
  });

  it('a server killed under concurrent writes fails them with UNAVAILABLE and crashes nothing', async () => {
    const options = { defaultSqlitePath: '/unused', password: pg.password };
    const store = await openStore(pg.url(await pg.createDatabase()), options);
    await store.subscribe(subscriber);
    const codes = new Set<string>();
    let stop = false;
    // Writers keep transactions open across the kill (a client checked out between two statements).
    const writers = Array.from({ length: 8 }, async () => {
      while (!stop) {
        await store
          .publish({ topic: 't', method: 'POST', headers: [], body: Buffer.from('x'), sender }, matches)
          .catch((err: unknown) => codes.add(err instanceof StoreError ? err.code : String(err)));
      }
    });
    await sleep(300);
    await pg.killServer();
    await sleep(500);
    stop = true;
    await Promise.all(writers);
    expect([...codes]).toEqual(['UNAVAILABLE']);
    await pg.startServer();
    await store.close();
  });

  it('never offers a later event while an earlier publish has drawn its seq but not committed', async () => {
    const database = await pg.createDatabase();
    const options = { defaultSqlitePath: '/unused', password: pg.password };
    const store = await openStore(pg.url(database), options);
    const deliverer = await openStore(pg.url(database), options); // another replica
    const sub = await store.subscribe(subscriber);
    // Stall a real publish after it drew its seq: another session holds the same dedupe key, uncommitted,
    // so the publish waits on the unique index (as it would behind a slow disk or a busy server).
    const blocker = new pgDriver.Client({
      host: pg.host,
      port: pg.port,
      user: pg.user,
      database,
      password: pg.password,
    });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query(`INSERT INTO events (id, topic, received_at, dedupe_key, method, headers, body, sender_ip,
    sender_node,
      sender_user, sender_tags) VALUES ('evt_blocker', 't', 1, 'k', 'POST', '[]', '', '', '', '', '[]')`);
    const stalled = store.publish(
      { topic: 't', dedupeKey: 'k', method: 'POST', headers: [], body: Buffer.from('early'), sender },
      matches,
    );
    await sleep(300);
    const later = await store.publish(
      { topic: 't', method: 'POST', headers: [], body: Buffer.from('later'), sender },
      matches,
    );
    const head = deliverer.dueDeliveries(Date.now(), new Set(), 10);
    await sleep(300);
    await blocker.query('ROLLBACK'); // the stalled publish goes on and commits
    await blocker.end();
    const early = await stalled;
    expect(early.duplicate).toBe(false);
    expect(early.event.seq).toBeLessThan(later.event.seq);
    expect((await head).map((d) => [d.subscription.id, d.event.body.toString()])).toEqual([[sub.id, 'early']]);
    await Promise.all([store.close(), deliverer.close()]);
  });

  it('commits publishes arriving together as one group; a bad one fails alone, a duplicate in the group is one', async () => {
    const store = await PostgresStore.open(pg.url(await pg.createDatabase()), { password: pg.password });
    const sub = await store.subscribe(subscriber);
    const publish = (body: string, topic = 't', dedupeKey?: string) =>
      store.publish({ topic, dedupeKey, method: 'POST', headers: [], body: Buffer.from(body), sender }, matches);
    const groups = store.publishGroups;
    // PostgreSQL's text refuses a NUL byte: that publish's statement fails, and with it its group's.
    const outcomes = await Promise.allSettled([
      ...Array.from({ length: 20 }, (_, i) => publish(`e${i}`)),
      publish('bad', 't\0'),
      publish('first', 't', 'k'),
      publish('again', 't', 'k'),
    ]);
    expect(outcomes.filter((o) => o.status === 'rejected')).toHaveLength(1);
    expect((outcomes[20] as PromiseRejectedResult).reason).toBeInstanceOf(Error);
    const results = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    expect(results.map((r) => r.duplicate)).toEqual([...Array<boolean>(21).fill(false), true]);
    expect(results[21]!.event.id).toBe(results[20]!.event.id);
    expect(results[21]!.event.body.toString()).toBe('first');
    // Every event committed is owed to the subscriber once.
    expect((await store.backlogs()).find((b) => b.subscriptionId === sub.id)?.pending).toBe(21);
    // The group failed; its 22 good publishes then committed alone, in the order of the calls.
    expect(store.publishGroups - groups).toBe(22);
    const retried = results.slice(0, 21).map((r) => r.event.seq);
    expect(retried).toEqual([...retried].sort((a, b) => a - b));
    // Publishes called in one turn of the event loop: one group, seqs in the order of the calls.
    const together = store.publishGroups;
    const grouped = await Promise.all(Array.from({ length: 50 }, (_, i) => publish(`g${i}`)));
    expect(store.publishGroups - together).toBe(1);
    const seqs = grouped.map((r) => r.event.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    await store.close();
  });
});
