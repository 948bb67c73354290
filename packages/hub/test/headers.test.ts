// Which key makes a publish idempotent (see dedupeHeaders in @krkn/hub-api).
import { describe, expect, it } from 'vitest';
import { dedupeKeyOf } from '../src/headers.js';

const stripeBody = Buffer.from(JSON.stringify({ id: 'evt_1Nabc', type: 'invoice.paid' }));

describe('dedupeKeyOf', () => {
  it.each<[string, [string, string][], Buffer, string | undefined]>([
    ['Idempotency-Key, any case', [['Idempotency-Key', ' k1 ']], Buffer.from('{}'), 'idempotency-key:k1'],
    ['X-GitHub-Delivery', [['X-GitHub-Delivery', 'd-1']], Buffer.from('{}'), 'x-github-delivery:d-1'],
    [
      'Idempotency-Key before X-GitHub-Delivery',
      [
        ['x-github-delivery', 'd'],
        ['idempotency-key', 'k'],
      ],
      Buffer.alloc(0),
      'idempotency-key:k',
    ],
    ['a Stripe-signed body by its event id', [['Stripe-Signature', 't=1,v1=x']], stripeBody, 'stripe:evt_1Nabc'],
    ['a Stripe-signed body that is not JSON', [['Stripe-Signature', 't=1,v1=x']], Buffer.from('nope'), undefined],
    ['a Stripe-like id without the signature header', [], stripeBody, undefined],
    ['an empty Idempotency-Key', [['idempotency-key', '  ']], Buffer.alloc(0), undefined],
  ])('%s', (_name, headers, body, expected) => {
    expect(dedupeKeyOf(headers, body)).toBe(expected);
  });
});
