import type { ErrorBody, HubErrorCode } from '@krkn/hub-api';
import { StoreError, type StoreErrorCode } from '@krkn/hub-store';

/**
 * The HTTP status of every error krkns answers with: the one place a status is chosen (the model
 * is fastify's lib/errors.js, where each code carries its status).
 */
const httpStatusOf = {
  BAD_REQUEST: 400,
  BAD_TOPIC: 400,
  TOO_MANY_TOPICS: 400,
  UNKNOWN_CALLER: 403,
  MISSING_CAPABILITY: 403,
  FORBIDDEN_TARGET: 403,
  NOT_YOURS: 403,
  CROSS_SITE: 403,
  NOT_FOUND: 404,
  EVENT_NOT_FOUND: 404,
  SUBSCRIPTION_NOT_FOUND: 404,
  // The node holds as many subscriptions as --max-subscriptions-per-node allows: a conflict with what it
  // holds (delete one first), not a rate (429 would invite retrying the same request).
  SUBSCRIPTION_LIMIT: 409,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MISDIRECTED_HOST: 421,
  TOO_MANY_REQUESTS: 429,
  INTERNAL: 500,
  SHUTTING_DOWN: 503,
  STORE_UNAVAILABLE: 503,
  INSUFFICIENT_STORAGE: 507,
  STORE_LIMIT: 507,
} as const satisfies Record<HubErrorCode, number>;

/** An error krkns answers with: a stable code, whose HTTP status is {@link httpStatusOf}. */
export class HubError extends Error {
  override readonly name = 'HubError';
  constructor(
    readonly code: HubErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get status(): number {
    return httpStatusOf[this.code];
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

// fastify's own client errors that have a code of ours; any other 4xx of fastify's is BAD_REQUEST.
const fastifyCodes: Readonly<Record<string, HubErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
};

// Store failures that are not a bug: nothing was committed, and the same call may succeed later. No
// message: the store's own, which names the limit.
const storeAnswers: Partial<Record<StoreErrorCode, { code: HubErrorCode; message?: string }>> = {
  UNAVAILABLE: {
    code: 'STORE_UNAVAILABLE',
    message: 'the event store is unavailable; nothing was stored, retry shortly',
  },
  FULL: {
    code: 'INSUFFICIENT_STORAGE',
    message: "the event store's disk is full; nothing was stored, retry once the operator frees space",
  },
  SUBSCRIPTION_LIMIT: { code: 'SUBSCRIPTION_LIMIT' },
};

/**
 * The answer for anything a route threw: a HubError as is, a client error of fastify's (bad JSON,
 * body too large) by its code, a store that went away (STORE_UNAVAILABLE), ran out of disk
 * (INSUFFICIENT_STORAGE) or refused a node's next subscription (SUBSCRIPTION_LIMIT) as such (nothing
 * was committed), anything else an INTERNAL error whose details stay in the log.
 */
export function toHubError(err: unknown): HubError {
  if (err instanceof HubError) return err;
  const storeAnswer = err instanceof StoreError ? storeAnswers[err.code] : undefined;
  if (storeAnswer) return new HubError(storeAnswer.code, storeAnswer.message ?? (err as Error).message, { cause: err });
  const { code, statusCode, message } = (err ?? {}) as { code?: unknown; statusCode?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : String(err);
  const known = typeof code === 'string' ? fastifyCodes[code] : undefined;
  if (known !== undefined) return new HubError(known, text, { cause: err });
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return new HubError('BAD_REQUEST', text, { cause: err });
  }
  return new HubError('INTERNAL', 'internal error; see the krkns log', { cause: err });
}

/** `err` as an Error, for the `err` key of a log line (pino serialises Errors only). */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
