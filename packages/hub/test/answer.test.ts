// How a subscriber's HTTP answer maps to an attempt outcome (Standard Webhooks delivery semantics).
import { describe, expect, it } from 'vitest';
import { outcomeOfAnswer, retryAfterMs } from '../src/answer.js';

const now = Date.parse('2026-01-01T00:00:00Z');

describe('outcomeOfAnswer', () => {
  it.each([
    [200, undefined, { kind: 'delivered', status: 200 }],
    [204, '10', { kind: 'delivered', status: 204 }],
    [410, undefined, { kind: 'gone', status: 410 }],
    [429, '7', { kind: 'rejected', status: 429, error: 'HTTP 429', retryAfterMs: 7_000 }],
    [503, 'Thu, 01 Jan 2026 00:02:00 GMT', { kind: 'rejected', status: 503, error: 'HTTP 503', retryAfterMs: 120_000 }],
    [503, 'soon', { kind: 'rejected', status: 503, error: 'HTTP 503' }],
    [500, '7', { kind: 'rejected', status: 500, error: 'HTTP 500' }], // Retry-After only with 429/503
    [404, undefined, { kind: 'rejected', status: 404, error: 'HTTP 404' }],
  ])('%i with Retry-After %s', (status, retryAfter, expected) => {
    expect(outcomeOfAnswer(status, retryAfter, now)).toEqual(expected);
  });
});

describe('retryAfterMs', () => {
  it('reads seconds and HTTP dates; a past date is 0; junk and negatives are ignored', () => {
    expect(retryAfterMs(' 120 ', now)).toBe(120_000);
    expect(retryAfterMs('Wed, 31 Dec 2025 23:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('-5', now)).toBeUndefined();
    expect(retryAfterMs('', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });
});
