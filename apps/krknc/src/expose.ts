import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ExitCode, helpText, parseFlags, readyLine, type FlagSpecs } from '@krkn/cli-kit';
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

export const exposeFlags = { ...nodeFlags, ...portFlag, ...forwardFlags } satisfies FlagSpecs;

const usage = 'krknc expose --port <p> --forward-to <local URL> [flags]';
const description = `Makes a local listener reachable from the tailnet, on krknc's own tailnet address and
--port: any peer the policy lets in can call it (no hub involved). Each request goes to
--forward-to with its method, path, query, headers and raw body; the answer streams back.
The local app also gets X-Forwarded-For (the caller's tailnet IP) and, from WhoIs,
X-Krkn-Caller (its MagicDNS name) and X-Krkn-Caller-User (its owner's login, or "tagged-devices");
callers cannot set these themselves. One line per request names the caller.`;

// Set by krknc from WhoIs, so a caller's own copies are dropped.
const identityHeaders = new Set([
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-krkn-caller',
  'x-krkn-caller-user',
]);

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
      timeoutMs: flags['forward-timeout']!,
      reporter,
      log,
      counted: () => requests++,
    });
    closers.unshift(app);
    await serveFastify(app, own.node, flags.port!);
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
  const headers = endToEndHeaders(incoming).filter(([k]) => !identityHeaders.has(k.toLowerCase()));
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
    ctx.reporter.request({
      caller: caller.node,
      user: caller.user,
      ip: req.ip,
      method: req.method,
      path: req.url,
      status,
      ms: Math.round(performance.now() - started),
      ...(error ? { error } : {}),
    });
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

interface Caller {
  node: string;
  user: string;
}

/** WhoIs per caller IP, remembered for a minute (one engine call per request would be wasted). */
function whoisCache(node: TailnetNode): (ip: string) => Promise<Caller> {
  const cache = new Map<string, { caller: Caller; until: number }>();
  return async (ip) => {
    const hit = cache.get(ip);
    if (hit && hit.until > Date.now()) return hit.caller;
    let caller: Caller;
    try {
      const who = await node.whois(ip);
      caller = { node: who.node.name, user: who.node.tags.length > 0 ? 'tagged-devices' : who.user.loginName };
    } catch {
      caller = { node: ip, user: '' };
    }
    cache.set(ip, { caller, until: Date.now() + 60_000 });
    return caller;
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
