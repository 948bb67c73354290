import type { EventEmitter } from 'node:events';
import type { EventMeta, HubStatus, PublishResponse, SubscriptionInfo } from '@krkn/hub-api';
import type { Caller } from './caller.js';
import type { HubEventMap } from './events.js';

/** A rendered metrics page and its content type (Prometheus text format). */
export interface MetricsPage {
  contentType: string;
  body: string;
}

/** A webhook as received: the topic from the path, the end-to-end headers and the raw body. */
export interface PublishInput {
  topic: string;
  method: string;
  headers: [string, string][];
  body: Buffer;
}

/** A subscription request, decoded from its JSON body. */
export interface SubscribeInput {
  topics: string[];
  port: number;
  path: string;
  /** Issue a new signing secret; the current one is still signed with for an overlap (see secretOverlapMs). */
  rotateSecret: boolean;
  /** Hosts the body named as a delivery target (address, host, url, target): each must be the caller. */
  namedTargets: { field: string; host: string }[];
}

/** Which events to list; `topic` is a topic or pattern. */
export interface EventsQuery {
  topic?: string;
  /** Events received after this event id. */
  after?: string;
  /** Events received before this event id. */
  before?: string;
  /** Newest first (default: receipt order). */
  newestFirst?: boolean;
  /** Events received at or after this time (ms). */
  since?: number;
  limit: number;
}

/** One event with its original headers, less the credential ones, and its raw body. */
export interface EventWithBody extends EventMeta {
  headers: [string, string][];
  /** Lower-case names of the credential headers left out of `headers`. */
  withheldHeaders: string[];
  body: Buffer;
}

/** A subscription as the inspector shows it: with its backlog and last success. */
export interface SubscriberView extends SubscriptionInfo {
  pending: number;
  lastDeliveredAt: string | null;
}

/**
 * What the HTTP API can ask of the hub: each operation authorises the caller, stores, and wakes
 * the deliverer when something new may be due. Failures are HubErrors.
 */
export interface HubUseCases {
  /** True once the hub began stopping: the API answers 503. */
  readonly closing: boolean;
  /** Fails (BAD_TOPIC, MISSING_CAPABILITY) unless the caller may publish to `topic`: asked before the body is read. */
  checkPublish(caller: Caller, topic: string): void;
  /**
   * Fails (STORE_LIMIT) when a body of `declaredBytes` (its Content-Length) would take the store past its
   * bound: asked before the body is read, so a full store reads no upload it must refuse.
   */
  checkStoreRoom(topic: string, declaredBytes: number): Promise<void>;
  publish(caller: Caller, input: PublishInput): Promise<PublishResponse>;
  subscribe(caller: Caller, input: SubscribeInput): Promise<SubscriptionInfo>;
  /** The caller's own subscriptions (all of them for the admin socket). */
  listSubscriptions(caller: Caller): Promise<SubscriptionInfo[]>;
  /** Every subscription to a topic (or pattern) the caller may read: what the inspector shows. */
  listReadableSubscriptions(caller: Caller): Promise<SubscriberView[]>;
  unsubscribe(caller: Caller, id: string): Promise<void>;
  /** Events the caller may read, oldest first unless asked for newest first; an unknown cursor is BAD_REQUEST. */
  listEvents(caller: Caller, query: EventsQuery): Promise<EventMeta[]>;
  getEvent(caller: Caller, id: string): Promise<EventWithBody>;
  /**
   * Owes the event again, from attempt one, to the caller's own subscriptions matching it now (to
   * every matching subscription for the admin socket); answers how many.
   */
  redeliver(caller: Caller, id: string): Promise<{ id: string; deliveries: number }>;
  /** The hub's health and queue; a pending login URL only for the admin socket. */
  status(caller: Caller): Promise<HubStatus>;
  /** The Prometheus metrics page; needs the read right on every topic. */
  metrics(caller: Caller): Promise<MetricsPage>;
  /** Fails (MISSING_CAPABILITY) unless the caller may read the events of some topic. */
  checkRead(caller: Caller): void;
  /** Publishes, attempts and the start of stop(), as they happen (metrics and live views listen). */
  readonly events: EventEmitter<HubEventMap>;
}
