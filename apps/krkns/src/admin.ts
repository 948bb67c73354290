import { existsSync } from 'node:fs';
import {
  AdminClient,
  CliError,
  ExitCode,
  createLogger,
  helpText,
  logOutStoredIdentity,
  parseFlags,
  type FlagSpecs,
  type Flags,
} from '@krkn/cli-kit';
import { HubClient, type EventMeta, type HubStatus, type ReplicaStatus } from '@krkn/hub-api';
import type { StoreStats } from '@krkn/hub-store';
import { inspectStateDir } from '@krkn/tailnet';
import { commonFlags, controlFlags, pathsIn, stateDirOf, statusFlags, type storeFlags } from './config.js';
import { krknsNode } from './node.js';
import { openHubStore } from './store.js';

/** The running daemon's admin socket. */
function adminSocket(stateDir: string): AdminClient {
  return new AdminClient(pathsIn(stateDir).adminSocket);
}

/** The krkns API of the running daemon, over its admin socket. */
function hubOverAdminSocket(stateDir: string): HubClient {
  return new HubClient('http://admin', adminSocket(stateDir).fetch);
}

const out = (s: string): void => void process.stdout.write(`${s}\n`);

/** `krkns status`: from the running daemon, or from the state on disk when it is not running. */
export async function status(argv: string[]): Promise<number> {
  const { flags } = parseFlags(statusFlags, argv);
  if (flags.help)
    return help(
      'krkns status [flags]',
      'Shows the node, its listener, storage and delivery queue; works when krkns is stopped too.',
      statusFlags,
    );
  const stateDir = stateDirOf(flags);
  if (await adminSocket(stateDir).answers()) {
    const st = await hubOverAdminSocket(stateDir).status();
    if (flags.json) out(JSON.stringify({ running: true, ...st }, null, 2));
    else printStatus(st);
    return ExitCode.OK;
  }
  const offline = await offlineStatus(flags, stateDir);
  if (flags.json) out(JSON.stringify({ running: false, ...offline }, null, 2));
  else {
    out(`krkns is not running (state in ${stateDir})`);
    out(
      `  identity:   ${offline.identity ? 'registered (no key or login needed to start)' : 'none yet: the first start needs TS_AUTHKEY or an interactive login'}`,
    );
    if (offline.loginUrl) out(`  login URL:  ${offline.loginUrl} (pending since ${offline.loginSince})`);
    if (offline.queue)
      out(
        `  events:     ${offline.queue.events} stored, ${offline.queue.pending} deliveries pending, ${offline.queue.failed} failed`,
      );
  }
  return ExitCode.OK;
}

async function offlineStatus(flags: Flags<typeof storeFlags>, stateDir: string) {
  const { identity, pendingLogin } = inspectStateDir(stateDir);
  const queue = await storedQueue(flags, stateDir);
  const login = pendingLogin ? { loginUrl: pendingLogin.url, loginSince: pendingLogin.since } : {};
  return { stateDir, identity, ...login, ...(queue ? { queue } : {}) };
}

/** The store's figures, or undefined when the default SQLite file was never created. */
async function storedQueue(flags: Flags<typeof storeFlags>, stateDir: string): Promise<StoreStats | undefined> {
  if (flags.store === 'sqlite' && !existsSync(pathsIn(stateDir).db)) return undefined;
  const store = await openHubStore(flags, stateDir);
  try {
    return await store.stats();
  } finally {
    await store.close();
  }
}

function printStatus(st: HubStatus): void {
  out(`krkns is running`);
  out(`  node:       ${st.node.name} (${st.node.addresses.join(', ') || 'no address yet'}) — ${st.node.state}`);
  if (st.loginUrl) out(`  login URL:  ${st.loginUrl}`);
  if (st.listener) out(`  listener:   ${st.listener}`);
  const { subscriptions, offlineSubscriptions: offline, disabledSubscriptions: disabled } = st.storage;
  const held = `${st.storage.heldSubscriptions} held (address answers for another node)`;
  const subs = `${subscriptions} subscription(s) (${offline} offline, ${held}, ${disabled} disabled by 410 Gone)`;
  out(`  storage:    ${st.storage.events} events, ${subs}, ${(st.storage.databaseBytes / 1e6).toFixed(1)} MB`);
  for (const r of st.replicas) out(`  replica:    ${replicaLine(r)}`);
  out(
    `  queue:      ${st.queue.pending} pending, ${st.queue.inFlight} in flight, ${st.queue.delivered} delivered, ${st.queue.failed} failed` +
      (st.queue.oldestPendingAt ? `, oldest pending since ${st.queue.oldestPendingAt}` : ''),
  );
}

function replicaLine(r: ReplicaStatus): string {
  const state = r.alive ? 'alive' : `gone (last seen ${r.seenAt})`;
  const name = `${r.name}${r.self ? ' (this one)' : ''}`;
  return `${name}: ${state}, holds ${r.leases} subscriber lease(s), started ${r.startedAt}`;
}

/** `krkns logout`: the running daemon logs out and stops; a stopped one is logged out from its state. */
export async function logout(argv: string[]): Promise<number> {
  const { flags } = parseFlags(controlFlags, argv);
  if (flags.help) {
    const what =
      'Logs the node out of the tailnet and discards its identity; the next start needs a key or login again.';
    return help('krkns logout [flags]', what, controlFlags);
  }
  const stateDir = stateDirOf(flags);
  const admin = adminSocket(stateDir);
  if (await admin.answers()) {
    await admin.logout();
    out('logged out; krkns is stopping');
    return ExitCode.OK;
  }
  const log = createLogger({ level: flags['log-level'], format: 'pretty' });
  out(await logOutStoredIdentity(stateDir, () => krknsNode(flags, log)));
  return ExitCode.OK;
}

export const eventFlags = {
  ...commonFlags,
  topic: { type: 'string', describe: 'only this topic or pattern (e.g. ci/*)' },
  since: { type: 'string', describe: 'only events received since this ISO time' },
  after: { type: 'string', describe: 'only events received after this event id' },
  limit: {
    type: 'int',
    default: 50,
    describe: 'at most this many',
    check: (n: number) => (n >= 1 && n <= 1000 ? undefined : 'must be 1-1000'),
  },
  body: { type: 'bool', describe: 'events show: print the raw body only' },
} satisfies FlagSpecs;

/** `krkns events list|show|redeliver`, against the running daemon. */
export async function events(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(eventFlags, argv);
  const [verb, id] = args;
  if (flags.help || !verb) {
    return help(
      'krkns events list|show <id>|redeliver <id> [flags]',
      'Lists stored events, shows one (metadata, headers, raw body), or delivers one again to every matching subscription.',
      eventFlags,
    );
  }
  const client = hubOverAdminSocket(stateDirOf(flags));
  switch (verb) {
    case 'list': {
      const since = flags.since ? new Date(flags.since) : undefined;
      if (since && Number.isNaN(since.getTime()))
        throw new CliError(`--since: ${flags.since} is not an ISO time`, ExitCode.USAGE);
      const list = await client.listEvents({
        ...(flags.topic ? { topic: flags.topic } : {}),
        ...(flags.after ? { after: flags.after } : {}),
        ...(since ? { since } : {}),
        limit: flags.limit,
      });
      if (flags.json) out(JSON.stringify(list, null, 2));
      else for (const e of list) out(eventLine(e));
      return ExitCode.OK;
    }
    case 'show': {
      const e = await client.getEvent(requireId(id));
      if (flags.body) process.stdout.write(Buffer.from(e.bodyBase64, 'base64'));
      else if (flags.json) out(JSON.stringify(e, null, 2));
      else {
        out(eventLine(e));
        for (const [k, v] of e.headers) out(`  ${k}: ${v}`);
        out('');
        out(Buffer.from(e.bodyBase64, 'base64').toString('utf8'));
      }
      return ExitCode.OK;
    }
    case 'redeliver': {
      const r = await client.redeliver(requireId(id));
      out(`${r.id}: ${r.deliveries} deliveries scheduled`);
      return ExitCode.OK;
    }
    default:
      throw new CliError(`unknown events command ${verb} (list, show, redeliver)`, ExitCode.USAGE);
  }
}

function requireId(id: string | undefined): string {
  if (!id) throw new CliError('give the event id', ExitCode.USAGE);
  return id;
}

function eventLine(e: EventMeta): string {
  const states =
    e.deliveries.map((d) => `${d.state}${d.attempts > 1 ? `×${d.attempts}` : ''}`).join(',') || 'no subscribers';
  return `${e.receivedAt}  ${e.id}  ${e.topic}  ${e.size}B  from ${e.sender.node}  [${states}]`;
}

function help(usage: string, description: string, specs: FlagSpecs): number {
  process.stdout.write(helpText(usage, description, specs));
  return ExitCode.OK;
}
