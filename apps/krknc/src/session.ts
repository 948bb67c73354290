import type { Logger } from 'pino';
import { AdminClient, type Flags } from '@krkn/cli-kit';
import type { FetchLike } from '@krkn/hub-api';
import { tailnetAgent, tailnetFetch, type NodeStatus, type PingResult } from '@krkn/tailnet';
import { nodeFlags, pathsIn, stateDirOf } from './config.js';
import { startNode, type OwnNode } from './node.js';
import type { RunningStatus } from './socket.js';

/** A krkns request that gets no answer within this time fails (a dial has its own, shorter, bound). */
const requestTimeoutMs = 30_000;

/**
 * Access to the tailnet for one command: either this process's own node, or the node of a
 * krknc `listen`/`expose` already running on the same state directory (which holds its lock),
 * borrowed through that process's admin socket. Commands do not care which.
 */
export interface Session {
  /** "node krknc-laptop" or "krknc listen (pid 123)", for messages. */
  readonly via: string;
  /** HTTP to a tailnet peer: `http://<peer IP or name>[:port]/path`. */
  fetch: FetchLike;
  status(): Promise<NodeStatus>;
  /** TSMP ping through the tailnet. */
  ping(peer: string): Promise<PingResult>;
  close(): Promise<void>;
}

/** A session over a node this process runs (already up). */
export function ownSession(own: OwnNode): Session {
  const { node } = own;
  const agent = tailnetAgent(node, { dialTimeoutMs: 10_000 });
  return {
    via: `node ${node.hostname}`,
    fetch: (url, init = {}) =>
      tailnetFetch(node, url, { ...init, signal: init.signal ?? AbortSignal.timeout(requestTimeoutMs) }, agent),
    status: () => node.status(),
    ping: (peer) => node.ping(peer, { timeoutMs: 5_000 }),
    close: () => own.dispose(),
  };
}

/** A session over the node of a running krknc, through its admin socket. */
export function borrowedSession(socketPath: string, running: Pick<RunningStatus, 'command' | 'pid'>): Session {
  const admin = new AdminClient(socketPath);
  return {
    via: `krknc ${running.command} (pid ${running.pid})`,
    fetch: admin.tailnetFetch,
    status: async () => (await admin.json<RunningStatus>('GET', '/admin/status')).node,
    ping: (peer) => admin.json<PingResult>('POST', '/admin/ping', { peer }),
    close: async () => undefined,
  };
}

/** What a running krknc on this state directory says about itself, or undefined if none runs. */
export async function runningKrknc(stateDir: string): Promise<RunningStatus | undefined> {
  const admin = new AdminClient(pathsIn(stateDir).adminSocket);
  if (!(await admin.answers())) return undefined;
  return admin.json<RunningStatus>('GET', '/admin/status');
}

/**
 * The session a short command (send, replay, status) uses: the running krknc's node if there is
 * one on this state directory, else a node of its own (which joins, and later leaves, the tailnet).
 */
export async function openSession(flags: Flags<typeof nodeFlags>, log: Logger): Promise<Session> {
  const stateDir = stateDirOf(flags);
  const running = await runningKrknc(stateDir);
  if (running) {
    log.debug({ pid: running.pid, command: running.command }, 'using the node of the running krknc');
    if (flags.ephemeral)
      log.warn(
        { pid: running.pid },
        `--ephemeral ignored: krknc ${running.command} (pid ${running.pid}) runs on this state directory, so its node is used`,
      );
    return borrowedSession(pathsIn(stateDir).adminSocket, running);
  }
  const own = await startNode(flags, log);
  try {
    await own.up;
  } catch (err) {
    await own.dispose();
    throw err;
  }
  return ownSession(own);
}
