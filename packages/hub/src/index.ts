/**
 * @krkn/hub — the krkns webhook hub: its use cases (publish, subscribe, ...), the HTTP API over
 * them (a fastify plugin), authorisation by tailnet identity and app capabilities, and the
 * delivery loop with retries and offline queues.
 */
export { Hub, defaultLimits, defaultRetryScheduleMs } from './hub.js';
export { defaultCredentialHeaders } from './headers.js';
export type { HubConfig, HubLimits, HubOptions } from './hub.js';
export type { HubNode, HubStorage, NetmapPeer } from './ports.js';
export type {
  EventsQuery,
  EventWithBody,
  HubUseCases,
  MetricsPage,
  PublishInput,
  SubscribeInput,
  SubscriberView,
} from './use-cases.js';
export type { AttemptEvent, HubEventMap, PublishedEvent } from './events.js';
export { hubRoutes } from './routes.js';
export type { HubRoutesOptions } from './routes.js';
export { authorizationSummary } from './authorize.js';
export type { AuthorizeConfig } from './authorize.js';
export { identifyAdmin, identifyByWhois } from './caller.js';
export type { Caller, Identify } from './caller.js';
export type { AttemptOutcome, SendAttempt } from './delivery.js';
export { tailnetSender } from './tailnet-sender.js';
export { HubError, toHubError } from './errors.js';
export { checkHost, ownHostsOf } from './browser-guard.js';
