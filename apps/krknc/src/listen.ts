import { connect } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import {
  ExitCode,
  helpText,
  listenerLimitsOf,
  parseFlags,
  positive,
  readyLine,
  usageError,
  type FlagSpecs,
} from '@krkn/cli-kit';
import {
  deliveryHeaders,
  signatureToleranceMs,
  verifyWebhook,
  type HubClient,
  type SignatureProblem,
  type SubscribeRequest,
  type SubscriptionInfo,
} from '@krkn/hub-api';
import { topicPatternError } from '@krkn/policy';
import { serveFastify } from '@krkn/tailnet';
import { forwardFlags, nodeFlags, pathsIn, portFlag, serverFlag, stateDirOf } from './config.js';
import { SeenEvents, defaultSeenCapacity } from './dedupe.js';
import { endToEndHeaders, forwardBuffered, pairsFromRaw, parseForwardTo, type ForwardResult } from './forward.js';
import { LocalInspector, parseInspectAddress } from './inspect.js';
import { aborted, loggerFor, startNode } from './node.js';
import { Reporter } from './report.js';
import { parseServers, resolveServers, withFailover, type ResolvedServer } from './server.js';
import { WebhookSecrets, secretKey } from './secrets.js';
import { ownSession, type Session } from './session.js';
import { krkncDoctorInput } from './diagnose.js';
import { serveAdminSocket, type ListenInfo } from './socket.js';

export const listenFlags = {
  ...nodeFlags,
  ...serverFlag,
  topic: {
    type: 'list',
    env: 'KRKNC_TOPICS',
    repeatable: true,
    placeholder: 'topic',
    describe: 'topic or pattern to subscribe to (ci/*, github/**); repeat for more',
    check: (ts: string[]) => ts.map(topicPatternError).find(Boolean),
  },
  ...forwardFlags,
  ...portFlag,
  path: {
    type: 'string',
    env: 'KRKNC_PATH',
    default: '/krkn/deliver',
    describe: 'path krkns delivers to on that port',
    check: (p: string) =>
      p.startsWith('/') && !/[\s?#]/.test(p) ? undefined : 'must start with "/" (no spaces, ? or #)',
  },
  once: {
    type: 'bool',
    env: 'KRKNC_ONCE',
    default: false,
    describe:
      'unsubscribe when krknc exits (default: keep the subscription so krkns queues events while krknc is away)',
  },
  'rotate-secret': {
    type: 'bool',
    default: false,
    describe:
      'ask krkns for a new signing secret (the old one stays valid for a day); one is issued anyway when none is kept',
  },
  inspect: {
    type: 'string',
    env: 'KRKNC_INSPECT',
    placeholder: 'host:port',
    describe: 'serve a local inspector (deliveries, answers, send again) on this loopback address, e.g. 127.0.0.1:4040',
  },
  'print-body': {
    type: 'bool',
    env: 'KRKNC_PRINT_BODY',
    default: false,
    describe: 'print each payload under its line',
  },
  'body-limit': {
    type: 'size',
    env: 'KRKNC_BODY_LIMIT',
    default: 25 * 1024 * 1024,
    describe: 'largest delivery accepted',
    check: positive,
  },
  'dedupe-size': {
    type: 'int',
    env: 'KRKNC_DEDUPE_SIZE',
    default: defaultSeenCapacity,
    describe: 'how many delivered event ids are remembered (across restarts) to drop duplicates',
    check: positive,
  },
} satisfies FlagSpecs;

const usage = 'krknc listen --server <krkns> --topic <t> [--topic ...] --forward-to <local URL> [flags]';
const description = `Subscribes to topics on krkns and forwards every delivery to a local app, like
'stripe listen --forward-to', privately over the tailnet. Deliveries arrive on krknc's own tailnet
address (--port, --path) and go to --forward-to with their method, headers and raw body unchanged;
krkns gets the local app's status back, so anything but a 2xx is retried by krkns. Each event id
is forwarded once (duplicates are answered 200 without forwarding).
The subscription outlives krknc: while it is stopped (laptop asleep), krkns queues the events and
delivers them when 'krknc listen' runs again. --once unsubscribes on exit instead (so does --ephemeral).`;

/** `krknc listen`: runs until Ctrl-C/SIGTERM. */
export async function listen(argv: string[]): Promise<number> {
  const { flags } = parseFlags(listenFlags, argv);
  if (flags.help) {
    process.stdout.write(helpText(usage, description, listenFlags));
    return ExitCode.OK;
  }
  const refs = parseServers(flags.server);
  const topics = flags.topic ?? [];
  if (topics.length === 0) throw usageError('--topic is required: the topics (or patterns such as ci/*) to receive');
  const target = parseForwardTo(flags['forward-to']);
  const inspectAt = flags.inspect === undefined ? undefined : parseInspectAddress(flags.inspect);
  const once = flags.once || flags.ephemeral;
  const log = loggerFor(flags, 'listen');
  const reporter = new Reporter(process.stdout, { json: flags.json!, printBody: flags['print-body'] });
  const paths = pathsIn(stateDirOf(flags));

  const own = await startNode(flags, log);
  const closers: { close(): Promise<unknown> }[] = [];
  try {
    const seen = SeenEvents.open(paths.seenEvents, flags['dedupe-size']);
    const state = new ListenState({ topics, forwardTo: target.href, once });
    const doctor = () => krkncDoctorInput(flags, stateDirOf(flags), own.node);
    closers.push(
      await serveAdminSocket(
        {
          node: own.node,
          command: 'listen',
          info: () => ({ listen: state.info() }),
          stop: () => own.stop.abort(),
          log,
          doctor,
        },
        paths.adminSocket,
      ),
    );
    const status = await own.up;
    const session = ownSession(own);
    const servers = await resolveServers(session, refs, log);
    state.server = refs.map((r) => r.text).join(',');
    const hubs = new Hubs(session, servers, log);
    const subscribe: SubscribeRequest = { topics, port: flags.port, path: flags.path };
    const secrets = WebhookSecrets.open(paths.webhookSecrets);
    // Replicas share one store, so one subscription and one secret: keyed by all of them, in a fixed order.
    const serverAddresses = servers.map((x) => x.peer.addresses[0]!).sort();
    const key = secretKey(serverAddresses.join(','), flags.port);
    const keepSecret = (s: SubscriptionInfo): void => {
      if (s.secret) secrets.add(key, s.secret);
    };
    const local = new LocalApp(target, reporter, log, () => void resubscribe(hubs, subscribe, log, keepSecret));
    state.local = local;
    const timeoutMs = flags['forward-timeout'];
    let inspector: LocalInspector | undefined;
    if (inspectAt) {
      inspector = new LocalInspector((e) => forwardBuffered(target, e, timeoutMs));
      closers.push(await inspector.serve(inspectAt.host, inspectAt.port));
      log.info({ inspector: `http://${flags.inspect}/` }, 'local inspector listening');
    }
    const verify = { secrets: () => secrets.of(key) };
    const limits = { bodyLimit: flags['body-limit'], timeoutMs, path: flags.path };
    const app = await deliveryApp({ target, servers, seen, state, local, reporter, log, verify, ...limits, inspector });
    closers.unshift(app);
    await serveFastify(app, own.node, flags.port, listenerLimitsOf(flags));
    const listener = `http://${status.self.addresses[0]}:${flags.port}${flags.path}`;
    state.listener = listener;
    // Without a kept secret (first run, state lost) krkns is asked for one: it answers each secret once.
    const rotate = flags['rotate-secret'] || secrets.of(key).length === 0;
    const displays = servers.map((x) => x.display).join(', ');
    const { result: sub, server } = await hubs.call('subscribe', (hub) =>
      hub.subscribe({ ...subscribe, rotateSecret: rotate }),
    );
    keepSecret(sub);
    state.subscription = sub.id;
    const secretIssued = Boolean(sub.secret);
    const fields = { topics, server: server.display, listener, forwardTo: target.href, secretIssued };
    log.info({ subscription: sub.id, ...fields, secrets: secrets.path }, 'subscribed');
    reporter.result(
      'ready',
      {
        node: status.self.dnsName,
        addresses: status.self.addresses,
        listener,
        server: server.display,
        topics,
        forwardTo: target.href,
        subscription: sub.id,
      },
      [
        readyLine('krknc', status, listener),
        `forwarding ${topics.join(', ')} from ${displays} to ${target.href} (subscription ${sub.id})`,
      ],
    );

    await aborted(own.stop.signal);
    local.stop();
    if (once) await unsubscribe(hubs, sub.id, log);
    else
      log.info(
        { subscription: sub.id },
        'subscription kept: krkns queues events for this node until krknc listen runs again (--once unsubscribes)',
      );
    return own.engineFailure === undefined ? ExitCode.OK : ExitCode.FAILURE;
  } finally {
    // Deliveries in flight get a moment to finish; krkns retries whatever is cut off.
    if (own.stop.signal.aborted) {
      log.info('stopping: letting deliveries in flight to the local app finish (at most 5s), then leaving the tailnet');
    }
    await Promise.race([
      Promise.allSettled(closers.map((c) => c.close())),
      new Promise((r) => setTimeout(r, 5_000).unref()),
    ]);
    await own.dispose();
  }
}

/** The krkns replicas listen talks to, in the order given: each call fails over to the next. */
class Hubs {
  constructor(
    private readonly session: Session,
    readonly servers: ResolvedServer[],
    private readonly log: Logger,
  ) {}

  call<T>(what: string, fn: (hub: HubClient) => Promise<T>): Promise<{ result: T; server: ResolvedServer }> {
    const failover = (failed: ResolvedServer, err: Error) =>
      this.log.warn({ server: failed.display, err: err.message }, `${what}: asking the next server`);
    return withFailover(this.session, this.servers, what, fn, failover);
  }
}

async function unsubscribe(hubs: Hubs, id: string, log: Logger): Promise<void> {
  log.info({ subscription: id }, 'unsubscribing from krkns (--once), at most 5s');
  try {
    await Promise.race([
      hubs.call('unsubscribe', (hub) => hub.unsubscribe(id)),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 5s')), 5_000).unref()),
    ]);
    log.info({ subscription: id }, 'unsubscribed');
  } catch (err) {
    log.warn({ subscription: id, err: (err as Error).message }, 'could not unsubscribe; krkns keeps the subscription');
  }
}

/** Subscribing again makes krkns attempt the subscription's queued deliveries now. */
async function resubscribe(
  hubs: Hubs,
  req: SubscribeRequest,
  log: Logger,
  keepSecret: (s: SubscriptionInfo) => void,
): Promise<void> {
  try {
    // A secret comes back only if krkns had lost the subscription.
    keepSecret((await hubs.call('subscribe', (hub) => hub.subscribe(req))).result);
    log.debug('asked krkns to deliver the queued events now');
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not ask krkns to deliver now; it retries on its schedule');
  }
}

/** Counters and settings for status. */
class ListenState {
  server = '';
  listener = '';
  subscription: string | null = null;
  forwarded = 0;
  failed = 0;
  duplicates = 0;
  local: LocalApp | undefined;

  constructor(private readonly settings: { topics: string[]; forwardTo: string; once: boolean }) {}

  info(): ListenInfo {
    const since = this.local?.downSince;
    return {
      server: this.server,
      topics: this.settings.topics,
      subscription: this.subscription,
      listener: this.listener,
      forwardTo: this.settings.forwardTo,
      once: this.settings.once,
      forwarded: this.forwarded,
      failed: this.failed,
      duplicates: this.duplicates,
      localApp: this.local?.state ?? 'unknown',
      ...(since !== undefined ? { localDownSince: new Date(since).toISOString() } : {}),
    };
  }
}

/**
 * Whether the local app answers. Going down is said once (krkns retries each event many times,
 * and that is not news); while it is down a TCP probe notices when it is back, says so, and asks
 * krkns to deliver the queue now rather than at its next scheduled retry.
 */
class LocalApp {
  state: 'unknown' | 'up' | 'down' = 'unknown';
  downSince: number | undefined;
  private probe: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: URL,
    private readonly reporter: Reporter,
    private readonly log: Logger,
    private readonly onBack: () => void,
  ) {}

  failed(error: string): void {
    if (this.state === 'down') {
      this.log.debug({ error }, 'local app still down');
      return;
    }
    this.state = 'down';
    this.downSince = Date.now();
    this.reporter.notice(
      'local-down',
      `local app ${this.target.href} is down (${error}): krkns keeps the events and retries; krknc says when it is back`,
      { url: this.target.href, error },
      'warn',
    );
    this.probe = setInterval(() => this.check(), 1_000);
    this.probe.unref();
  }

  answered(): void {
    if (this.state === 'down') this.back();
    this.state = 'up';
  }

  stop(): void {
    clearInterval(this.probe);
  }

  private back(): void {
    clearInterval(this.probe);
    const downMs = Date.now() - (this.downSince ?? Date.now());
    this.state = 'up';
    this.downSince = undefined;
    this.reporter.notice(
      'local-up',
      `local app ${this.target.href} is back (down for ${Math.round(downMs / 1000)}s)`,
      { url: this.target.href, downMs },
      'ok',
    );
    this.onBack();
  }

  private check(): void {
    const port = Number(this.target.port) || (this.target.protocol === 'https:' ? 443 : 80);
    const socket = connect({ host: this.target.hostname.replace(/^\[|\]$/g, ''), port, timeout: 900 });
    socket.once('connect', () => {
      socket.destroy();
      if (this.state === 'down') this.back();
    });
    socket.once('error', () => socket.destroy());
    socket.once('timeout', () => socket.destroy());
  }
}

interface DeliveryContext {
  target: URL;
  /** Deliveries are accepted from any of these krkns replicas, and from nobody else. */
  servers: ResolvedServer[];
  seen: SeenEvents;
  state: ListenState;
  local: LocalApp;
  reporter: Reporter;
  log: Logger;
  /** The secrets a delivery's Standard Webhooks signature is checked against. */
  verify: { secrets(): readonly string[] };
  bodyLimit: number;
  timeoutMs: number;
  path: string;
  /** With --inspect: where each forward is shown. */
  inspector: LocalInspector | undefined;
}

/** The tailnet listener krkns delivers to. */
async function deliveryApp(ctx: DeliveryContext): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: ctx.bodyLimit });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // One forward per event id at a time: a retry that arrives while the first attempt is still at
  // the local app (krkns gave up waiting) gets that attempt's result instead of a second copy.
  const inFlight = new Map<string, Promise<ForwardResult>>();
  app.post(ctx.path, async (req, reply) => {
    if (!ctx.servers.some((server) => server.peer.addresses.includes(req.ip))) {
      ctx.log.warn({ from: req.ip }, 'refused a delivery that did not come from krkns');
      const from = ctx.servers.map((server) => server.display).join(', ');
      return reply.code(403).send({ error: `deliveries are accepted from ${from} only` });
    }
    const id = header(req, deliveryHeaders.eventId);
    if (!id) return reply.code(400).send({ error: `a delivery needs ${deliveryHeaders.eventId}` });
    const key = dedupeKey(id, header(req, deliveryHeaders.redelivery));
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    // Even from krkns's address: a signature proves the body is the one krkns signed for this subscription.
    const problem = verifyWebhook(ctx.verify.secrets(), (name) => header(req, name), body);
    if (problem) {
      ctx.log.warn({ event: id, problem }, 'refused a delivery whose Standard Webhooks signature does not verify');
      return reply.code(401).send({ error: `${signatureProblems[problem]}: not forwarded` });
    }
    const topic = header(req, deliveryHeaders.topic) ?? '';
    const attempt = Number(header(req, deliveryHeaders.attempt) ?? 1);
    const log = ctx.log.child({ event: id, topic, attempt });
    if (ctx.seen.has(key)) {
      ctx.state.duplicates++;
      log.debug('duplicate delivery: answered without forwarding');
      ctx.reporter.event({ topic, id, attempt, status: 200, ms: 0, duplicate: true });
      return reply.code(200).send({ duplicate: true, id });
    }
    let pending = inFlight.get(key);
    const first = pending === undefined;
    const headers = endToEndHeaders(pairsFromRaw(req.raw.rawHeaders));
    if (!pending) {
      pending = forwardBuffered(ctx.target, { method: req.method, headers, body }, ctx.timeoutMs);
      inFlight.set(key, pending);
    }
    const result = await pending.finally(() => inFlight.delete(key));
    const contentType = header(req, 'content-type') ?? null;
    if (first) {
      record(ctx, log, key, { topic, id, attempt, body, contentType }, result);
      ctx.inspector?.record({ id, topic, attempt, replay: false, method: req.method, headers, body, result });
    }
    return answer(reply, result, ctx.target);
  });
  return app;
}

/**
 * What a delivery is deduped on: its event id, and for an explicit redelivery (someone asked for
 * the event again) also its token, so the app gets it once more, and once only.
 */
function dedupeKey(eventId: string, redelivery: string | undefined): string {
  return redelivery !== undefined && /^[0-9a-z]{1,16}$/.test(redelivery) ? `${eventId}-r${redelivery}` : eventId;
}

/** Bookkeeping and the printed line for one forward. */
function record(
  ctx: DeliveryContext,
  log: Logger,
  key: string,
  e: { topic: string; id: string; attempt: number; body: Buffer; contentType: string | null },
  r: ForwardResult,
): void {
  if (r.kind === 'unreachable') {
    ctx.state.failed++;
    ctx.local.failed(r.error);
    return;
  }
  if (r.kind === 'answered') {
    ctx.local.answered();
    if (r.status >= 200 && r.status < 300) {
      ctx.seen.add(key);
      ctx.state.forwarded++;
    } else ctx.state.failed++;
    log.debug({ status: r.status, ms: r.ms }, 'forwarded');
    ctx.reporter.event({ ...e, status: r.status, ms: r.ms });
    return;
  }
  ctx.state.failed++;
  log.debug({ error: r.error, ms: r.ms }, 'forward failed');
  ctx.reporter.event({ ...e, status: null, ms: r.ms, error: r.error });
}

/** krkns gets the local app's answer; a local app that is down or silent becomes 502 or 504. */
function answer(reply: FastifyReply, r: ForwardResult, target: URL): FastifyReply {
  switch (r.kind) {
    case 'answered': {
      const type = r.headers['content-type'];
      if (type) void reply.header('content-type', type);
      return reply.code(r.status).send(r.body);
    }
    case 'timeout':
      return reply.code(504).send({ error: `local app ${target.href}: ${r.error}` });
    default:
      return reply.code(502).send({ error: `local app ${target.href} is not answering: ${r.error}` });
  }
}

const signatureProblems: Record<SignatureProblem, string> = {
  missing: 'the delivery has no (complete) Standard Webhooks signature',
  stale: `the signature timestamp is more than ${signatureToleranceMs / 60_000} minutes from this clock`,
  mismatch: "the signature does not match this subscription's secret (body altered, or the secret was rotated)",
};

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
