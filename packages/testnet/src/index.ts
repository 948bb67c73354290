/**
 * @krkn/testnet — a real local tailnet for end-to-end tests and the demo:
 * an isolated headscale on loopback (embedded DERP, sqlite, MagicDNS) plus native tailscaled peers
 * in userspace-networking mode. Nothing leaves 127.0.0.1 and nothing needs root (but {@link SmallDisk}, a
 * tmpfs mount for full-disk tests).
 *
 * ```ts
 * const tailnet = await startTailnet();
 * const user = await tailnet.createUser('alice');
 * const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
 * const a = await startNativeNode(tailnet, { hostname: 'a', authKey });
 * const b = await startNativeNode(tailnet, { hostname: 'b', authKey });
 * await a.waitForPeer('b');
 * await tailnet.stop(); // stops a and b too
 * ```
 *
 * @packageDocumentation
 */

export { startTailnet, Tailnet, authIdFromLoginUrl } from './tailnet.js';
export type { StartTailnetOptions, PreAuthKeyOptions, Stoppable } from './tailnet.js';
export { startNativeNode, NativeNode } from './native-node.js';
export { startPostgres, Postgres } from './postgres.js';
export type { StartPostgresOptions } from './postgres.js';
export { SmallDisk } from './small-disk.js';
export type { SmallDiskOptions } from './small-disk.js';
export type { StartNativeNodeOptions, PingOptions, PingResult } from './native-node.js';
export type { HeadscaleNode, HeadscaleUser } from './headscale-records.js';
export type { NodeStatus, PeerStatus } from './node-status.js';
export type { TailnetRequestInit, TailnetResponse } from './proxy-fetch.js';
export type { CliResult } from './run.js';
export type { ToolPaths } from './tools.js';
export { TestnetError } from './errors.js';
export type { TestnetErrorCode, TestnetErrorDetails } from './errors.js';
export { waitFor } from './wait.js';
export { tiedToParent } from './children.js';
export type { WaitOptions } from './wait.js';
