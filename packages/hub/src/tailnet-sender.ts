import { request, type Agent } from 'node:http';
import { deliveryHeaders, endToEndHeaders, signWebhook, signatureHeaders } from '@krkn/hub-api';
import type { Subscription } from '@krkn/hub-store';
import { TailnetError, tailnetAgent, type TailnetNode } from '@krkn/tailnet';
import { outcomeOfAnswer } from './answer.js';
import type { AuthorizeConfig } from './authorize.js';
import type { AttemptOutcome, SendAttempt } from './delivery.js';
import { guardTargets } from './target-guard.js';

/**
 * How krkns sends attempts: POST over the tailnet from `node`, each only after {@link guardTargets}
 * found the subscriber itself at its address (and, in capability mode, still granted the topic). An
 * offline subscriber answers no SYN, so the dial gives up well before the delivery timeout: its queue
 * is parked (no attempt spent) and a subscriber that comes back is not kept waiting.
 */
export function tailnetSender(node: TailnetNode, deliveryTimeoutMs: number, authz: AuthorizeConfig): SendAttempt {
  const agent = tailnetAgent(node, { maxSockets: 4, dialTimeoutMs: Math.min(5_000, deliveryTimeoutMs) });
  return guardTargets((address) => node.whois(address), authz, postOver(agent, deliveryTimeoutMs));
}

/** Dial errors that mean "the subscriber is not there", as opposed to "it said no". */
const unreachableCodes = new Set(['UNKNOWN_PEER', 'TIMEOUT', 'DIAL_FAILED', 'NOT_RUNNING']);

/**
 * Posts one attempt over the tailnet to the subscriber's own address, with the original headers
 * and body, and the krkn headers (event id, topic, attempt). Success is a 2xx within timeoutMs;
 * other answers mean what {@link outcomeOfAnswer} says.
 */
function postOver(agent: Agent, timeoutMs: number): SendAttempt {
  const noAnswer = `no answer within ${timeoutMs / 1000}s`;
  return ({ event, subscription }, attempt, redelivery) =>
    new Promise<AttemptOutcome>((resolve) => {
      let connected = false;
      // A flat [name, value, ...] list: names keep their case, repeated headers stay separate.
      // (Node adds no Host header to a list like this, so it is the first entry.)
      const headers = [
        ['Host', `${subscription.address}:${subscription.port}`],
        ...endToEndHeaders(event.headers).filter(([k]) => !ownHeader(k)),
        ...signatureOf(subscription, event.id, event.body),
        [deliveryHeaders.eventId, event.id],
        [deliveryHeaders.topic, event.topic],
        [deliveryHeaders.attempt, String(attempt)],
        [deliveryHeaders.sender, event.sender.node],
        [deliveryHeaders.receivedAt, new Date(event.receivedAt).toISOString()],
        ...(redelivery === undefined ? [] : [[deliveryHeaders.redelivery, redelivery]]),
        ['content-length', String(event.body.length)],
      ].flat();
      const req = request({
        host: subscription.address,
        port: subscription.port,
        path: subscription.path,
        method: 'POST',
        agent,
        headers,
        signal: AbortSignal.timeout(timeoutMs),
      });
      req.on('socket', () => (connected = true));
      req.on('response', (res) => {
        res.resume(); // the answer's body is not ours to keep
        res.on('end', () => resolve(outcomeOfAnswer(res.statusCode ?? 0, res.headers['retry-after'])));
        res.on('error', (err) => resolve({ kind: 'rejected', status: res.statusCode ?? null, error: err.message }));
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        const code = err instanceof TailnetError ? err.code : '';
        if (unreachableCodes.has(code) || !connected) resolve({ kind: 'unreachable', error: err.message });
        else if (err.code === 'ABORT_ERR') resolve({ kind: 'rejected', status: null, error: noAnswer });
        else resolve({ kind: 'rejected', status: null, error: err.message });
      });
      req.end(event.body);
    });
}

const signatureHeaderNames = new Set<string>(Object.values(signatureHeaders));

/** Headers krkns sets on each attempt: a publisher's own of these names are not passed on (they would clash). */
function ownHeader(name: string): boolean {
  const k = name.toLowerCase();
  return k.startsWith('x-krkn-') || signatureHeaderNames.has(k);
}

/**
 * The Standard Webhooks headers of an attempt, signed with the current secret and a rotated-out one
 * until its overlap ends; none for a subscription made before secrets existed (until it subscribes again).
 */
function signatureOf(sub: Subscription, id: string, body: Buffer, now = Date.now()): [string, string][] {
  const previous = sub.previousSecret && sub.previousSecret.until > now ? [sub.previousSecret.secret] : [];
  const secrets = sub.secret === null ? previous : [sub.secret, ...previous];
  return secrets.length === 0 ? [] : signWebhook(secrets, id, body, now);
}
