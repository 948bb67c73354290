import { chmodSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { CliError, ExitCode } from './exit.js';

/** The fetch shape the hub client takes. */
export type AdminFetch = (url: string, init?: RequestInit) => Promise<Response>;

/**
 * Serves an app on a unix socket only its owner may open (0600): local administration that
 * works without the tailnet. A stale socket file left by a crash is replaced; a live one means
 * another daemon runs on this state directory.
 */
export async function listenAdminSocket(app: FastifyInstance, path: string): Promise<void> {
  if (await socketAnswers(path)) throw new CliError(`another process is serving ${path}`, ExitCode.STATE);
  rmSync(path, { force: true });
  await app.listen({ path });
  chmodSync(path, 0o600);
}

/** Whether something accepts connections on the unix socket at path. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** fetch() over the admin socket: URLs are `http://admin/<path>`; only path and query are used. */
export function adminFetch(socketPath: string): AdminFetch {
  return (url, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const u = new URL(url);
      const headers = Object.fromEntries(new Headers(init.headers).entries());
      const req = request({ socketPath, path: `${u.pathname}${u.search}`, method: init.method ?? 'GET', headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
          resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 502, headers: h }));
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? new CliError(`the daemon is not running (no answer on ${socketPath})`, ExitCode.UNREACHABLE)
            : err,
        ),
      );
      req.end(typeof init.body === 'string' || init.body instanceof Uint8Array ? init.body : undefined);
    });
}
