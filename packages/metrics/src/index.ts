/**
 * @krkn/metrics — krkns's Prometheus metrics: the hub's publishes and delivery attempts as they
 * happen, queue/store/subscriber/node figures per scrape, process metrics; served by the hub's
 * authorised GET /metrics and, when asked, on a loopback host address.
 */
export { HubMetrics, statusClass } from './hub-metrics.js';
export type { HubMetricsOptions, ObservedHub, ObservedNode } from './hub-metrics.js';
export { MetricsListenError, parseHostAddress, serveMetricsOnHost } from './host-listener.js';
export type { HostAddress } from './host-listener.js';
