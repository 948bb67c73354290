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
export { TailnetNode, defaultControlUrl } from './node.js';
export type { AuthKeyUse, TailnetNodeOptions, UpOptions } from './node.js';
export { TailnetError } from './errors.js';
export type { TailnetErrorCode } from './errors.js';
export { TailnetServer } from './server.js';
export type { TailnetAddress } from './server.js';
export { TailnetSocket } from './socket.js';
export { serveFastify, tailnetAgent, tailnetFetch } from './http.js';
export { ReportedWait, formatDuration, nameCollision } from './waits.js';
export type { Diagnosis } from './waits.js';
export type { NodeStatus, PeerStatus, WhoIs, PingResult, RelayRegion } from './status.js';
export {
  FileStateStore,
  StateLock,
  defaultStateDir,
  readPendingLogin,
  loginUrlFileName,
  stateFileName,
} from './state.js';
export type { PendingLogin } from './state.js';
export type { Isolation } from './engine/client.js';
export type { BackendState, HealthWarning, SelfInfo } from '@krkn/tailnet-wasm';
