// The admin socket's wire format, over a real unix socket, with a node that was never started
// (every node call fails with NOT_RUNNING): no tailnet needed.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient, CliError, adminRoutes, listenAdminSocket } from '@krkn/cli-kit';
import { TailnetError, TailnetNode } from '@krkn/tailnet';

const dir = mkdtempSync(join(tmpdir(), 'krkn-admin-'));
const socket = join(dir, 'test.sock');
let app: FastifyInstance;
let stopped = 0;

beforeAll(async () => {
  const log = pino({ level: 'silent' });
  const node = new TailnetNode({ hostname: 'idle', stateDir: join(dir, 'node'), logger: log });
  app = Fastify();
  const doctor = () => ({
    app: 'test',
    stateDir: join(dir, 'node'),
    controlUrl: 'http://127.0.0.1:1',
    advertisedTags: [],
    authKeyInEnv: false,
    forceLogin: false,
  });
  await app.register(adminRoutes, { node, log, doctor, stop: () => stopped++, status: async () => ({ up: 'yes' }) });
  await listenAdminSocket(app, socket);
});

afterAll(async () => {
  await (app as FastifyInstance | undefined)?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail('expected a rejection'),
    (err: unknown) => err,
  );
}

describe('admin socket', () => {
  it('is a 0600 socket, and a second daemon on it is refused', async () => {
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const err = await failure(listenAdminSocket(Fastify(), socket));
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(5);
  });

  it('answers JSON calls', async () => {
    const client = new AdminClient(socket);
    expect(await client.answers()).toBe(true);
    expect(await client.json('GET', '/admin/status')).toEqual({ up: 'yes' });
  });

  it('carries a tailnet error across with its code', async () => {
    const err = await failure(new AdminClient(socket).json('GET', '/admin/whois?ip=100.64.0.1'));
    expect(err).toBeInstanceOf(TailnetError);
    expect((err as TailnetError).code).toBe('NOT_RUNNING');
  });

  it('refuses a ping without a peer with 400 BAD_ARGUMENT', async () => {
    const res = await new AdminClient(socket).fetch('http://admin/admin/ping', { method: 'POST', body: '{}' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { code: 'BAD_ARGUMENT', message: 'ping needs a peer' } });
  });

  it('a logout the node cannot do fails with its code and does not stop the daemon', async () => {
    const err = await failure(new AdminClient(socket).logout());
    expect((err as TailnetError).code).toBe('NOT_RUNNING');
    expect(stopped).toBe(0);
  });

  it('turns an answer without the error format (an unknown route) into a CliError naming the call', async () => {
    const err = await failure(new AdminClient(socket).json('GET', '/admin/nothing'));
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toContain('GET /admin/nothing');
  });

  it('says the daemon is not running when nothing listens', async () => {
    const client = new AdminClient(join(dir, 'absent.sock'));
    expect(await client.answers()).toBe(false);
    const err = await failure(client.json('GET', '/admin/status'));
    expect((err as CliError).exitCode).toBe(4);
  });
});
