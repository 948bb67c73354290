import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { usageError } from '@krkn/cli-kit';
import {
  appCss,
  bodyModes,
  defaultMode,
  headersTable,
  html,
  modeLinks,
  parseForm,
  renderBody,
  securityHeaders,
  type BodyMode,
  type Html,
} from '@krkn/inspector';
import type { ForwardResult } from './forward.js';

/** What krknc listen received and what the local app answered. */
export interface Exchange {
  n: number;
  id: string;
  topic: string;
  attempt: number;
  /** Sent again from the inspector rather than delivered by krkns. */
  replay: boolean;
  at: string;
  method: string;
  headers: [string, string][];
  body: Buffer;
  result: ForwardResult;
}

/** Exchanges kept (the oldest go first): the inspector is for looking, not an archive. */
const keptExchanges = 100;
/** Bodies are kept up to this size each, so 100 exchanges stay small. */
const keptBodyBytes = 1 << 20;

/** `--inspect host:port`, loopback only: the inspector shows payloads, so it must not face a network. */
export function parseInspectAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text.trim());
  if (!m) throw usageError(`--inspect: ${JSON.stringify(text)} is not host:port (e.g. 127.0.0.1:4040)`);
  const host = (m[1] ?? m[2])!;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw usageError(`--inspect: port ${port} must be 1-65535`);
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (!loopback) {
    const why = 'the inspector shows payloads, so it listens on 127.0.0.1 or ::1 only';
    throw usageError(`--inspect: ${host} is not a loopback address; ${why}`);
  }
  return { host, port };
}

/**
 * krknc listen's local inspector, like ngrok's :4040: the last deliveries, the local app's answers,
 * and "send to the app again". It listens on loopback only; a request must name that address in its
 * Host header (so a DNS-rebound page cannot read it) and a replay must carry the page's token and
 * come from the page itself (so another site cannot make the browser send one).
 */
export class LocalInspector {
  private readonly exchanges: Exchange[] = [];
  private readonly token = randomBytes(24).toString('base64url');
  private count = 0;

  constructor(private readonly replay: (e: Exchange) => Promise<ForwardResult>) {}

  record(e: Omit<Exchange, 'n' | 'at'>): void {
    const body = e.body.length > keptBodyBytes ? e.body.subarray(0, keptBodyBytes) : e.body;
    this.exchanges.push({ ...e, body: Buffer.from(body), n: ++this.count, at: new Date().toISOString() });
    if (this.exchanges.length > keptExchanges) this.exchanges.shift();
  }

  /** Serves the inspector on host:port; resolves with the app (close it on exit). */
  async serve(host: string, port: number): Promise<FastifyInstance> {
    const app = Fastify({ bodyLimit: 1024, connectionTimeout: 30_000, requestTimeout: 30_000 });
    const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    app.addHook('onRequest', async (req, reply) => {
      void reply.headers(securityHeaders);
      if (req.headers.host !== authority) {
        return reply.code(421).type('text/plain').send(`this inspector answers to http://${authority}/ only`);
      }
    });
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, parseForm);
    app.get('/app.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(appCss));
    app.get('/', async (_req, reply) => page(reply, 200, 'Deliveries', this.listView()));
    app.get('/exchanges/:n', async (req, reply) => {
      const e = this.find(req);
      const gone = html`<p class="error">No such delivery (the last ${keptExchanges} are kept).</p>`;
      if (!e) return page(reply, 404, 'Not found', gone);
      const asked = (req.query as Record<string, string | undefined>).view;
      const view = bodyModes.find((m) => m === asked) ?? defaultMode(e.body);
      return page(reply, 200, e.id, this.exchangeView(e, view));
    });
    app.post('/exchanges/:n/replay', async (req, reply) => {
      const e = this.find(req);
      if (!e) return page(reply, 404, 'Not found', html`<p class="error">No such delivery.</p>`);
      const refusal = this.refusal(req);
      if (refusal) return page(reply, 403, 'Refused', html`<p class="error">${refusal}</p>`);
      const result = await this.replay(e);
      this.record({ ...e, replay: true, result });
      return reply.code(303).header('location', `/exchanges/${this.count}`).send();
    });
    await app.listen({ host, port });
    return app;
  }

  private find(req: FastifyRequest): Exchange | undefined {
    const n = Number((req.params as { n: string }).n);
    return this.exchanges.find((e) => e.n === n);
  }

  private refusal(req: FastifyRequest): string | undefined {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return `a ${site} request cannot send anything from here`;
    const given = Buffer.from((req.body instanceof URLSearchParams && req.body.get('token')) || '');
    const expected = Buffer.from(this.token);
    const valid = given.length === expected.length && timingSafeEqual(given, expected);
    return valid ? undefined : 'the form token is missing or stale; reload the page';
    return undefined;
  }

  private listView(): Html {
    const rows = [...this.exchanges].reverse().map(
      (e) => html`<tr><td><a href="/exchanges/${e.n}">${e.id}</a>
${e.replay ? html` <span class="state">replay</span>` : ''}
</td>
<td>${e.at}</td><td>${e.topic}</td><td>${e.attempt}</td><td>${e.body.length}</td><td>${outcome(e.result)}</td></tr>`,
    );
    const empty = rows.length ? '' : html`<tr><td colspan="6" class="muted">Nothing delivered yet.</td></tr>`;
    return html`<h1>Deliveries</h1><p class="muted">Newest first; reload to refresh.</p><table><thead><tr><th>Event</th>
<th>Received</th><th>Topic</th><th>Attempt</th><th>Bytes</th><th>Local app</th></tr></thead>
<tbody>${rows}${empty}</tbody></table>`;
  }

  private exchangeView(e: Exchange, view: BodyMode): Html {
    const r = e.result;
    const answer = r.kind === 'answered' ? html`<pre id="answer">${renderBody(r.body, defaultMode(r.body))}</pre>` : '';
    return html`<h1>${e.id}</h1><dl><dt>Topic</dt><dd>${e.topic}</dd><dt>Received</dt><dd>${e.at}</dd>
<dt>Attempt</dt><dd>${e.attempt}${e.replay ? ' (sent again from here)' : ''}</dd>
<dt>Local app</dt><dd id="outcome">${outcome(r)}</dd></dl>
<form method="post" action="/exchanges/${e.n}/replay"><input type="hidden" name="token" value="${this.token}">
<button id="replay">Send to the app again</button></form>
<h2>Request headers</h2>${headersTable(e.headers)}
<h2>Body</h2><p>View as ${modeLinks(view, (m) => `/exchanges/${e.n}?view=${m}`)}</p>
<pre id="body">${renderBody(e.body, view)}</pre><h2>Answer</h2>${answer}`;
  }
}

function outcome(r: ForwardResult): string {
  return r.kind === 'answered' ? `${r.status} in ${r.ms} ms` : `${r.kind}: ${r.error}`;
}

function page(reply: FastifyReply, status: number, title: string, content: Html): FastifyReply {
  const doc = html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title} · krknc</title>
<link rel="stylesheet" href="/app.css"></head>
<body><header><strong>krknc inspector</strong><a href="/">Deliveries</a></header>
<main>${content}</main></body></html>`;
  return reply.code(status).type('text/html; charset=utf-8').send(doc.text);
}
