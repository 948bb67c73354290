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

/**
 * Headers that carry a credential of whoever sent the webhook: stored and delivered as received,
 * but never handed out by the events API (any peer allowed to read a topic would get them).
 */
export const defaultCredentialHeaders: readonly string[] = ['authorization', 'cookie', 'proxy-authorization'];

/** The pairs without the named headers (names compared case-insensitively), and which were left out. */
export function withoutHeaders(
  pairs: [string, string][],
  names: readonly string[],
): { kept: [string, string][]; withheld: string[] } {
  const drop = new Set(names.map((n) => n.toLowerCase()));
  const kept = pairs.filter(([k]) => !drop.has(k.toLowerCase()));
  const withheld = [...new Set(pairs.map(([k]) => k.toLowerCase()).filter((k) => drop.has(k)))];
  return { kept, withheld };
}
