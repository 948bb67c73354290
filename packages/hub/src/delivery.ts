import type { Logger } from 'pino';
import type { DueDelivery } from '@krkn/hub-store';
import { monotonicClock, type Clock } from './clock.js';
import { asError } from './errors.js';
import type { AttemptEvent } from './events.js';
import type { DeliveryStore } from './ports.js';

/** How one attempt ended. */
export type AttemptOutcome =
  /** The subscriber answered 2xx in time. */
  | { kind: 'delivered'; status: number }
  /**
   * Reached, but it did not accept the event: spends an attempt. `retryAfterMs` is the subscriber's
   * Retry-After with a 429 or 503: the next attempt waits at least that long (up to maxRetryAfterMs).
   */
  | { kind: 'rejected'; status: number | null; error: string; retryAfterMs?: number }
  /** 410 Gone: the subscriber wants no more; its subscription is disabled until it subscribes again. */
  | { kind: 'gone'; status: number }
  /** Not reached at all (offline, no listener, hidden by policy): spends nothing. */
  | { kind: 'unreachable'; error: string }
  /**
   * Not sent: the subscriber's address answers for another node (its own was deleted and the address
   * re-issued). Spends nothing; its queue is held and checked again like an unreachable one's.
   */
  | { kind: 'held'; reason: string }
  /** Not sent: the subscriber may no longer receive this event (its capability was revoked): it fails. */
  | { kind: 'refused'; reason: string };

/**
 * Sends one attempt. krkns posts over the tailnet (tailnetSender); the bench and tests pass their own.
 * `redelivery` is the token of an explicit redelivery (see deliveryHeaders.redelivery), if any.
 */
export type SendAttempt = (due: DueDelivery, attempt: number, redelivery?: string) => Promise<AttemptOutcome>;

export interface DelivererOptions {
  /** Delay before each attempt: [0] is the first (immediately), the last entry is the final try. */
  retryScheduleMs: number[];
  maxConcurrent: number;
  /** Who holds the leases this deliverer takes: the replica's name, unique among replicas on one store. */
  owner: string;
  /**
   * How long a claimed subscription stays leased: longer than an attempt can take (send timeout plus
   * recording), so a live holder never loses it mid-attempt; a dead holder's lease lapses after this.
   */
  leaseMs: number;
  logger: Logger;
  /** Default: a {@link monotonicClock} made with the deliverer. */
  now?: Clock;
  /** Told how each attempt ended, once its outcome is stored (Hub.events 'attempt'). */
  onAttempt?: (e: AttemptEvent) => void;
  /** Draws the jitter of each retry and probe delay, in [0, 1) (default Math.random; tests pin it). */
  random?: () => number;
}

/**
 * Every retry and probe delay is spread by up to this fraction either way, so a fleet of subscribers
 * failing (or coming back) together is not attempted again in one burst.
 */
const retryJitter = 0.2;
/** A subscriber's Retry-After is honoured up to this long; a larger one would park its queue for days. */
const maxRetryAfterMs = 3600e3;

// An unreachable (or held) subscriber is probed again after half the time it has been away, within these bounds.
const minProbeMs = 2_000;
const maxProbeMs = 5 * 60_000;
// Even with nothing due, look again this often (cheap), so a missed kick cannot stall the queue.
const idleCheckMs = 30_000;
// After the store failed to answer, try again this soon.
const storeRetryMs = 1_000;

/**
 * Pushes owed events to subscribers: one attempt in flight per subscriber (so each sees events
 * in receipt order while nothing fails), up to maxConcurrent subscribers at once. A subscriber is
 * attempted only under a lease from the store (claimDue -> attempt -> record, which gives it back), so
 * this holds across several replicas sharing one store too. Time is read with a monotonic clock and
 * waited with setTimeout, so tests drive it with fake timers.
 */
export class Deliverer {
  private readonly busy = new Set<string>();
  /** Subscribers whose attempt settled while a claim was out: set only while launchDue awaits claimDue. */
  private settledDuringClaim: Set<string> | undefined;
  private readonly random: () => number;
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  /** stop() gave up waiting: attempts ending from now on are not recorded. */
  private abandoned = false;
  /** A pass over the store is running; a kick meanwhile asks it for one more pass. */
  private scanning = false;
  private scanAgain = false;
  /**
   * Subscriptions owed a publish made while a pass ran: the pass looks again unless each has an attempt in
   * flight by its end (the pass may just have launched it), whose own end will look.
   */
  private readonly owedDuringPass = new Set<string>();
  /** A kick's pass is queued for the next turn of the event loop. */
  private kicked = false;
  private readonly now: Clock;
  /**
   * Deliveries re-queued on request, by "subscription/event seq", with their redelivery token. Held
   * in memory: after a restart the rest of a redelivery goes out unmarked (see the README).
   */
  private readonly redeliveries = new Map<string, string>();

  constructor(
    private readonly store: DeliveryStore,
    private readonly send: SendAttempt,
    private readonly opts: DelivererOptions,
  ) {
    this.now = opts.now ?? monotonicClock();
    this.random = opts.random ?? Math.random;
  }

  /** Attempts in flight now. */
  get active(): number {
    return this.busy.size;
  }

  start(): void {
    this.stopped = false;
    this.kick();
  }

  /**
   * Look for due deliveries now (after a publish, a subscribe, a peer coming online). A publish names the
   * subscriptions it owes: when each has an attempt in flight here, there is nothing to look for (that
   * attempt's end looks), and a pass would cost a claim, which on PostgreSQL waits out publishes in flight.
   */
  kick(owedTo?: readonly string[]): void {
    if (this.stopped) return;
    if (owedTo?.every((id) => this.busy.has(id))) return;
    // A pass under way looks again before it ends. Left to the timer, the kick could be cleared unfired by
    // that pass as it schedules its next one from what it read before the kick (a lease: up to 30 s idle).
    if (this.scanning) {
      if (owedTo) for (const id of owedTo) this.owedDuringPass.add(id);
      else this.scanAgain = true;
      return;
    }
    if (this.kicked) return;
    this.kicked = true;
    clearTimeout(this.timer);
    // Not setTimeout(0): that waits at least 1 ms, on every delivery of a busy queue (each kicks the next).
    setImmediate(() => {
      this.kicked = false;
      void this.scan();
    });
  }

  /** Marks re-queued deliveries as an explicit redelivery: their attempts carry `token`. */
  markRedelivered(deliveries: { subscriptionId: string; eventSeq: number }[], token: string): void {
    for (const d of deliveries) this.redeliveries.set(`${d.subscriptionId}/${d.eventSeq}`, token);
  }

  /**
   * Stops starting attempts and waits up to timeoutMs for those in flight to end and be recorded. An
   * attempt still in flight then is abandoned: whenever it ends, nothing of it is written (the store
   * may be closed by then), so its delivery stays due and goes out again at the next start.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      Promise.allSettled([...this.inFlight]).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (!drained) this.abandoned = true;
  }

  /**
   * Launches what is due, then sleeps until the next thing is. Passes never overlap: two at once
   * could both read the same head of a queue before either marks its subscriber busy.
   */
  private async scan(): Promise<void> {
    if (this.stopped) return;
    if (this.scanning) {
      this.scanAgain = true;
      return;
    }
    this.scanning = true;
    let wait: number;
    try {
      do {
        this.scanAgain = false;
        this.owedDuringPass.clear();
        await this.launchDue();
        wait = await this.untilNextDue();
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by stop()/scan() across awaits
      } while (this.mustScanAgain() && !this.stopped);
    } catch (err) {
      this.opts.logger.error({ err: asError(err) }, 'cannot read the delivery queue; trying again shortly');
      wait = storeRetryMs;
    } finally {
      this.scanning = false;
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- stop() may run across the awaits
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.scan(), wait);
    this.timer.unref();
  }

  /** Whether a kick during the pass asks for another: any kick but a publish's, or one owed to an idle subscriber. */
  private mustScanAgain(): boolean {
    return this.scanAgain || [...this.owedDuringPass].some((id) => !this.busy.has(id));
  }

  private async launchDue(): Promise<void> {
    const room = this.opts.maxConcurrent - this.busy.size;
    if (room <= 0) return;
    const { claimed, settled } = await this.claim(room);
    const fresh = claimed.filter((d) => !this.busy.has(d.subscription.id));
    const launching = this.stopped ? [] : fresh.filter((d) => !settled.has(d.subscription.id)).slice(0, room);
    for (const d of launching) this.launch(d);
    const skipped = fresh.filter((d) => !launching.includes(d));
    for (const d of skipped) await this.store.releaseLease(d.subscription.id, this.opts.owner);
  }

  /**
   * Claims up to `room` due subscribers, and names those whose attempt settled while the claim was out: a
   * claim reads before it answers (several statements on a networked database), so it may hand one back
   * with the delivery just recorded still due, which would go out twice. That attempt's kick asks for
   * another pass, which claims afresh.
   */
  private async claim(room: number): Promise<{ claimed: DueDelivery[]; settled: Set<string> }> {
    const { owner, leaseMs } = this.opts;
    const settled = new Set<string>();
    this.settledDuringClaim = settled;
    try {
      // claimDue hands our own live leases back too (renewed): ask for those on top, and skip them.
      const claimed = await this.store.claimDue(owner, this.now(), leaseMs, room + this.busy.size);
      return { claimed, settled };
    } finally {
      this.settledDuringClaim = undefined;
    }
  }

  private async untilNextDue(): Promise<number> {
    const next = await this.store.nextDueAt(this.now());
    return next === null ? idleCheckMs : Math.min(idleCheckMs, Math.max(10, next - this.now()));
  }

  private launch(due: DueDelivery): void {
    const sub = due.subscription.id;
    this.busy.add(sub);
    // The outcome's record gives the lease back; if it fails, the lease lapses after leaseMs.
    const p = this.attempt(due)
      .catch((err: unknown) => {
        const fields = { err: asError(err), event: due.event.id, subscription: sub };
        // The delivery stays pending, so it is attempted again: at least once, never lost.
        this.opts.logger.error(fields, 'cannot record a delivery attempt');
      })
      .finally(() => {
        this.busy.delete(sub);
        this.settledDuringClaim?.add(sub);
        this.inFlight.delete(p);
        this.kick();
      });
    this.inFlight.add(p);
  }

  /** Sends one attempt and records its outcome (nothing when stop() abandoned it before it ended). */
  private async attempt(due: DueDelivery): Promise<void> {
    const { delivery, event, subscription } = due;
    const { owner } = this.opts;
    const attempt = delivery.attempts + 1;
    const log = this.opts.logger.child({ event: event.id, subscription: subscription.id, attempt });
    const startedAt = this.now();
    const key = `${subscription.id}/${event.seq}`;
    let outcome: AttemptOutcome;
    try {
      outcome = await this.send(due, attempt, this.redeliveries.get(key));
    } catch (err) {
      outcome = { kind: 'rejected', status: null, error: err instanceof Error ? err.message : String(err) };
    }
    if (this.abandoned) {
      log.warn({ outcome: outcome.kind }, 'attempt ended after the drain timeout: not recorded, it goes out again');
      return;
    }
    const now = this.now();
    const status = 'status' in outcome ? outcome.status : null;
    switch (outcome.kind) {
      case 'delivered':
        await this.store.recordDelivered(subscription.id, event.seq, outcome.status, now, owner);
        this.redeliveries.delete(key);
        log.debug({ status: outcome.status }, 'delivered');
        break;
      case 'rejected': {
        const retryAt = this.retryAt(attempt, now, outcome.retryAfterMs);
        const result = { status: outcome.status, error: outcome.error, retryAt };
        await this.store.recordRejected(subscription.id, event.seq, result, now, owner);
        if (retryAt === null) this.redeliveries.delete(key);
        if (retryAt === null) log.warn({ error: outcome.error }, 'delivery failed for good after the last attempt');
        else log.info({ error: outcome.error, retryInMs: retryAt - now }, 'delivery rejected; will retry');
        break;
      }
      case 'gone': {
        const reason = `the subscriber answered ${outcome.status} Gone: disabled until it subscribes again`;
        await this.store.recordGone(subscription.id, event.seq, outcome.status, reason, now, owner);
        log.warn({ node: subscription.nodeName, status: outcome.status }, reason);
        break;
      }
      case 'unreachable': {
        const probeAt = this.probeAt(subscription.offlineSince, now);
        await this.store.recordUnreachable(subscription.id, event.seq, outcome.error, probeAt, startedAt, now, owner);
        if (subscription.offlineSince === null) {
          const fields = { node: subscription.nodeName, error: outcome.error };
          log.info(fields, 'subscriber unreachable; queueing its events until it is back');
        }
        break;
      }
      case 'held': {
        const probeAt = this.probeAt(subscription.held?.at ?? null, now);
        await this.store.recordHeld(subscription.id, event.seq, outcome.reason, probeAt, startedAt, now, owner);
        if (subscription.held?.reason !== outcome.reason) {
          log.warn(
            { node: subscription.nodeName, reason: outcome.reason },
            'not sent: the target is not the subscriber',
          );
        }
        break;
      }
      case 'refused':
        await this.store.recordRefused(subscription.id, event.seq, outcome.reason, now, owner);
        this.redeliveries.delete(key);
        log.warn(
          { node: subscription.nodeName, reason: outcome.reason },
          'not sent: the subscriber may not receive it',
        );
        break;
    }
    const ended = { outcome: outcome.kind, status, latencyMs: now - startedAt, topic: event.topic, eventId: event.id };
    try {
      this.opts.onAttempt?.(ended);
    } catch (err) {
      // The outcome is stored (and the lease given back): a failing listener must not pass for a failed recording.
      log.error({ err: asError(err) }, 'a listener of delivery attempts failed');
    }
  }

  /**
   * When attempt number `attempt + 1` is due, or null when `attempt` was the last: the scheduled delay,
   * jittered, and never sooner than the subscriber's Retry-After (bounded by maxRetryAfterMs).
   */
  private retryAt(attempt: number, now: number, retryAfterMs = 0): number | null {
    const delay = this.opts.retryScheduleMs[attempt];
    if (delay === undefined) return null;
    return now + Math.max(this.jittered(delay), Math.min(retryAfterMs, maxRetryAfterMs));
  }

  /** When to look again at a subscriber not reached (or held) since `since`: after half that time, bounded. */
  private probeAt(since: number | null, now: number): number {
    const away = since === null ? 0 : now - since;
    return now + this.jittered(Math.min(maxProbeMs, Math.max(minProbeMs, away / 2)));
  }

  /** `ms` spread uniformly over ±retryJitter of itself. */
  private jittered(ms: number): number {
    return Math.round(ms * (1 + retryJitter * (2 * this.random() - 1)));
  }
}
