// Rows as both engines return them (same column names; PostgreSQL's bigints parsed to numbers),
// and their mapping to the public types: one place for both backends.

import type { Delivery, EventSummary, NewEvent, StoredEvent, Subscription, TopicMatcher } from './types.js';

export interface EventRow {
  seq: number;
  id: string;
  topic: string;
  received_at: number;
  dedupe_key: string | null;
  method: string;
  headers: string;
  body: Buffer;
  sender_ip: string;
  sender_node: string;
  sender_user: string;
  sender_tags: string;
}

/** An event row as listings read it: no body, its length instead (see {@link summaryColumns}). */
export type EventSummaryRow = Omit<EventRow, 'body'> & { size: number };

/**
 * The columns of an {@link EventSummaryRow}; `lengthOf` is the engine's byte length function, which
 * reads a stored body's length without reading the body.
 */
export function summaryColumns(lengthOf: 'length' | 'octet_length'): string {
  return (
    'seq, id, topic, received_at, dedupe_key, method, headers, sender_ip, sender_node, sender_user, sender_tags, ' +
    `${lengthOf}(body) AS size`
  );
}

export interface SubscriptionRow {
  id: string;
  node_id: string;
  node_name: string;
  address: string;
  port: number;
  path: string;
  topics: string;
  created_at: number;
  updated_at: number;
  offline_since: number | null;
  probe_at: number | null;
  disabled_at: number | null;
  disabled_reason: string | null;
  held_at: number | null;
  held_reason: string | null;
  secret: string | null;
  previous_secret: string | null;
  previous_secret_until: number | null;
}

export interface DeliveryRow {
  subscription_id: string;
  event_seq: number;
  state: Delivery['state'];
  attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
}

/** The columns an event is inserted with, in the order of {@link eventValues}. */
export const EVENT_COLUMNS =
  'id, topic, received_at, dedupe_key, method, headers, body, sender_ip, sender_node, sender_user, sender_tags';
/** How many values {@link eventValues} gives: one per column of {@link EVENT_COLUMNS}. */
export const EVENT_WIDTH = EVENT_COLUMNS.split(',').length;

/** The insert values of an event, in the column order of {@link EVENT_COLUMNS}. */
export function eventValues(id: string, e: NewEvent, now: number): unknown[] {
  const s = e.sender;
  const headers = JSON.stringify(e.headers);
  return [
    id,
    e.topic,
    now,
    e.dedupeKey ?? null,
    e.method,
    headers,
    e.body,
    s.ip,
    s.node,
    s.user,
    JSON.stringify(s.tags),
  ];
}

/**
 * The event just inserted with {@link eventValues}, built from them rather than read back (SQLite's
 * `RETURNING *` copied the body out again for every publish). Arrays are copied: the stored event does
 * not share them with the caller's input, as one read back would not.
 */
export function insertedEvent(id: string, seq: number, e: NewEvent, now: number): StoredEvent {
  return {
    id,
    seq,
    topic: e.topic,
    receivedAt: now,
    dedupeKey: e.dedupeKey ?? null,
    method: e.method,
    headers: e.headers.map(([name, value]) => [name, value]),
    sender: { ip: e.sender.ip, node: e.sender.node, user: e.sender.user, tags: [...e.sender.tags] },
    size: e.body.length,
    body: e.body,
  };
}

/**
 * The first event received at or after a time (placeholder `param`), by the events_received index: listing
 * recent events starts there, not at the oldest, so it stays flat however many old ones are kept. (Receipt
 * times follow seq order unless the clock steps back; then a `since` query may skip an event from before the step.)
 */
export function firstSince(param: string): string {
  return `SELECT seq FROM events WHERE received_at >= ${param} ORDER BY received_at, seq LIMIT 1`;
}

export function toEvent(r: EventRow): StoredEvent {
  return { ...toEventSummary({ ...r, size: r.body.length }), body: r.body };
}

export function toEventSummary(r: EventSummaryRow): EventSummary {
  return {
    id: r.id,
    seq: r.seq,
    topic: r.topic,
    receivedAt: r.received_at,
    dedupeKey: r.dedupe_key,
    method: r.method,
    headers: JSON.parse(r.headers) as [string, string][],
    sender: { ip: r.sender_ip, node: r.sender_node, user: r.sender_user, tags: JSON.parse(r.sender_tags) as string[] },
    size: r.size,
  };
}

export function toSubscription(r: SubscriptionRow): Subscription {
  return {
    id: r.id,
    nodeId: r.node_id,
    nodeName: r.node_name,
    address: r.address,
    port: r.port,
    path: r.path,
    topics: JSON.parse(r.topics) as string[],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    offlineSince: r.offline_since,
    disabled: r.disabled_at === null ? null : { at: r.disabled_at, reason: r.disabled_reason ?? '' },
    held: r.held_at === null ? null : { at: r.held_at, reason: r.held_reason ?? '' },
    secret: r.secret,
    previousSecret:
      r.previous_secret === null ? null : { secret: r.previous_secret, until: r.previous_secret_until ?? 0 },
  };
}

/** What decides whether a subscription is owed an event (see {@link owedTo}). */
export type Owner = Pick<Subscription, 'id' | 'topics' | 'disabled'>;

/** Whether an event on `topic` is owed to `sub`: one of its patterns matches, and it has not answered 410 Gone. */
export function owedTo(sub: Owner, topic: string, matches: TopicMatcher): boolean {
  return sub.disabled === null && sub.topics.some((p) => matches(p, topic));
}

export function toDelivery(r: DeliveryRow): Delivery {
  return {
    subscriptionId: r.subscription_id,
    eventSeq: r.event_seq,
    state: r.state,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastStatus: r.last_status,
    lastError: r.last_error,
  };
}

/**
 * When a publish trims a subscription's backlog (HubStore.publish): after every hundredth of the bound's
 * deliveries owed to it (after each one for bounds under 200). The walk to the cut is as long as the queue,
 * so this keeps it near 100 index steps per publish however long the queue grows, and a queue passes the
 * bound by about 1 % (plus, on PostgreSQL, publishes not yet committed when the trim ran) before its oldest
 * fail. Counted per store handle (per replica on PostgreSQL).
 */
export class BacklogTrims {
  readonly #owedSinceTrim = new Map<string, number>();
  readonly #every: number;

  constructor(readonly maxBacklog: number) {
    this.#every = Math.max(1, Math.floor(maxBacklog / 100));
  }

  /** Counts one more delivery owed to the subscription; true when its backlog is to be trimmed now. */
  due(subscriptionId: string): boolean {
    const owed = (this.#owedSinceTrim.get(subscriptionId) ?? 0) + 1;
    if (owed < this.#every) {
      this.#owedSinceTrim.set(subscriptionId, owed);
      return false;
    }
    this.#owedSinceTrim.delete(subscriptionId);
    return true;
  }
}
