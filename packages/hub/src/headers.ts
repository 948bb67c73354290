import { dedupeHeaders } from '@krkn/hub-api';

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
