import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AttemptEvent, PublishedEvent } from '@krkn/hub';
import type { HubStatus } from '@krkn/hub-api';

/** What the metrics observe: the hub's events and its status. A krkns Hub is one. */
export interface ObservedHub {
  readonly events: {
    on(event: 'published', listener: (e: PublishedEvent) => void): unknown;
    on(event: 'attempt', listener: (e: AttemptEvent) => void): unknown;
  };
  /** Read as the operator: metrics are the operator's view. */
  status(caller: { kind: 'admin' }): Promise<HubStatus>;
}

/**
 * What the metrics read from the tailnet node. `metrics` (the engine's data-path counters, where
 * the engine has them) is optional and read loosely: every finite number in what it answers,
 * nested names joined with "_", becomes one `krkn_engine_stat{name}` series.
 */
export interface ObservedNode {
  status(): Promise<{ self: { relay: string }; peers: readonly { online: boolean }[] }>;
  metrics?(): Promise<object>;
}

export interface HubMetricsOptions {
  /**
   * Label publishes and deliveries with their topic. Off by default: topics are chosen by
   * publishers, so each new one would be a new time series (unbounded cardinality).
   */
  topicLabels?: boolean;
}

const misnamedDefaults = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

// Delivery latency buckets (seconds): a local app answers in ms; the delivery timeout is 15 s.
const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30];

/** "2xx" … "5xx", or "none" when the subscriber gave no status (unreachable, no answer in time). */
export function statusClass(status: number | null): string {
  return status === null || status < 100 || status > 599 ? 'none' : `${Math.floor(status / 100)}xx`;
}

/**
 * krkns's Prometheus metrics: counters fed by the hub's events as they happen; queue, store,
 * subscriber and node figures read once per scrape; Node.js process metrics. Labels are bounded
 * (outcome, status class, state) unless topicLabels is asked for.
 */
export class HubMetrics {
  readonly registry = new Registry();
  private readonly topicLabels: boolean;
  private readonly published: Counter;
  private readonly deliveries: Counter;
  private readonly latency: Histogram;
  private readonly gauges: Record<
    'pending' | 'oldestPendingAge' | 'inFlight' | 'failed' | 'subscriptions' | 'events' | 'storeBytes',
    Gauge
  >;
  private readonly peers: Gauge;
  private readonly derpHome: Gauge;
  private readonly engine: Gauge;

  constructor(
    private readonly hub: ObservedHub,
    private readonly node: ObservedNode,
    options: HubMetricsOptions = {},
  ) {
    this.topicLabels = options.topicLabels ?? false;
    const registers = [this.registry];
    const topic = this.topicLabels ? ['topic'] : [];
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges "_total", which Prometheus reserves for counters (promtool
    // refuses them); the same figures remain by type in nodejs_active_handles and friends.
    for (const misnamed of misnamedDefaults) this.registry.removeSingleMetric(misnamed);
    this.published = new Counter({
      name: 'krkn_events_published_total',
      help: 'Publishes by outcome: stored, duplicate (deduped to an earlier event) or refused.',
      labelNames: ['outcome', ...topic],
      registers,
    });
    this.deliveries = new Counter({
      name: 'krkn_deliveries_total',
      help:
        'Delivery attempts by outcome (delivered, rejected, gone, unreachable; held and refused: not sent) ' +
        'and status class.',
      labelNames: ['outcome', 'status_class', ...topic],
      registers,
    });
    this.latency = new Histogram({
      name: 'krkn_delivery_duration_seconds',
      help: 'Time from the start of a delivery attempt to its outcome.',
      labelNames: ['outcome'],
      buckets: latencyBuckets,
      registers,
    });
    const gauge = (name: string, help: string, labelNames: string[] = []) =>
      new Gauge({ name, help, labelNames, registers });
    this.gauges = {
      pending: gauge('krkn_queue_pending', 'Deliveries owed and not yet made.'),
      oldestPendingAge: gauge('krkn_queue_oldest_pending_age_seconds', 'Age of the oldest event still owed (0: none).'),
      inFlight: gauge('krkn_queue_in_flight', 'Delivery attempts in flight.'),
      failed: gauge('krkn_deliveries_failed_stored', 'Deliveries failed for good, still in the store.'),
      subscriptions: gauge(
        'krkn_subscriptions',
        'Subscriptions by state: online, offline, held (address answers for another node) or disabled (410 Gone).',
        ['state'],
      ),
      events: gauge('krkn_store_events', 'Events in the store.'),
      storeBytes: gauge('krkn_store_bytes', 'Size of the store (database file or PostgreSQL database).'),
    };
    this.peers = gauge('krkn_node_peers', 'Peers in the netmap, by online state.', ['online']);
    this.derpHome = gauge('krkn_node_derp_home', "The node's home DERP region (1 for the current one).", ['region']);
    this.engine = gauge('krkn_engine_stat', "The tailnet engine's data-path counters, when it reports them.", ['name']);
    hub.events.on('published', (e) => this.published.inc(this.labels({ outcome: e.outcome }, e.topic)));
    hub.events.on('attempt', (e) => {
      this.deliveries.inc(this.labels({ outcome: e.outcome, status_class: statusClass(e.status) }, e.topic));
      this.latency.observe({ outcome: e.outcome }, e.latencyMs / 1000);
    });
  }

  /** The page for one scrape: store and node figures are read now. */
  async render(): Promise<{ contentType: string; body: string }> {
    await Promise.all([this.readHub(), this.readNode()]);
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private labels(base: Record<string, string>, topic: string): Record<string, string> {
    return this.topicLabels ? { ...base, topic } : base;
  }

  private async readHub(): Promise<void> {
    const { storage, queue } = await this.hub.status({ kind: 'admin' });
    const g = this.gauges;
    g.pending.set(queue.pending);
    g.inFlight.set(queue.inFlight);
    g.failed.set(queue.failed);
    const oldest = queue.oldestPendingAt === null ? null : Date.parse(queue.oldestPendingAt);
    g.oldestPendingAge.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
    const { subscriptions, offlineSubscriptions: offline, disabledSubscriptions: disabled } = storage;
    const held = storage.heldSubscriptions;
    g.subscriptions.set({ state: 'online' }, subscriptions - offline - disabled - held);
    g.subscriptions.set({ state: 'offline' }, offline);
    g.subscriptions.set({ state: 'held' }, held);
    g.subscriptions.set({ state: 'disabled' }, disabled);
    g.events.set(storage.events);
    g.storeBytes.set(storage.databaseBytes);
  }

  private async readNode(): Promise<void> {
    const status = await this.node.status();
    const online = status.peers.filter((p) => p.online).length;
    this.peers.set({ online: 'true' }, online);
    this.peers.set({ online: 'false' }, status.peers.length - online);
    this.derpHome.reset();
    if (status.self.relay) this.derpHome.set({ region: status.self.relay }, 1);
    const counters = (await this.node.metrics?.()) ?? {};
    for (const [name, value] of numbersIn(counters)) this.engine.set({ name }, value);
  }
}

/** The finite numbers in an object, nested names joined with "_" (bounded: the engine's fixed set). */
function numbersIn(obj: object, prefix = ''): [string, number][] {
  return Object.entries(obj).flatMap(([k, v]): [string, number][] => {
    const name = prefix + k;
    if (typeof v === 'number' && Number.isFinite(v)) return [[name, v]];
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? numbersIn(v as object, `${name}_`) : [];
  });
}
