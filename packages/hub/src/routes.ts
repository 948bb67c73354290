import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { endToEndHeaders, pairsFromRaw, type EventDetail, type PublishResponse } from '@krkn/hub-api';
import type { Caller, Identify } from './caller.js';
import { checkBrowserRequest } from './browser-guard.js';
import { HubError, toHubError } from './errors.js';
import type { EventsQuery, HubUseCases, SubscribeInput } from './use-cases.js';

/** Options of {@link hubRoutes}. */
export interface HubRoutesOptions {
  hub: HubUseCases;
  /** How callers are identified: WhoIs on the tailnet listener, or admin on the local socket. */
  identify: Identify;
  /** Largest accepted webhook body, in bytes. */
  bodyLimit: number;
  /** Where failed requests (5xx) are logged. */
  log: Logger;
  /**
   * The tailnet listener's own names and addresses: when given, requests a browser could be
   * tricked into sending are refused (see checkBrowserRequest). The admin socket has none.
   */
  ownHosts?: () => readonly string[];
}

// Body fields that would name a delivery target other than the caller (see SubscribeInput).
const targetFields = ['address', 'host', 'url', 'target'] as const;

/**
 * The krkns HTTP API as a fastify plugin: it turns requests into calls of the hub's use cases
 * and their results (or HubErrors) into answers. The caller is identified before any body is read.
 */
export const hubRoutes: FastifyPluginAsync<HubRoutesOptions> = async (app, opts) => {
  const { hub, identify, bodyLimit, log, ownHosts } = opts;
  app.setErrorHandler((err, req, reply) => {
    const e = toHubError(err);
    if (e.status >= 500) log.error({ err: e.cause instanceof Error ? e.cause : e, url: req.url }, 'request failed');
    void reply.code(e.status).send(e.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new HubError('NOT_FOUND', `no route ${req.method} ${req.url}`);
    void reply.code(e.status).send(e.toBody());
  });
  app.addHook('onRequest', async (req) => {
    if (hub.closing) throw new HubError('SHUTTING_DOWN', 'krkns is shutting down; retry shortly');
    if (ownHosts) checkBrowserRequest(req, ownHosts());
  });

  app.get('/healthz', async () => ({ ok: true }));

  await app.register(async (identified) => {
    const callers = new WeakMap<FastifyRequest, Caller>();
    identified.addHook('onRequest', async (req) => void callers.set(req, await identify(req)));
    const callerOf = (req: FastifyRequest): Caller => {
      const caller = callers.get(req);
      if (caller === undefined) throw new HubError('INTERNAL', 'request without an identified caller');
      return caller;
    };
    identified.get('/status', async (req) => hub.status(callerOf(req)));
    await identified.register(publishRoute, { hub, callerOf, bodyLimit });
    eventRoutes(identified, hub, callerOf);
    subscriptionRoutes(identified, hub, callerOf);
  });
};

type CallerOf = (req: FastifyRequest) => Caller;

// Publishing takes any content type as raw bytes, so it lives in its own encapsulated context.
const publishRoute: FastifyPluginAsync<{ hub: HubUseCases; callerOf: CallerOf; bodyLimit: number }> = async (
  app,
  { hub, callerOf, bodyLimit },
) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));
  const topicOf = (req: FastifyRequest): string => (req.params as { '*': string })['*'];
  // Refused before a byte of the body is read.
  app.addHook('onRequest', async (req) => {
    hub.checkPublish(callerOf(req), topicOf(req));
    const declared = Number(req.headers['content-length'] ?? 0);
    await hub.checkStoreRoom(topicOf(req), Number.isSafeInteger(declared) ? declared : 0);
  });
  app.post('/hooks/*', { bodyLimit }, async (req, reply): Promise<PublishResponse> => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const headers = endToEndHeaders(pairsFromRaw(req.raw.rawHeaders));
    const topic = topicOf(req);
    const published = await hub.publish(callerOf(req), { topic, method: req.method, headers, body });
    void reply.code(202);
    return published;
  });
};

function eventRoutes(app: FastifyInstance, hub: HubUseCases, callerOf: CallerOf): void {
  app.get('/events', async (req) => ({ events: await hub.listEvents(callerOf(req), eventsQuery(req.query)) }));

  app.get('/events/:id', async (req): Promise<{ event: EventDetail }> => {
    const { body, ...detail } = await hub.getEvent(callerOf(req), idParam(req));
    return { event: { ...detail, bodyBase64: body.toString('base64') } };
  });

  app.get('/events/:id/body', async (req, reply) => {
    const event = await hub.getEvent(callerOf(req), idParam(req));
    // A stored body is whatever a publisher sent (HTML, SVG, script): a browser must never render it
    // as a page of krkns's origin.
    void reply.headers({
      'content-type': event.contentType ?? 'application/octet-stream',
      'x-content-type-options': 'nosniff',
      'content-disposition': `attachment; filename="${event.id}"`,
      'content-security-policy': "sandbox; default-src 'none'",
    });
    return event.body;
  });

  app.post('/events/:id/redeliver', async (req, reply) => {
    const result = await hub.redeliver(callerOf(req), idParam(req));
    void reply.code(202);
    return result;
  });
}

function subscriptionRoutes(app: FastifyInstance, hub: HubUseCases, callerOf: CallerOf): void {
  app.post('/subscriptions', async (req, reply) => {
    const subscription = await hub.subscribe(callerOf(req), subscribeInput(req.body));
    void reply.code(201);
    return { subscription };
  });

  app.get('/subscriptions', async (req) => ({ subscriptions: await hub.listSubscriptions(callerOf(req)) }));

  app.get('/metrics', async (req, reply) => {
    const page = await hub.metrics(callerOf(req));
    return reply.type(page.contentType).send(page.body);
  });

  app.delete('/subscriptions/:id', async (req) => {
    const id = idParam(req);
    await hub.unsubscribe(callerOf(req), id);
    return { id, deleted: true };
  });
}

function idParam(req: FastifyRequest): string {
  return (req.params as { id: string }).id;
}

/** Decodes a `POST /subscriptions` body (see SubscribeRequest in @krkn/hub-api). */
function subscribeInput(raw: unknown): SubscribeInput {
  const body = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const { topics, port, path = '/', rotateSecret = false } = body;
  if (!Array.isArray(topics) || topics.length === 0 || !topics.every((t) => typeof t === 'string')) {
    throw new HubError('BAD_REQUEST', '"topics" must be a non-empty list of topics or patterns such as "ci/*"');
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new HubError('BAD_REQUEST', '"port" must be the port of your tailnet listener (1-65535)');
  }
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > 1024) {
    throw new HubError('BAD_REQUEST', '"path" must start with "/"');
  }
  if (typeof rotateSecret !== 'boolean') throw new HubError('BAD_REQUEST', '"rotateSecret" must be true or false');
  const named = targetFields.filter((f) => body[f] !== undefined);
  const namedTargets = named.map((field) => ({ field, host: hostOf(body[field]) }));
  return { topics: topics, port, path, rotateSecret, namedTargets };
}

/** The host a target field names ("" when it is not a string): scheme, port, path and brackets cut off. */
function hostOf(v: unknown): string {
  if (typeof v !== 'string') return '';
  return v
    .replace(/^[a-z]+:\/\//i, '')
    .replace(/[:/].*$/, '')
    .replace(/^\[|\]$/g, '');
}

/** Decodes the query of `GET /events`. */
function eventsQuery(raw: unknown): EventsQuery {
  const q = singleValued(raw);
  return {
    ...(q.topic === undefined ? {} : { topic: q.topic }),
    ...(q.after ? { after: q.after } : {}),
    ...(q.before ? { before: q.before } : {}),
    ...(q.since ? { since: parseSince(q.since) } : {}),
    newestFirst: parseOrder(q.order) === 'newest',
    limit: parseLimit(q.limit),
  };
}

function parseOrder(s: string | undefined): 'oldest' | 'newest' {
  if (s === undefined || s === 'oldest' || s === 'newest') return s ?? 'oldest';
  throw new HubError('BAD_REQUEST', '"order" must be "oldest" (receipt order, the default) or "newest"');
}

/** A query as name -> value; a parameter given twice (fastify parses it as a list) is a BAD_REQUEST. */
function singleValued(raw: unknown): Record<string, string | undefined> {
  const q = (raw ?? {}) as Record<string, unknown>;
  for (const [name, value] of Object.entries(q)) {
    if (typeof value !== 'string') throw new HubError('BAD_REQUEST', `query parameter "${name}" must be given once`);
  }
  return q as Record<string, string>;
}

function parseSince(s: string): number {
  const t = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (Number.isNaN(t)) {
    const message = `"since" must be an ISO time or milliseconds since the epoch, not ${JSON.stringify(s)}`;
    throw new HubError('BAD_REQUEST', message);
  }
  return t;
}

function parseLimit(s: string | undefined): number {
  if (s === undefined) return 100;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new HubError('BAD_REQUEST', '"limit" must be a whole number from 1 to 1000');
  }
  return n;
}
