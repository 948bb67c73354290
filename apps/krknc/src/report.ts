/** What krknc prints on stdout while it works: one line per event or request, readable or JSON. */

/** One event forwarded (or not) to the local app. */
export interface EventReport {
  topic: string;
  id: string;
  /** krkns's attempt number (listen), absent for replay. */
  attempt?: number;
  /** The local app's status; null when it gave none. */
  status: number | null;
  ms: number;
  error?: string;
  /** Seen before: answered without forwarding. */
  duplicate?: boolean;
  body?: Buffer;
  contentType?: string | null;
}

/** One request a tailnet peer made through `expose`. */
export interface RequestReport {
  caller: string;
  user: string;
  ip: string;
  method: string;
  path: string;
  status: number | null;
  ms: number;
  error?: string;
}

type Out = NodeJS.WritableStream & { isTTY?: boolean };

/** Prints reports as readable lines (coloured on a terminal) or as one JSON object per line. */
export class Reporter {
  private readonly color: boolean;
  // Ids whose body was printed: a retried event shows its payload once, not on every attempt.
  private readonly shown = new Set<string>();

  constructor(
    private readonly out: Out,
    private readonly opts: { json: boolean; printBody?: boolean },
  ) {
    this.color = Boolean(out.isTTY) && !process.env.NO_COLOR;
  }

  event(e: EventReport): void {
    if (this.opts.json) {
      const { body, ...rest } = e;
      this.json({ type: 'event', ...rest, ...(this.opts.printBody && body ? bodyFields(body) : {}) });
      return;
    }
    const result = e.duplicate
      ? this.paint('90', 'duplicate, not forwarded')
      : `→ ${this.status(e.status, e.error)}  ${e.ms}ms`;
    const attempt = e.attempt !== undefined && e.attempt > 1 ? this.paint('90', `  (attempt ${e.attempt})`) : '';
    this.line(`${this.time()}  ${e.topic}  ${this.paint('36', e.id)}  ${result}${attempt}`);
    if (this.opts.printBody && e.body && !e.duplicate && this.firstShow(e.id))
      this.out.write(`${indent(showBody(e.body, e.contentType))}\n`);
  }

  private firstShow(id: string): boolean {
    if (this.shown.has(id)) return false;
    if (this.shown.size >= 10_000) this.shown.clear();
    this.shown.add(id);
    return true;
  }

  request(r: RequestReport): void {
    if (this.opts.json) {
      this.json({ type: 'request', ...r });
      return;
    }
    const who = r.user ? `${r.caller} (${r.user})` : r.caller;
    this.line(
      `${this.time()}  ${this.paint('36', who)}  ${r.method} ${r.path}  → ${this.status(r.status, r.error)}  ${r.ms}ms`,
    );
  }

  /** Something worth one line: the local app went down or came back, a subscription, readiness. */
  notice(
    type: string,
    text: string,
    fields: Record<string, unknown> = {},
    tone: 'ok' | 'warn' | 'info' = 'info',
  ): void {
    if (this.opts.json) {
      this.json({ type, ...fields });
      return;
    }
    const code = tone === 'ok' ? '32' : tone === 'warn' ? '33' : '0';
    this.line(`${this.time()}  ${tone === 'info' ? text : this.paint(code, text)}`);
  }

  /** A result: plain lines (no time) in text mode, one JSON object of `type` otherwise. */
  result(type: string, fields: Record<string, unknown>, lines: string[]): void {
    if (this.opts.json) this.json({ type, ...fields });
    else for (const l of lines) this.line(l);
  }

  private json(obj: Record<string, unknown>): void {
    this.out.write(`${JSON.stringify({ time: new Date().toISOString(), ...obj })}\n`);
  }

  private status(status: number | null, error: string | undefined): string {
    if (status === null) return this.paint('31', error ?? 'failed');
    const code = status < 300 ? '32' : status < 500 ? '33' : '31';
    return this.paint(code, String(status)) + (error ? ` ${this.paint('90', error)}` : '');
  }

  private time(): string {
    return this.paint('90', new Date().toTimeString().slice(0, 8));
  }

  private paint(code: string, s: string): string {
    return this.color ? `\x1b[${code}m${s}\x1b[0m` : s;
  }

  private line(s: string): void {
    this.out.write(`${s}\n`);
  }
}

/** The body as text when it is UTF-8, else base64 (JSON output keeps every byte). */
function bodyFields(body: Buffer): Record<string, string> {
  const text = asText(body);
  return text === undefined ? { bodyBase64: body.toString('base64') } : { body: text };
}

function showBody(body: Buffer, contentType: string | null | undefined): string {
  if (body.length === 0) return '(empty body)';
  const text = asText(body);
  if (text === undefined) return `(${body.length} bytes${contentType ? ` of ${contentType}` : ''}, not text)`;
  if (/json/i.test(contentType ?? '')) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not valid JSON after all: show it as it came
    }
  }
  return text;
}

function asText(body: Buffer): string | undefined {
  const text = body.toString('utf8');
  // Invalid UTF-8 decodes to U+FFFD, control characters other than whitespace mean binary.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point of this check
  return text.includes('\ufffd') || /[\x00-\x08\x0e-\x1f]/.test(text) ? undefined : text;
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
