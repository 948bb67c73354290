import type { AttemptOutcome } from './delivery.js';

/** A publish as it ended: stored, answered with an earlier event (dedupe), or refused before storing. */
export interface PublishedEvent {
  outcome: 'stored' | 'duplicate' | 'refused';
  topic: string;
  bytes: number;
}

/** One delivery attempt as it ended, with how long it took. */
export interface AttemptEvent {
  outcome: AttemptOutcome['kind'];
  /** The subscriber's HTTP status; null when it gave none (unreachable, timed out). */
  status: number | null;
  latencyMs: number;
  topic: string;
}

/**
 * What the hub reports as it works (Hub.events). Observers such as @krkn/metrics listen; the hub
 * never waits for them, and a listener that throws is the listener's bug, not a failed publish.
 */
export interface HubEventMap {
  published: [PublishedEvent];
  attempt: [AttemptEvent];
}
