import { setTimeout as sleep } from 'node:timers/promises';
import { TestnetError } from './errors.js';

export { sleep };

/** Options for {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. */
  timeoutMs: number;
  /** Pause between attempts, in milliseconds (default 200). */
  intervalMs?: number;
  /** What we are waiting for, used in the timeout message ("headscale /health", "peer b"). */
  what: string;
  /** Checked before every attempt: when it returns an error, stop waiting and throw that error
   * (e.g. the process we wait for has exited, so waiting longer is pointless). */
  giveUpIf?: () => Error | undefined;
}

/**
 * Calls `probe` until it returns something other than `undefined`, and returns that.
 * A probe that throws counts as "not yet"; its last error is kept as the cause of the timeout,
 * so a wait that never succeeds still says why.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    const fatal = options.giveUpIf?.();
    if (fatal) throw fatal;
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new TestnetError(
        'TIMEOUT',
        `timed out after ${options.timeoutMs} ms waiting for ${options.what}${why}`,
        {},
        {
          cause: lastError,
        },
      );
    }
    await sleep(options.intervalMs ?? 200);
  }
}

/** Resolves with `promise`, or rejects with a `TIMEOUT` {@link TestnetError} after `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TestnetError('TIMEOUT', `timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
