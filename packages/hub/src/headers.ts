import { dedupeHeaders } from '@krkn/hub-api';

// Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message; host and
// content-length are recomputed for each delivery.
const dropped = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
]);

/** The headers of a request as they arrived (name case and order kept), from Node's rawHeaders. */
export function pairsFromRaw(rawHeaders: string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) pairs.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  return pairs;
}

/** The end-to-end headers: what is stored and forwarded. Names listed in Connection go too. */
export function forwardableHeaders(pairs: [string, string][]): [string, string][] {
  const named = new Set(
    pairs
      .filter(([k]) => k.toLowerCase() === 'connection')
      .flatMap(([, v]) => v.split(',').map((s) => s.trim().toLowerCase())),
  );
  return pairs.filter(([k]) => !dropped.has(k.toLowerCase()) && !named.has(k.toLowerCase()));
}

/**
 * The key that makes a publish idempotent: Idempotency-Key, GitHub's X-GitHub-Delivery, or for
 * a Stripe-signed body the Stripe event id ("evt_...") in its JSON.
 */
export function dedupeKeyOf(pairs: [string, string][], body: Buffer): string | undefined {
  const get = (name: string) => pairs.find(([k]) => k.toLowerCase() === name)?.[1];
  for (const h of dedupeHeaders) {
    const v = get(h)?.trim();
    if (v) return `${h}:${v}`;
  }
  if (get('stripe-signature')) {
    try {
      const id = (JSON.parse(body.toString('utf8')) as { id?: unknown }).id;
      if (typeof id === 'string' && id.startsWith('evt_')) return `stripe:${id}`;
    } catch {
      // not JSON: no Stripe id to dedupe on
    }
  }
  return undefined;
}
