import type { Logger } from 'pino';
import {
  AdminClient,
  ExitCode,
  helpText,
  logOutStoredIdentity,
  parseFlags,
  type FlagSpecs,
  type Flags,
} from '@krkn/cli-kit';
import { inspectStateDir, type NodeStatus, type PeerStatus } from '@krkn/tailnet';
import { controlFlags, pathsIn, serverFlag, stateDirOf } from './config.js';
import { krkncNode, loggerFor, startNode } from './node.js';
import { parseServers, resolveServer, type ServerRef } from './server.js';
import { borrowedSession, ownSession, runningKrknc, type Session } from './session.js';
import type { RunningStatus } from './socket.js';

const out = (s: string): void => void process.stdout.write(`${s}\n`);

export const statusFlags = {
  ...controlFlags,
  ...serverFlag,
  offline: {
    type: 'bool',
    env: 'KRKNC_OFFLINE',
    default: false,
    describe: 'only read the state directory; do not bring the node online to list peers and check the server',
  },
} satisfies FlagSpecs;

/** Whether the server answers, as `status` checks it. */
interface ServerCheck {
  server: string;
  peer?: string;
  address?: string;
  online?: boolean;
  pingMs?: number;
  pingError?: string;
  healthz?: number;
  healthzMs?: number;
  healthzError?: string;
  reachable: boolean;
  error?: string;
}

interface StatusReport {
  stateDir: string;
  running: Omit<RunningStatus, 'node' | 'loginUrl'> | null;
  /** A krknc without an admin socket (send, replay, logout) holds the state directory. */
  lockedBy?: number;
  identity: boolean;
  loginUrl?: string;
  loginSince?: string;
  /** Why the node could not be brought online for the checks. */
  onlineError?: string;
  node?: { name: string; addresses: string[]; state: string };
  peers?: { name: string; addresses: string[]; online: boolean; os: string; tags: string[] }[];
  server?: ServerCheck;
}

/**
 * `krknc status`. With a `listen`/`expose` running, it asks that process (over its admin socket)
 * and uses its node for the checks; otherwise it reads the state directory and, if the node has
 * an identity, brings the node up briefly to list peers and check the server (--offline skips it).
 */
export async function status(argv: string[]): Promise<number> {
  const { flags } = parseFlags(statusFlags, argv);
  if (flags.help) {
    return help(
      'krknc status [--server <krkns>] [flags]',
      `Shows the node (identity, pending login URL, addresses, peers), what a running 'krknc listen' or
'expose' is doing, and whether the server is reachable (TSMP ping and GET /healthz).
Works while listen runs (it asks that process) and when nothing runs. Exits 6 if the server check fails.`,
      statusFlags,
    );
  }
  // With several replicas, the first is checked.
  const ref = flags.server ? parseServers(flags.server)[0] : undefined;
  const stateDir = stateDirOf(flags);
  const log = loggerFor(flags, 'status');
  const running = await runningKrknc(stateDir);
  const report: StatusReport = { stateDir, running: null, identity: false };
  let session: Session | undefined;
  if (running) {
    const { node, loginUrl, ...rest } = running;
    Object.assign(report, { running: rest, identity: true, ...(loginUrl ? { loginUrl } : {}) });
    describeNode(report, node);
    session = borrowedSession(pathsIn(stateDir).adminSocket, running);
  } else {
    Object.assign(report, diskState(stateDir));
    if (report.identity && !flags.offline && report.lockedBy === undefined)
      session = await goOnline(flags, report, log);
  }
  try {
    const server = ref ?? (running?.listen?.server ? parseServers(running.listen.server)[0] : undefined);
    if (session && server) report.server = await checkServer(session, server, log);
  } finally {
    await session?.close();
  }
  if (flags.json) out(JSON.stringify(report, null, 2));
  else print(report);
  const failed = (report.server && !report.server.reachable) || (ref && report.onlineError);
  return failed ? ExitCode.CHECK_FAILED : ExitCode.OK;
}

/** What the state directory says when no krknc serves an admin socket on it. */
function diskState(stateDir: string): Pick<StatusReport, 'identity' | 'loginUrl' | 'loginSince' | 'lockedBy'> {
  const { identity, pendingLogin, lockHolder } = inspectStateDir(stateDir);
  const login = pendingLogin ? { loginUrl: pendingLogin.url, loginSince: pendingLogin.since } : {};
  return { identity, ...login, ...(lockHolder !== undefined ? { lockedBy: lockHolder } : {}) };
}

/** Brings the node up to see peers; a node that needs login again is reported, not waited for. */
async function goOnline(
  flags: Flags<typeof statusFlags>,
  report: StatusReport,
  log: ReturnType<typeof loggerFor>,
): Promise<Session | undefined> {
  const own = await startNode({ ...flags, ephemeral: false, tags: [] }, log, { controlTimeoutMs: 10_000 });
  own.node.once('loginUrl', (url) => {
    report.loginUrl = url;
    own.stop.abort();
  });
  try {
    const st = await own.up;
    // A restart is Running from its cached netmap, without peers: the peers are what this is for.
    describeNode(report, st.peersKnown ? st : await own.node.knownPeersStatus());
    return ownSession(own);
  } catch (err) {
    await own.dispose();
    // A node that needs login again: the URL is the news. Otherwise say why, and report the rest.
    if (!report.loginUrl) report.onlineError = (err as Error).message;
    return undefined;
  }
}

function describeNode(report: StatusReport, st: NodeStatus): void {
  report.node = { name: st.self.dnsName || st.self.hostname, addresses: st.self.addresses, state: st.backendState };
  if (!st.peersKnown) return; // "none visible" would be wrong: control has not sent them yet
  report.peers = st.peers.map((p: PeerStatus) => ({
    name: p.dnsName || p.hostname,
    addresses: p.addresses,
    online: p.online,
    os: p.os,
    tags: p.tags,
  }));
}

/** Finds the server among the peers, TSMP-pings it, and asks krkns's GET /healthz. */
async function checkServer(session: Session, ref: ServerRef, log: Logger): Promise<ServerCheck> {
  const check: ServerCheck = { server: ref.text, reachable: false };
  let server;
  try {
    server = await resolveServer(session, ref, log, 1_000);
  } catch (err) {
    check.error = (err as Error).message;
    return check;
  }
  Object.assign(check, {
    peer: server.peer.dnsName,
    address: server.baseUrl.replace(/^http:\/\//, ''),
    online: server.peer.online,
  });
  try {
    check.pingMs = Math.round((await session.ping(server.peer.addresses[0]!)).latencyMs);
  } catch (err) {
    check.pingError = (err as Error).message;
  }
  const started = performance.now();
  try {
    // A node that has just come online may wait for a WireGuard handshake retry (5 s, more on a
    // busy control server) before the first packet gets through: allow for a couple of them.
    const res = await session.fetch(`${server.baseUrl}/healthz`, { signal: AbortSignal.timeout(20_000) });
    await res.arrayBuffer();
    check.healthz = res.status;
    check.healthzMs = Math.round(performance.now() - started);
  } catch (err) {
    check.healthzError = (err as Error).message;
  }
  check.reachable = check.healthz === 200;
  return check;
}

function print(r: StatusReport): void {
  if (r.running) out(`krknc ${r.running.command} is running (pid ${r.running.pid}, since ${r.running.startedAt})`);
  else if (r.lockedBy)
    out(`krknc (pid ${r.lockedBy}) is using this state directory (a send, replay or logout); state in ${r.stateDir}`);
  else out(`krknc is not running (state in ${r.stateDir})`);
  if (!r.running)
    out(
      `  identity:   ${r.identity ? 'registered (no key or login needed to start)' : 'none yet: the first start needs TS_AUTHKEY or an interactive login'}`,
    );
  if (r.loginUrl) out(`  login URL:  ${r.loginUrl}${r.loginSince ? ` (pending since ${r.loginSince})` : ''}`);
  if (r.onlineError) out(`  online:     could not bring the node up to check: ${r.onlineError}`);
  if (r.node)
    out(`  node:       ${r.node.name} (${r.node.addresses.join(', ') || 'no address yet'}) — ${r.node.state}`);
  const l = r.running?.listen;
  if (l) {
    out(`  listener:   ${l.listener}`);
    out(
      `  forwarding: ${l.topics.join(', ')} from ${l.server} to ${l.forwardTo} (subscription ${l.subscription ?? 'none yet'}${l.once ? ', removed on exit' : ''})`,
    );
    out(
      `  events:     ${l.forwarded} forwarded, ${l.failed} failed attempts, ${l.duplicates} duplicates dropped; local app ${l.localApp}${l.localDownSince ? ` since ${l.localDownSince}` : ''}`,
    );
  }
  const e = r.running?.expose;
  if (e) out(`  exposing:   ${e.forwardTo} at ${e.listener} (${e.requests} requests)`);
  if (r.peers)
    out(
      `  peers:      ${r.peers.length === 0 ? 'none visible (is the policy letting this node see any?)' : r.peers.map((p) => `${p.name} (${p.addresses[0] ?? '-'}, ${p.online ? 'online' : 'offline'})`).join(', ')}`,
    );
  const s = r.server;
  if (s) {
    if (s.error) out(`  server:     ${s.server}: ${s.error}`);
    else {
      const ping = s.pingMs !== undefined ? `ping ${s.pingMs}ms` : `ping failed (${s.pingError})`;
      const health =
        s.healthz !== undefined
          ? `GET /healthz ${s.healthz} in ${s.healthzMs}ms`
          : `GET /healthz failed (${s.healthzError})`;
      out(
        `  server:     ${s.peer} (${s.address}): ${ping}, ${health} — ${s.reachable ? 'reachable' : 'NOT reachable'}`,
      );
    }
  }
}

/** `krknc logout`: a running listen/expose logs out and stops; otherwise the node logs out from its state. */
export async function logout(argv: string[]): Promise<number> {
  const { flags } = parseFlags(controlFlags, argv);
  if (flags.help)
    return help(
      'krknc logout [flags]',
      'Logs the node out of the tailnet and discards its identity; the next start needs a key or login again.',
      controlFlags,
    );
  const stateDir = stateDirOf(flags);
  const running = await runningKrknc(stateDir);
  if (running) {
    await new AdminClient(pathsIn(stateDir).adminSocket).logout();
    out(`logged out; krknc ${running.command} (pid ${running.pid}) is stopping`);
    return ExitCode.OK;
  }
  out(await logOutStoredIdentity(stateDir, () => krkncNode(flags, loggerFor(flags, 'logout'))));
  return ExitCode.OK;
}

function help(usage: string, description: string, specs: FlagSpecs): number {
  process.stdout.write(helpText(usage, description, specs));
  return ExitCode.OK;
}
