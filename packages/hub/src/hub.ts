import { EventEmitter } from 'node:events';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import {
  newWebhookSecret,
  type EventMeta,
  type HubStatus,
  type PublishResponse,
  type SubscriptionInfo,
} from '@krkn/hub-api';
import {
  StoreError,
  type Delivery,
  type EventSummary,
  type Sender,
  type StoredEvent,
  type Subscription,
} from '@krkn/hub-store';
import { topicError, topicMatches, topicPatternsRegex } from '@krkn/policy';
import { ownHostsOf } from './browser-guard.js';
import {
  authorizationSummary,
  authorize,
  authorizeRead,
  authorizeReadSome,
  mayRead,
  readablePatterns,
  type AuthorizeConfig,
} from './authorize.js';
import type { Caller, Identify } from './caller.js';
import { Deliverer, type SendAttempt } from './delivery.js';
import { monotonicClock } from './clock.js';
import { HubError, asError } from './errors.js';
import type { HubEventMap } from './events.js';
import { dedupeKeyOf, withoutHeaders } from './headers.js';
import type { HubNode, HubStorage, NetmapPeer } from './ports.js';
import { hubRoutes } from './routes.js';
import { validTopic } from './topics.js';
import type {
  EventsQuery,
  EventWithBody,
  HubUseCases,
  MetricsPage,
  PublishInput,
  SubscribeInput,
  SubscriberView,
} from './use-cases.js';
import { eventMeta, subscriberView, subscriptionInfo } from './views.js';

/** How the hub behaves; every field has a documented default in krkns. */
export interface HubConfig extends AuthorizeConfig {
  /** Largest accepted webhook body, in bytes (default 10 MiB). */
  bodyLimit: number;
  /** Delivered (or failed) events older than this are pruned, in ms (default 7 days). */
  retentionMs: number;
  /** Delay before each delivery attempt, in ms; the first is usually 0. */
  retryScheduleMs: number[];
  /** A delivery succeeds with a 2xx within this time (default 15 s). */
  deliveryTimeoutMs: number;
  /** Subscribers attempted at once (default 16). */
  maxConcurrentDeliveries: number;
  /**
   * Header names the events API never hands out (credentials): defaultCredentialHeaders plus any
   * the operator adds. Stored bytes and deliveries keep them.
   */
  credentialHeaders: readonly string[];
  /** Bounds on what callers can make the hub hold (default {@link defaultLimits}). */
  limits?: Partial<HubLimits>;
}

/** Bounds on what callers can make the hub hold; krkns sets each with a flag. */
export interface HubLimits {
  /** Subscriptions one node may hold; one more is 409 SUBSCRIPTION_LIMIT. */
  subscriptionsPerNode: number;
  /** Topics or patterns in one subscription; more is 400 TOO_MANY_TOPICS. */
  topicsPerSubscription: number;
  /** Size of the store (bytes) past which publishes answer 507 STORE_LIMIT; 0: no bound. */
  storeBytes: number;
  /** A subscription whose node has been offline or gone from the netmap this long (ms) is removed; 0: never. */
  subscriptionExpiryMs: number;
}

export const defaultLimits: Readonly<HubLimits> = {
  subscriptionsPerNode: 20,
  topicsPerSubscription: 32,
  storeBytes: 10 * 1024 ** 3,
  subscriptionExpiryMs: 7 * 86400e3,
};

/** The store's size is asked at most this often; publishes in between add their bodies to the last answer. */
const storeSizeEveryMs = 1_000;

/** The GitHub-like retry schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
export const defaultRetryScheduleMs = [0, 5e3, 5 * 60e3, 30 * 60e3, 2 * 3600e3, 5 * 3600e3, 10 * 3600e3, 10 * 3600e3];

/** What a Hub is made of. */
export interface HubOptions {
  store: HubStorage;
  node: HubNode;
  logger: Logger;
  config: HubConfig;
  /** How attempts are sent: tailnetSender in krkns. */
  send: SendAttempt;
  /**
   * This hub's name among replicas sharing one store (it owns delivery leases under it); default the
   * node's hostname, which the tailnet keeps unique.
   */
  replica?: string;
}

const pruneEveryMs = 3600e3;
/** The pattern of every topic. */
const allTopics = '**';

/** After a rotation, attempts carry the old secret's signature too for this long (receivers switch over). */
const secretOverlapMs = 24 * 3600e3;
// Each replica writes its heartbeat row this often; one not seen for three beats is shown as gone.
const heartbeatEveryMs = 5_000;
const aliveWithinMs = 3 * heartbeatEveryMs;
// A delivery lease outlives the attempt's send timeout by this much, time to record the outcome.
const leaseMarginMs = 3_000;

/**
 * The webhook hub: its operations (publish, subscribe, ...) each authorise, store, and wake the
 * deliverer, which pushes events to subscribers with retries. The app serves `app()` on the
 * tailnet listener (and on the admin socket), then calls start().
 */
export class Hub implements HubUseCases {
  /** What happens as it happens: publishes and delivery attempts (for metrics). */
  readonly events = new EventEmitter<HubEventMap>();
  private readonly store: HubStorage;
  private renderMetrics: (() => Promise<MetricsPage>) | undefined;
  private readonly config: HubConfig;
  private readonly limits: HubLimits;
  /** The store's size as last asked (and when), plus the bodies stored since: see refuseOverStoreLimit. */
  private storeBytes = { known: 0, askedAt: -Infinity };
  private readonly node: HubNode;
  private readonly log: Logger;
  private readonly deliverer: Deliverer;
  /** Every time the hub stores or compares: immune to wall-clock jumps (see monotonicClock). */
  private readonly now = monotonicClock();
  private readonly replica: string;
  private readonly startedAt = this.now();
  private pruneTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closingFlag = false;
  private listenerUrl = '';
  private activeRequests = 0;
  private idle: (() => void) | undefined;
  private readonly onPeers = (): void => void this.wakeOnlineSubscribers();

  constructor(opts: HubOptions) {
    this.store = opts.store;
    this.config = opts.config;
    this.limits = { ...defaultLimits, ...opts.config.limits };
    this.node = opts.node;
    this.log = opts.logger;
    this.replica = opts.replica ?? opts.node.hostname;
    // Metrics and every open live view of the inspector listen; the inspector caps how many are open.
    this.events.setMaxListeners(0);
    this.deliverer = new Deliverer(this.store, opts.send, {
      retryScheduleMs: opts.config.retryScheduleMs,
      maxConcurrent: opts.config.maxConcurrentDeliveries,
      owner: this.replica,
      leaseMs: opts.config.deliveryTimeoutMs + leaseMarginMs,
      logger: this.log.child({ component: 'delivery' }),
      now: this.now,
      onAttempt: (e) => this.events.emit('attempt', e),
    });
  }

  /** True once stop() began: new requests get 503. */
  get closing(): boolean {
    return this.closingFlag;
  }

  /**
   * A fastify app with the hub's routes; `identify` decides who the caller is. The tailnet
   * listener passes its URL and `guardBrowsers` (Host, cross-site and form checks, see
   * checkBrowserRequest); the admin socket passes neither.
   */
  async app(identify: Identify, listener: { url?: string; guardBrowsers?: boolean } = {}): Promise<FastifyInstance> {
    if (listener.url) this.listenerUrl = listener.url;
    // No per-request logging by fastify: the hub logs what matters (events, subscriptions, errors).
    const app = Fastify({ bodyLimit: 1 << 20 });
    // Count requests in flight, so stop() can let them finish.
    app.addHook('onRequest', async (_req, reply) => {
      this.activeRequests++;
      reply.raw.once('close', () => this.requestDone()); // once per request: finished or aborted
    });
    const ownHosts = listener.guardBrowsers ? () => ownHostsOf(this.node) : undefined;
    const routes = { hub: this, identify, bodyLimit: this.config.bodyLimit, log: this.log };
    await app.register(hubRoutes, { ...routes, ...(ownHosts ? { ownHosts } : {}) });
    return app;
  }

  /**
   * Starts delivering, pruning and beating (the heartbeat row other replicas' status shows); logs the
   * authorisation mode.
   */
  start(): void {
    const { requireCapability, capabilityName } = this.config;
    this.log.info({ requireCapability, capabilityName }, `authorisation: ${authorizationSummary(this.config)}`);
    void this.heartbeat();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), heartbeatEveryMs);
    this.heartbeatTimer.unref();
    this.deliverer.start();
    void this.prune();
    this.pruneTimer = setInterval(() => void this.prune(), pruneEveryMs);
    this.pruneTimer.unref();
    const expiry = this.limits.subscriptionExpiryMs;
    if (expiry > 0) {
      this.expiryTimer = setInterval(() => void this.expireGoneSubscribers(), expirySweepEveryMs(expiry));
      this.expiryTimer.unref();
    }
    this.node.on('peers', this.onPeers);
  }

  /**
   * Stops taking requests (new ones get 503) and starting deliveries; waits up to timeoutMs for the
   * requests in flight and up to drainMs for the delivery attempts in flight to end and be recorded
   * (one still in flight then is not recorded: it stays due, see Deliverer.stop).
   */
  async stop(timeoutMs: number, drainMs = timeoutMs): Promise<void> {
    this.closingFlag = true;
    this.events.emit('closing');
    clearInterval(this.pruneTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.expiryTimer);
    this.node.off('peers', this.onPeers);
    const requestsDone = new Promise<void>((resolve) => {
      this.idle = resolve;
      if (this.activeRequests === 0) resolve();
    });
    const bound = new Promise((r) => setTimeout(r, timeoutMs).unref());
    await Promise.all([this.deliverer.stop(drainMs), Promise.race([requestsDone, bound])]);
  }

  /** Requests being answered and delivery attempts under way: what stop() waits for. */
  get inFlight(): { requests: number; deliveries: number } {
    return { requests: this.activeRequests, deliveries: this.deliverer.active };
  }

  checkRead(caller: Caller): void {
    authorizeReadSome(this.config, caller);
  }

  checkPublish(caller: Caller, topic: string): void {
    try {
      authorize(this.config, caller, 'publish', validTopic(topic));
    } catch (err) {
      this.events.emit('published', { outcome: 'refused', topic, bytes: 0, eventId: null });
      throw err;
    }
  }

  /** Serves `GET /metrics` with this page (krkns sets it when metrics are on). */
  exposeMetrics(render: () => Promise<MetricsPage>): void {
    this.renderMetrics = render;
  }

  /** Metrics span every topic: a caller needs the read right on all of them. */
  async metrics(caller: Caller): Promise<MetricsPage> {
    if (!this.renderMetrics) throw new HubError('NOT_FOUND', 'metrics are off on this krkns');
    authorize(this.config, caller, 'read', allTopics);
    return this.renderMetrics();
  }

  async publish(caller: Caller, input: PublishInput): Promise<PublishResponse> {
    const { topic } = input;
    this.checkPublish(caller, topic);
    const { method, headers, body } = input;
    await this.refuseOverStoreLimit(topic, body.length, 'store');
    const dedupeKey = dedupeKeyOf(headers, body);
    const sender = senderOf(caller);
    const stored = { topic, dedupeKey, method, headers, body, sender };
    const { event, duplicate, owedTo } = await this.store.publish(stored, topicMatches, this.now());
    this.deliverer.kick(owedTo);
    const outcome = duplicate ? 'duplicate' : 'stored';
    this.events.emit('published', { outcome, topic, bytes: body.length, eventId: event.id });
    // debug, not info: a line per event is the hot path's own cost at thousands of events/s (the 'published'
    // event above feeds metrics; `GET /events` lists what arrived).
    this.log.debug({ event: event.id, topic, bytes: body.length, from: sender.node, duplicate }, 'event received');
    return { id: event.id, topic, duplicate };
  }

  async subscribe(caller: Caller, input: SubscribeInput): Promise<SubscriptionInfo> {
    if (caller.kind !== 'peer') {
      const message = "subscriptions come from tailnet peers: deliveries go to the subscriber's own address";
      throw new HubError('BAD_REQUEST', message);
    }
    refuseForeignTargets(input.namedTargets, caller.ip);
    const most = this.limits.topicsPerSubscription;
    if (input.topics.length > most) {
      const message = `a subscription lists at most ${most} topics or patterns, not ${input.topics.length}`;
      throw new HubError('TOO_MANY_TOPICS', `${message}: use a pattern such as "ci/**"`);
    }
    for (const t of input.topics) authorize(this.config, caller, 'subscribe', validTopic(t, 'pattern'));
    const { topics, port, path } = input;
    const owner = { nodeId: caller.nodeId, nodeName: caller.node, address: caller.ip };
    const secret = newWebhookSecret();
    const rotation = input.rotateSecret ? { rotateSecretUntil: this.now() + secretOverlapMs } : {};
    const maxPerNode = this.limits.subscriptionsPerNode;
    const wanted = { ...owner, port, path, topics, secret, maxPerNode, ...rotation };
    const sub = await this.store.subscribe(wanted, this.now());
    this.deliverer.kick();
    const issued = sub.secret === secret;
    this.log.info({ subscription: sub.id, node: caller.node, topics, secretIssued: issued }, 'subscribed');
    // The secret goes to its owner once, in this answer; listings never show it.
    return { ...subscriptionInfo(sub), ...(issued ? { secret } : {}) };
  }

  async listSubscriptions(caller: Caller): Promise<SubscriptionInfo[]> {
    const subs = await this.store.listSubscriptions(caller.kind === 'peer' ? caller.nodeId : undefined);
    return subs.map(subscriptionInfo);
  }

  async listReadableSubscriptions(caller: Caller): Promise<SubscriberView[]> {
    const readable = (s: Subscription): boolean => s.topics.some((t) => mayRead(this.config, caller, t));
    const subs = (await this.store.listSubscriptions()).filter(readable);
    const backlogs = new Map((await this.store.backlogs()).map((b) => [b.subscriptionId, b]));
    return subs.map((s) => subscriberView(s, backlogs.get(s.id)));
  }

  async unsubscribe(caller: Caller, id: string): Promise<void> {
    const sub = await this.store.getSubscription(id);
    if (!sub) throw new HubError('SUBSCRIPTION_NOT_FOUND', 'subscription not found');
    if (caller.kind === 'peer' && caller.nodeId !== sub.nodeId) {
      throw new HubError('NOT_YOURS', `subscription ${sub.id} belongs to ${sub.nodeName}`);
    }
    await this.store.unsubscribe(sub.id);
  }

  async listEvents(caller: Caller, query: EventsQuery): Promise<EventMeta[]> {
    const asked = query.topic === undefined ? [] : [topicPatternsRegex([validTopic(query.topic, 'pattern')])];
    // A concrete topic (no "*"): the store finds its events by the topic index instead of testing every event.
    const exact = query.topic !== undefined && topicError(query.topic) === undefined ? { topic: query.topic } : {};
    const readable = readablePatterns(this.config, caller);
    if (readable !== 'every topic' && readable.length === 0) return [];
    const topicRegexes = readable === 'every topic' ? asked : [...asked, topicPatternsRegex(readable)];
    let events: EventSummary[];
    try {
      events = await this.store.listEvents({
        topicRegexes,
        ...exact,
        ...(query.after === undefined ? {} : { afterId: query.after }),
        ...(query.before === undefined ? {} : { beforeId: query.before }),
        ...(query.since === undefined ? {} : { since: query.since }),
        newestFirst: query.newestFirst === true,
        limit: query.limit,
      });
    } catch (err) {
      if (err instanceof StoreError && err.code === 'NOT_FOUND') {
        throw new HubError('BAD_REQUEST', `cannot page from an unknown event (pruned?): ${err.message}`);
      }
      throw err;
    }
    const bySeq = new Map<number, Delivery[]>();
    for (const d of await this.store.deliveriesOfEvents(events.map((e) => e.seq))) {
      const of = bySeq.get(d.eventSeq);
      if (of) of.push(d);
      else bySeq.set(d.eventSeq, [d]);
    }
    return events.map((e) => eventMeta(e, bySeq.get(e.seq) ?? []));
  }

  async getEvent(caller: Caller, id: string): Promise<EventWithBody> {
    const event = await this.readableEvent(caller, id);
    const { kept, withheld } = withoutHeaders(event.headers, this.config.credentialHeaders);
    return { ...(await this.metaOf(event)), headers: kept, withheldHeaders: withheld, body: event.body };
  }

  async redeliver(caller: Caller, id: string): Promise<{ id: string; deliveries: number }> {
    const event = await this.store.getEvent(id);
    if (!event) throw new HubError('EVENT_NOT_FOUND', 'event not found');
    authorize(this.config, caller, 'subscribe', event.topic);
    // A peer re-queues only its own subscriptions: asking again must not flood everyone else's.
    const onlyNode = caller.kind === 'peer' ? caller.nodeId : undefined;
    await this.markRedelivery(event, onlyNode); // before they are due: no attempt goes out unmarked
    let deliveries: number;
    try {
      deliveries = await this.store.redeliver(event.id, topicMatches, this.now(), onlyNode);
    } catch (err) {
      // Pruned between the read above and now.
      if (err instanceof StoreError && err.code === 'NOT_FOUND') throw new HubError('EVENT_NOT_FOUND', err.message);
      throw err;
    }
    this.deliverer.kick();
    return { id: event.id, deliveries };
  }

  async status(caller: Caller): Promise<HubStatus> {
    const now = this.now();
    const [s, replicas] = await Promise.all([this.store.stats(), this.store.replicas(now)]);
    const node = this.node;
    return {
      node: { name: node.self?.name ?? node.hostname, addresses: node.addresses, state: node.state },
      listener: this.listenerUrl,
      storage: {
        events: s.events,
        subscriptions: s.subscriptions,
        offlineSubscriptions: s.offlineSubscriptions,
        disabledSubscriptions: s.disabledSubscriptions,
        heldSubscriptions: s.heldSubscriptions,
        databaseBytes: s.databaseBytes,
      },
      queue: {
        pending: s.pending,
        delivered: s.delivered,
        failed: s.failed,
        inFlight: this.deliverer.active,
        oldestPendingAt: s.oldestPendingAt === null ? null : new Date(s.oldestPendingAt).toISOString(),
      },
      replicas: replicas.map((r) => ({
        name: r.name,
        alive: now - r.seenAt < aliveWithinMs,
        self: r.name === this.replica,
        startedAt: new Date(r.startedAt).toISOString(),
        seenAt: new Date(r.seenAt).toISOString(),
        leases: r.leases,
      })),
      // Whoever opens the URL first owns this node's next registration: the operator only.
      ...(node.loginUrl && caller.kind === 'admin' ? { loginUrl: node.loginUrl } : {}),
    };
  }

  async checkStoreRoom(topic: string, declaredBytes: number): Promise<void> {
    await this.refuseOverStoreLimit(topic, declaredBytes, 'check');
  }

  /**
   * 507 STORE_LIMIT, before anything is stored, when `incoming` bytes would take the store past its bound.
   * The store's size is asked at most every storeSizeEveryMs; bodies about to be stored in between are
   * added to it.
   */
  private async refuseOverStoreLimit(topic: string, incoming: number, then: 'check' | 'store'): Promise<void> {
    const limit = this.limits.storeBytes;
    if (limit === 0) return;
    const now = this.now();
    if (now - this.storeBytes.askedAt >= storeSizeEveryMs) {
      this.storeBytes = { known: await this.store.sizeBytes(), askedAt: now };
    }
    if (this.storeBytes.known + incoming > limit) {
      this.events.emit('published', { outcome: 'refused', topic, bytes: incoming, eventId: null });
      const held = `the event store holds ${formatBytes(this.storeBytes.known)} of its ${formatBytes(limit)} bound`;
      const advice = 'nothing was stored; retry once deliveries drain and pruning frees space';
      throw new HubError('STORE_LIMIT', `${held} (--max-store-size): ${advice}`);
    }
    if (then === 'store') this.storeBytes.known += incoming;
  }

  private async readableEvent(caller: Caller, id: string): Promise<StoredEvent> {
    const event = await this.store.getEvent(id);
    if (!event) throw new HubError('EVENT_NOT_FOUND', 'event not found');
    authorizeRead(this.config, caller, event.topic);
    return event;
  }

  /** Gives the deliveries a redelivery re-queues a token, so receivers that dedupe let them through. */
  private async markRedelivery(event: StoredEvent, onlyNode: string | undefined): Promise<void> {
    const subs = await this.store.listSubscriptions(onlyNode);
    const requeued = subs.filter((s) => s.topics.some((p) => topicMatches(p, event.topic)));
    const token = this.now().toString(36);
    this.deliverer.markRedelivered(
      requeued.map((s) => ({ subscriptionId: s.id, eventSeq: event.seq })),
      token,
    );
  }

  private async metaOf(event: EventSummary): Promise<EventMeta> {
    return eventMeta(event, await this.store.deliveriesOf(event.id));
  }

  private requestDone(): void {
    this.activeRequests--;
    if (this.activeRequests <= 0) this.idle?.();
  }

  private async prune(): Promise<void> {
    try {
      const n = await this.store.prune(this.now() - this.config.retentionMs);
      if (n > 0) this.log.info({ pruned: n }, 'pruned events past retention');
    } catch (err) {
      this.log.error({ err: asError(err) }, 'cannot prune events past retention');
    }
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.store.heartbeat(this.replica, this.startedAt, this.now());
    } catch (err) {
      this.log.warn({ err: asError(err) }, 'cannot write the replica heartbeat; trying again at the next beat');
    }
  }

  /**
   * A subscription whose node the netmap shows offline, or no longer shows, is marked offline; once that
   * lasted subscriptionExpiryMs it is removed with what it is owed (krknc subscribes again when it starts).
   * Skipped while krkns's own node is not running, or runs from its cached netmap (just restarted):
   * its netmap then says nothing about the others.
   */
  private async expireGoneSubscribers(): Promise<void> {
    try {
      if (this.node.state !== 'Running') return;
      const { peers, peersKnown } = await this.node.status();
      if (!peersKnown) return;
      const expiry = this.limits.subscriptionExpiryMs;
      const now = this.now();
      for (const sub of await this.store.listSubscriptions()) {
        if (subscriberOnline(peers, sub)) continue;
        if (sub.offlineSince === null) await this.store.markOffline(sub.id, now);
        else if (now - sub.offlineSince >= expiry && (await this.store.expire(sub.id, now - expiry))) {
          const since = new Date(sub.offlineSince).toISOString();
          this.log.info(
            { subscription: sub.id, node: sub.nodeName, topics: sub.topics, offlineSince: since, expiryMs: expiry },
            'subscription expired: its node was offline or gone from the tailnet longer than --subscription-expiry',
          );
        }
      }
    } catch (err) {
      this.log.error({ err: asError(err) }, 'cannot expire the subscriptions of nodes gone from the tailnet');
    }
  }

  /**
   * A subscriber marked offline that the netmap shows online again gets its queue now; so does a held one
   * whose address is online (the delivery checks again who holds it).
   */
  private async wakeOnlineSubscribers(): Promise<void> {
    try {
      const subs = await this.store.listSubscriptions();
      const offline = subs.filter((s) => s.offlineSince !== null || s.held !== null);
      if (offline.length === 0) return;
      const peers = (await this.node.status().catch(() => undefined))?.peers ?? [];
      for (const sub of offline) {
        if (onlineIn(peers, sub)) {
          await this.store.wake(sub.id, this.now());
          this.deliverer.kick();
        }
      }
    } catch (err) {
      this.log.error({ err: asError(err) }, 'cannot wake subscribers that came back online');
    }
  }
}

/**
 * Deliveries go to the subscriber's own tailnet address. A body that names some other target is
 * a request-forgery attempt (make krkns POST into someone else's service) and is refused.
 */
function refuseForeignTargets(named: SubscribeInput['namedTargets'], callerIp: string): void {
  for (const { field, host } of named) {
    if (host !== callerIp) {
      const message = `deliveries go to the subscriber's own tailnet address (${callerIp}); "${field}" cannot name another`;
      throw new HubError('FORBIDDEN_TARGET', message);
    }
  }
}

function senderOf(caller: Caller): Sender {
  if (caller.kind === 'admin') return { ip: 'local', node: 'admin socket', user: 'local', tags: [] };
  return { ip: caller.ip, node: caller.node, user: caller.user, tags: caller.tags };
}

/** Whether the netmap shows the subscription's node online (by its tailnet address). */
/** Whether the netmap shows a node online at the subscription's address. */
function onlineIn(peers: readonly NetmapPeer[], sub: Subscription): boolean {
  return peers.some((p) => p.online && p.addresses.includes(sub.address));
}

/**
 * Whether the netmap shows the subscription's own node online, wherever it is: by node id, so that
 * another node now holding its address (re-issued after it was deleted) does not keep it from expiring.
 * By address only for a netmap that names no ids.
 */
function subscriberOnline(peers: readonly NetmapPeer[], sub: Subscription): boolean {
  return peers.some((p) => p.online && (p.stableId ? p.stableId === sub.nodeId : p.addresses.includes(sub.address)));
}

/** How often subscriptions are checked for expiry: a quarter of it, between 0.5 s and a minute. */
function expirySweepEveryMs(expiryMs: number): number {
  return Math.min(60e3, Math.max(500, expiryMs / 4));
}

/** A size for a message, in MiB (how the flags' sizes read). */
function formatBytes(n: number): string {
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}
