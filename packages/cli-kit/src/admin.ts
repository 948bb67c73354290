import { chmodSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { runChecks, type CheckResult, type DoctorInput } from '@krkn/doctor';
import { decodeErrorBody, endToEndHeaders, type ErrorBody, type FetchLike } from '@krkn/hub-api';
import { TailnetError, tailnetAgent, tailnetFetch, type TailnetErrorCode, type TailnetNode } from '@krkn/tailnet';
import { CliError, ExitCode } from './exit.js';

/**
 * The local admin socket of both daemons (krkns run, krknc listen/expose): a unix socket only its
 * owner may open (0600) in the state directory. The daemon holds the node's state lock, so other
 * commands on the same state directory use its node through here instead of starting their own.
 * Errors are answered as {@link ErrorBody}; a tailnet error also carries its code in
 * {@link tailnetErrorHeader}, which tells it apart from a proxied peer's own answer.
 */

/** Header on an admin answer that carries a tailnet error (its TailnetError code). */
const tailnetErrorHeader = 'x-krkn-tailnet-error';

// Every TailnetError code, so one that crossed the socket is recreated with its own code.
const tailnetCodes: Record<TailnetErrorCode, true> = {
  AUTH_KEY_INVALID: true,
  AUTH_KEY_EXPIRED: true,
  TAGS_NOT_PERMITTED: true,
  CONTROL_UNREACHABLE: true,
  ABORTED: true,
  STATE_LOCKED: true,
  STATE_CORRUPT: true,
  STATE_IO: true,
  NOT_RUNNING: true,
  BAD_ARGUMENT: true,
  UNKNOWN_PEER: true,
  DIAL_FAILED: true,
  TIMEOUT: true,
  PORT_IN_USE: true,
  ENGINE: true,
};

// A proxied request to a tailnet peer gets this long for the whole answer.
const proxyTimeoutMs = 60_000;
// The proxy answers with the peer's headers, minus those that describe the socket's own connection.
const connectionHeaders = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive']);

/** Options of {@link adminRoutes}. */
export interface AdminRoutesOptions {
  node: TailnetNode;
  /** The doctor's input, as the daemon sees it (its own environment and flags). */
  doctor: () => DoctorInput;
  /** Called once `POST /admin/logout` has logged the node out: the daemon stops. */
  stop: () => void;
  log: Logger;
  /** What `GET /admin/status` answers; without it the route is not served. */
  status?: () => Promise<object>;
  /** Serve HTTP to tailnet peers through this node at `/admin/tailnet/<host[:port]>/<path>`. */
  tailnetProxy?: boolean;
}

/**
 * The admin socket's routes: status, doctor, ping, whois, logout and (optionally) the tailnet
 * proxy. Bodies are kept raw, so a proxied request is passed on byte for byte.
 */
export const adminRoutes: FastifyPluginAsync<AdminRoutesOptions> = async (app, opts) => {
  const { node } = opts;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const [status, code] = answerFor(err);
    const body: ErrorBody<string> = { error: { code, message: err.message } };
    void reply.code(status).header(tailnetErrorHeader, code).send(body);
  });
  const { status } = opts;
  if (status) app.get('/admin/status', async () => status());
  app.get('/admin/doctor', async (): Promise<{ checks: CheckResult[] }> => ({
    checks: await runChecks(opts.doctor()),
  }));
  app.post('/admin/ping', async (req) => {
    const peer = jsonObject(req.body).peer;
    if (typeof peer !== 'string' || !peer) throw new TailnetError('BAD_ARGUMENT', 'ping needs a peer');
    return node.ping(peer, { timeoutMs: 5_000 });
  });
  app.get('/admin/whois', async (req) => {
    const ip = (req.query as { ip?: unknown }).ip;
    return node.whois(typeof ip === 'string' ? ip : '');
  });
  app.post('/admin/logout', async () => {
    opts.log.info('logout requested on the admin socket');
    await node.logout();
    setImmediate(opts.stop);
    return { loggedOut: true };
  });
  if (opts.tailnetProxy) serveTailnetProxy(app, node);
};

function answerFor(err: FastifyError): [status: number, code: string] {
  if (err instanceof TailnetError) return [err.code === 'BAD_ARGUMENT' ? 400 : 502, err.code];
  const status = err.statusCode ?? 500;
  return status < 500 ? [status, err.code] : [500, 'INTERNAL'];
}

function serveTailnetProxy(app: FastifyInstance, node: TailnetNode): void {
  const agent = tailnetAgent(node, { maxSockets: 4 });
  app.all('/admin/tailnet/*', async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    const slash = rest.indexOf('/');
    const hostPort = slash < 0 ? rest : rest.slice(0, slash);
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    const url = `http://${hostPort}/${slash < 0 ? '' : rest.slice(slash + 1)}${query}`;
    const pairs = Object.entries(req.headers).flatMap(([k, v]) =>
      typeof v === 'string' ? [[k, v] as [string, string]] : [],
    );
    const body = Buffer.isBuffer(req.body) && req.method !== 'GET' && req.method !== 'HEAD' ? req.body : undefined;
    const init = { method: req.method, headers: endToEndHeaders(pairs), signal: AbortSignal.timeout(proxyTimeoutMs) };
    const res = await tailnetFetch(node, url, { ...init, ...(body ? { body } : {}) }, agent);
    const answer = Buffer.from(await res.arrayBuffer());
    void reply.code(res.status);
    for (const [k, v] of res.headers) if (!connectionHeaders.has(k)) void reply.header(k, v);
    return reply.send(answer);
  });
}

// Bodies arrive raw (see adminRoutes): a JSON object, or nothing usable.
function jsonObject(body: unknown): Record<string, unknown> {
  if (!Buffer.isBuffer(body)) return {};
  try {
    const parsed: unknown = JSON.parse(body.toString());
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * Serves an app on the admin socket at path, mode 0600. A stale socket file left by a crash is
 * replaced; a live one means another daemon runs on this state directory.
 */
export async function listenAdminSocket(app: FastifyInstance, path: string): Promise<void> {
  if (await socketAnswers(path)) throw new CliError(`another process is serving ${path}`, ExitCode.STATE);
  rmSync(path, { force: true });
  await app.listen({ path });
  chmodSync(path, 0o600);
}

/** Whether something accepts connections on the unix socket at path. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A client of a daemon's admin socket. */
export class AdminClient {
  /** fetch() over the socket: URLs are `http://admin/<path>`; only path and query are used. */
  readonly fetch: FetchLike;

  constructor(readonly socketPath: string) {
    this.fetch = socketFetch(socketPath);
  }

  /** Whether a daemon answers on the socket. */
  answers(): Promise<boolean> {
    return socketAnswers(this.socketPath);
  }

  /** Calls an admin route with an optional JSON body; its error answer is thrown (see {@link errorOf}). */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const json =
      body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
    const res = await this.fetch(`http://admin${path}`, { method, ...json });
    if (!res.ok) throw await errorOf(res, `${method} ${path}`);
    return (await res.json()) as T;
  }

  /** Logs the daemon's node out; the daemon then stops. */
  async logout(): Promise<void> {
    await this.json('POST', '/admin/logout');
  }

  /** HTTP to a tailnet peer (`http://<peer>[:port]/path`) through the daemon's node. */
  readonly tailnetFetch: FetchLike = async (url, init = {}) => {
    const u = new URL(url);
    const res = await this.fetch(`http://admin/admin/tailnet/${u.host}${u.pathname}${u.search}`, init);
    if (res.headers.has(tailnetErrorHeader)) throw await errorOf(res, `tailnet ${u.host}`);
    return res;
  };
}

/**
 * The error an admin answer carries: a TailnetError with its own code when the daemon's node
 * failed, else a CliError with the daemon's message.
 */
async function errorOf(res: Response, what: string): Promise<Error> {
  const e = decodeErrorBody(await res.json().catch(() => undefined));
  if (e && Object.hasOwn(tailnetCodes, e.code)) return new TailnetError(e.code as TailnetErrorCode, e.message);
  return new CliError(`admin socket: ${what}: ${e ? `${e.code}: ${e.message}` : `HTTP ${res.status}`}`);
}

function socketFetch(socketPath: string): FetchLike {
  return (url, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const u = new URL(url);
      const headers = Object.fromEntries(new Headers(init.headers).entries());
      const options = { socketPath, path: `${u.pathname}${u.search}`, method: init.method ?? 'GET', headers };
      const req = request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
          resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 502, headers: h }));
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        const down = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
        const notRunning = `the daemon is not running (no answer on ${socketPath})`;
        reject(down ? new CliError(notRunning, ExitCode.UNREACHABLE) : err);
      });
      req.end(typeof init.body === 'string' || init.body instanceof Uint8Array ? init.body : undefined);
    });
}
