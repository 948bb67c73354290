import { request } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv, describeExit, forgetTempDir, removeOnExit, startProcess, type ManagedProcess } from './children.js';
import { TestnetError } from './errors.js';
import { headscaleConfig, headscalePaths } from './headscale-config.js';
import {
  parseCliError,
  parseList,
  parseNode,
  parsePreAuthKey,
  parseUser,
  type HeadscaleNode,
  type HeadscaleUser,
} from './headscale-records.js';
import { freeTcpPort, freeUdpPort } from './ports.js';
import { runCommand } from './run.js';
import { findTools, type ToolPaths } from './tools.js';
import { waitFor } from './wait.js';

/** Options for {@link startTailnet}. All optional. */
export interface StartTailnetOptions {
  /** MagicDNS base domain; nodes become `<name>.<domain>`. Default `krkn.test`. */
  domain?: string;
  /** How long an offline ephemeral node survives; headscale requires more than 65s. Default `70s`. */
  ephemeralInactivityTimeout?: string;
  /** Bound on headscale answering `GET /health`, in ms. Default 20 000. */
  startTimeoutMs?: number;
  /** headscale log level (`debug`, `info`, `warn`...). Default `info`. */
  logLevel?: string;
  /**
   * headscale's `tuning.node_store_batch_timeout`: every node-state write (two per streamed map
   * request) waits for this tick, so a node's first streamed map takes one to two of them.
   * Default: headscale's own, 500ms.
   */
  nodeStoreBatchTimeout?: string;
  /**
   * headscale's `tuning.batch_change_delay`: how long a change (a node coming online, restarting)
   * waits before it reaches the node's peers; the node's own first map does not wait. Default 800ms.
   */
  batchChangeDelay?: string;
  /**
   * The IPv4 prefix node addresses come from (a subset of 100.64.0.0/10). Default `100.64.0.0/10`. A small
   * one makes headscale re-issue a deleted node's address: a `/30` has exactly two node addresses.
   */
  ipv4Prefix?: string;
  /**
   * How headscale picks each address. Default `sequential`, which never goes back to a freed address;
   * `random` does (with a small prefix, the only free one), so use it to test address re-issue.
   */
  ipAllocation?: 'sequential' | 'random';
  /** Directory holding headscale/tailscaled/tailscale. Default `$KRKN_TOOLS_BIN` or the repo's `.tools/bin`. */
  binDir?: string;
  /** Keep the temp directory (logs, database) after stop, for debugging. Default: `KRKN_TESTNET_KEEP=1`. */
  keepDir?: boolean;
  /** Receives one line per lifecycle event (started, stopping...). Child output goes to log files instead. */
  log?: (line: string) => void;
}

/** Options for {@link Tailnet.createPreAuthKey}. */
export interface PreAuthKeyOptions {
  /** Owning user, by name or id. Omit for a tags-only key (then give `tags`). */
  user?: string | number;
  /** The key can register more than one node. */
  reusable?: boolean;
  /** Nodes registered with it are deleted on logout or after the inactivity timeout. */
  ephemeral?: boolean;
  /** ACL tags given to nodes registered with it, e.g. `['tag:ci']`. */
  tags?: string[];
  /** Lifetime as headscale parses it (`30s`, `1h`, `90d`). Default `1h`. */
  expiration?: string;
}

/** Anything whose lifetime is tied to a tailnet with {@link Tailnet.track}. */
export interface Stoppable {
  stop(): Promise<void>;
}

const MAX_START_ATTEMPTS = 3;
const CLI_TIMEOUT_MS = 15_000;

/**
 * Starts an isolated headscale on loopback: own temp dir, free ports, sqlite database, unix socket and
 * embedded DERP (plain HTTP, on the same port). Resolves once `GET /health` answers 200.
 * Several can run at once. Call {@link Tailnet.stop} when done; if the process exits first, the
 * children are killed and the temp dir removed anyway.
 */
export async function startTailnet(options: StartTailnetOptions = {}): Promise<Tailnet> {
  const tools = findTools(options.binDir);
  const keepDir = options.keepDir ?? process.env.KRKN_TESTNET_KEEP === '1';
  const dir = await mkdtemp(join(tmpdir(), 'krkn-tn-'));
  if (!keepDir) removeOnExit(dir);
  const log = options.log ?? (() => {});
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startHeadscaleOnce({ ...options, tools, dir, keepDir, log });
      } catch (err) {
        // Another process can take a port between our probe and headscale's bind: pick new ones.
        const clash = err instanceof TestnetError && /address already in use/.test(err.details.output ?? '');
        if (!clash || attempt >= MAX_START_ATTEMPTS) throw err;
        log(`headscale: port clash, retrying (attempt ${attempt + 1})`);
      }
    }
  } catch (err) {
    if (!keepDir) await removeDir(dir);
    throw err;
  }
}

interface StartContext extends StartTailnetOptions {
  tools: ToolPaths;
  dir: string;
  keepDir: boolean;
  log: (line: string) => void;
}

async function startHeadscaleOnce(ctx: StartContext): Promise<Tailnet> {
  const [httpPort, stunPort] = await Promise.all([freeTcpPort(), freeUdpPort()]);
  const domain = ctx.domain ?? 'krkn.test';
  const paths = headscalePaths(ctx.dir);
  const config = headscaleConfig({
    dir: ctx.dir,
    httpPort,
    stunPort,
    domain,
    ephemeralInactivityTimeout: ctx.ephemeralInactivityTimeout ?? '70s',
    logLevel: ctx.logLevel ?? 'info',
    nodeStoreBatchTimeout: ctx.nodeStoreBatchTimeout,
    batchChangeDelay: ctx.batchChangeDelay,
    ipv4Prefix: ctx.ipv4Prefix ?? '100.64.0.0/10',
    ipAllocation: ctx.ipAllocation ?? 'sequential',
  });
  await writeFile(paths.config, JSON.stringify(config, null, 2));
  const env = childEnv(ctx.dir);
  const proc = startProcess({
    command: ctx.tools.headscale,
    args: ['-c', paths.config, 'serve'],
    env,
    cwd: ctx.dir,
    logFile: paths.log,
  });
  const url = `http://127.0.0.1:${httpPort}`;
  try {
    await waitHealthy(proc, url, ctx.startTimeoutMs ?? 20_000);
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
  ctx.log(`headscale: ready at ${url} (dir ${ctx.dir})`);
  return new Tailnet({ ...ctx, url, domain, httpPort, stunPort, env, proc, configPath: paths.config });
}

/** Polls /health until 200; fails fast, with headscale's last output, if it exits meanwhile. */
async function waitHealthy(proc: ManagedProcess, url: string, timeoutMs: number): Promise<void> {
  const failure = (why: string, cause?: unknown) =>
    new TestnetError(
      'HEADSCALE_START_FAILED',
      `headscale ${why}`,
      {
        command: proc.command,
        exitCode: proc.exitInfo?.code,
        output: proc.tail(),
      },
      { cause },
    );
  // Only trust /health once *our* headscale logged its bind (hscontrol/app.go:856): if another
  // process already held the port, /health could answer 200 while ours dies of "address already in use".
  const bindLine = `listening and serving HTTP on: ${new URL(url).host}`;
  let bound = false;
  const probe = async () => {
    bound ||= proc.tail(200).includes(bindLine);
    return bound && (await httpStatus(`${url}/health`)) === 200 ? true : undefined;
  };
  try {
    await waitFor(probe, {
      timeoutMs,
      intervalMs: 100,
      what: `headscale ${url}/health`,
      giveUpIf: () => (proc.exitInfo ? failure(`${describeExit(proc.exitInfo)} while starting`) : undefined),
    });
  } catch (err) {
    if (err instanceof TestnetError && err.code === 'TIMEOUT') {
      throw failure(`did not answer ${url}/health within ${timeoutMs} ms`, err);
    }
    throw err;
  }
}

/** GET `url` and return its status code (rejects on connection errors). */
function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy(new Error('request timed out')));
    req.once('error', reject);
    req.end();
  });
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  forgetTempDir(dir);
}

interface TailnetInit {
  url: string;
  dir: string;
  domain: string;
  httpPort: number;
  stunPort: number;
  tools: ToolPaths;
  keepDir: boolean;
  env: NodeJS.ProcessEnv;
  proc: ManagedProcess;
  configPath: string;
  log: (line: string) => void;
}

/** A running local tailnet: one headscale, plus whatever was started on it. Made by {@link startTailnet}. */
export class Tailnet {
  /** Control server URL (`http://127.0.0.1:<port>`); also the DERP server. Pass to `--login-server`. */
  readonly url: string;
  /** Temp directory holding config, database, sockets, logs and the node directories. */
  readonly dir: string;
  /** MagicDNS base domain (`krkn.test` unless changed). */
  readonly domain: string;
  /** headscale's HTTP port (control, DERP, /health). */
  readonly httpPort: number;
  /** headscale's STUN port (UDP). */
  readonly stunPort: number;
  /** The binaries this tailnet runs. */
  readonly tools: ToolPaths;
  /** Whether {@link Tailnet.dir} survives {@link Tailnet.stop}. */
  readonly keepDir: boolean;
  /** Lifecycle log sink given to {@link startTailnet} (a no-op by default). */
  readonly log: (line: string) => void;

  readonly #env: NodeJS.ProcessEnv;
  readonly #proc: ManagedProcess;
  readonly #configPath: string;
  readonly #resources = new Set<Stoppable>();
  #stopping: Promise<void> | undefined;
  #policyCount = 0;

  /** @internal Use {@link startTailnet}. */
  constructor(init: TailnetInit) {
    this.url = init.url;
    this.dir = init.dir;
    this.domain = init.domain;
    this.httpPort = init.httpPort;
    this.stunPort = init.stunPort;
    this.tools = init.tools;
    this.keepDir = init.keepDir;
    this.log = init.log;
    this.#env = init.env;
    this.#proc = init.proc;
    this.#configPath = init.configPath;
    void this.#proc.exited.then((info) => {
      if (!this.#stopping) this.log(`headscale: ${describeExit(info)} unexpectedly\n${this.#proc.tail(10)}`);
    });
  }

  /** headscale's process id (e.g. to simulate a control-plane crash in a test). */
  get pid(): number | undefined {
    return this.#proc.pid;
  }

  /** True while headscale runs. */
  get running(): boolean {
    return this.#proc.running;
  }

  /**
   * Throws `HEADSCALE_EXITED` (with headscale's last output) unless headscale runs and stop() was not called.
   * Checked before every CLI call: the CLI would otherwise wait 5 s for a socket nobody serves.
   */
  assertRunning(): void {
    if (this.#stopping) throw new TestnetError('HEADSCALE_EXITED', `tailnet ${this.url} is stopped`);
    const exit = this.#proc.exitInfo;
    if (exit) {
      throw new TestnetError('HEADSCALE_EXITED', `headscale ${describeExit(exit)}`, {
        command: this.#proc.command,
        exitCode: exit.code,
        output: this.#proc.tail(20),
      });
    }
  }

  /** The last `lines` lines headscale printed (the full log is `<dir>/headscale.log`). */
  logTail(lines = 40): string {
    return this.#proc.tail(lines);
  }

  /**
   * Runs `headscale -c <config> <args...> -o json` against this tailnet (over its unix socket)
   * and returns the parsed JSON output: `undefined` when it printed nothing, the plain text when it
   * ignores `-o json` (`policy set` prints "Policy updated.").
   * Throws `CLI_FAILED` with the command and headscale's error message on a non-zero exit.
   */
  async headscale(args: string[]): Promise<unknown> {
    this.assertRunning();
    const command = [this.tools.headscale, '-c', this.#configPath, ...args, '-o', 'json'];
    const result = await runCommand(command, { env: this.#env, timeoutMs: CLI_TIMEOUT_MS });
    if (result.code !== 0) {
      throw new TestnetError('CLI_FAILED', `headscale ${args.join(' ')}: ${parseCliError(result.stderr)}`, {
        command,
        exitCode: result.code,
        output: result.stderr,
      });
    }
    return parseOutput(result.stdout);
  }

  /** Creates a user (`headscale users create <name>`). */
  async createUser(name: string): Promise<HeadscaleUser> {
    return parseUser(await this.headscale(['users', 'create', name]));
  }

  /** Lists users (`headscale users list`). */
  async listUsers(): Promise<HeadscaleUser[]> {
    return parseList(await this.headscale(['users', 'list']), parseUser);
  }

  /**
   * Creates a pre-auth key and returns the key string to pass to `tailscale up --auth-key`.
   * Runs `headscale preauthkeys create [-u <user id>] [--reusable] [--ephemeral] [--tags t,..] -e <expiration>`.
   */
  async createPreAuthKey(options: PreAuthKeyOptions = {}): Promise<string> {
    const args = ['preauthkeys', 'create', '-e', options.expiration ?? '1h'];
    if (options.user !== undefined) args.push('-u', String(await this.#userId(options.user)));
    if (options.reusable) args.push('--reusable');
    if (options.ephemeral) args.push('--ephemeral');
    if (options.tags?.length) args.push('--tags', options.tags.join(','));
    return parsePreAuthKey(await this.headscale(args));
  }

  /** Lists all nodes (`headscale nodes list`). */
  async listNodes(): Promise<HeadscaleNode[]> {
    return parseList(await this.headscale(['nodes', 'list']), parseNode);
  }

  /** Renames a node's MagicDNS name (`headscale nodes rename -i <id> <name>`). */
  async renameNode(id: number, newName: string): Promise<HeadscaleNode> {
    return parseNode(await this.headscale(['nodes', 'rename', '-i', String(id), newName]));
  }

  /** Expires a node's key now, logging it out (`headscale nodes expire -i <id>`). */
  async expireNode(id: number): Promise<HeadscaleNode> {
    return parseNode(await this.headscale(['nodes', 'expire', '-i', String(id)]));
  }

  /** Deletes a node (`headscale nodes delete -i <id> --force`). */
  async deleteNode(id: number): Promise<void> {
    await this.headscale(['nodes', 'delete', '-i', String(id), '--force']);
  }

  /**
   * Approves an interactive login, as a user clicking the login URL would.
   * The URL a client prints ends in `/register/<auth-id>`; this runs
   * `headscale auth register --auth-id <auth-id> --user <name>` and returns the registered node.
   */
  async approveLogin(loginUrl: string, user: string | HeadscaleUser): Promise<HeadscaleNode> {
    const authId = authIdFromLoginUrl(loginUrl);
    const name = typeof user === 'string' ? user : user.name;
    return parseNode(await this.headscale(['auth', 'register', '--auth-id', authId, '--user', name]));
  }

  /**
   * Replaces the ACL policy (HuJSON text) with `headscale policy set -f <file>` (policy mode is `database`).
   * Before the first call there is no policy, and headscale allows all traffic.
   */
  async setPolicy(hujson: string): Promise<void> {
    const file = join(this.dir, `policy-${++this.#policyCount}.hujson`);
    await writeFile(file, hujson);
    await this.headscale(['policy', 'set', '-f', file]);
  }

  /**
   * Ties `resource` to this tailnet: {@link Tailnet.stop} stops it first. Native nodes register
   * themselves; use it for anything else joined to the tailnet. Returns a function that unties it.
   */
  track(resource: Stoppable): () => void {
    this.#resources.add(resource);
    return () => this.#resources.delete(resource);
  }

  /** Stops everything started on this tailnet, then headscale (SIGTERM, SIGKILL after 5 s), then removes the dir. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const resources = [...this.#resources];
    this.#resources.clear();
    const results = await Promise.allSettled(resources.map((r) => r.stop()));
    for (const r of results) if (r.status === 'rejected') this.log(`stop failed: ${String(r.reason)}`);
    await this.#proc.stop(5_000);
    if (!this.keepDir) await removeDir(this.dir);
    this.log(`headscale: stopped ${this.url}${this.keepDir ? ` (kept ${this.dir})` : ''}`);
  }

  async #userId(user: string | number): Promise<number> {
    if (typeof user === 'number') return user;
    const found = (await this.listUsers()).find((u) => u.name === user);
    if (!found) throw new TestnetError('NOT_FOUND', `no headscale user named ${JSON.stringify(user)}`);
    return found.id;
  }
}

function parseOutput(stdout: string): unknown {
  const text = stdout.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The auth id at the end of a headscale login URL (`.../register/<auth-id>`). */
export function authIdFromLoginUrl(loginUrl: string): string {
  let path: string;
  try {
    path = new URL(loginUrl).pathname;
  } catch {
    throw new TestnetError('BAD_LOGIN_URL', `not a URL: ${JSON.stringify(loginUrl)}`);
  }
  const match = /\/register\/([^/]+)\/?$/.exec(path);
  if (!match) throw new TestnetError('BAD_LOGIN_URL', `login URL does not end in /register/<auth-id>: ${loginUrl}`);
  return decodeURIComponent(match[1]!);
}
