import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { SqliteStore, type DueDelivery, type SqliteStoreOptions } from '@krkn/hub-store';
import type { AttemptOutcome, HubNode, NetmapPeer, SendAttempt } from '@krkn/hub';

/** A real SQLite store in a fresh temp dir; `dispose` closes and removes it. */
export function tempStore(options?: SqliteStoreOptions): { store: SqliteStore; dispose: () => Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'krkn-hub-unit-'));
  const store = SqliteStore.open(join(dir, 'hub.db'), options);
  return {
    store,
    dispose: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const silentLogger: Logger = pino({ level: 'silent' });

/** A node with no engine: its peers are whatever the test sets, and it emits 'peers' on demand. */
export class FakeNode extends EventEmitter<{ peers: [] }> implements HubNode {
  readonly hostname = 'hub';
  readonly self = { name: 'hub.krkn.test' };
  readonly addresses = ['100.64.0.1'];
  readonly state = 'Running';
  loginUrl: string | undefined = undefined;
  peers: NetmapPeer[] = [];
  peersKnown = true;

  async status(): Promise<{ peers: NetmapPeer[]; peersKnown: boolean }> {
    return { peers: this.peers, peersKnown: this.peersKnown };
  }
}

/** One call of a {@link Recorder}'s send. */
export interface Sent {
  event: string;
  subscription: string;
  attempt: number;
  at: number;
  /** The redelivery token the attempt carried, if any. */
  redelivery?: string;
}

/**
 * A SendAttempt that records every call and answers with `answer` (default: delivered 200).
 * With `hold`, each attempt waits until the test calls release().
 */
export class Recorder {
  readonly sent: Sent[] = [];
  answer: (due: DueDelivery, attempt: number) => AttemptOutcome = () => ({ kind: 'delivered', status: 200 });
  hold = false;
  private readonly held: (() => void)[] = [];
  inFlight = 0;
  maxInFlight = 0;

  readonly send: SendAttempt = async (due, attempt, redelivery) => {
    const sent: Sent = { event: due.event.id, subscription: due.subscription.id, attempt, at: Date.now() };
    this.sent.push(redelivery === undefined ? sent : { ...sent, redelivery });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
      return this.answer(due, attempt);
    } finally {
      this.inFlight--;
    }
  };

  /** Lets every held attempt answer. */
  release(): void {
    for (const r of this.held.splice(0)) r();
  }

  get waiting(): number {
    return this.held.length;
  }
}
