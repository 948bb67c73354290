import type { WhoIs } from '@krkn/tailnet';
import { authorize, type AuthorizeConfig } from './authorize.js';
import { peerOf } from './caller.js';
import type { SendAttempt } from './delivery.js';
import { HubError } from './errors.js';

/** Names the node behind a tailnet address now (a TailnetNode's whois). */
export type WhoIsLookup = (address: string) => Promise<WhoIs>;

/**
 * Sends only to the subscriber itself. Right before each attempt, WhoIs the subscription's address:
 * - nobody holds it (or WhoIs fails): unreachable, nothing spent, probed again later;
 * - another node holds it (the subscriber was deleted and its address re-issued): held, nothing sent;
 * - in capability mode, the holder's grant no longer covers the event's topic: refused, nothing sent.
 * Only then does `send` dial the address.
 */
export function guardTargets(whois: WhoIsLookup, config: AuthorizeConfig, send: SendAttempt): SendAttempt {
  return async (due, attempt, redelivery) => {
    const { subscription: sub, event } = due;
    let who: WhoIs;
    try {
      who = await whois(sub.address);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return { kind: 'unreachable', error: `cannot tell who holds ${sub.address} now: ${why}` };
    }
    const holder = peerOf(sub.address, who);
    if (holder.nodeId !== sub.nodeId) {
      const reason =
        `${sub.address} now answers for ${holder.node} (node ${holder.nodeId}), not for the subscriber ` +
        `${sub.nodeName} (node ${sub.nodeId}): held until the subscriber is back at that address or subscribes again`;
      return { kind: 'held', reason };
    }
    try {
      authorize(config, holder, 'subscribe', event.topic);
    } catch (err) {
      if (err instanceof HubError) return { kind: 'refused', reason: `not sent: ${err.message}` };
      throw err;
    }
    return send(due, attempt, redelivery);
  };
}
