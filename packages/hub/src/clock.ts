/** Time in ms since the epoch, as the hub reads it. */
export type Clock = () => number;

/**
 * A clock that reads the wall clock once, when made, and advances with the monotonic clock.
 * Retry and probe times are stored as its times and compared with it, so an NTP step or a manual
 * `date -s` while krkns runs neither fires every retry at once nor parks the queue for the size
 * of the jump. A restart reads the wall clock again.
 */
export function monotonicClock(): Clock {
  const origin = Date.now() - performance.now();
  return () => Math.floor(origin + performance.now()); // whole ms: ids and columns are made of it
}
