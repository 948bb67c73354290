/**
 * @krkn/tailnet — a Tailscale node inside Node.js, in the spirit of Go's tsnet.
 *
 * ```ts
 * const node = new TailnetNode({ hostname: 'krkns', stateDir: './state/krkns' });
 * await node.up();                        // TS_AUTHKEY, or a login URL at info level
 * await serveFastify(app, node, 80);      // routes on the tailnet address only
 * const res = await tailnetFetch(node, 'http://peer/healthz');
 * await node.close();
 * ```
 */
export { TailnetNode } from './node.js';
export { defaultControlUrl, parseBoolean } from './options.js';
export type { AuthKeyUse, NodeMetrics, TailnetNodeOptions, UpOptions } from './node.js';
export { TailnetError } from './errors.js';
export type { TailnetErrorCode } from './errors.js';
export { TailnetServer } from './server.js';
export type { DroppedConnection, TailnetAddress } from './server.js';
export { TailnetSocket } from './socket.js';
export { defaultListenerLimits, serveFastify, tailnetAgent, tailnetFetch } from './http.js';
export type { ListenerLimits } from './http.js';
export { ReportedWait, formatDuration, nameCollision } from './waits.js';
export type { Diagnosis } from './waits.js';
export type { NodeStatus, PeerStatus, WhoIs, PingResult, RelayRegion } from './status.js';
export { defaultStateDir, ensurePrivateDir, inspectStateDir } from './state.js';
export type { PendingLogin, StateDirView } from './state.js';
export type { Isolation } from './engine/client.js';
export type { BackendState, HealthWarning, SelfInfo } from '@krkn/tailnet-wasm';
