import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { pino, type Logger } from 'pino';
import type { Tailnet } from '@krkn/testnet';
import { TailnetNode, serveFastify, type TailnetNodeOptions } from '@krkn/tailnet';

/** One parsed pino line. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger (default level: info) whose lines the test can read back. */
export function captureLogger(level = 'info'): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

/** A temporary directory removed by the returned cleanup. */
export function tempDir(prefix = 'krkn-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Options for one of our nodes on a testnet: its own state dir, plain-HTTP DERP. */
export function nodeOptions(
  tailnet: Tailnet,
  stateRoot: string,
  hostname: string,
  extra: Partial<TailnetNodeOptions> = {},
): TailnetNodeOptions {
  return {
    hostname,
    stateDir: join(stateRoot, hostname),
    controlUrl: tailnet.url,
    logger: pino({ level: process.env.KRKN_TEST_LOG ?? 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
    ...extra,
  };
}

/** Node `alpha`, answering `GET /hello` with "hello" on port 80: the peer that restarted nodes dial. */
export async function startHelloPeer(
  tailnet: Tailnet,
  stateRoot: string,
  authKey: string,
): Promise<{ close(): Promise<void> }> {
  const alpha = new TailnetNode(nodeOptions(tailnet, stateRoot, 'alpha', { authKey }));
  const app = Fastify();
  try {
    await alpha.up();
    app.get('/hello', () => 'hello');
    await serveFastify(app, alpha, 80);
  } catch (err) {
    await app.close();
    await alpha.close();
    throw err;
  }
  return {
    close: async () => {
      await app.close();
      await alpha.close();
    },
  };
}

/** Rejection code of a promise (fails the test if it resolves). */
export async function rejectionCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code ?? `no code: ${String(err)}`;
  }
  throw new Error('expected a rejection');
}
