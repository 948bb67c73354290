import { request, type Agent } from 'node:http';
import type { Logger } from 'pino';
import { deliveryHeaders } from '@krkn/hub-api';
import type { DueDelivery, HubStore } from '@krkn/hub-store';
import { TailnetError } from '@krkn/tailnet';
import { endToEndHeaders } from '@krkn/hub-api';

/** How one attempt ended. */
export type AttemptOutcome =
  /** The subscriber answered 2xx in time. */
  | { kind: 'delivered'; status: number }
  /** Reached, but it did not accept the event: spends an attempt. */
  | { kind: 'rejected'; status: number | null; error: string }
  /** Not reached at all (offline, no listener, hidden by policy): spends nothing. */
  | { kind: 'unreachable'; error: string };

/** Sends one attempt. The default posts over the tailnet; tests may pass their own. */
export type SendAttempt = (due: DueDelivery, attempt: number) => Promise<AttemptOutcome>;

export interface DelivererOptions {
  /** Delay before each attempt: [0] is the first (immediately), the last entry is the final try. */
  retryScheduleMs: number[];
  maxConcurrent: number;
  logger: Logger;
}

// An unreachable subscriber is probed again after half the time it has been away, within these bounds.
const minProbeMs = 2_000;
const maxProbeMs = 5 * 60_000;
// Even with nothing due, look again this often (cheap), so a missed kick cannot stall the queue.
const idleCheckMs = 30_000;

/**
 * Pushes owed events to subscribers: one attempt in flight per subscriber (so each sees events
 * in receipt order while nothing fails), up to maxConcurrent subscribers at once.
 */
export class Deliverer {
  private readonly busy = new Set<string>();
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(
    private readonly store: HubStore,
    private readonly send: SendAttempt,
    private readonly opts: DelivererOptions,
  ) {}

  /** Attempts in flight now. */
  get active(): number {
    return this.busy.size;
  }

  start(): void {
    this.stopped = false;
    this.kick();
  }

  /** Look for due deliveries now (after a publish, a subscribe, a peer coming online). */
  kick(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), 0);
  }

  /** Stops starting attempts and waits up to timeoutMs for those in flight. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const all = Promise.allSettled([...this.inFlight]);
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  private tick(): void {
    if (this.stopped) return;
    const room = this.opts.maxConcurrent - this.busy.size;
    const due = room > 0 ? this.store.dueDeliveries(Date.now(), this.busy, room) : [];
    for (const d of due) this.launch(d);
    this.scheduleNext();
  }

  private scheduleNext(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const next = this.store.nextDueAt();
    const wait = next === null ? idleCheckMs : Math.min(idleCheckMs, Math.max(10, next - Date.now()));
    this.timer = setTimeout(() => this.tick(), wait);
    this.timer.unref();
  }

  private launch(due: DueDelivery): void {
    const sub = due.subscription.id;
    this.busy.add(sub);
    const p = this.attempt(due).finally(() => {
      this.busy.delete(sub);
      this.inFlight.delete(p);
      this.kick();
    });
    this.inFlight.add(p);
  }

  private async attempt(due: DueDelivery): Promise<void> {
    const { delivery, event, subscription } = due;
    const attempt = delivery.attempts + 1;
    const log = this.opts.logger.child({ event: event.id, subscription: subscription.id, attempt });
    const startedAt = Date.now();
    let outcome: AttemptOutcome;
    try {
      outcome = await this.send(due, attempt);
    } catch (err) {
      outcome = { kind: 'rejected', status: null, error: (err as Error).message };
    }
    const now = Date.now();
    switch (outcome.kind) {
      case 'delivered':
        this.store.recordDelivered(subscription.id, event.seq, outcome.status, now);
        log.debug({ status: outcome.status }, 'delivered');
        break;
      case 'rejected': {
        const schedule = this.opts.retryScheduleMs;
        const retryAt = attempt < schedule.length ? now + schedule[attempt]! : null;
        this.store.recordRejected(subscription.id, event.seq, { status: outcome.status, error: outcome.error, retryAt }, now);
        if (retryAt === null) log.warn({ error: outcome.error }, 'delivery failed for good after the last attempt');
        else log.info({ error: outcome.error, retryInMs: retryAt - now }, 'delivery rejected; will retry');
        break;
      }
      case 'unreachable': {
        const away = subscription.offlineSince === null ? 0 : now - subscription.offlineSince;
        const probeAt = now + Math.min(maxProbeMs, Math.max(minProbeMs, away / 2));
        this.store.recordUnreachable(subscription.id, event.seq, outcome.error, probeAt, startedAt, now);
        if (subscription.offlineSince === null) {
          log.info({ node: subscription.nodeName, error: outcome.error }, 'subscriber unreachable; queueing its events until it is back');
        }
        break;
      }
    }
  }
}

/** Dial errors that mean "the subscriber is not there", as opposed to "it said no". */
const unreachableCodes = new Set(['UNKNOWN_PEER', 'TIMEOUT', 'DIAL_FAILED', 'NOT_RUNNING']);

/**
 * Posts one attempt over the tailnet to the subscriber's own address, with the original headers
 * and body, and the krkn headers (event id, topic, attempt). Success is a 2xx within timeoutMs.
 */
export function tailnetSender(agent: Agent, timeoutMs: number): SendAttempt {
  return ({ event, subscription }, attempt) =>
    new Promise<AttemptOutcome>((resolve) => {
      let connected = false;
      // A flat [name, value, ...] list: names keep their case, repeated headers stay separate.
      // (Node adds no Host header to a list like this, so it is the first entry.)
      const headers = [
        ['Host', `${subscription.address}:${subscription.port}`],
        ...endToEndHeaders(event.headers).filter(([k]) => !k.toLowerCase().startsWith('x-krkn-')),
        [deliveryHeaders.eventId, event.id],
        [deliveryHeaders.topic, event.topic],
        [deliveryHeaders.attempt, String(attempt)],
        [deliveryHeaders.sender, event.sender.node],
        [deliveryHeaders.receivedAt, new Date(event.receivedAt).toISOString()],
        ['content-length', String(event.body.length)],
      ].flat();
      const req = request({
        host: subscription.address,
        port: subscription.port,
        path: subscription.path,
        method: 'POST',
        agent,
        headers,
        signal: AbortSignal.timeout(timeoutMs),
      });
      req.on('socket', () => (connected = true));
      req.on('response', (res) => {
        res.resume(); // the answer's body is not ours to keep
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          resolve(status >= 200 && status < 300 ? { kind: 'delivered', status } : { kind: 'rejected', status, error: `HTTP ${status}` });
        });
        res.on('error', (err) => resolve({ kind: 'rejected', status: res.statusCode ?? null, error: err.message }));
      });
      req.on('error', (err) => {
        const code = err instanceof TailnetError ? err.code : '';
        if (unreachableCodes.has(code) || !connected) resolve({ kind: 'unreachable', error: err.message });
        else if (err.name === 'AbortError') resolve({ kind: 'rejected', status: null, error: `no answer within ${timeoutMs / 1000}s` });
        else resolve({ kind: 'rejected', status: null, error: err.message });
      });
      req.end(event.body);
    });
}
