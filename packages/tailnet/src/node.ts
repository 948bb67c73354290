import { EventEmitter } from 'node:events';
import { pino, type Logger } from 'pino';
import type {
  BackendState,
  EngineEvent,
  EngineMetrics,
  HealthWarning,
  SelfInfo,
  StartResult,
  WebSocketTraffic,
} from '@krkn/tailnet-wasm';
import { EngineClient, type Isolation } from './engine/client.js';
import { TailnetError } from './errors.js';
import { TailnetServer } from './server.js';
import { TailnetSocket } from './socket.js';
import {
  defaultControlUrl,
  parseBoolean,
  validateControlUrl,
  validateHostname,
  validatePort,
  validateTags,
} from './options.js';
import { FileStateStore, StateLock, defaultStateDir, writePendingLogin } from './state.js';
import {
  parsePing,
  parseRelays,
  parseStatus,
  parseWhois,
  type NodeStatus,
  type PingResult,
  type RelayRegion,
  type WhoIs,
} from './status.js';
import {
  announceFirstContact,
  controlUnreachable,
  controlWait,
  explainRelay,
  formatDuration,
  nameCollision,
  watchRelay,
  type Diagnosis,
  type ReportedWait,
} from './waits.js';

/** Options for {@link TailnetNode}. Environment variables fill in what is absent. */
export interface TailnetNodeOptions {
  /** The node's name on the tailnet (a DNS label). */
  hostname: string;
  /** Where the identity is kept. Default: `<env-paths data dir>/krkn/<app>/<hostname>`. */
  stateDir?: string;
  /** Names the default state directory; e.g. "krkns". Default "tailnet". */
  app?: string;
  /** Control server. Default: `TS_CONTROL_URL`, else Tailscale's. */
  controlUrl?: string;
  /** Pre-auth key for headless registration. Default: `TS_AUTHKEY` or `TS_AUTH_KEY`. */
  authKey?: string;
  /** Register as ephemeral: the control server deletes the node when it logs out or goes away. */
  ephemeral?: boolean;
  /** Tags to advertise, e.g. ["tag:krkn"]. The policy's tagOwners must allow them. */
  tags?: string[];
  /** Register again even if an identity is persisted (with the auth key if one is given). Default: `TS_FORCE_LOGIN=1`. */
  forceLogin?: boolean;
  /** Logger; the node logs through a child bound to its hostname. Default: pino at info. */
  logger?: Logger;
  /** Run the wasm engine in a worker thread (default) or in this thread. */
  isolation?: Isolation;
  /** Extra environment for the engine (Tailscale envknobs such as TS_DEBUG_USE_DERP_HTTP). TS_DEBUG_* from process.env are passed on too. */
  engineEnv?: Record<string, string>;
}

/**
 * The data path's counters, to tell packets lost (DERP drops, TCP retransmits and timeouts) from
 * packets waiting, and how many crossings each byte costs. All count from the node's start.
 */
export interface NodeMetrics extends EngineMetrics {
  /** WebSocket (control and DERP) traffic: wire messages, and the Go↔JS crossings that carried them. */
  webSocket: WebSocketTraffic;
  /** Messages between the app's thread and the engine host. */
  bridge: { toEngine: number; fromEngine: number };
}

/** What became of an auth key: see {@link TailnetNode.authKeyUse}. */
export type AuthKeyUse = 'none' | 'used' | 'ignored';

/** Options for {@link TailnetNode.up}. */
export interface UpOptions {
  /** Abort the wait (the node is closed). */
  signal?: AbortSignal;
  /** How long to wait for any answer from the control server before CONTROL_UNREACHABLE. Default 30 s. */
  controlTimeoutMs?: number;
}

interface TailnetNodeEvents {
  /** The backend changed state. */
  state: [BackendState];
  /** The node needs interactive login: visit this URL. */
  loginUrl: [string];
  /** The node's own identity (name, addresses, key expiry, tags) changed. */
  self: [SelfInfo];
  /** Peers were added, removed or changed; call status() for the list. */
  peers: [];
  /** The set of active health warnings. */
  health: [HealthWarning[]];
  /** The engine stopped unexpectedly. */
  exit: [string];
}

// How often a node waiting for login repeats the URL in the log and refreshes the URL file.
const loginReminderMs = 30_000;

/**
 * A Tailscale node of its own inside this process, like Go's tsnet.Server: its own key, address,
 * tags and auth state, never the host's tailscaled. Create it, `await up()`, then `listen` and
 * `dial` on the tailnet; `close()` when done.
 */
export class TailnetNode extends EventEmitter<TailnetNodeEvents> {
  /** The node's name on the tailnet. */
  readonly hostname: string;
  /** Where the node's identity is persisted. */
  readonly stateDir: string;
  /** The control server. */
  readonly controlUrl: string;
  private readonly opts: Required<Pick<TailnetNodeOptions, 'ephemeral' | 'tags' | 'forceLogin' | 'isolation'>> & {
    authKey: string;
    engineEnv: Record<string, string>;
  };
  private readonly log: Logger;
  private engine: EngineClient | undefined;
  private starting: Promise<EngineClient> | undefined;
  private lock: StateLock | undefined;
  private readonly sockets = new Map<number, TailnetSocket>();
  private readonly servers = new Map<number, TailnetServer>();
  private currentState: BackendState = 'NoState';
  private selfInfo: SelfInfo | undefined;
  private pendingLogin: { url: string; since: Date; timer: NodeJS.Timeout } | undefined;
  private lastError: string | undefined;
  private loginHealth: string | undefined;
  private healthWarnings: HealthWarning[] = [];
  private keyUse: AuthKeyUse = 'none';
  private relayWatch: { stop(): void } | undefined;
  /** Peers dialed at least once: only a first contact is announced as a handshake wait. */
  private readonly contacted = new Set<string>();
  private closed = false;

  constructor(options: TailnetNodeOptions) {
    super();
    const env = process.env;
    this.hostname = validateHostname(options.hostname);
    this.stateDir = options.stateDir ?? defaultStateDir(options.app ?? 'tailnet', this.hostname);
    this.controlUrl = validateControlUrl(options.controlUrl ?? env.TS_CONTROL_URL ?? defaultControlUrl);
    this.opts = {
      authKey: (options.authKey ?? env.TS_AUTHKEY ?? env.TS_AUTH_KEY ?? '').trim(),
      ephemeral: options.ephemeral ?? false,
      tags: validateTags(options.tags ?? []),
      forceLogin: options.forceLogin ?? parseBoolean(env.TS_FORCE_LOGIN ?? '') === true,
      isolation: options.isolation ?? 'worker',
      engineEnv: { ...debugKnobs(env), ...options.engineEnv },
    };
    this.log = (options.logger ?? pino({ level: 'info' })).child({ node: this.hostname });
  }

  /** The backend state: NeedsLogin, Starting, Running, ... */
  get state(): BackendState {
    return this.currentState;
  }

  /** The node's identity once known (after login). */
  get self(): SelfInfo | undefined {
    return this.selfInfo;
  }

  /** The node's tailnet addresses (IPv4 first); empty before login. */
  get addresses(): string[] {
    return this.selfInfo?.addresses ?? [];
  }

  /**
   * What became of the auth key at start: `used` to register, `ignored` because an identity was
   * stored (and no forced login), or `none` given.
   */
  get authKeyUse(): AuthKeyUse {
    return this.keyUse;
  }

  /** The active health warnings (no DERP home, not in map poll, logged out, ...). */
  get health(): HealthWarning[] {
    return this.healthWarnings;
  }

  /** The URL to visit while the node waits for interactive login. */
  get loginUrl(): string | undefined {
    return this.pendingLogin?.url;
  }

  /**
   * Starts the node and resolves once it is Running with its addresses. Uses the persisted
   * identity if there is one; otherwise registers with the auth key, or waits for interactive
   * login (the URL is logged at info level, emitted as 'loginUrl', and written to
   * `<stateDir>/login-url.json`). Rejects with a TailnetError, and closes the node, on an
   * invalid or expired key, an unreachable control server, or an abort.
   */
  async up(options: UpOptions = {}): Promise<NodeStatus> {
    // Announced before the engine loads (which takes a moment), so the first line comes at once.
    const control =
      this.currentState === 'Running'
        ? undefined
        : controlWait(
            this.log,
            this.controlUrl,
            () => this.engine !== undefined,
            () => this.lastLoginError(),
          );
    try {
      const engine = await this.start();
      if (!(this.currentState === 'Running' && this.selfInfo)) await this.waitRunning(engine, control, options);
      control?.done();
      const status = await this.status();
      this.reportName(status);
      this.relayWatch ??= watchRelay(this.log, () => this.relayProblem());
      return status;
    } catch (err) {
      control?.done();
      await this.close();
      throw err;
    }
  }

  private start(): Promise<EngineClient> {
    if (this.closed) return Promise.reject(new TailnetError('NOT_RUNNING', 'node is closed'));
    this.starting ??= this.startEngine();
    return this.starting;
  }

  private async startEngine(): Promise<EngineClient> {
    this.lock = StateLock.acquire(this.stateDir);
    const store = FileStateStore.open(this.stateDir); // fails early, and clearly, on a corrupt file
    const engine = await EngineClient.start({
      isolation: this.opts.isolation,
      stateDir: this.stateDir,
      env: this.opts.engineEnv,
    });
    this.engine = engine;
    this.wire(engine);
    const { authKey, forceLogin } = this.opts;
    // An identity on disk wins over the key, unless a fresh login is forced: the key is not even
    // sent, so a registered node never spends it again.
    const offerKey = authKey !== '' && (forceLogin || !store.hasIdentity());
    const result = await engine.call<StartResult>('start', [
      {
        hostname: this.hostname,
        controlUrl: this.controlUrl,
        authKey: offerKey ? authKey : '',
        ephemeral: this.opts.ephemeral,
        tags: this.opts.tags,
        forceLogin,
      },
    ]);
    this.keyUse = authKey === '' ? 'none' : result.authKeyUsed ? 'used' : 'ignored';
    if (this.keyUse === 'ignored') {
      this.log.info(
        { stateDir: this.stateDir },
        'auth key ignored: this node already has an identity in its state directory; ' +
          'set TS_FORCE_LOGIN=1 (or forceLogin) to register again with the key',
      );
    }
    this.log.debug({ result }, 'engine started');
    return engine;
  }

  private wire(engine: EngineClient): void {
    const engineLog = this.log.child({ component: 'engine' });
    engine.on('log', (line) => engineLog.debug(line));
    engine.on('event', (e) => this.onEvent(e));
    engine.on('accepted', (port, id, remote, local) => this.onAccepted(engine, port, id, remote, local));
    engine.on('data', (id, bytes) => this.sockets.get(id)?.receive(bytes));
    engine.on('closed', (id, error) => this.sockets.get(id)?.receiveEnd(error));
    engine.on('writeFailed', (id, message) => this.sockets.get(id)?.writeFailed(message));
    engine.on('exit', (reason) => {
      if (this.closed) return;
      this.log.error({ reason }, 'tailnet engine stopped');
      for (const s of this.sockets.values()) s.destroy(new Error(`tailnet engine stopped: ${reason}`));
      this.emit('exit', reason);
    });
  }

  private onEvent(e: EngineEvent): void {
    switch (e.type) {
      case 'state':
        this.currentState = e.state;
        if (e.state === 'Running') this.loginDone();
        this.log.debug({ state: e.state }, 'state');
        this.emit('state', e.state);
        break;
      case 'loginUrl':
        this.loginNeeded(e.url);
        break;
      case 'self':
        this.selfInfo = e.self;
        this.emit('self', e.self);
        break;
      case 'peers':
        this.emit('peers');
        break;
      case 'health':
        this.healthWarnings = e.health ?? [];
        this.loginHealth = this.healthWarnings.find((w) => w.code === 'login-state')?.text;
        this.emit('health', this.healthWarnings);
        break;
      case 'error':
        this.lastError = e.message;
        this.log.warn({ error: e.message }, 'control server reported an error');
        break;
      case 'loginFinished':
        break;
    }
  }

  private loginNeeded(url: string): void {
    if (this.pendingLogin?.url === url) return;
    this.loginDone();
    const since = new Date();
    const remind = (): void => {
      const waited = formatDuration(Date.now() - since.getTime());
      this.log.info({ loginUrl: url, waited }, `still waiting for login (${waited}): visit ${url}`);
      this.recordLogin(url, since);
    };
    const timer = setInterval(remind, loginReminderMs);
    timer.unref();
    this.pendingLogin = { url, since, timer };
    this.log.info({ loginUrl: url }, `to authenticate ${this.hostname}, visit: ${url}`);
    this.recordLogin(url, since);
    this.emit('loginUrl', url);
  }

  private recordLogin(url: string, since: Date): void {
    try {
      writePendingLogin(this.stateDir, { url, since: since.toISOString(), updated: new Date().toISOString() });
    } catch (err) {
      this.log.warn({ err }, 'cannot write the login URL file');
    }
  }

  private loginDone(): void {
    if (!this.pendingLogin) return;
    clearInterval(this.pendingLogin.timer);
    this.pendingLogin = undefined;
    writePendingLogin(this.stateDir, null);
  }

  private waitRunning(
    engine: EngineClient,
    control: ReportedWait | undefined,
    { signal, controlTimeoutMs = 30_000 }: UpOptions,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const answered = (): void => {
        clearTimeout(controlTimer);
        control?.done();
      };
      const cleanup = (): void => {
        answered();
        engine.off('event', onEvent);
        engine.off('exit', onExit);
        signal?.removeEventListener('abort', onAbort);
      };
      const fail = (err: TailnetError): void => {
        cleanup();
        reject(err);
      };
      const onEvent = (e: EngineEvent): void => {
        // Control answered; a person must act now (the login has its own reminders).
        if (e.type === 'loginUrl') answered();
        if (e.type === 'error' && /auth.?key|pre-?auth/i.test(e.message)) fail(authKeyError(e.message));
        if (
          (e.type === 'state' && e.state === 'Running' && this.selfInfo) ||
          (e.type === 'self' && this.currentState === 'Running')
        ) {
          cleanup();
          resolve();
        }
      };
      const onExit = (reason: string): void => fail(new TailnetError('ENGINE', `tailnet engine stopped: ${reason}`));
      const onAbort = (): void => fail(new TailnetError('ABORTED', 'up() was aborted', { cause: signal?.reason }));
      const controlTimer = setTimeout(
        () => fail(controlUnreachable(this.controlUrl, controlTimeoutMs, this.lastLoginError())),
        controlTimeoutMs,
      );
      if (this.pendingLogin) answered();
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      engine.on('event', onEvent);
      engine.on('exit', onExit);
    });
  }

  private lastLoginError(): string | undefined {
    const m = this.loginHealth?.match(/last login error was: (.*)$/);
    return m?.[1] ?? this.lastError;
  }

  /** Says at start when the control server gave the node another name than the one asked for. */
  private reportName(status: NodeStatus): void {
    const collision = nameCollision(this.hostname, status.self);
    if (!collision) return;
    this.log.warn(
      { requested: this.hostname, given: status.self.dnsName },
      `${collision.cause}. Fix: ${collision.fix}`,
    );
  }

  /**
   * Why the node has no working home relay (DERP), with the fix; undefined when it has one. Peers
   * reach this node only through its relay.
   */
  async relayProblem(): Promise<Diagnosis | undefined> {
    if (this.closed) return undefined;
    const overHttp = parseBoolean(this.opts.engineEnv.TS_DEBUG_USE_DERP_HTTP ?? '') === true;
    return explainRelay(await this.relays(), (await this.status()).self.relay, this.controlUrl, overHttp);
  }

  /** The relay (DERP) regions the control server offers, and which of them this node has heard from. */
  async relays(): Promise<RelayRegion[]> {
    return parseRelays(await this.running().call<string>('relays'));
  }

  private running(): EngineClient {
    if (!this.engine || this.closed) throw new TailnetError('NOT_RUNNING', 'node is not started: call up() first');
    return this.engine;
  }

  /** The node, its peers and their state, as the control server last described them. */
  async status(): Promise<NodeStatus> {
    return parseStatus(await this.running().call<string>('status'));
  }

  /** The data path's counters (see {@link NodeMetrics}). */
  async metrics(): Promise<NodeMetrics> {
    const engine = this.running();
    const fromEngine = await engine.call<EngineMetrics & { webSocket: WebSocketTraffic }>('metrics');
    return { ...fromEngine, bridge: { ...engine.bridgeMessages } };
  }

  /** Names the node and user behind a tailnet IP (or IP:port), with the capabilities granted to it. */
  async whois(address: string): Promise<WhoIs> {
    return parseWhois(await this.running().call<string>('whois', [address]));
  }

  /** TSMP-pings a peer (by tailnet IP or MagicDNS name) through the tailnet. */
  async ping(peer: string, { timeoutMs = 10_000 } = {}): Promise<PingResult> {
    return parsePing(await this.running().call<string>('ping', [peer, timeoutMs]));
  }

  /** Accepts TCP connections on a port of the node's tailnet addresses. */
  listen(port: number): TailnetServer {
    const engine = this.running();
    validatePort(port);
    if (this.servers.has(port))
      throw new TailnetError('PORT_IN_USE', `port ${port} already has a listener on ${this.hostname}`);
    const server = new TailnetServer(
      port,
      () => this.addresses[0] ?? '',
      () => {
        this.servers.delete(port);
        void engine.call('unlisten', [port]).catch(() => undefined);
      },
      this.log.child({ component: 'listener', port }),
      engine.call('listen', [port]).then(() => undefined),
    );
    this.servers.set(port, server);
    return server;
  }

  /** Opens a TCP connection to host:port over the tailnet; host is a tailnet IP or MagicDNS name. */
  async dial(host: string, port: number, { timeoutMs = 15_000 } = {}): Promise<TailnetSocket> {
    const engine = this.running();
    validatePort(port);
    const dialing = engine.call<{ id: number; remote: string; local: string }>('dial', [host, port, timeoutMs]);
    const first = !this.contacted.has(host);
    this.contacted.add(host);
    const c = await (first ? announceFirstContact(this.log, `${host}:${port}`, timeoutMs, dialing) : dialing);
    return this.track(new TailnetSocket(engine, c.id, c.remote, c.local));
  }

  private onAccepted(engine: EngineClient, port: number, id: number, remote: string, local: string): void {
    const server = this.servers.get(port);
    if (!server) {
      void engine.call('close', [id]).catch(() => undefined);
      return;
    }
    server.accept(this.track(new TailnetSocket(engine, id, remote, local)));
  }

  private track(socket: TailnetSocket): TailnetSocket {
    this.sockets.set(socket.connId, socket);
    socket.once('tailnet-close', () => this.sockets.delete(socket.connId));
    return socket;
  }

  /**
   * status() once the peers are known: a restarted node is Running from its cached netmap, without
   * peers, until control's first map (`peersKnown`). Resolves with the status as it stands after
   * timeoutMs, for callers (reports, checks) that read the peer list rather than dial.
   */
  async knownPeersStatus(timeoutMs = 15_000): Promise<NodeStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status();
      if (status.peersKnown || Date.now() >= deadline) return status;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Logs the node out: its identity is discarded (an ephemeral node is deleted at once). */
  async logout(): Promise<void> {
    await this.running().call('logout');
    this.loginDone();
  }

  /**
   * Stops the node: closes connections and listeners, shuts the engine down, releases the state
   * directory. An ephemeral node logs out first, so it disappears from the tailnet at once.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.loginDone();
    this.relayWatch?.stop();
    const engine = this.engine ?? (await this.starting?.catch(() => undefined));
    for (const server of this.servers.values()) server.close({ destroy: true });
    for (const socket of this.sockets.values()) socket.destroy();
    if (engine) {
      // An ephemeral node logs out so the control server deletes it now, not after its inactivity timeout.
      if (this.opts.ephemeral && this.currentState === 'Running') {
        this.log.info('logging out (ephemeral node), so the control server deletes it now; at most 5s');
        await Promise.race([engine.call('logout').catch(() => undefined), delay(5_000)]);
      }
      await Promise.race([engine.call('shutdown').catch(() => undefined), delay(10_000)]);
      await engine.terminate();
    }
    this.lock?.release();
  }
}

function authKeyError(message: string): TailnetError {
  if (/tags?\b.*(invalid|not permitted)/i.test(message)) {
    return new TailnetError(
      'TAGS_NOT_PERMITTED',
      `the control server refused the advertised tags (${message}): the policy's tagOwners must let this node's user or key own them`,
    );
  }
  const expired = /expired/i.test(message);
  return new TailnetError(
    expired ? 'AUTH_KEY_EXPIRED' : 'AUTH_KEY_INVALID',
    `${expired ? 'the auth key has expired' : 'the auth key was refused'}: ${message}`,
  );
}

/** Tailscale envknobs (TS_DEBUG_*) from the environment: the engine reads them at start. */
function debugKnobs(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('TS_DEBUG_') && e[1] !== undefined),
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
