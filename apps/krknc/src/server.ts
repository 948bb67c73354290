import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { CliError, ExitCode, usageError } from '@krkn/cli-kit';
import { HubApiError, HubClient } from '@krkn/hub-api';
import { TailnetError, type PeerStatus } from '@krkn/tailnet';
import { ServerWait, serverWaitMs } from './server-wait.js';
import type { Session } from './session.js';

/** A --server value: `krkns`, `krkns.example.ts.net`, `100.64.0.1`, with `:port` if not 80. */
export interface ServerRef {
  host: string;
  port: number;
  /** As given, for messages. */
  text: string;
}

/** A server found among the node's peers. */
export interface ResolvedServer extends ServerRef {
  peer: PeerStatus;
  /** What requests go to: the peer's tailnet IP (no name resolution in the way). */
  baseUrl: string;
  /** `http://<as given>`, for messages. */
  display: string;
}

const label = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
const hostPattern = new RegExp(`^${label}(\\.${label})*\\.?$`, 'i');

/** Parses --server; usage error (exit 2) when absent or malformed. */
export function parseServer(text: string | undefined): ServerRef {
  if (text === undefined || text.trim() === '')
    throw usageError('--server is required (or set KRKNC_SERVER): the krkns node, e.g. --server krkns');
  const t = text.trim();
  const m = /^\[([0-9a-f:.]+)\](?::(\d+))?$/i.exec(t) ?? /^([^:]+)(?::(\d+))?$/.exec(t);
  const host = m?.[1];
  const port = m?.[2] === undefined ? 80 : Number(m[2]);
  if (!host || (!isIP(host) && !hostPattern.test(host)))
    throw usageError(
      `--server: ${JSON.stringify(text)} is not a node name, MagicDNS name or tailnet IP (optionally with :port)`,
    );
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw usageError(`--server: port in ${JSON.stringify(text)} must be 1-65535`);
  return { host: host.replace(/\.$/, ''), port, text: t };
}

/**
 * Parses --server: one krkns, or several replicas of one krkns (sharing a store) separated by commas,
 * tried in the order given. Usage error (exit 2) when absent or any is malformed.
 */
export function parseServers(text: string | undefined): ServerRef[] {
  if (text === undefined || text.trim() === '') return [parseServer(text)];
  const parts = text.split(',');
  if (parts.some((p) => p.trim() === '')) {
    throw usageError(`--server: ${JSON.stringify(text)} has an empty name between commas`);
  }
  return parts.map((part) => parseServer(part));
}

/** Whether a peer is the one a --server names (IP, full MagicDNS name, its first label, or hostname). */
function names(peer: PeerStatus, host: string): boolean {
  const h = host.toLowerCase();
  if (isIP(h)) return peer.addresses.includes(h);
  const dns = peer.dnsName.toLowerCase();
  return dns === h || dns.split('.')[0] === h || peer.hostname.toLowerCase() === h;
}

/**
 * Finds the server among the node's peers. A node that has just come up may not have its whole
 * peer list yet, so it looks again for up to waitMs, saying so (see ServerWait). Not found: exit 4
 * with the likely reasons.
 */
export async function resolveServer(
  session: Session,
  ref: ServerRef,
  log: Logger,
  waitMs = serverWaitMs,
): Promise<ResolvedServer> {
  const deadline = Date.now() + waitMs;
  let wait: ServerWait | undefined;
  try {
    for (;;) {
      const peer = (await session.status()).peers.find((p) => names(p, ref.host));
      if (peer) return resolved(ref, peer);
      wait ??= new ServerWait(log, ref.text);
      if (Date.now() >= deadline) throw wait.notFound();
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    wait?.done();
  }
}

function resolved(ref: ServerRef, peer: PeerStatus): ResolvedServer {
  const ip = isIP(ref.host) ? ref.host : peer.addresses[0];
  if (!ip) throw new CliError(`peer ${peer.dnsName} has no tailnet address`, ExitCode.UNREACHABLE);
  const hostPart = ip.includes(':') ? `[${ip}]` : ip;
  const baseUrl = `http://${hostPart}${ref.port === 80 ? '' : `:${ref.port}`}`;
  return { ...ref, peer, baseUrl, display: `http://${ref.text}` };
}

/**
 * Finds each server among the node's peers, keeping those found in the order given, online ones
 * first. None found: the first one's error (exit 4).
 */
export async function resolveServers(
  session: Session,
  refs: ServerRef[],
  log: Logger,
  waitMs?: number,
): Promise<ResolvedServer[]> {
  const found = await Promise.allSettled(refs.map((ref) => resolveServer(session, ref, log, waitMs)));
  const servers = found.flatMap((f) => (f.status === 'fulfilled' ? [f.value] : []));
  if (servers.length === 0) throw (found[0] as PromiseRejectedResult).reason;
  // A replica the netmap shows offline is tried last: a call to it would only wait for its timeout.
  return [...servers.filter((s) => s.peer.online), ...servers.filter((s) => !s.peer.online)];
}

// Answers after which another replica may well succeed: this one was not reached, is stopping,
// or cannot reach the store. Anything else (a refusal, a bad request) would be the same everywhere.
const failoverCodes: ReadonlySet<string> = new Set(['TRANSPORT', 'SHUTTING_DOWN', 'STORE_UNAVAILABLE']);

/**
 * Calls `fn` on each server in turn until one answers (fail over to the next replica); a refusal is
 * final. Fails with the last server's failure, as a CliError from {@link hubFailure}.
 */
export async function withFailover<T>(
  session: Session,
  servers: ResolvedServer[],
  what: string,
  fn: (hub: HubClient, server: ResolvedServer) => Promise<T>,
  onFailover?: (failed: ResolvedServer, err: Error) => void,
): Promise<{ result: T; server: ResolvedServer }> {
  let last: Error | undefined;
  for (const server of servers) {
    try {
      return { result: await fn(hubFor(session, server), server), server };
    } catch (err) {
      last = hubFailure(err, server, what);
      if (!(err instanceof HubApiError) || !failoverCodes.has(err.code)) throw last;
      if (server !== servers.at(-1)) onFailover?.(server, last);
    }
  }
  throw last ?? new CliError(`${what}: no server to ask`, ExitCode.USAGE);
}

/** A krkns client over the session. */
export function hubFor(session: Session, server: ResolvedServer): HubClient {
  return new HubClient(server.baseUrl, session.fetch);
}

/** Turns a failed krkns call into a one-line message and the exit code that fits it. */
export function hubFailure(err: unknown, server: ResolvedServer, what: string): Error {
  if (!(err instanceof HubApiError)) return err as Error;
  switch (err.code) {
    case 'TRANSPORT': {
      const cause = err.cause instanceof Error ? err.cause : err;
      const why = cause instanceof TailnetError ? `${cause.message} (${cause.code})` : cause.message;
      const offline = server.peer.online ? '' : '; the peer is offline';
      return new CliError(`${what}: cannot reach krkns at ${server.display}: ${why}${offline}`, ExitCode.UNREACHABLE, {
        cause: err,
      });
    }
    case 'SHUTTING_DOWN':
      return new CliError(
        `${what}: krkns at ${server.display} is shutting down; try again shortly`,
        ExitCode.UNREACHABLE,
        { cause: err },
      );
    case 'STORE_UNAVAILABLE': {
      const message = `${what}: krkns at ${server.display} cannot reach its event store; nothing was stored, try again shortly`;
      return new CliError(message, ExitCode.UNREACHABLE, { cause: err });
    }
    case 'BAD_TOPIC':
    case 'BAD_REQUEST':
    case 'BODY_TOO_LARGE':
    case 'UNSUPPORTED_MEDIA_TYPE':
      return new CliError(`${what}: krkns refused the request: ${err.message}`, ExitCode.USAGE, { cause: err });
    case 'BAD_RESPONSE':
      return new CliError(
        `${what}: ${server.display} answered, but not as krkns does (is it krkns, on this port?): ${err.message}`,
        ExitCode.FAILURE,
        { cause: err },
      );
    default:
      return new CliError(`${what}: krkns said ${err.code}: ${err.message}`, ExitCode.FAILURE, { cause: err });
  }
}
