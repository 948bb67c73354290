/**
 * @krkn/hub-store — krkns's durable storage: events with their raw bodies and headers,
 * subscriptions, and what is still owed to whom. One SQLite file (WAL), committed before krkns
 * answers 202.
 */
export { HubStore, StoreError, newEventId } from './store.js';
export type {
  Delivery,
  DueDelivery,
  EventQuery,
  NewEvent,
  Sender,
  StoreStats,
  StoredEvent,
  Subscription,
  SubscriptionBacklog,
} from './store.js';
