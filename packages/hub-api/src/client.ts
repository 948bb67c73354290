import {
  decodeErrorBody,
  type EventDetail,
  EventMeta,
  type HubErrorCode,
  type HubStatus,
  type PublishResponse,
  type SubscribeRequest,
  type SubscriptionInfo,
} from './contract.js';

/** The fetch the client sends with: tailnetFetch bound to a node, or one over the admin socket. */
export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

/** A krkns error answer, or a transport failure (code TRANSPORT). */
export class HubApiError extends Error {
  override readonly name = 'HubApiError';
  constructor(
    readonly code: HubErrorCode | 'TRANSPORT' | 'BAD_RESPONSE',
    message: string,
    readonly status: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Filters for {@link HubClient.listEvents}. */
export interface ListEventsQuery {
  topic?: string;
  /** Events received after this event id. */
  after?: string;
  /** Events received before this event id: with `order: 'newest'`, pages back from the newest. */
  before?: string;
  /** Receipt order (default) or newest first. */
  order?: 'oldest' | 'newest';
  /** Events received at or after this time. */
  since?: Date;
  limit?: number;
}

/** A typed client for the krkns API. `baseUrl` is e.g. `http://krkns` (a MagicDNS name). */
export class HubClient {
  /**
   * @param timeoutMs bound on each call (default 30 s): a krkns that vanished mid-request
   *   (crashed, or its node went offline) must not leave the caller waiting forever.
   */
  constructor(
    readonly baseUrl: string,
    private readonly fetch: FetchLike,
    private readonly timeoutMs = 30_000,
  ) {}

  /** Publishes one event; `body` is sent byte for byte. */
  publish(topic: string, body: Uint8Array | string, headers: Record<string, string> = {}): Promise<PublishResponse> {
    return this.json<PublishResponse>('POST', `/hooks/${topic.split('/').map(encodeURIComponent).join('/')}`, {
      body,
      headers,
    });
  }

  subscribe(req: SubscribeRequest): Promise<SubscriptionInfo> {
    return this.json<{ subscription: SubscriptionInfo }>('POST', '/subscriptions', { json: req }).then(
      (r) => r.subscription,
    );
  }

  listSubscriptions(): Promise<SubscriptionInfo[]> {
    return this.json<{ subscriptions: SubscriptionInfo[] }>('GET', '/subscriptions').then((r) => r.subscriptions);
  }

  unsubscribe(id: string): Promise<void> {
    return this.json<unknown>('DELETE', `/subscriptions/${encodeURIComponent(id)}`).then(() => undefined);
  }

  listEvents(q: ListEventsQuery = {}): Promise<EventMeta[]> {
    const params = new URLSearchParams();
    if (q.topic) params.set('topic', q.topic);
    if (q.after) params.set('after', q.after);
    if (q.before) params.set('before', q.before);
    if (q.order) params.set('order', q.order);
    if (q.since) params.set('since', q.since.toISOString());
    if (q.limit) params.set('limit', String(q.limit));
    return this.json<{ events: EventMeta[] }>('GET', `/events?${params.toString()}`).then((r) => r.events);
  }

  getEvent(id: string): Promise<EventDetail> {
    return this.json<{ event: EventDetail }>('GET', `/events/${encodeURIComponent(id)}`).then((r) => r.event);
  }

  redeliver(id: string): Promise<{ id: string; deliveries: number }> {
    return this.json('POST', `/events/${encodeURIComponent(id)}/redeliver`);
  }

  status(): Promise<HubStatus> {
    return this.json<HubStatus>('GET', '/status');
  }

  private async json<T>(
    method: string,
    path: string,
    opts: { body?: Uint8Array | string; json?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const headers = { ...opts.headers };
    let body: Uint8Array | string | undefined = opts.body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    let res: Response;
    let text: string;
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      res = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        signal,
        ...(body !== undefined ? { body } : {}),
      });
      text = await res.text();
    } catch (err) {
      const why = signal.aborted ? `no answer within ${this.timeoutMs / 1000}s` : (err as Error).message;
      throw new HubApiError('TRANSPORT', `cannot reach ${this.baseUrl}: ${why}`, 0, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      throw new HubApiError(
        'BAD_RESPONSE',
        `${method} ${path}: HTTP ${res.status} with a non-JSON body: ${text.slice(0, 200)}`,
        res.status,
      );
    }
    if (!res.ok) {
      const e = decodeErrorBody(parsed);
      // The code is krkns's to choose: an unknown one is passed on as it came, typed as a HubErrorCode.
      const code = (e?.code as HubErrorCode | undefined) ?? 'BAD_RESPONSE';
      throw new HubApiError(code, e?.message ?? `${method} ${path}: HTTP ${res.status}`, res.status);
    }
    return parsed as T;
  }
}
