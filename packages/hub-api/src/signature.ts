import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): krkns signs every delivery
 * attempt with the subscription's secret; krknc listen verifies before forwarding, and passes the
 * headers on so the local app can verify with any Standard Webhooks library.
 */
export const signatureHeaders = {
  id: 'webhook-id',
  timestamp: 'webhook-timestamp',
  signature: 'webhook-signature',
} as const;

/** Secrets are "whsec_" + base64 of the HMAC key. */
const secretPrefix = 'whsec_';
/** 24 random bytes: the spec asks for 24 to 64. */
const secretBytes = 24;
/** A timestamp further than this from the verifier's clock is refused (replay window), as the spec's libraries do. */
export const signatureToleranceMs = 5 * 60_000;

/** A fresh subscription secret. */
export function newWebhookSecret(): string {
  return secretPrefix + randomBytes(secretBytes).toString('base64');
}

function keyOf(secret: string): Buffer {
  return Buffer.from(secret.startsWith(secretPrefix) ? secret.slice(secretPrefix.length) : secret, 'base64');
}

function signatureOf(secret: string, id: string, timestampSec: number, body: Buffer): string {
  const mac = createHmac('sha256', keyOf(secret));
  mac.update(`${id}.${timestampSec}.`).update(body);
  return mac.digest('base64');
}

/**
 * The three headers of one attempt: one `v1,` signature per secret (two while a rotated-out secret
 * is still valid), space-separated as the spec says.
 */
export function signWebhook(
  secrets: readonly string[],
  id: string,
  body: Buffer,
  now = Date.now(),
): [string, string][] {
  const ts = Math.floor(now / 1000);
  const signatures = secrets.map((s) => `v1,${signatureOf(s, id, ts, body)}`).join(' ');
  return [
    [signatureHeaders.id, id],
    [signatureHeaders.timestamp, String(ts)],
    [signatureHeaders.signature, signatures],
  ];
}

/** Why a signature was refused. */
export type SignatureProblem = 'missing' | 'stale' | 'mismatch';

/**
 * Checks an attempt's headers against the secrets this receiver holds: null when one `v1,`
 * signature matches one secret and the timestamp is within {@link signatureToleranceMs}.
 */
export function verifyWebhook(
  secrets: readonly string[],
  get: (name: string) => string | undefined,
  body: Buffer,
  now = Date.now(),
): SignatureProblem | null {
  const id = get(signatureHeaders.id);
  const tsText = get(signatureHeaders.timestamp);
  const sent = get(signatureHeaders.signature);
  if (!id || !tsText || !sent || !/^\d+$/.test(tsText)) return 'missing';
  const ts = Number(tsText);
  if (Math.abs(now - ts * 1000) > signatureToleranceMs) return 'stale';
  const offered = sent.split(' ').flatMap((s) => (s.startsWith('v1,') ? [Buffer.from(s.slice(3), 'base64')] : []));
  for (const secret of secrets) {
    const expected = Buffer.from(signatureOf(secret, id, ts, body), 'base64');
    if (offered.some((o) => o.length === expected.length && timingSafeEqual(o, expected))) return null;
  }
  return 'mismatch';
}
