// The two backends under test, each behind the same small harness: a fresh, empty store per test,
// a second handle onto the same data (another replica, or the process after a restart), and a way
// to make the stored schema look newer than this code.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { PostgresStore, SqliteStore, type HubStore } from '@krkn/hub-store';
import { startPostgres, type Postgres } from '@krkn/testnet';

export interface StoreUnderTest {
  store: HubStore;
  /** Another handle onto the same data (with a backlog bound other than the default, if given). */
  open(options?: { maxBacklog?: number }): Promise<HubStore>;
  /** Marks the stored schema as version `v` (behind the stores' backs). */
  setSchemaVersion(v: number): Promise<void>;
  cleanup(): Promise<void>;
}

export interface Backend {
  name: 'sqlite' | 'postgres';
  setup(): Promise<void>;
  fresh(): Promise<StoreUnderTest>;
  teardown(): Promise<void>;
}

export const sqliteBackend: Backend = {
  name: 'sqlite',
  async setup() {},
  async fresh() {
    const dir = mkdtempSync(join(tmpdir(), 'krkn-store-'));
    const path = join(dir, 'hub.db');
    const handles: HubStore[] = [];
    const open = async (options: { maxBacklog?: number } = {}) => {
      const s = SqliteStore.open(path, options);
      handles.push(s);
      return s;
    };
    return {
      store: await open(),
      open,
      async setSchemaVersion(v) {
        const db = new Database(path);
        db.pragma(`user_version = ${v}`);
        db.close();
      },
      async cleanup() {
        await Promise.all(handles.map((h) => h.close().catch(() => {})));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  async teardown() {},
};

let server: Postgres | undefined;

/** The PostgreSQL server of the postgres backend (started by its setup). */
function postgresServer(): Postgres {
  if (!server) throw new Error('postgres backend not set up');
  return server;
}

export const postgresBackend: Backend = {
  name: 'postgres',
  async setup() {
    server = await startPostgres({ fsync: false }); // crash durability is PostgreSQL's; these tests check semantics
  },
  async fresh() {
    const pgServer = postgresServer();
    const database = await pgServer.createDatabase();
    const url = pgServer.url(database);
    const handles: HubStore[] = [];
    const open = async (options: { maxBacklog?: number } = {}) => {
      const s = await PostgresStore.open(url, { ...options, password: pgServer.password });
      handles.push(s);
      return s;
    };
    return {
      store: await open(),
      open,
      async setSchemaVersion(v) {
        const client = new pg.Client({
          host: pgServer.host,
          port: pgServer.port,
          user: pgServer.user,
          database,
          password: pgServer.password,
        });
        await client.connect();
        await client.query('UPDATE krkn_schema SET version = $1', [v]);
        await client.end();
      },
      async cleanup() {
        await Promise.all(handles.map((h) => h.close().catch(() => {})));
      },
    };
  },
  async teardown() {
    await server?.stop();
    server = undefined;
  },
};
