/**
 * @krkn/hub-api — the wire contract of krkns: what its HTTP API accepts and answers, the headers
 * on every delivery, and a typed client (over any fetch: the tailnet, or the admin socket).
 */
export * from './contract.js';
export { HubClient, HubApiError } from './client.js';
export type { FetchLike, ListEventsQuery } from './client.js';
export { endToEndHeaders, pairsFromRaw } from './headers.js';
export { newWebhookSecret, signWebhook, signatureHeaders, signatureToleranceMs, verifyWebhook } from './signature.js';
export type { SignatureProblem } from './signature.js';
