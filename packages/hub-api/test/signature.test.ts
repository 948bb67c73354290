// Standard Webhooks signatures, checked against the spec's own reference library (`standardwebhooks`)
// in both directions: what krkns signs it verifies, and what it signs krknc verifies.
import { describe, expect, it } from 'vitest';
import { Webhook } from 'standardwebhooks';
import { newWebhookSecret, signWebhook, verifyWebhook } from '../src/signature.js';

const body = Buffer.from('{"action":"opened","n":1}');
const id = 'evt_0123456789abcdef';

const getter = (pairs: [string, string][]) => (name: string) => pairs.find(([k]) => k === name)?.[1];
const asRecord = (pairs: [string, string][]) => Object.fromEntries(pairs);

describe('Standard Webhooks signatures', () => {
  it('issues whsec_ secrets of 24 random bytes', () => {
    const s = newWebhookSecret();
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(newWebhookSecret()).not.toBe(s);
  });

  it('what krkns signs, the reference library verifies (and refuses once the body is altered)', () => {
    const secret = newWebhookSecret();
    const headers = asRecord(signWebhook([secret], id, body));
    expect(new Webhook(secret).verify(body.toString(), headers)).toEqual({ action: 'opened', n: 1 });
    expect(() => new Webhook(secret).verify('{"action":"opened","n":2}', headers)).toThrow(/signature/i);
    expect(() => new Webhook(newWebhookSecret()).verify(body.toString(), headers)).toThrow(/signature/i);
  });

  it('what the reference library signs, krknc verifies; an altered body, a foreign secret or an old timestamp is refused', () => {
    const secret = newWebhookSecret();
    const now = Date.now();
    const signature = new Webhook(secret).sign(id, new Date(now), body.toString());
    const pairs: [string, string][] = [
      ['webhook-id', id],
      ['webhook-timestamp', String(Math.floor(now / 1000))],
      ['webhook-signature', signature],
    ];
    expect(verifyWebhook([secret], getter(pairs), body, now)).toBeNull();
    expect(verifyWebhook([secret], getter(pairs), Buffer.from('{"action":"opened","n":2}'), now)).toBe('mismatch');
    expect(verifyWebhook([newWebhookSecret()], getter(pairs), body, now)).toBe('mismatch');
    expect(verifyWebhook([secret], getter(pairs), body, now + 5 * 60_000 + 1_000)).toBe('stale');
    expect(verifyWebhook([secret], getter(pairs.slice(0, 2)), body, now)).toBe('missing');
    expect(verifyWebhook([], getter(pairs), body, now)).toBe('mismatch');
  });

  it('during a rotation an attempt carries two signatures: receivers holding either secret verify', () => {
    const [current, previous] = [newWebhookSecret(), newWebhookSecret()];
    const pairs = signWebhook([current, previous], id, body);
    expect(getter(pairs)('webhook-signature')).toMatch(/^v1,\S+ v1,\S+$/);
    for (const held of [current, previous]) {
      expect(new Webhook(held).verify(body.toString(), asRecord(pairs))).toEqual({ action: 'opened', n: 1 });
      expect(verifyWebhook([held], getter(pairs), body)).toBeNull();
    }
    expect(verifyWebhook([newWebhookSecret()], getter(pairs), body)).toBe('mismatch');
  });
});
