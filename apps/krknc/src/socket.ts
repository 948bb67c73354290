import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { listenAdminSocket, nodeAdminRoutes, tailnetErrorHeader } from '@krkn/cli-kit';
import type { DoctorInput } from '@krkn/doctor';
import { TailnetError, tailnetAgent, tailnetFetch, type NodeStatus, type TailnetNode } from '@krkn/tailnet';
import { endToEndHeaders } from './forward.js';

/** What `listen` reports about itself on its admin socket. */
export interface ListenInfo {
  server: string;
  topics: string[];
  subscription: string | null;
  listener: string;
  forwardTo: string;
  once: boolean;
  forwarded: number;
  failed: number;
  duplicates: number;
  localApp: 'unknown' | 'up' | 'down';
  localDownSince?: string;
}

/** What `expose` reports about itself on its admin socket. */
export interface ExposeInfo {
  listener: string;
  forwardTo: string;
  requests: number;
}

/** `GET /admin/status` of a running krknc. */
export interface RunningStatus {
  pid: number;
  command: 'listen' | 'expose';
  startedAt: string;
  node: NodeStatus;
  loginUrl?: string;
  listen?: ListenInfo;
  expose?: ExposeInfo;
}

// Header on a proxied answer that carries a tailnet error instead of the peer's answer.
export { tailnetErrorHeader };

/** What the admin socket of a long-running command serves from. */
export interface AdminSocketOptions {
  node: TailnetNode;
  command: RunningStatus['command'];
  info: () => Pick<RunningStatus, 'listen' | 'expose'>;
  /** Called after a logout: the command stops. */
  stop: () => void;
  /** The doctor's input, as this command sees it. */
  doctor: () => DoctorInput;
  log: Logger;
}

/**
 * The local admin socket of `listen` and `expose` (mode 0600, in the state directory). The running
 * command holds the node's state lock, so other krknc commands on the same state directory use its
 * node through this socket instead of their own: status, TSMP ping, HTTP to a tailnet peer
 * (`/admin/tailnet/<host[:port]>/<path>`), logout.
 */
export async function serveAdminSocket(opts: AdminSocketOptions, path: string): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: 64 << 20 });
  const startedAt = new Date().toISOString();
  const agent = tailnetAgent(opts.node, { maxSockets: 4 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: Error, _req, reply) => {
    const code = err instanceof TailnetError ? err.code : 'INTERNAL';
    void reply.code(err instanceof TailnetError ? 502 : 500).header(tailnetErrorHeader, code).send({ error: { code, message: err.message } });
  });

  app.get('/admin/status', async (): Promise<RunningStatus> => ({
    pid: process.pid,
    command: opts.command,
    startedAt,
    node: await opts.node.status(),
    ...(opts.node.loginUrl ? { loginUrl: opts.node.loginUrl } : {}),
    ...opts.info(),
  }));

  // doctor, ping and whois, as krkns's admin socket serves them.
  await app.register(nodeAdminRoutes, { node: opts.node, doctor: opts.doctor });

  app.all('/admin/tailnet/*', async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    const slash = rest.indexOf('/');
    const hostPort = slash < 0 ? rest : rest.slice(0, slash);
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    const url = `http://${hostPort}/${slash < 0 ? '' : rest.slice(slash + 1)}${query}`;
    const headers = endToEndHeaders(Object.entries(req.headers).flatMap(([k, v]) => (typeof v === 'string' ? [[k, v] as [string, string]] : [])));
    const body = Buffer.isBuffer(req.body) && req.method !== 'GET' && req.method !== 'HEAD' ? req.body : undefined;
    const res = await tailnetFetch(opts.node, url, { method: req.method, headers, ...(body ? { body } : {}), signal: AbortSignal.timeout(60_000) }, agent);
    const answer = Buffer.from(await res.arrayBuffer());
    void reply.code(res.status);
    for (const [k, v] of res.headers) if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'connection' && k !== 'keep-alive') void reply.header(k, v);
    return reply.send(answer);
  });

  app.post('/admin/logout', async () => {
    opts.log.info('logout requested on the admin socket');
    await opts.node.logout();
    setImmediate(opts.stop);
    return { loggedOut: true };
  });

  await listenAdminSocket(app, path);
  return app;
}

