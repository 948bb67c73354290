import { existsSync } from 'node:fs';
import { CliError, ExitCode, adminFetch, createLogger, helpText, parseFlags, socketAnswers, type FlagSpecs } from '@krkn/cli-kit';
import { HubClient, type EventMeta, type HubStatus } from '@krkn/hub-api';
import { HubStore } from '@krkn/hub-store';
import { FileStateStore, TailnetNode, readPendingLogin } from '@krkn/tailnet';
import { commonFlags, pathsIn, stateDirOf } from './config.js';

/** A client for the running daemon's admin socket. */
function adminClient(stateDir: string): HubClient {
  return new HubClient('http://admin', adminFetch(pathsIn(stateDir).adminSocket));
}

const out = (s: string): void => void process.stdout.write(`${s}\n`);

/** `krkns status`: from the running daemon, or from the state on disk when it is not running. */
export async function status(argv: string[]): Promise<number> {
  const { flags } = parseFlags(commonFlags, argv);
  if (flags.help) return help('krkns status [flags]', 'Shows the node, its listener, storage and delivery queue; works when krkns is stopped too.', commonFlags);
  const stateDir = stateDirOf(flags);
  const paths = pathsIn(stateDir);
  if (await socketAnswers(paths.adminSocket)) {
    const st = await adminClient(stateDir).status();
    if (flags.json) out(JSON.stringify({ running: true, ...st }, null, 2));
    else printStatus(st);
    return ExitCode.OK;
  }
  const offline = offlineStatus(stateDir);
  if (flags.json) out(JSON.stringify({ running: false, ...offline }, null, 2));
  else {
    out(`krkns is not running (state in ${stateDir})`);
    out(`  identity:   ${offline.identity ? 'registered (no key or login needed to start)' : 'none yet: the first start needs TS_AUTHKEY or an interactive login'}`);
    if (offline.loginUrl) out(`  login URL:  ${offline.loginUrl} (pending since ${offline.loginSince})`);
    if (offline.queue) out(`  events:     ${offline.queue.events} stored, ${offline.queue.pending} deliveries pending, ${offline.queue.failed} failed`);
  }
  return ExitCode.OK;
}

function offlineStatus(stateDir: string) {
  const pending = readPendingLogin(stateDir);
  let identity = false;
  try {
    identity = FileStateStore.identityIn(stateDir);
  } catch (err) {
    throw new CliError((err as Error).message, ExitCode.STATE);
  }
  const db = pathsIn(stateDir).db;
  let queue;
  if (existsSync(db)) {
    const store = HubStore.open(db);
    queue = store.stats();
    store.close();
  }
  return { stateDir, identity, ...(pending ? { loginUrl: pending.url, loginSince: pending.since } : {}), ...(queue ? { queue } : {}) };
}

function printStatus(st: HubStatus): void {
  out(`krkns is running`);
  out(`  node:       ${st.node.name} (${st.node.addresses.join(', ') || 'no address yet'}) — ${st.node.state}`);
  if (st.loginUrl) out(`  login URL:  ${st.loginUrl}`);
  if (st.listener) out(`  listener:   ${st.listener}`);
  out(`  storage:    ${st.storage.events} events, ${st.storage.subscriptions} subscription(s) (${st.storage.offlineSubscriptions} offline), ${(st.storage.databaseBytes / 1e6).toFixed(1)} MB`);
  out(`  queue:      ${st.queue.pending} pending, ${st.queue.inFlight} in flight, ${st.queue.delivered} delivered, ${st.queue.failed} failed` + (st.queue.oldestPendingAt ? `, oldest pending since ${st.queue.oldestPendingAt}` : ''));
}

/** `krkns logout`: the running daemon logs out and stops; a stopped one is logged out from its state. */
export async function logout(argv: string[]): Promise<number> {
  const { flags } = parseFlags(commonFlags, argv);
  if (flags.help) return help('krkns logout [flags]', "Logs the node out of the tailnet and discards its identity; the next start needs a key or login again.", commonFlags);
  const stateDir = stateDirOf(flags);
  const paths = pathsIn(stateDir);
  if (await socketAnswers(paths.adminSocket)) {
    const res = await adminFetch(paths.adminSocket)('http://admin/admin/logout', { method: 'POST' });
    if (!res.ok) throw new CliError(`logout failed: HTTP ${res.status} ${await res.text()}`);
    out('logged out; krkns is stopping');
    return ExitCode.OK;
  }
  if (!FileStateStore.identityIn(stateDir)) {
    out(`nothing to log out: no identity in ${stateDir}`);
    return ExitCode.OK;
  }
  const node = new TailnetNode({ hostname: flags.hostname!, stateDir, logger: createLogger({ level: flags['log-level']!, format: 'pretty' }) });
  try {
    await node.up();
    await node.logout();
  } finally {
    await node.close();
  }
  out('logged out');
  return ExitCode.OK;
}

export const eventFlags = {
  ...commonFlags,
  topic: { type: 'string', describe: 'only this topic or pattern (e.g. ci/*)' },
  since: { type: 'string', describe: 'only events received since this ISO time' },
  after: { type: 'string', describe: 'only events received after this event id' },
  limit: { type: 'int', default: 50, describe: 'at most this many', check: (n: number) => (n >= 1 && n <= 1000 ? undefined : 'must be 1-1000') },
  body: { type: 'bool', describe: 'events show: print the raw body only' },
} satisfies FlagSpecs;

/** `krkns events list|show|redeliver`, against the running daemon. */
export async function events(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(eventFlags, argv);
  const [verb, id] = args;
  if (flags.help || !verb) {
    return help('krkns events list|show <id>|redeliver <id> [flags]', 'Lists stored events, shows one (metadata, headers, raw body), or delivers one again to every matching subscription.', eventFlags);
  }
  const client = adminClient(stateDirOf(flags));
  switch (verb) {
    case 'list': {
      const since = flags.since ? new Date(flags.since) : undefined;
      if (since && Number.isNaN(since.getTime())) throw new CliError(`--since: ${flags.since} is not an ISO time`, ExitCode.USAGE);
      const list = await client.listEvents({ ...(flags.topic ? { topic: flags.topic } : {}), ...(flags.after ? { after: flags.after } : {}), ...(since ? { since } : {}), limit: flags.limit! });
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
  const states = e.deliveries.map((d) => `${d.state}${d.attempts > 1 ? `×${d.attempts}` : ''}`).join(',') || 'no subscribers';
  return `${e.receivedAt}  ${e.id}  ${e.topic}  ${e.size}B  from ${e.sender.node}  [${states}]`;
}

function help(usage: string, description: string, specs: FlagSpecs): number {
  process.stdout.write(helpText(usage, description, specs));
  return ExitCode.OK;
}
