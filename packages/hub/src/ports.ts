import type {
  Delivery,
  DueDelivery,
  EventQuery,
  NewEvent,
  NewSubscription,
  StoredEvent,
  StoreStats,
  Subscription,
  SubscriptionBacklog,
} from '@krkn/hub-store';

/**
 * A store answers now or later: every call is awaited, so the synchronous SQLite store and an
 * asynchronous one (a database over the network) both fit.
 */
type Awaitable<T> = T | Promise<T>;

/** Whether a topic pattern matches a topic; the store applies it when it fans an event out. */
type TopicMatcher = (pattern: string, topic: string) => boolean;

/** What the deliverer needs from storage: what is due, and how each attempt ended. */
export interface DeliveryStore {
  dueDeliveries(now: number, busy: ReadonlySet<string>, limit: number): Awaitable<DueDelivery[]>;
  nextDueAt(): Awaitable<number | null>;
  recordDelivered(subscriptionId: string, eventSeq: number, status: number, now: number): Awaitable<void>;
  recordRejected(
    subscriptionId: string,
    eventSeq: number,
    outcome: { status: number | null; error: string; retryAt: number | null },
    now: number,
  ): Awaitable<void>;
  recordGone(subscriptionId: string, eventSeq: number, status: number, reason: string, now: number): Awaitable<void>;
  recordUnreachable(
    subscriptionId: string,
    eventSeq: number,
    error: string,
    probeAt: number,
    attemptStartedAt: number,
    now: number,
  ): Awaitable<void>;
}

/** What the hub needs from storage (a subset of @krkn/hub-store's HubStore). */
export interface HubStorage extends DeliveryStore {
  publish(input: NewEvent, matches: TopicMatcher, now: number): Awaitable<{ event: StoredEvent; duplicate: boolean }>;
  getEvent(id: string): Awaitable<StoredEvent | undefined>;
  listEvents(q: EventQuery): Awaitable<StoredEvent[]>;
  deliveriesOf(eventId: string): Awaitable<Delivery[]>;
  /** Re-queues an event from attempt one to the subscriptions matching it: only node `nodeId`'s when given. */
  redeliver(eventId: string, matches: TopicMatcher, now: number, nodeId?: string): Awaitable<number>;
  subscribe(input: NewSubscription, now: number): Awaitable<Subscription>;
  getSubscription(id: string): Awaitable<Subscription | undefined>;
  listSubscriptions(nodeId?: string): Awaitable<Subscription[]>;
  unsubscribe(id: string): Awaitable<boolean>;
  wake(subscriptionId: string, now: number): Awaitable<void>;
  prune(before: number): Awaitable<number>;
  stats(): Awaitable<StoreStats>;
  backlogs(): Awaitable<SubscriptionBacklog[]>;
}

/**
 * What the hub needs from its tailnet node: who it is (for /status) and which peers are online
 * (to wake parked subscribers). A TailnetNode is one; the bench and unit tests pass their own.
 */
export interface HubNode {
  readonly hostname: string;
  readonly self: { name: string } | undefined;
  readonly addresses: string[];
  readonly state: string;
  /** Set while the node waits for interactive login. */
  readonly loginUrl: string | undefined;
  status(): Promise<{ peers: readonly { online: boolean; addresses: string[] }[] }>;
  /** 'peers': the netmap changed; call status() for the list. */
  on(event: 'peers', listener: () => void): unknown;
  off(event: 'peers', listener: () => void): unknown;
}
