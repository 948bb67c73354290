import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ExitCode, helpText, listenerLimitsOf, parseFlags, readyLine, type FlagSpecs } from '@krkn/cli-kit';
import { serveFastify, type TailnetNode } from '@krkn/tailnet';
import { forwardFlags, nodeFlags, pathsIn, portFlag, stateDirOf } from './config.js';
import {
  classify,
  endToEndHeaders,
  openLocal,
  pairsFromRaw,
  parseForwardTo,
  reason,
  timeoutUntilAnswer,
} from './forward.js';
import { aborted, loggerFor, startNode } from './node.js';
import { Reporter } from './report.js';
import { krkncDoctorInput } from './diagnose.js';
import { serveAdminSocket } from './socket.js';

// --allow entries: a tag, a login name (user@domain), any domain's user (user@), a domain's users (@domain).
const allowEntry = /^(tag:[a-z0-9][a-z0-9-]*|[^@\s,]+@[^@\s,]*|@[^@\s,]+)$/i;

const allowFlag = {
  allow: {
    type: 'list',
    env: 'KRKNC_ALLOW',
    default: [],
    placeholder: 'id,...',
    describe:
      'only these callers (WhoIs): tag:ci, a login alice@example.com, alice@ (any domain), @example.com; others get 403',
    check: (ids: string[]) =>
      ids
        .map((id) => (allowEntry.test(id) ? undefined : `${id} is not tag:name, user@domain, user@ or @domain`))
        .find(Boolean),
  },
} satisfies FlagSpecs;

export const exposeFlags = { ...nodeFlags, ...portFlag, ...forwardFlags, ...allowFlag } satisfies FlagSpecs;

const usage = 'krknc expose --port <p> --forward-to <local URL> [flags]';
const description = `Makes a local listener reachable from the tailnet, on krknc's own tailnet address and
--port: any peer the policy lets in can call it (no hub involved). Each request goes to
--forward-to with its method, path, query, headers and raw body; the answer streams back.
The local app also gets X-Forwarded-For (the caller's tailnet IP) and, from WhoIs,
X-Krkn-Caller (its MagicDNS name) and X-Krkn-Caller-User (its owner's login, or "tagged-devices");
callers cannot set these themselves, nor Forwarded, X-Real-IP or any other X-Forwarded-*.
--allow lets only the tailnet identities it names in. One line per request names the caller.`;

// Identity claims a proxy in front of the local app may trust: krknc sets its own from WhoIs and drops
// every copy a caller sends, also spelled with underscores (CGI, WSGI and nginx's underscores_in_headers
// read X_Krkn_Caller as X-Krkn-Caller).
const spoofableHeaders = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'x-krkn-caller',
  'x-krkn-caller-user',
]);
const spoofablePrefix = 'x-forwarded-';

/** Whether a request header claims an identity only krknc may state. */
export function isSpoofable(name: string): boolean {
  const canonical = name.toLowerCase().replaceAll('_', '-');
  return spoofableHeaders.has(canonical) || canonical.startsWith(spoofablePrefix);
}

/** `krknc expose`: runs until Ctrl-C/SIGTERM. */
export async function expose(argv: string[]): Promise<number> {
  const { flags } = parseFlags(exposeFlags, argv);
  if (flags.help) {
    process.stdout.write(helpText(usage, description, exposeFlags));
    return ExitCode.OK;
  }
  const target = parseForwardTo(flags['forward-to']);
  const log = loggerFor(flags, 'expose');
  const reporter = new Reporter(process.stdout, { json: flags.json! });
  const paths = pathsIn(stateDirOf(flags));
  const own = await startNode(flags, log);
  const closers: { close(): Promise<unknown> }[] = [];
  try {
    let requests = 0;
    let listener = '';
    closers.push(
      await serveAdminSocket(
        {
          node: own.node,
          command: 'expose',
          info: () => ({ expose: { listener, forwardTo: target.href, requests } }),
          stop: () => own.stop.abort(),
          log,
          doctor: () => krkncDoctorInput(flags, stateDirOf(flags), own.node),
        },
        paths.adminSocket,
      ),
    );
    const status = await own.up;
    const app = exposeApp({
      node: own.node,
      target,
      timeoutMs: flags['forward-timeout'],
      allow: flags.allow,
      reporter,
      log,
      counted: () => requests++,
    });
    closers.unshift(app);
    await serveFastify(app, own.node, flags.port, listenerLimitsOf(flags));
    const host = status.self.dnsName || status.self.addresses[0];
    listener = `http://${host}${flags.port === 80 ? '' : `:${flags.port}`}`;
    reporter.result(
      'ready',
      { node: status.self.dnsName, addresses: status.self.addresses, listener, forwardTo: target.href },
      [readyLine('krknc', status, listener), `exposing ${target.href} to the tailnet at ${listener}`],
    );
    await aborted(own.stop.signal);
    return own.engineFailure === undefined ? ExitCode.OK : ExitCode.FAILURE;
  } finally {
    await Promise.race([
      Promise.allSettled(closers.map((c) => c.close())),
      new Promise((r) => setTimeout(r, 5_000).unref()),
    ]);
    await own.dispose();
  }
}

interface ExposeContext {
  node: TailnetNode;
  target: URL;
  timeoutMs: number;
  /** --allow: empty lets in every caller the tailnet policy lets reach krknc. */
  allow: string[];
  reporter: Reporter;
  log: Logger;
  counted: () => void;
}

/** A catch-all that proxies every request to the local app, streaming both ways. */
function exposeApp(ctx: ExposeContext): FastifyInstance {
  const app = Fastify();
  const whois = whoisCache(ctx.node);
  app.removeAllContentTypeParsers();
  // The body is not read here: the raw stream goes to the local app as it arrives.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  if (ctx.allow.length > 0) {
    // Before the body is read: a refused caller's bytes never reach the local app.
    app.addHook('onRequest', async (req, reply) => {
      const caller = await whois(req.ip);
      if (isAllowed(caller, ctx.allow)) return;
      reportRequest(ctx.reporter, caller, req, { status: 403, ms: 0, error: 'not in --allow' });
      return reply
        .code(403)
        .header('connection', 'close')
        .type('text/plain')
        .send(`krknc: ${caller.node} is not allowed to call this node (--allow)\n`);
    });
  }
  const handler = (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => proxy(ctx, whois, req, reply);
  app.all('/', handler);
  app.all('/*', handler);
  return app;
}

async function proxy(
  ctx: ExposeContext,
  whois: (ip: string) => Promise<Caller>,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const started = performance.now();
  ctx.counted();
  const caller = await whois(req.ip);
  const url = targetFor(ctx.target, req.url);
  const body = isReadable(req.body) ? req.body : undefined;
  const incoming = pairsFromRaw(req.raw.rawHeaders);
  const headers = endToEndHeaders(incoming).filter(([k]) => !isSpoofable(k));
  const length = incoming.find(([k]) => k.toLowerCase() === 'content-length');
  if (body && length) headers.push(length); // else Node sends the body chunked
  headers.push(
    ['X-Forwarded-For', req.ip],
    ['X-Forwarded-Host', req.headers.host ?? ''],
    ['X-Forwarded-Proto', 'http'],
    ['X-Krkn-Caller', caller.node],
    ['X-Krkn-Caller-User', caller.user],
  );
  const upstream = openLocal(url, req.method, headers);
  timeoutUntilAnswer(upstream, ctx.timeoutMs);
  const answered = new Promise<IncomingMessage>((resolve, reject) => {
    upstream.once('response', resolve);
    upstream.once('error', reject);
  });
  if (body)
    pipeline(body, upstream).catch(() => undefined); // a failure surfaces on `answered`
  else upstream.end();
  const report = (status: number | null, error?: string): void =>
    reportRequest(ctx.reporter, caller, req, { status, ms: Math.round(performance.now() - started), error });
  let res: IncomingMessage;
  try {
    res = await answered;
  } catch (err) {
    const e = err as Error & { code?: string };
    const status = classify(e) === 'timeout' ? 504 : 502;
    report(status, reason(e));
    ctx.log.debug({ url: url.href, error: e.message }, 'local app did not answer');
    return reply
      .code(status)
      .type('text/plain')
      .send(
        `krknc: local app ${ctx.target.href} ${status === 504 ? 'did not answer in time' : `is not answering (${reason(e)})`}\n`,
      );
  }
  report(res.statusCode ?? 502);
  void reply.code(res.statusCode ?? 502);
  for (const [name, values] of groupHeaders(endToEndHeaders(pairsFromRaw(res.rawHeaders))))
    void reply.header(name, values.length === 1 ? values[0]! : values);
  const len = res.headers['content-length'];
  if (len !== undefined) void reply.header('content-length', len);
  return reply.send(res);
}

/** One line of the request log: who called, what, and how it ended. */
function reportRequest(
  reporter: Reporter,
  caller: Caller,
  req: FastifyRequest,
  outcome: { status: number | null; ms: number; error?: string | undefined },
): void {
  const { status, ms, error } = outcome;
  reporter.request({
    caller: caller.node,
    user: caller.user,
    ip: req.ip,
    method: req.method,
    path: req.url,
    status,
    ms,
    ...(error ? { error } : {}),
  });
}

interface Caller {
  node: string;
  /** The owner's login name, or "tagged-devices"; empty when WhoIs does not know the address. */
  user: string;
  tags: string[];
}

/** Whether --allow names the caller: one of its tags, or (untagged) its owner's login name. */
export function isAllowed(caller: Pick<Caller, 'user' | 'tags'>, allow: string[]): boolean {
  return allow.some((entry) => {
    if (entry.startsWith('tag:')) return caller.tags.includes(entry);
    if (caller.tags.length > 0 || caller.user === '') return false;
    const login = caller.user.toLowerCase();
    const want = entry.toLowerCase();
    if (want.startsWith('@')) return login.endsWith(want);
    if (want.endsWith('@')) return login.startsWith(want) || login === want.slice(0, -1);
    return login === want;
  });
}

// Short: an address can pass to another node (a deleted ephemeral node's), and --allow decides on it.
const whoisTtlMs = 5_000;

/** WhoIs per caller IP, remembered briefly (one engine call per request would be wasted). */
function whoisCache(node: TailnetNode): (ip: string) => Promise<Caller> {
  const cache = new Map<string, { caller: Caller; until: number }>();
  return async (ip) => {
    const hit = cache.get(ip);
    if (hit && hit.until > Date.now()) return hit.caller;
    try {
      const who = await node.whois(ip);
      const tags = who.node.tags;
      const caller = { node: who.node.name, user: tags.length > 0 ? 'tagged-devices' : who.user.loginName, tags };
      cache.set(ip, { caller, until: Date.now() + whoisTtlMs });
      return caller;
    } catch {
      return { node: ip, user: '', tags: [] }; // not remembered: the next request asks again
    }
  };
}

/** The local URL for a request: --forward-to's path is a prefix; the query is the caller's. */
function targetFor(base: URL, requestUrl: string): URL {
  const incoming = new URL(requestUrl, 'http://x');
  const url = new URL(base.href);
  url.pathname = base.pathname.replace(/\/$/, '') + incoming.pathname;
  url.search = [base.search.slice(1), incoming.search.slice(1)].filter(Boolean).join('&');
  return url;
}

function groupHeaders(pairs: [string, string][]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of pairs) out.set(k.toLowerCase(), [...(out.get(k.toLowerCase()) ?? []), v]);
  return out;
}

function isReadable(x: unknown): x is Readable {
  return typeof x === 'object' && x !== null && typeof (x as Readable).pipe === 'function';
}
