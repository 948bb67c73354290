import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import {
  type EventDetail,
  type EventMeta,
  type PublishResponse,
  type SubscriptionInfo,
} from '@krkn/hub-api';
import type { Sender, StoredEvent, Subscription } from '@krkn/hub-store';
import { topicError, topicMatches, topicPatternError } from '@krkn/policy';
import { authorize } from './authorize.js';
import type { Caller, Identify } from './caller.js';
import { HubError, badRequest, notFound } from './errors.js';
import { endToEndHeaders, pairsFromRaw } from '@krkn/hub-api';
import { dedupeKeyOf } from './headers.js';
import type { Hub } from './hub.js';

/** Options of {@link hubRoutes}. */
export interface HubRoutesOptions {
  hub: Hub;
  /** How callers are identified: WhoIs on the tailnet listener, or admin on the local socket. */
  identify: Identify;
}

/** The krkns HTTP API as a fastify plugin. */
export const hubRoutes: FastifyPluginAsync<HubRoutesOptions> = async (app, { hub, identify }) => {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toHubError(err);
    if (e.status >= 500) hub.log.error({ err, url: req.url }, 'request failed');
    void reply.code(e.status).send(e.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(new HubError(404, 'NOT_FOUND', `no route ${req.method} ${req.url}`).toBody());
  });
  app.addHook('onRequest', async () => {
    if (hub.closing) throw new HubError(503, 'SHUTTING_DOWN', 'krkns is shutting down; retry shortly');
  });

  app.get('/healthz', async () => ({ ok: true }));
  app.get('/status', async () => hub.status());

  await app.register(publishRoutes, { hub, identify });
  eventRoutes(app, hub, identify);
  subscriptionRoutes(app, hub, identify);
};

// Publishing takes any content type as raw bytes, so it lives in its own encapsulated context.
const publishRoutes: FastifyPluginAsync<HubRoutesOptions> = async (app, { hub, identify }) => {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: hub.config.bodyLimit }, (_req, body, done) => done(null, body));
  app.post('/hooks/*', { bodyLimit: hub.config.bodyLimit }, async (req, reply): Promise<PublishResponse> => {
    const topic = validTopic((req.params as { '*': string })['*']);
    const caller = await identify(req);
    authorize(hub.config, caller, 'publish', topic);
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const headers = endToEndHeaders(pairsFromRaw(req.raw.rawHeaders));
    const { event, duplicate } = hub.store.publish(
      { topic, dedupeKey: dedupeKeyOf(headers, body), method: req.method, headers, body, sender: senderOf(caller, req) },
      topicMatches,
    );
    if (!duplicate) hub.delivered();
    hub.log.info({ event: event.id, topic, bytes: body.length, from: event.sender.node, duplicate }, 'event received');
    void reply.code(202);
    return { id: event.id, topic, duplicate };
  });
};

function eventRoutes(app: FastifyInstance, hub: Hub, identify: Identify): void {
  app.get('/events', async (req) => {
    const q = req.query as Record<string, string | undefined>;
    const caller = await identify(req);
    const pattern = q.topic;
    if (pattern !== undefined) validTopic(pattern, true);
    const events = hub.store.listEvents({
      topic: (t) => (pattern === undefined || topicMatches(pattern, t)) && allowedToRead(hub, caller, t),
      ...(q.after ? { afterId: q.after } : {}),
      ...(q.since ? { since: parseSince(q.since) } : {}),
      limit: parseLimit(q.limit),
    });
    return { events: events.map((e) => meta(hub, e)) };
  });

  app.get('/events/:id', async (req): Promise<{ event: EventDetail }> => {
    const event = await readableEvent(hub, identify, req);
    return { event: { ...meta(hub, event), headers: event.headers, bodyBase64: event.body.toString('base64') } };
  });

  app.get('/events/:id/body', async (req, reply) => {
    const event = await readableEvent(hub, identify, req);
    void reply.header('content-type', contentTypeOf(event) ?? 'application/octet-stream');
    return event.body;
  });

  app.post('/events/:id/redeliver', async (req, reply) => {
    const event = await readableEvent(hub, identify, req);
    const deliveries = hub.store.redeliver(event.id, topicMatches);
    hub.delivered();
    void reply.code(202);
    return { id: event.id, deliveries };
  });
}

function subscriptionRoutes(app: FastifyInstance, hub: Hub, identify: Identify): void {
  app.post('/subscriptions', async (req, reply): Promise<{ subscription: SubscriptionInfo }> => {
    const caller = await identify(req);
    if (caller.kind !== 'peer') throw badRequest('subscriptions come from tailnet peers: deliveries go to the subscriber\'s own address');
    const body = (req.body ?? {}) as Record<string, unknown>;
    refuseForeignTarget(body, caller.ip);
    const topics = body.topics;
    if (!Array.isArray(topics) || topics.length === 0 || !topics.every((t) => typeof t === 'string')) {
      throw badRequest('"topics" must be a non-empty list of topics or patterns such as "ci/*"');
    }
    for (const t of topics as string[]) {
      validTopic(t, true);
      authorize(hub.config, caller, 'subscribe', t);
    }
    const port = body.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw badRequest('"port" must be the port of your tailnet listener (1-65535)');
    const path = body.path ?? '/';
    if (typeof path !== 'string' || !path.startsWith('/') || path.length > 1024) throw badRequest('"path" must start with "/"');
    const sub = hub.store.subscribe({ nodeId: caller.nodeId, nodeName: caller.node, address: caller.ip, port, path, topics: topics as string[] });
    hub.delivered();
    hub.log.info({ subscription: sub.id, node: caller.node, topics }, 'subscribed');
    void reply.code(201);
    return { subscription: subscriptionInfo(sub) };
  });

  app.get('/subscriptions', async (req) => {
    const caller = await identify(req);
    const subs = hub.store.listSubscriptions(caller.kind === 'peer' ? caller.nodeId : undefined);
    return { subscriptions: subs.map(subscriptionInfo) };
  });

  app.delete('/subscriptions/:id', async (req) => {
    const caller = await identify(req);
    const sub = hub.store.getSubscription((req.params as { id: string }).id);
    if (!sub) throw notFound('SUBSCRIPTION_NOT_FOUND', 'subscription');
    if (caller.kind === 'peer' && caller.nodeId !== sub.nodeId) throw new HubError(403, 'NOT_YOURS', `subscription ${sub.id} belongs to ${sub.nodeName}`);
    hub.store.unsubscribe(sub.id);
    return { id: sub.id, deleted: true };
  });
}

/**
 * Deliveries go to the subscriber's own tailnet address. A body that names some other target is
 * a request-forgery attempt (make krkns POST into someone else's service) and is refused.
 */
function refuseForeignTarget(body: Record<string, unknown>, callerIp: string): void {
  for (const field of ['address', 'host', 'url', 'target']) {
    const v = body[field];
    if (v === undefined) continue;
    const host = typeof v === 'string' ? v.replace(/^[a-z]+:\/\//i, '').replace(/[:/].*$/, '').replace(/^\[|\]$/g, '') : '';
    if (host !== callerIp) {
      throw new HubError(403, 'FORBIDDEN_TARGET', `deliveries go to the subscriber's own tailnet address (${callerIp}); "${field}" cannot name another`);
    }
  }
}

async function readableEvent(hub: Hub, identify: Identify, req: FastifyRequest): Promise<StoredEvent> {
  const caller = await identify(req);
  const event = hub.store.getEvent((req.params as { id: string }).id);
  if (!event) throw notFound('EVENT_NOT_FOUND', 'event');
  authorize(hub.config, caller, 'subscribe', event.topic);
  return event;
}

function allowedToRead(hub: Hub, caller: Caller, topic: string): boolean {
  try {
    authorize(hub.config, caller, 'subscribe', topic);
    return true;
  } catch {
    return false;
  }
}

function senderOf(caller: Caller, req: FastifyRequest): Sender {
  if (caller.kind === 'admin') return { ip: 'local', node: 'admin socket', user: 'local', tags: [] };
  return { ip: req.ip, node: caller.node, user: caller.user, tags: caller.tags };
}

function validTopic(topic: string, allowPattern = false): string {
  const problem = allowPattern ? topicPatternError(topic) : topicError(topic);
  if (problem !== undefined) throw badRequest(`${problem} (topics are '/'-separated segments${allowPattern ? "; '*' is one whole segment, '**' the rest" : ''})`, 'BAD_TOPIC');
  return topic;
}

function parseSince(s: string): number {
  const t = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (Number.isNaN(t)) throw badRequest(`"since" must be an ISO time or milliseconds since the epoch, not ${JSON.stringify(s)}`);
  return t;
}

function parseLimit(s: string | undefined): number {
  if (s === undefined) return 100;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw badRequest('"limit" must be a whole number from 1 to 1000');
  return n;
}

function contentTypeOf(e: StoredEvent): string | null {
  return e.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? null;
}

function meta(hub: Hub, e: StoredEvent): EventMeta {
  return {
    id: e.id,
    topic: e.topic,
    receivedAt: new Date(e.receivedAt).toISOString(),
    sender: e.sender,
    size: e.body.length,
    contentType: contentTypeOf(e),
    dedupeKey: e.dedupeKey,
    deliveries: hub.store.deliveriesOf(e.id).map((d) => ({
      subscriptionId: d.subscriptionId,
      state: d.state,
      attempts: d.attempts,
      lastStatus: d.lastStatus,
      lastError: d.lastError,
    })),
  };
}

function subscriptionInfo(s: Subscription): SubscriptionInfo {
  return {
    id: s.id,
    node: s.nodeName,
    address: s.address,
    port: s.port,
    path: s.path,
    topics: s.topics,
    createdAt: new Date(s.createdAt).toISOString(),
    offlineSince: s.offlineSince === null ? null : new Date(s.offlineSince).toISOString(),
  };
}

function toHubError(err: FastifyError | HubError): HubError {
  if (err instanceof HubError) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HubError(413, 'BODY_TOO_LARGE', err.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HubError(415, 'UNSUPPORTED_MEDIA_TYPE', err.message);
  }
  if (err.name === 'StoreError' && (err as { code?: string }).code === 'NOT_FOUND') return new HubError(404, 'EVENT_NOT_FOUND', err.message);
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return new HubError(err.statusCode, 'BAD_REQUEST', err.message);
  return new HubError(500, 'INTERNAL', 'internal error; see the krkns log');
}
