import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { EventMeta } from '@krkn/hub-api';
import {
  HubError,
  checkHost,
  toHubError,
  type Caller,
  type EventWithBody,
  type AttemptEvent,
  type PublishedEvent,
  type HubUseCases,
  type Identify,
} from '@krkn/hub';
import { topicMatches } from '@krkn/policy';
import { appCss, appJs } from './assets.js';
import { bodyModes, defaultMode, type BodyMode } from './body-view.js';
import { CsrfTokens } from './csrf.js';
import type { Html } from './html.js';
import {
  errorPage,
  eventListPage,
  eventPage,
  eventRow,
  eventStates,
  stateOf,
  subscribersPage,
  timeline,
} from './pages.js';
import type { ListFilters } from './pages.js';

/** What the inspector asks of the hub: reads, redelivery, and the stream of changes. */
export type InspectorHub = Pick<
  HubUseCases,
  'closing' | 'checkRead' | 'listEvents' | 'getEvent' | 'redeliver' | 'listReadableSubscriptions' | 'events'
>;

/** Options of {@link inspectorRoutes}; register it with a `prefix` such as `/ui`. */
export interface InspectorOptions {
  hub: InspectorHub;
  /** Who the caller is (WhoIs on the tailnet listener). */
  identify: Identify;
  /** Open live streams at most (default 64): each holds a connection. */
  maxStreams?: number;
  /**
   * The names krkns is reached by (MagicDNS names, addresses; no port). Given, a request naming any
   * other host is refused: a DNS-rebound page of another site would otherwise read as its visitor.
   */
  hosts?: () => readonly string[];
}

/** Events on one page of the list. */
export const pageSize = 50;
/** A filtered page stops scanning after this many events, so a rare filter cannot scan the whole store. */
const scanLimit = 1_000;
/** A comment line on idle streams, so proxies and the browser see the connection is alive. */
const heartbeatMs = 20_000;

// Only what the page needs: its own script, stylesheet and event stream; forms post to itself.
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** Headers of every inspector answer (krknc's local inspector sends them too). */
export const securityHeaders = {
  'content-security-policy': contentSecurityPolicy,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/**
 * The web inspector as a fastify plugin: pages rendered on the server (every stored byte escaped),
 * a live event list over server-sent events, and redelivery by a CSRF-safe form post. Every request
 * is identified and must carry the read right before anything is read.
 */
export const inspectorRoutes: FastifyPluginAsync<InspectorOptions> = async (app, opts) => {
  const { hub, identify } = opts;
  const prefix = app.prefix;
  const csrf = new CsrfTokens();
  const callers = new WeakMap<FastifyRequest, Caller>();
  const callerOf = (req: FastifyRequest): Caller => {
    const caller = callers.get(req);
    if (caller === undefined) throw new HubError('INTERNAL', 'request without an identified caller');
    return caller;
  };

  app.setErrorHandler((err, _req, reply) => {
    const e = toHubError(err);
    void sendPage(reply.code(e.status), errorPage(prefix, e.status, e.code, e.message));
  });
  app.setNotFoundHandler((req, reply) => {
    void sendPage(reply.code(404), errorPage(prefix, 404, 'NOT_FOUND', `no page ${req.url}`));
  });
  app.addHook('onRequest', async (req, reply) => {
    void reply.headers(securityHeaders);
    if (hub.closing) throw new HubError('SHUTTING_DOWN', 'krkns is shutting down; retry shortly');
    if (opts.hosts) checkHost(req, opts.hosts());
    const caller = await identify(req);
    hub.checkRead(caller);
    callers.set(req, caller);
  });
  // Form posts carry one short field; anything bigger is not ours.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 1024 }, parseForm);

  app.get('/app.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(appJs));
  app.get('/app.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(appCss));

  app.get('/', async (req, reply) => {
    const filters = listFilters(req.query);
    const before = (req.query as Record<string, string | undefined>).before || undefined;
    const { events, older } = await eventPageOf(hub, callerOf(req), filters, before);
    // Only the newest page grows live; an older page stays as it was.
    const stream =
      before === undefined ? `${prefix}/stream?${new URLSearchParams({ ...filters }).toString()}` : undefined;
    return sendPage(reply, eventListPage({ prefix, filters, events, older, stream }));
  });

  app.get('/events/:id', async (req, reply) => {
    const caller = callerOf(req);
    const event = await hub.getEvent(caller, idParam(req));
    const mode = bodyMode((req.query as Record<string, string | undefined>).view) ?? defaultMode(event.body);
    const subscriptions = await hub.listReadableSubscriptions(caller);
    const stream = `${prefix}/events/${encodeURIComponent(event.id)}/stream`;
    return sendPage(reply, eventPage({ prefix, event, mode, subscriptions, csrfToken: csrf.tokenFor(caller), stream }));
  });

  app.post('/events/:id/redeliver', async (req, reply) => {
    const caller = callerOf(req);
    refuseCrossSite(req, csrf, caller);
    const id = idParam(req);
    await hub.redeliver(caller, id);
    return reply
      .code(303)
      .header('location', `${prefix}/events/${encodeURIComponent(id)}`)
      .send();
  });

  app.get('/subscribers', async (req, reply) =>
    sendPage(reply, subscribersPage(prefix, await hub.listReadableSubscriptions(callerOf(req)))),
  );

  liveStreams(app, hub, callerOf, opts.maxStreams ?? 64);
};

/** What a live view redraws after: an event was stored, or an attempt's outcome was. */
interface LiveChange {
  kind: 'published' | 'attempted';
  eventId: string;
}

/** Renders what a change means for one open view, or nothing. */
type ViewUpdate = (event: EventWithBody, change: LiveChange) => { name: string; data: string } | undefined;

/**
 * The live views over server-sent events: `GET /stream` sends each new event the caller may read and
 * the filters accept as a row ('row'), and rows redrawn after an attempt ('update');
 * `GET /events/:id/stream` sends that event's delivery timeline after each attempt ('timeline').
 */
function liveStreams(
  app: FastifyInstance,
  hub: InspectorHub,
  callerOf: (r: FastifyRequest) => Caller,
  max: number,
): void {
  let open = 0;
  const serve = (req: FastifyRequest, reply: FastifyReply, update: ViewUpdate): void => {
    const caller = callerOf(req);
    if (open >= max) throw new HubError('TOO_MANY_REQUESTS', `${max} live views are open already; retry shortly`);
    open++;
    reply.hijack();
    const res = reply.raw;
    const type = 'text/event-stream; charset=utf-8';
    res.writeHead(200, { ...securityHeaders, 'content-type': type, connection: 'keep-alive' });
    res.write(': live\n\n');
    const send = (name: string, data: string): boolean =>
      res.write(
        `event: ${name}\n${data
          .split('\n')
          .map((l) => `data: ${l}\n`)
          .join('')}\n`,
      );
    const onChange = (change: LiveChange): void => {
      void hub.getEvent(caller, change.eventId).then(
        (event) => {
          const message = update(event, change);
          if (message) send(message.name, message.data);
        },
        () => undefined, // not readable by this caller, or pruned already
      );
    };
    const onPublished = (e: PublishedEvent): void => {
      if (e.outcome === 'stored' && e.eventId !== null) onChange({ kind: 'published', eventId: e.eventId });
    };
    const onAttempt = (e: AttemptEvent): void => onChange({ kind: 'attempted', eventId: e.eventId });
    const onClosing = (): void => {
      send('end', 'krkns is stopping');
      res.end();
    };
    hub.events.on('published', onPublished);
    hub.events.on('attempt', onAttempt);
    hub.events.on('closing', onClosing);
    const heartbeat = setInterval(() => res.write(': ping\n\n'), heartbeatMs);
    res.once('close', () => {
      open--;
      clearInterval(heartbeat);
      hub.events.off('published', onPublished);
      hub.events.off('attempt', onAttempt);
      hub.events.off('closing', onClosing);
    });
  };

  app.get('/stream', async (req, reply) => {
    const filters = listFilters(req.query);
    serve(req, reply, (event, change) => {
      if (!accepts(filters, event)) return undefined;
      return { name: change.kind === 'published' ? 'row' : 'update', data: eventRow(app.prefix, event).text };
    });
  });

  app.get('/events/:id/stream', async (req, reply) => {
    const caller = callerOf(req);
    const event = await hub.getEvent(caller, idParam(req)); // 404 or 403 before the stream opens
    const subscriptions = await hub.listReadableSubscriptions(caller);
    serve(req, reply, (changed, change) =>
      change.kind === 'attempted' && changed.id === event.id
        ? { name: 'timeline', data: timeline(changed, subscriptions).text }
        : undefined,
    );
  });
}

/**
 * A page of events the caller may read, newest first, before the cursor. Topic filtering happens in
 * the store's scan; sender and state filters here, in batches, up to {@link scanLimit} events.
 */
async function eventPageOf(
  hub: InspectorHub,
  caller: Caller,
  filters: ListFilters,
  before: string | undefined,
): Promise<{ events: EventMeta[]; older: string | undefined }> {
  const events: EventMeta[] = [];
  let cursor = before;
  let scanned = 0;
  for (;;) {
    const batch = await hub.listEvents(caller, {
      ...(filters.topic ? { topic: filters.topic } : {}),
      ...(cursor === undefined ? {} : { before: cursor }),
      newestFirst: true,
      limit: pageSize,
    });
    scanned += batch.length;
    for (const e of batch) {
      cursor = e.id;
      if (!accepts(filters, e)) continue;
      events.push(e);
      if (events.length === pageSize) return { events, older: cursor };
    }
    if (batch.length < pageSize) return { events, older: undefined };
    if (scanned >= scanLimit) return { events, older: cursor };
  }
}

function accepts(f: ListFilters, e: EventMeta): boolean {
  if (f.topic && !topicMatches(f.topic, e.topic)) return false;
  const sender = f.sender.toLowerCase();
  if (sender && !e.sender.node.toLowerCase().includes(sender) && e.sender.ip !== f.sender) return false;
  return !f.state || stateOf(e) === f.state;
}

function listFilters(raw: unknown): ListFilters {
  const q = raw as Record<string, string | undefined>;
  const state = q.state ? eventStates.find((s) => s === q.state) : '';
  if (state === undefined) throw new HubError('BAD_REQUEST', `"state" must be one of ${eventStates.join(', ')}`);
  return { topic: q.topic ?? '', sender: q.sender ?? '', state };
}

function bodyMode(v: string | undefined): BodyMode | undefined {
  return bodyModes.find((m) => m === v);
}

function idParam(req: FastifyRequest): string {
  return (req.params as { id: string }).id;
}

/**
 * A state-changing post must come from the inspector's own page: the browser's Sec-Fetch-Site says
 * so when it sends one, and the form's token (which another site cannot read) must match the caller.
 */
function refuseCrossSite(req: FastifyRequest, csrf: CsrfTokens, caller: Caller): void {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') {
    const message = `a ${site} request cannot change anything here; use the inspector's own page`;
    throw new HubError('CROSS_SITE', message);
  }
  const token = req.body instanceof URLSearchParams ? req.body.get('csrf') : undefined;
  if (!csrf.valid(caller, token)) {
    throw new HubError('CROSS_SITE', 'the form token is missing or not yours; reload the page and try again');
  }
}

/** `application/x-www-form-urlencoded` bodies (the inspector's forms) as URLSearchParams. */
export function parseForm(
  _req: FastifyRequest,
  body: string | Buffer,
  done: (err: null, v: URLSearchParams) => void,
): void {
  done(null, new URLSearchParams(String(body)));
}

function sendPage(reply: FastifyReply, page: Html): FastifyReply {
  return reply.type('text/html; charset=utf-8').send(page.text);
}
