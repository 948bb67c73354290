import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { HubStatus } from '@krkn/hub-api';
import type { HubStore } from '@krkn/hub-store';
import { tailnetAgent, type TailnetNode } from '@krkn/tailnet';
import type { AuthorizeConfig } from './authorize.js';
import type { Identify } from './caller.js';
import { Deliverer, tailnetSender, type SendAttempt } from './delivery.js';
import { hubRoutes } from './routes.js';

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
}

/** The GitHub-like retry schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
export const defaultRetryScheduleMs = [0, 5e3, 5 * 60e3, 30 * 60e3, 2 * 3600e3, 5 * 3600e3, 10 * 3600e3, 10 * 3600e3];

/** What a Hub is made of. */
export interface HubOptions {
  store: HubStore;
  node: TailnetNode;
  logger: Logger;
  config: HubConfig;
  /** How attempts are sent; default: POST over the tailnet. */
  send?: SendAttempt;
}

const pruneEveryMs = 3600e3;

/**
 * The webhook hub: stores published events, serves the API (see hubRoutes) and pushes events to
 * subscribers with retries. The app serves `app()` on the tailnet listener (and on the admin
 * socket), then calls start().
 */
export class Hub {
  readonly store: HubStore;
  readonly config: HubConfig;
  private readonly node: TailnetNode;
  /** The hub's logger; routes and deliveries log through children of it. */
  readonly log: Logger;
  private readonly deliverer: Deliverer;
  private pruneTimer: NodeJS.Timeout | undefined;
  private closingFlag = false;
  private listenerUrl = '';
  private activeRequests = 0;
  private idle: (() => void) | undefined;
  private readonly onPeers = (): void => void this.wakeOnlineSubscribers();

  constructor(opts: HubOptions) {
    this.store = opts.store;
    this.config = opts.config;
    this.node = opts.node;
    this.log = opts.logger;
    // An offline subscriber answers no SYN: give up on the dial well before the delivery timeout,
    // so its queue is parked (no attempt spent) and a subscriber that comes back is not kept waiting.
    const agent = tailnetAgent(opts.node, { maxSockets: 4, dialTimeoutMs: Math.min(5_000, opts.config.deliveryTimeoutMs) });
    const send = opts.send ?? tailnetSender(agent, opts.config.deliveryTimeoutMs);
    this.deliverer = new Deliverer(this.store, send, {
      retryScheduleMs: opts.config.retryScheduleMs,
      maxConcurrent: opts.config.maxConcurrentDeliveries,
      logger: this.log.child({ component: 'delivery' }),
    });
  }

  /** True once stop() began: new requests get 503. */
  get closing(): boolean {
    return this.closingFlag;
  }

  /** A fastify app with the hub's routes; `identify` decides who the caller is. */
  async app(identify: Identify, listenerUrl = ''): Promise<FastifyInstance> {
    if (listenerUrl) this.listenerUrl = listenerUrl;
    // No per-request logging by fastify: the routes log what matters (events, subscriptions, errors).
    const app = Fastify({ bodyLimit: 1 << 20 });
    // Count requests in flight, so stop() can let them finish.
    app.addHook('onRequest', async (_req, reply) => {
      this.activeRequests++;
      reply.raw.once('close', () => this.requestDone()); // once per request: finished or aborted
    });
    await app.register(hubRoutes, { hub: this, identify });
    return app;
  }

  /** Starts delivering and pruning. */
  start(): void {
    this.deliverer.start();
    this.prune();
    this.pruneTimer = setInterval(() => this.prune(), pruneEveryMs);
    this.pruneTimer.unref();
    this.node.on('peers', this.onPeers);
  }

  /** Something new may be due: a publish, a subscription, a redelivery. */
  delivered(): void {
    this.deliverer.kick();
  }

  /**
   * Stops taking requests (new ones get 503) and starting deliveries; waits up to timeoutMs for
   * the requests and deliveries in flight.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.closingFlag = true;
    clearInterval(this.pruneTimer);
    this.node.off('peers', this.onPeers);
    const requestsDone = new Promise<void>((resolve) => {
      this.idle = resolve;
      if (this.activeRequests === 0) resolve();
    });
    const bound = new Promise((r) => setTimeout(r, timeoutMs).unref());
    await Promise.all([this.deliverer.stop(timeoutMs), Promise.race([requestsDone, bound])]);
  }

  /** Requests being answered and delivery attempts under way: what stop() waits for. */
  get inFlight(): { requests: number; deliveries: number } {
    return { requests: this.activeRequests, deliveries: this.deliverer.active };
  }

  private requestDone(): void {
    this.activeRequests--;
    if (this.activeRequests <= 0) this.idle?.();
  }

  status(): HubStatus {
    const s = this.store.stats();
    return {
      node: { name: this.node.self?.name ?? this.node.hostname, addresses: this.node.addresses, state: this.node.state },
      listener: this.listenerUrl,
      storage: { events: s.events, subscriptions: s.subscriptions, offlineSubscriptions: s.offlineSubscriptions, databaseBytes: s.databaseBytes },
      queue: {
        pending: s.pending,
        delivered: s.delivered,
        failed: s.failed,
        inFlight: this.deliverer.active,
        oldestPendingAt: s.oldestPendingAt === null ? null : new Date(s.oldestPendingAt).toISOString(),
      },
      ...(this.node.loginUrl ? { loginUrl: this.node.loginUrl } : {}),
    };
  }

  private prune(): void {
    const n = this.store.prune(Date.now() - this.config.retentionMs);
    if (n > 0) this.log.info({ pruned: n }, 'pruned events past retention');
  }

  /** A subscriber marked offline that the netmap shows online again gets its queue now. */
  private async wakeOnlineSubscribers(): Promise<void> {
    const offline = this.store.listSubscriptions().filter((s) => s.offlineSince !== null);
    if (offline.length === 0) return;
    const peers = (await this.node.status().catch(() => undefined))?.peers ?? [];
    for (const sub of offline) {
      if (peers.some((p) => p.online && p.addresses.includes(sub.address))) {
        this.store.wake(sub.id);
        this.deliverer.kick();
      }
    }
  }
}
