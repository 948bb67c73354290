/** Headers krkns adds to every delivery attempt. */
export const deliveryHeaders = {
  /** The event's stable id, the same on every attempt: receivers dedupe on it. */
  eventId: 'x-krkn-event-id',
  topic: 'x-krkn-topic',
  /** 1 for the first attempt. */
  attempt: 'x-krkn-attempt',
  /** MagicDNS name of the node that published the event. */
  sender: 'x-krkn-sender',
  /** ISO time krkns received the event. */
  receivedAt: 'x-krkn-received-at',
  /**
   * Present when someone asked for the event again (`krkns events redeliver`, POST
   * /events/:id/redeliver): a token, the same on every attempt of that redelivery. A receiver that
   * dedupes on the event id lets such a delivery through once per token.
   */
  redelivery: 'x-krkn-redelivery',
} as const;

/** Request headers that make a publish idempotent within its topic (first match wins). */
export const dedupeHeaders = ['idempotency-key', 'x-github-delivery'] as const;

/** Every error krkns answers with, as `{ error: { code, message } }`. */
export type HubErrorCode =
  | 'BAD_REQUEST'
  | 'BAD_TOPIC'
  | 'BODY_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'UNKNOWN_CALLER'
  | 'MISSING_CAPABILITY'
  | 'FORBIDDEN_TARGET'
  | 'NOT_YOURS'
  | 'CROSS_SITE'
  | 'MISDIRECTED_HOST'
  | 'EVENT_NOT_FOUND'
  | 'SUBSCRIPTION_NOT_FOUND'
  | 'NOT_FOUND'
  | 'TOO_MANY_REQUESTS'
  | 'TOO_MANY_TOPICS'
  | 'SUBSCRIPTION_LIMIT'
  | 'STORE_LIMIT'
  | 'SHUTTING_DOWN'
  | 'STORE_UNAVAILABLE'
  | 'INSUFFICIENT_STORAGE'
  | 'INTERNAL';

/** The one error format of krkns's API and of both apps' admin sockets. */
export interface ErrorBody<Code extends string = HubErrorCode> {
  error: { code: Code; message: string };
}

/** The `error` of an answer in the {@link ErrorBody} format, or undefined if it is not one. */
export function decodeErrorBody(parsed: unknown): { code: string; message: string } | undefined {
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const e = (parsed as { error?: unknown }).error;
  if (typeof e !== 'object' || e === null) return undefined;
  const { code, message } = e as { code?: unknown; message?: unknown };
  return typeof code === 'string' && typeof message === 'string' ? { code, message } : undefined;
}

/** The answer to `POST /hooks/<topic>` (202). */
export interface PublishResponse {
  id: string;
  topic: string;
  /** True when the dedupe key was seen before: `id` is the first event's, nothing new was stored. */
  duplicate: boolean;
}

/** Who published an event. */
export interface SenderInfo {
  ip: string;
  node: string;
  user: string;
  tags: string[];
}

/** The state of one event towards one subscription. */
export interface DeliveryInfo {
  subscriptionId: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  /** While pending: when the next attempt is due (a subscriber offline is probed, not attempted). */
  nextAttemptAt: string | null;
}

/** An event without its body (`GET /events`). */
export interface EventMeta {
  id: string;
  topic: string;
  receivedAt: string;
  sender: SenderInfo;
  size: number;
  contentType: string | null;
  dedupeKey: string | null;
  deliveries: DeliveryInfo[];
}

/**
 * `GET /events/:id`: metadata, the original headers and the raw body (base64). Credential headers
 * (Authorization, Cookie, Proxy-Authorization and those krkns is configured with) are left out of
 * `headers` and named in `withheldHeaders`; deliveries still carry them.
 */
export interface EventDetail extends EventMeta {
  headers: [string, string][];
  /** Lower-case names of the headers left out, each once. */
  withheldHeaders: string[];
  bodyBase64: string;
}

/** `POST /subscriptions` body. There is no address field: deliveries go to the caller's own tailnet address. */
export interface SubscribeRequest {
  /** Exact topics or patterns such as `ci/*`. */
  topics: string[];
  /** Port of the subscriber's own tailnet listener. */
  port: number;
  /** Path deliveries are POSTed to (default `/`). */
  path?: string;
  /**
   * Issue a new signing secret (answered once, in `secret`); the old one is still signed with for a
   * day, so receivers can switch over. A new subscription always gets one.
   */
  rotateSecret?: boolean;
}

export interface SubscriptionInfo {
  id: string;
  node: string;
  address: string;
  port: number;
  path: string;
  topics: string[];
  createdAt: string;
  /** ISO time since when the subscriber could not be reached, or null. */
  offlineSince: string | null;
  /** Set (ISO time, why) once the subscriber answered 410 Gone: nothing is sent until it subscribes again. */
  disabled: { at: string; reason: string } | null;
  /**
   * Set (ISO time, why) while its deliveries are held back: its tailnet address answers for another node
   * than the one that subscribed. Nothing is sent until it is back at that address or subscribes again.
   */
  held: { at: string; reason: string } | null;
  /**
   * The Standard Webhooks secret ("whsec_...") every attempt is signed with: only in the answer to the
   * subscribe that issued it (a new subscription, or rotateSecret). Keep it: it is not shown again.
   */
  secret?: string;
}

/** `GET /status`. */
export interface HubStatus {
  node: { name: string; addresses: string[]; state: string };
  listener: string;
  storage: {
    events: number;
    subscriptions: number;
    offlineSubscriptions: number;
    /** Disabled because the subscriber answered 410 Gone. */
    disabledSubscriptions: number;
    /** Held back: their address answers for another node than the subscriber. */
    heldSubscriptions: number;
    databaseBytes: number;
  };
  queue: { pending: number; delivered: number; failed: number; inFlight: number; oldestPendingAt: string | null };
  /** Every krkns that beat on this store (one, unless replicas share a PostgreSQL database). */
  replicas: ReplicaStatus[];
  /** Set while the node waits for interactive login. */
  loginUrl?: string;
}

/** One krkns replica as the shared store shows it. */
export interface ReplicaStatus {
  name: string;
  /** Its heartbeat is recent: it is running. */
  alive: boolean;
  /** The replica answering this status. */
  self: boolean;
  startedAt: string;
  seenAt: string;
  /** Subscribers whose deliveries it holds a lease on now. */
  leases: number;
}
