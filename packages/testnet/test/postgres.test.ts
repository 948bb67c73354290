import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startPostgres, type Postgres } from '@krkn/testnet';

// psql over TCP, password from the environment of psql alone: the server's real auth path.
function psql(
  pg: Postgres,
  sql: string,
  password = pg.password,
  database = 'postgres',
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      join(binDir(), 'psql'),
      ['-h', pg.host, '-p', String(pg.port), '-U', pg.user, '-d', database, '-Atc', sql],
      {
        env: { PATH: process.env.PATH, PGPASSWORD: password, PGCONNECT_TIMEOUT: '5' },
      },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('close', (code) => resolve({ code, out: out.trim() }));
  });
}
const binDir = () => process.env.KRKN_PG_BIN ?? '/usr/lib/postgresql/15/bin';

const servers: Postgres[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

describe('startPostgres', () => {
  it('runs several servers at once, each on its own port, with password auth over TCP', async () => {
    const [a, b] = await Promise.all([startPostgres({ fsync: false }), startPostgres({ fsync: false })]);
    servers.push(a, b);
    expect(a.port).not.toBe(b.port);
    expect(a.url()).toBe(`postgres://krkn@127.0.0.1:${a.port}/postgres`);
    expect(await psql(a, 'SELECT 40 + 2')).toEqual({ code: 0, out: '42' });
    expect(await psql(b, 'SELECT 40 + 2')).toEqual({ code: 0, out: '42' });
    const wrong = await psql(a, 'SELECT 1', 'not-the-password');
    expect(wrong.code).not.toBe(0);
    expect(wrong.out).toMatch(/password authentication failed/);
  });

  it('creates fresh databases and keeps data across a crash and restart', async () => {
    const pg = await startPostgres({ fsync: false });
    servers.push(pg);
    const db = await pg.createDatabase();
    expect((await psql(pg, 'CREATE TABLE t (v int); INSERT INTO t VALUES (7)', pg.password, db)).code).toBe(0);
    await pg.killServer();
    expect(pg.running).toBe(false);
    expect((await psql(pg, 'SELECT 1')).code).not.toBe(0);
    await pg.startServer();
    expect(await psql(pg, 'SELECT v FROM t', pg.password, db)).toEqual({ code: 0, out: '7' });
  });

  it('removes its temp dir on stop', async () => {
    const pg = await startPostgres({ fsync: false });
    expect(existsSync(join(pg.dir, 'data'))).toBe(true);
    await pg.stop();
    expect(existsSync(pg.dir)).toBe(false);
  });
});
