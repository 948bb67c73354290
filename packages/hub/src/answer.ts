import type { AttemptOutcome } from './delivery.js';

/** Statuses whose Retry-After is honoured: the subscriber is alive but asks for time. */
const backOffStatuses = new Set([429, 503]);
const goneStatus = 410;

/**
 * What a subscriber's HTTP answer means, as the Standard Webhooks spec reads it: 2xx delivered,
 * 410 Gone disables the subscription, 429/503 may carry a Retry-After, anything else is rejected.
 */
export function outcomeOfAnswer(status: number, retryAfter: string | undefined, now = Date.now()): AttemptOutcome {
  if (status >= 200 && status < 300) return { kind: 'delivered', status };
  if (status === goneStatus) return { kind: 'gone', status };
  const rejected = { kind: 'rejected' as const, status, error: `HTTP ${status}` };
  const wait = backOffStatuses.has(status) ? retryAfterMs(retryAfter, now) : undefined;
  return wait === undefined ? rejected : { ...rejected, retryAfterMs: wait };
}

/**
 * A Retry-After value (RFC 9110: delay-seconds or an HTTP-date) as ms from `now`; undefined when
 * absent or unreadable. A date in the past is 0.
 */
export function retryAfterMs(value: string | undefined, now: number): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // An HTTP-date starts with the day's name; Date.parse alone would read "-5" as the year -5.
  const at = /^[A-Za-z]{3},/.test(v) ? Date.parse(v) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
