import {
  TailnetError,
  inspectStateDir,
  nameCollision,
  parseBoolean,
  tailnetFetch,
  type NodeStatus,
  type PeerStatus,
  type TailnetNode,
} from '@krkn/tailnet';
import type { SubscriptionInfo } from '@krkn/hub-api';

/** How one check came out. */
export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of a doctor report: what was checked, the one-line cause, the one-line fix. */
export interface CheckResult {
  id: string;
  status: CheckStatus;
  /** What is the case, in one line. */
  cause: string;
  /** What to do about it, in one line (absent when nothing is needed). */
  fix?: string;
}

/** The peer a node exists to talk to: krkns for krknc. */
export interface Counterpart {
  /** As the user named it: MagicDNS short name, FQDN or 100.x address. */
  name: string;
  /** Port of its API (for the /healthz probe). */
  port: number;
}

/** What the checks look at. */
export interface DoctorInput {
  /** "krkns" or "krknc": used in messages. */
  app: string;
  stateDir: string;
  controlUrl: string;
  /** TS_AUTHKEY / TS_AUTH_KEY is set. */
  authKeyInEnv: boolean;
  /** TS_FORCE_LOGIN=1 is set. */
  forceLogin: boolean;
  /** Tags the app advertises. */
  advertisedTags: string[];
  /** The running node, for the live checks; without it only the state on disk is checked. */
  node?: TailnetNode;
  counterpart?: Counterpart;
  /** How the control server is probed from this host (default: global fetch). */
  hostFetch?: (url: string, init?: RequestInit) => Promise<Response>;
  /** Facts of the app's own configuration (krkns: its authorisation mode), reported as they are. */
  appChecks?: CheckResult[];
}

/** A DoctorInput for an app, with the auth-key facts read from the environment. */
export function doctorInputFrom(
  base: Omit<DoctorInput, 'authKeyInEnv' | 'forceLogin' | 'node' | 'counterpart'> & {
    node?: TailnetNode | undefined;
    counterpart?: Counterpart | undefined;
  },
  env: NodeJS.ProcessEnv = process.env,
): DoctorInput {
  const { node, counterpart, ...rest } = base;
  return {
    ...rest,
    authKeyInEnv: Boolean(env.TS_AUTHKEY || env.TS_AUTH_KEY),
    forceLogin: parseBoolean(env.TS_FORCE_LOGIN ?? '') === true,
    ...(node ? { node } : {}),
    ...(counterpart ? { counterpart } : {}),
  };
}

const ok = (id: string, cause: string): CheckResult => ({ id, status: 'ok', cause });
const warn = (id: string, cause: string, fix: string): CheckResult => ({ id, status: 'warn', cause, fix });
const fail = (id: string, cause: string, fix: string): CheckResult => ({ id, status: 'fail', cause, fix });

/** Why the control server leaves a node out of every peer list (the Krkn guide's catalogue). */
export const suppressionCauses =
  'no grant or acl gives a path between them in either direction; a posture check (defaultSrcPosture or srcPosture) ' +
  'that embedded nodes can never pass; a tag missing from tagOwners; a group: rule expected to match tagged nodes';

/** Runs every check that applies; live checks only when a running node is given. */
export async function runChecks(input: DoctorInput): Promise<CheckResult[]> {
  const disk = readDisk(input.stateDir);
  const results = [loginCheck(input, disk), ...authKeyCheck(input, disk), ...(input.appChecks ?? [])];
  const node = input.node;
  if (!node || node.state !== 'Running') return results;
  const status = await node.knownPeersStatus();
  results.push(keyExpiryCheck(status), nameCheck(node.hostname, status), ...tagChecks(input, status));
  results.push(await controlCheck(input), await derpCheck(node, status), peersCheck(input, status));
  if (input.counterpart) results.push(...(await counterpartChecks(node, status, input.counterpart)));
  return results;
}

function loginCheck(input: DoctorInput, disk: DiskState): CheckResult {
  const corrupt = disk.problem;
  if (corrupt)
    return fail('state', corrupt, 'restore the state file from a backup, or move it away to register as a new node');
  const node = input.node;
  if (node?.state === 'Running') return ok('login', `authenticated as ${node.self?.name ?? node.hostname}`);
  const url = node?.loginUrl ?? disk.pendingLoginUrl;
  if (url) {
    return fail(
      'login',
      `waiting for an interactive login: ${url}`,
      `open ${url} and approve the node, or restart ${input.app} with TS_AUTHKEY set`,
    );
  }
  if (disk.identity) return ok('login', `an identity is stored in ${input.stateDir} (${input.app} is not running)`);
  return fail(
    'login',
    `not registered: no identity in ${input.stateDir}`,
    `start ${input.app} with TS_AUTHKEY=<pre-auth key>, or start it and open the login URL it prints`,
  );
}

function authKeyCheck(input: DoctorInput, disk: DiskState): CheckResult[] {
  // A running node knows what it did with its key at start; the environment of this command may differ.
  switch (input.node?.authKeyUse) {
    case 'used':
      return [ok('auth-key', 'registered with the auth key given at start')];
    case 'ignored':
      return [
        warn(
          'auth-key',
          `the auth key given at start was ignored: an identity is stored in ${input.stateDir}`,
          'restart with TS_FORCE_LOGIN=1 to register again with the key, or drop TS_AUTHKEY (it is not needed any more)',
        ),
      ];
    case 'none':
      return [];
  }
  if (!input.authKeyInEnv) return [];
  if (input.forceLogin)
    return [
      warn(
        'auth-key',
        'TS_AUTHKEY and TS_FORCE_LOGIN=1 are set: every start registers the node again',
        'unset TS_FORCE_LOGIN once the node is registered',
      ),
    ];
  if (disk.identity) {
    return [
      warn(
        'auth-key',
        `TS_AUTHKEY is set but ignored: an identity is already stored in ${input.stateDir}`,
        'set TS_FORCE_LOGIN=1 to register again with the key, or unset TS_AUTHKEY (it is not needed any more)',
      ),
    ];
  }
  return [ok('auth-key', 'TS_AUTHKEY is set and will be used for the first registration')];
}

function keyExpiryCheck(status: NodeStatus): CheckResult {
  const expiry = status.self.keyExpiry;
  if (!expiry) return ok('key-expiry', 'the node key does not expire (tagged node, or expiry disabled)');
  const left = Date.parse(expiry) - Date.now();
  const days = Math.floor(left / 86400e3);
  if (left <= 0)
    return fail(
      'key-expiry',
      `the node key expired at ${expiry}`,
      're-authenticate (TS_FORCE_LOGIN=1 with a new key), or tag the node so its key does not expire',
    );
  if (days < 7)
    return warn(
      'key-expiry',
      `the node key expires in ${days} days (${expiry})`,
      're-authenticate before then, or tag the node so its key does not expire',
    );
  return ok('key-expiry', `the node key expires in ${days} days`);
}

/** The name asked for and the name given differ when another node holds it (the `-1` suffix case). */
function nameCheck(requested: string, status: NodeStatus): CheckResult {
  const collision = nameCollision(requested, status.self);
  if (!collision) return ok('hostname', `registered under the name it asks for, ${requested}`);
  const holder = status.peers.find((p) => p.dnsName.split('.')[0]?.toLowerCase() === requested.toLowerCase());
  const who = holder
    ? `the node ${holder.dnsName} (${describePeer(holder)})`
    : 'a node this one cannot see (the policy hides it)';
  return warn(
    'hostname',
    `asks for the name ${requested} but is registered as ${collision.given}: ${who} holds ${requested}`,
    'if that node is stale, delete it (headscale nodes delete; Tailscale: admin console, Machines) ' +
      `and rename this one to ${requested}; otherwise choose another --hostname`,
  );
}

function tagChecks(input: DoctorInput, status: NodeStatus): CheckResult[] {
  if (input.advertisedTags.length === 0) return [];
  const missing = input.advertisedTags.filter((t) => !status.self.tags.includes(t));
  if (missing.length === 0) return [ok('tags', `has the tags it advertises: ${input.advertisedTags.join(', ')}`)];
  return [
    fail(
      'tags',
      `advertises ${missing.join(', ')} but the control server did not grant ${missing.length > 1 ? 'them' : 'it'} (has: ${status.self.tags.join(', ') || 'none'})`,
      `add ${missing.join(', ')} to tagOwners for the user or key that registers the node (krkn-policy lint names the line), then TS_FORCE_LOGIN=1`,
    ),
  ];
}

async function controlCheck(input: DoctorInput): Promise<CheckResult> {
  const probe = `${input.controlUrl}/key?v=1`;
  try {
    const res = await (input.hostFetch ?? fetch)(probe, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok)
      return fail(
        'control',
        `the control server answered HTTP ${res.status} at ${probe}`,
        'check --control-url / TS_CONTROL_URL',
      );
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    return fail(
      'control',
      `cannot reach the control server ${input.controlUrl}: ${cause}`,
      'check --control-url / TS_CONTROL_URL, DNS and the firewall',
    );
  }
  const stalled = input.node?.health.find((w) => w.code === 'not-in-map-poll' || w.code === 'mapresponse-timeout');
  if (stalled)
    return warn('control', `reachable, but: ${stalled.text}`, 'look at the control server; the node retries by itself');
  return ok('control', `the control server ${input.controlUrl} answers`);
}

// A node the doctor has just brought up needs a moment to connect to its relay.
const relayConnectMs = 3_000;

async function derpCheck(node: TailnetNode, status: NodeStatus): Promise<CheckResult> {
  const deadline = Date.now() + relayConnectMs;
  let relay = await node.relayProblem();
  while (relay && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    relay = await node.relayProblem();
  }
  if (relay) return fail('derp', relay.cause, relay.fix);
  const problem = node.health.find((w) => w.code.includes('derp'));
  if (problem)
    return fail(
      'derp',
      problem.text,
      'the embedded node reaches peers only through DERP relays: check that the control server lists a reachable DERP region',
    );
  if (!status.self.relay)
    return fail(
      'derp',
      'no home DERP region yet: peers cannot reach this node',
      'wait a few seconds; if it stays, check the DERP map the control server sends',
    );
  return ok('derp', `connected through DERP region ${status.self.relay}`);
}

function peersCheck(input: DoctorInput, status: NodeStatus): CheckResult {
  if (status.peers.length > 0)
    return ok(
      'peers',
      `${status.peers.length} peer(s) visible: ${status.peers
        .map((p) => p.hostname)
        .slice(0, 8)
        .join(', ')}`,
    );
  return fail(
    'peers',
    `no peers visible: the control server sends a node only the peers the policy gives it a path to (likely: ${suppressionCauses})`,
    'give this node a path: e.g. a grant {"src":["tag:krkn"],"dst":["tag:krkn"],"ip":["*"]}; check with krkn-policy lint and krkn-policy check',
  );
}

async function counterpartChecks(node: TailnetNode, status: NodeStatus, cp: Counterpart): Promise<CheckResult[]> {
  const self = describeSelf(status);
  const peer = findPeer(status, cp.name);
  if (!peer) {
    return [
      fail(
        'server-visible',
        `${cp.name} is not in this node's peer list: the policy gives no path between ${self} and ${cp.name} in either direction (likely: ${suppressionCauses})`,
        `add a grant from ${self} to ${cp.name}'s tag on port ${cp.port} (publish, subscribe) and one from ${cp.name} to ${self} on the listen port (deliveries); check with krkn-policy check`,
      ),
    ];
  }
  const results: CheckResult[] = [
    ok(
      'server-visible',
      `${cp.name} is visible (${peer.dnsName}, ${peer.addresses[0]}${peer.online ? '' : ', offline'})`,
    ),
  ];
  try {
    const pong = await node.ping(peer.addresses[0]!, { timeoutMs: 5_000 });
    results.push(ok('server-ping', `TSMP ping to ${cp.name}: ${pong.latencyMs.toFixed(1)} ms`));
  } catch (err) {
    results.push(
      fail(
        'server-ping',
        `no ping answer from ${cp.name}: ${(err as Error).message}`,
        `is ${cp.name} running? krkns status on its host tells`,
      ),
    );
    return results;
  }
  try {
    const res = await tailnetFetch(node, `http://${peer.addresses[0]}:${cp.port}/healthz`, {
      signal: AbortSignal.timeout(10_000),
    });
    results.push(
      res.ok
        ? ok('server-api', `${cp.name} answers on port ${cp.port}`)
        : fail(
            'server-api',
            `${cp.name} answered HTTP ${res.status} on /healthz`,
            `is it krkns listening on port ${cp.port}?`,
          ),
    );
    if (res.ok) results.push(await subscriptionsCheck(node, `http://${peer.addresses[0]}:${cp.port}`, cp.name));
  } catch (err) {
    results.push(
      fail(
        'server-api',
        `${cp.name} answers pings but not HTTP on port ${cp.port}: ${(err as Error).message}`,
        `the policy may allow other ports only: add port ${cp.port} from ${self} to ${cp.name}, or check krkns's --port`,
      ),
    );
  }
  return results;
}

/** This node's subscriptions on krkns: any disabled by a 410 Gone from its local app is a failure. */
async function subscriptionsCheck(node: TailnetNode, base: string, server: string): Promise<CheckResult> {
  try {
    const res = await tailnetFetch(node, `${base}/subscriptions`, { signal: AbortSignal.timeout(10_000) });
    const listFix = 'krknc status --server shows the subscriptions';
    if (!res.ok) return warn('subscriptions', `${server} answered HTTP ${res.status} on /subscriptions`, listFix);
    const { subscriptions } = (await res.json()) as { subscriptions: SubscriptionInfo[] };
    const disabled = subscriptions.filter((s) => s.disabled !== null);
    const total = `${subscriptions.length} subscription(s) on ${server}`;
    if (disabled.length === 0) return ok('subscriptions', `${total}, none disabled`);
    const which = disabled.map((s) => `${s.id} (port ${s.port}, since ${s.disabled!.at})`).join(', ');
    const fix = 'fix the local app, then run krknc listen again: subscribing again enables the subscription';
    return fail('subscriptions', `disabled after the local app answered 410 Gone: ${which}`, fix);
  } catch (err) {
    const cause = `cannot list subscriptions on ${server}: ${(err as Error).message}`;
    return warn('subscriptions', cause, 'krknc status --server shows the subscriptions');
  }
}

function findPeer(status: NodeStatus, name: string) {
  const n = name.replace(/:\d+$/, '').toLowerCase();
  return status.peers.find(
    (p) =>
      p.addresses.includes(n) ||
      p.hostname.toLowerCase() === n ||
      p.dnsName.toLowerCase() === n ||
      p.dnsName.toLowerCase().split('.')[0] === n,
  );
}

/** "100.64.0.1, tag:krkn, online" */
function describePeer(peer: PeerStatus): string {
  return [peer.addresses[0], peer.tags.join(' ') || peer.user, peer.online ? 'online' : 'offline']
    .filter(Boolean)
    .join(', ');
}

function describeSelf(status: NodeStatus): string {
  const who = status.self.tags.length ? status.self.tags.join(', ') : status.self.user || 'its user';
  return `this node (${status.self.hostname}, ${who})`;
}

/** What the state directory holds, read once for all checks. */
interface DiskState {
  identity: boolean;
  pendingLoginUrl?: string;
  /** Why the state file cannot be read, if it cannot. */
  problem?: string;
}

function readDisk(stateDir: string): DiskState {
  try {
    const view = inspectStateDir(stateDir);
    return { identity: view.identity, ...(view.pendingLogin ? { pendingLoginUrl: view.pendingLogin.url } : {}) };
  } catch (err) {
    if (err instanceof TailnetError) return { identity: false, problem: err.message };
    throw err;
  }
}
