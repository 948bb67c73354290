import type { EventMeta, SubscriptionInfo } from '@krkn/hub-api';
import type { EventWithBody, SubscriberView } from '@krkn/hub';
import { bodyModes, renderBody, shownBodyBytes, type BodyMode } from './body-view.js';
import { html, type Html } from './html.js';

/** An event's delivery state as one word: the worst of its deliveries. */
export type EventState = 'failed' | 'pending' | 'delivered' | 'none';

export const eventStates: readonly EventState[] = ['failed', 'pending', 'delivered', 'none'];

export function stateOf(e: EventMeta): EventState {
  const states = new Set(e.deliveries.map((d) => d.state));
  if (states.has('failed')) return 'failed';
  if (states.has('pending')) return 'pending';
  return states.has('delivered') ? 'delivered' : 'none';
}

/** The filters of the event list, as given in its query. */
export interface ListFilters {
  topic: string;
  sender: string;
  state: EventState | '';
}

/** The whole page around `content`. */
function layout(prefix: string, title: string, content: Html): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title} · krkns</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${prefix}/app.css"></head>
<body><header><strong>krkns inspector</strong><a href="${prefix}/">Events</a>
<a href="${prefix}/subscribers">Subscribers</a></header>
<main>${content}</main><script src="${prefix}/app.js"></script></body></html>
`;
}

/** One row of the event list; also what the live stream sends. */
export function eventRow(prefix: string, e: EventMeta): Html {
  const state = stateOf(e);
  return html`<tr data-event="${e.id}"><td><a href="${prefix}/events/${encodeURIComponent(e.id)}">${e.id}</a></td>
<td>${e.receivedAt}</td><td>${e.topic}</td><td>${e.sender.node}</td><td>${e.size}</td>
<td><span class="state state-${state}">${state}</span></td></tr>`;
}

export function eventListPage(p: {
  prefix: string;
  filters: ListFilters;
  events: EventMeta[];
  /** The cursor of the next (older) page, when the store holds more. */
  older: string | undefined;
  /** Where live rows come from: only the first page (the newest events) grows. */
  stream: string | undefined;
}): Html {
  const { prefix, filters } = p;
  const anyState = html`<option value="">any state</option>`;
  const stateOptions = [anyState, ...eventStates.map((s) => option(s, s, filters.state))];
  const rows = p.events.map((e) => eventRow(prefix, e));
  const empty = rows.length ? '' : html`<tr id="no-events"><td colspan="6" class="muted">No events yet.</td></tr>`;
  const query = (before: string) => new URLSearchParams({ ...filters, before }).toString();
  const newest = `${prefix}/?${new URLSearchParams({ ...filters }).toString()}`;
  return layout(
    prefix,
    'Events',
    html`<h1>Events</h1>
<form class="filters" method="get" action="${prefix}/">
<input name="topic" placeholder="topic or pattern (ci/*)" value="${filters.topic}">
<input name="sender" placeholder="sender node or address" value="${filters.sender}">
<select name="state">${stateOptions}</select><button>Filter</button></form>
<table><thead><tr><th>Event</th><th>Received</th><th>Topic</th><th>Sender</th><th>Bytes</th><th>State</th></tr></thead>
<tbody ${p.stream === undefined ? '' : html`data-stream="${p.stream}"`}>${rows}${empty}</tbody></table>
<nav class="pages">${pageLinks(p.stream !== undefined, p.older && `${prefix}/?${query(p.older)}`, newest)}</nav>`,
  );
}

function pageLinks(live: boolean, olderHref: string | undefined, newestHref: string): Html {
  const head = live
    ? html`<span class="muted">Newest first; new events appear at the top as they arrive.</span> `
    : html`<a href="${newestHref}">← Newest events</a> `;
  return html`${head}${olderHref === undefined ? '' : html`<a href="${olderHref}">Older events →</a>`}`;
}

export function eventPage(p: {
  prefix: string;
  event: EventWithBody;
  mode: BodyMode;
  subscriptions: SubscriptionInfo[];
  csrfToken: string;
  /** Where the timeline's live updates come from. */
  stream: string;
}): Html {
  const { prefix, event: e, mode } = p;
  const base = `${prefix}/events/${encodeURIComponent(e.id)}`;
  const cut = e.body.length > shownBodyBytes ? html`<p class="muted">First ${shownBodyBytes} bytes shown.</p>` : '';
  return layout(
    prefix,
    e.id,
    html`<h1>${e.id}</h1>
<dl><dt>Topic</dt><dd>${e.topic}</dd><dt>Received</dt><dd>${e.receivedAt}</dd>
<dt>Sender</dt><dd>${e.sender.node} (${e.sender.ip}), user ${e.sender.user}${e.sender.tags.map((t) => `, ${t}`)}</dd>
<dt>Size</dt><dd>${e.size} bytes</dd><dt>Content type</dt><dd>${e.contentType ?? '(none)'}</dd>
<dt>Dedupe key</dt><dd>${e.dedupeKey ?? '(none)'}</dd></dl>
<h2>Deliveries</h2><div id="timeline" data-stream="${p.stream}">${timeline(e, p.subscriptions)}</div>
<form method="post" action="${base}/redeliver"><input type="hidden" name="csrf" value="${p.csrfToken}">
<button id="redeliver">Redeliver to your own matching subscriptions</button></form>
<h2>Headers</h2>${headersTable(e.headers)}
<h2>Body</h2><p>View as ${modeLinks(mode, (m) => `${base}?view=${m}`)}</p>${cut}
<pre id="body">${renderBody(e.body, mode)}</pre>`,
  );
}

/** Each subscriber's delivery of one event; also what the event page's live stream sends. */
export function timeline(e: EventMeta, subscriptions: SubscriptionInfo[]): Html {
  if (e.deliveries.length === 0) return html`<p class="muted">No subscriber matched this event.</p>`;
  const nameOf = (id: string) => subscriptions.find((s) => s.id === id)?.node ?? id;
  const rows = e.deliveries.map(
    (d) => html`<tr><td>${nameOf(d.subscriptionId)}</td><td><span class="state state-${d.state}">${d.state}</span></td>
<td>${d.attempts}</td><td>${d.lastStatus ?? ''}</td><td class="error">${d.lastError ?? ''}</td>
<td>${d.nextAttemptAt ?? ''}</td></tr>`,
  );
  return html`<table id="deliveries"><thead><tr><th>Subscriber</th><th>State</th><th>Attempts</th><th>Last status</th>
<th>Last error</th><th>Next attempt</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function subscribersPage(prefix: string, subscriptions: SubscriberView[]): Html {
  const rows = subscriptions.map((s) => {
    return html`<tr><td>${s.node}</td><td>${s.address}:${s.port}${s.path}</td><td>${s.topics.join(', ')}</td>
<td>${subscriberState(s)}</td>
<td>${s.pending}</td><td>${s.lastDeliveredAt ?? 'never'}</td><td>${s.createdAt}</td></tr>`;
  });
  const empty = rows.length ? '' : html`<tr><td colspan="7" class="muted">No subscriptions you may see.</td></tr>`;
  return layout(
    prefix,
    'Subscribers',
    html`<h1>Subscribers</h1><table><thead><tr><th>Node</th><th>Target</th><th>Topics</th><th>State</th><th>Backlog</th>
<th>Last success</th><th>Subscribed</th></tr></thead><tbody>${rows}${empty}</tbody></table>`,
  );
}

/** Online, offline since when, or held since when and why (its address answers for another node). */
function subscriberState(s: SubscriberView): Html {
  if (s.held !== null) {
    return html`<span class="state state-held">held since ${s.held.at}</span>
<span class="error">${s.held.reason}</span>`;
  }
  const online = s.offlineSince === null;
  const state = online ? 'online' : `offline since ${s.offlineSince}`;
  return html`<span class="state state-${online ? 'online' : 'offline'}">${state}</span>`;
}

/** Header name/value pairs as received, as a table of text. */
export function headersTable(headers: [string, string][]): Html {
  const rows = headers.map(([k, v]) => html`<tr><td><code>${k}</code></td><td><code>${v}</code></td></tr>`);
  return html`<table><tbody>${rows}</tbody></table>`;
}

/** Links to the other body views; the current one in bold. */
export function modeLinks(current: BodyMode, hrefFor: (m: BodyMode) => string): Html {
  const link = (m: BodyMode): Html =>
    m === current ? html`<strong>${m}</strong> ` : html`<a href="${hrefFor(m)}">${m}</a> `;
  return html`${bodyModes.map(link)}`;
}

export function errorPage(prefix: string, status: number, code: string, message: string): Html {
  return layout(prefix, `${status}`, html`<h1>${status} ${code}</h1><p class="error">${message}</p>`);
}

function option(value: string, label: string, selected: string): Html {
  return html`<option value="${value}"${value === selected ? html` selected` : ''}>${label}</option>`;
}
