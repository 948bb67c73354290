/**
 * @krkn/hub-store — krkns's durable storage: events with their raw bodies and headers,
 * subscriptions, and what is still owed to whom. Every write is committed before its promise
 * resolves (so before krkns answers 202), in one SQLite file (embedded default, group commit) or
 * in PostgreSQL (shared by several krkns replicas, deliveries claimed with leases).
 */
export { openStore, parseStoreUrl } from './open-store.js';
export type { OpenStoreOptions, StoreLocation } from './open-store.js';
export { SqliteStore } from './sqlite-store.js';
export type { SqliteStoreOptions } from './sqlite-store.js';
export { PostgresStore } from './pg-store.js';
export type { PostgresStoreOptions } from './pg-store.js';
export type { AsyncGroupCommitOptions, GroupCommitOptions } from './group-commit.js';
export { DEFAULT_MAX_BACKLOG, StoreError, backlogLimitReason, newEventId } from './types.js';
export type {
  Delivery,
  DueDelivery,
  EventQuery,
  EventSummary,
  HubStore,
  NewEvent,
  Published,
  NewSubscription,
  Rejection,
  Replica,
  Sender,
  StoreErrorCode,
  StoreStats,
  StoredEvent,
  Subscription,
  SubscriptionBacklog,
  TopicMatcher,
} from './types.js';
