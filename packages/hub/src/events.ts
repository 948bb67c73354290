import type { AttemptOutcome } from './delivery.js';

/** A publish as it ended: stored, answered with an earlier event (dedupe), or refused before storing. */
export interface PublishedEvent {
  outcome: 'stored' | 'duplicate' | 'refused';
  topic: string;
  bytes: number;
  /** The event stored (or the earlier one a duplicate names); null when refused. */
  eventId: string | null;
}

/** One delivery attempt as it ended, with how long it took; told once its outcome is stored. */
export interface AttemptEvent {
  outcome: AttemptOutcome['kind'];
  /** The subscriber's HTTP status; null when it gave none (unreachable, timed out). */
  status: number | null;
  latencyMs: number;
  topic: string;
  eventId: string;
}

/**
 * What the hub reports as it works (Hub.events). Observers such as @krkn/metrics and the inspector's
 * live views listen; the hub
 * never waits for them, and a listener that throws is the listener's bug, not a failed publish.
 */
export interface HubEventMap {
  published: [PublishedEvent];
  attempt: [AttemptEvent];
  /** stop() began: live views end their streams. */
  closing: [];
}
