import type { EventMeta, SubscriptionInfo } from '@krkn/hub-api';
import type { Delivery, EventSummary, Subscription, SubscriptionBacklog } from '@krkn/hub-store';
import type { SubscriberView } from './use-cases.js';

/** An event's metadata on the wire, with its deliveries. */
export function eventMeta(e: EventSummary, deliveries: Delivery[]): EventMeta {
  return {
    id: e.id,
    topic: e.topic,
    receivedAt: new Date(e.receivedAt).toISOString(),
    sender: e.sender,
    size: e.size,
    contentType: e.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? null,
    dedupeKey: e.dedupeKey,
    deliveries: deliveries.map((d) => ({
      subscriptionId: d.subscriptionId,
      state: d.state,
      attempts: d.attempts,
      lastStatus: d.lastStatus,
      lastError: d.lastError,
      nextAttemptAt: d.state === 'pending' ? new Date(d.nextAttemptAt).toISOString() : null,
    })),
  };
}

/** A subscription on the wire. */
export function subscriptionInfo(s: Subscription): SubscriptionInfo {
  return {
    id: s.id,
    node: s.nodeName,
    address: s.address,
    port: s.port,
    path: s.path,
    topics: s.topics,
    createdAt: new Date(s.createdAt).toISOString(),
    offlineSince: s.offlineSince === null ? null : new Date(s.offlineSince).toISOString(),
    disabled: s.disabled === null ? null : { at: new Date(s.disabled.at).toISOString(), reason: s.disabled.reason },
    held: s.held === null ? null : { at: new Date(s.held.at).toISOString(), reason: s.held.reason },
  };
}

/** A subscription with its backlog, for the inspector. */
export function subscriberView(s: Subscription, backlog: SubscriptionBacklog | undefined): SubscriberView {
  const last = backlog?.lastDeliveredAt ?? null;
  const lastDeliveredAt = last === null ? null : new Date(last).toISOString();
  return { ...subscriptionInfo(s), pending: backlog?.pending ?? 0, lastDeliveredAt };
}
