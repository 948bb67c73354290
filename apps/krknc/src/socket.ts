import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { adminRoutes, listenAdminSocket } from '@krkn/cli-kit';
import type { DoctorInput } from '@krkn/doctor';
import type { NodeStatus, TailnetNode } from '@krkn/tailnet';

/** What `listen` reports about itself on its admin socket. */
export interface ListenInfo {
  server: string;
  topics: string[];
  subscription: string | null;
  listener: string;
  forwardTo: string;
  once: boolean;
  forwarded: number;
  failed: number;
  duplicates: number;
  localApp: 'unknown' | 'up' | 'down';
  localDownSince?: string;
}

/** What `expose` reports about itself on its admin socket. */
interface ExposeInfo {
  listener: string;
  forwardTo: string;
  requests: number;
}

/** `GET /admin/status` of a running krknc. */
export interface RunningStatus {
  pid: number;
  command: 'listen' | 'expose';
  startedAt: string;
  node: NodeStatus;
  loginUrl?: string;
  listen?: ListenInfo;
  expose?: ExposeInfo;
}

/** What the admin socket of a long-running command serves from. */
export interface AdminSocketOptions {
  node: TailnetNode;
  command: RunningStatus['command'];
  info: () => Pick<RunningStatus, 'listen' | 'expose'>;
  /** Called after a logout: the command stops. */
  stop: () => void;
  /** The doctor's input, as this command sees it. */
  doctor: () => DoctorInput;
  log: Logger;
}

/**
 * The local admin socket of `listen` and `expose` (mode 0600, in the state directory). The running
 * command holds the node's state lock, so other krknc commands on the same state directory use its
 * node through this socket instead of their own: status, TSMP ping, HTTP to a tailnet peer
 * (`/admin/tailnet/<host[:port]>/<path>`), logout.
 */
export async function serveAdminSocket(opts: AdminSocketOptions, path: string): Promise<FastifyInstance> {
  // Room for what a short command sends to a tailnet peer through the proxy (krknc send's body).
  const app = Fastify({ bodyLimit: 64 << 20 });
  const startedAt = new Date().toISOString();
  const status = async (): Promise<RunningStatus> => ({
    pid: process.pid,
    command: opts.command,
    startedAt,
    node: await opts.node.status(),
    ...(opts.node.loginUrl ? { loginUrl: opts.node.loginUrl } : {}),
    ...opts.info(),
  });
  const { node, doctor, stop, log } = opts;
  await app.register(adminRoutes, { node, doctor, stop, log, status, tailnetProxy: true });
  await listenAdminSocket(app, path);
  return app;
}
