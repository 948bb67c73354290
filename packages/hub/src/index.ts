/**
 * @krkn/hub — the krkns webhook hub: the HTTP API (a fastify plugin), authorisation by tailnet
 * identity and app capabilities, and the delivery loop with retries and offline queues.
 */
export { Hub, defaultRetryScheduleMs } from './hub.js';
export type { HubConfig, HubOptions } from './hub.js';
export { hubRoutes } from './routes.js';
export type { HubRoutesOptions } from './routes.js';
export { identifyAdmin, identifyByWhois } from './caller.js';
export type { Caller, Identify } from './caller.js';
export { Deliverer, tailnetSender } from './delivery.js';
export type { AttemptOutcome, SendAttempt } from './delivery.js';
export { HubError } from './errors.js';
export { dedupeKeyOf } from './headers.js';
