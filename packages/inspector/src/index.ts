/**
 * @krkn/inspector — the krkns web inspector: a fastify plugin serving server-rendered pages and
 * server-sent events over a narrow view of the hub's use cases. No build step, no client framework.
 *
 * ```ts
 * await api.register(inspectorRoutes, { prefix: '/ui', hub, identify: identifyByWhois(node) });
 * ```
 */
export { inspectorRoutes, pageSize } from './plugin.js';
export type { InspectorHub, InspectorOptions } from './plugin.js';
export { escapeHtml, html } from './html.js';
