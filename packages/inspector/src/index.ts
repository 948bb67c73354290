/**
 * @krkn/inspector — the krkns web inspector: a fastify plugin serving server-rendered pages and
 * server-sent events over a narrow view of the hub's use cases. No build step, no client framework.
 *
 * ```ts
 * await api.register(inspectorRoutes, { prefix: '/ui', hub, identify: identifyByWhois(node) });
 * ```
 */
export { inspectorRoutes, pageSize, parseForm, securityHeaders } from './plugin.js';
export type { InspectorHub, InspectorOptions } from './plugin.js';
// The pieces krknc's local inspector shares: escaping templates, body views, the stylesheet.
export { Html, escapeHtml, html } from './html.js';
export { bodyModes, defaultMode, renderBody } from './body-view.js';
export type { BodyMode } from './body-view.js';
export { appCss } from './assets.js';
export { headersTable, modeLinks } from './pages.js';
