// A native Tailscale peer: the real tailscaled in userspace-networking mode (no TUN, no root),
// driven through the tailscale CLI over its own unix socket.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { childEnv, describeExit, startProcess, type ManagedProcess } from './children.js';
import { TestnetError } from './errors.js';
import { parseStatus, type NodeStatus, type PeerStatus } from './node-status.js';
import { fetchViaProxy, type TailnetRequestInit, type TailnetResponse } from './proxy-fetch.js';
import { runCommand, type CliResult } from './run.js';
import type { Tailnet } from './tailnet.js';
import { waitFor, withTimeout } from './wait.js';

/** Options for {@link startNativeNode}. */
export interface StartNativeNodeOptions {
  /** Hostname the node registers with (its MagicDNS label). */
  hostname: string;
  /** Pre-auth key. With it, startNativeNode resolves once the node is Running; without it, the node
   * waits logged out and you drive the login with {@link NativeNode.startLogin}. */
  authKey?: string;
  /** Tags to request with `--advertise-tags` (the key or the policy must allow them). */
  tags?: string[];
  /** Keep state in memory only (`--state=mem:`): the node forgets its identity when stopped.
   * headscale makes a node ephemeral only through an ephemeral pre-auth key; use both. */
  ephemeral?: boolean;
  /** Extra environment for tailscaled, e.g. `{ TS_DEBUG_ALWAYS_USE_DERP: '1' }` to force relayed traffic. */
  env?: Record<string, string>;
  /** Bound on each of "daemon ready" and "Running", in ms. Default 30 000. */
  timeoutMs?: number;
}

/** Options for {@link NativeNode.ping}. */
export interface PingOptions {
  /** Ping type: `tsmp` (default; answered by the peer's Tailscale stack, works for wasm peers too) or `disco`. */
  type?: 'tsmp' | 'disco';
  /** Overall bound, in ms. Default 10 000. */
  timeoutMs?: number;
}

/** A successful ping. */
export interface PingResult {
  /** Name of the node that answered. */
  nodeName: string;
  /** Its tailnet IP. */
  ip: string;
  /** Path taken: `TSMP`, `DERP(krkn)`, or a direct `ip:port`. */
  via: string;
  /** Round-trip time as tailscale reports it (rounded to whole ms). */
  latencyMs: number;
}

// Environment that keeps tailscaled on loopback and off Tailscale's servers. Checked in
// tailscale.com@v1.102.3; see envknob/ and the integration harness (tstest/integration/integration.go:868).
const DAEMON_ENV = {
  TS_DEBUG_USE_DERP_HTTP: '1', // headscale's embedded DERP speaks plain HTTP (derp/derphttp/derphttp_client.go:251)
  TS_NO_LOGS_NO_SUPPORT: 'true', // no log upload to log.tailscale.com (envknob/envknob.go:462, logpolicy/logpolicy.go:718)
  TS_DISABLE_PORTMAPPER: '1', // no UPnP/NAT-PMP/PCP probing of the LAN gateway (net/portmapper/portmapper.go:43)
  TS_ASSUME_NETWORK_UP_FOR_TEST: '1', // don't pause control in sandboxes without a default route (ipn/ipnlocal/local.go:1130)
  TS_PANIC_IF_HIT_MAIN_CONTROL: '1', // crash rather than talk to controlplane.tailscale.com (control/controlclient/direct.go:419)
};

const UNIX_SOCKET_MAX = 100; // sun_path is 108 bytes on Linux; keep a margin
const CLI_TIMEOUT_MS = 15_000;

/**
 * Starts a native tailscaled on `tailnet` in userspace-networking mode, with its own state dir and
 * socket and a SOCKS5 + HTTP proxy on free loopback ports, and (given an auth key) brings it up.
 * The node is tied to the tailnet: `tailnet.stop()` stops it too.
 */
export async function startNativeNode(tailnet: Tailnet, options: StartNativeNodeOptions): Promise<NativeNode> {
  tailnet.assertRunning();
  const dir = await mkdtemp(join(tailnet.dir, 'node-'));
  const socketPath = join(dir, 'tailscaled.sock');
  if (socketPath.length > UNIX_SOCKET_MAX) {
    await rm(dir, { recursive: true, force: true });
    throw new TestnetError(
      'NODE_START_FAILED',
      `socket path too long for a unix socket (${socketPath}); set a shorter TMPDIR`,
    );
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  const daemon = await spawnDaemon(tailnet, options, dir, socketPath);
  let node: NativeNode | undefined;
  try {
    node = new NativeNode({ tailnet, options, dir, socketPath, ...daemon });
    if (options.authKey) await node.up({ authKey: options.authKey, timeoutMs });
    return node;
  } catch (err) {
    if (node) await node.stop();
    else await daemon.proc.stop(2_000);
    throw err;
  }
}

/** Starts tailscaled on dir (its state survives restarts) and waits until it answers. */
async function spawnDaemon(tailnet: Tailnet, options: StartNativeNodeOptions, dir: string, socketPath: string) {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const env = childEnv(dir, { ...DAEMON_ENV, TS_LOGS_DIR: dir, ...options.env });
  const args = [
    '--tun=userspace-networking',
    `--statedir=${dir}`,
    `--socket=${socketPath}`,
    '--port=0',
    // Port 0 and read the chosen ports back from the log: no race with other processes.
    '--socks5-server=127.0.0.1:0',
    '--outbound-http-proxy-listen=127.0.0.1:0',
    '--no-logs-no-support',
  ];
  if (options.ephemeral) args.push('--state=mem:');
  const proc = startProcess({
    command: tailnet.tools.tailscaled,
    args,
    env,
    cwd: dir,
    logFile: join(dir, 'tailscaled.log'),
  });
  try {
    const ports = await waitForDaemon(proc, tailnet, socketPath, timeoutMs);
    tailnet.log(`${options.hostname}: tailscaled ready (socks :${ports.socksPort}, http :${ports.httpProxyPort})`);
    return { proc, ...ports };
  } catch (err) {
    await proc.stop(2_000);
    throw err;
  }
}

/** Waits until tailscaled logged its proxy ports and answers on its socket; fails fast if it exits. */
async function waitForDaemon(proc: ManagedProcess, tailnet: Tailnet, socketPath: string, timeoutMs: number) {
  const failure = (why: string, cause?: unknown) =>
    new TestnetError(
      'NODE_START_FAILED',
      `tailscaled ${why}`,
      {
        command: proc.command,
        exitCode: proc.exitInfo?.code,
        output: proc.tail(),
      },
      { cause },
    );
  // tailscaled logs the ports it bound for `:0` early (cmd/tailscaled/proxy.go:69,79); remember them
  // as soon as they show up, then wait for the LocalAPI to answer.
  let socksPort: number | undefined;
  let httpProxyPort: number | undefined;
  const probe = async () => {
    socksPort ??= portFromLog(proc, /SOCKS5 listening on 127\.0\.0\.1:(\d+)/);
    httpProxyPort ??= portFromLog(proc, /HTTP proxy listening on 127\.0\.0\.1:(\d+)/);
    if (socksPort === undefined || httpProxyPort === undefined) return undefined;
    const command = [tailnet.tools.tailscale, `--socket=${socketPath}`, 'status', '--json'];
    const status = await runCommand(command, { env: childEnv(tailnet.dir), timeoutMs: 5_000 });
    // Logged out, `status` may exit non-zero but still prints JSON: the LocalAPI answered.
    if (!status.stdout.trim().startsWith('{')) return undefined;
    return { socksPort, httpProxyPort };
  };
  try {
    return await waitFor(probe, {
      timeoutMs,
      intervalMs: 100,
      what: 'tailscaled to start',
      giveUpIf: () => (proc.exitInfo ? failure(`${describeExit(proc.exitInfo)} while starting`) : undefined),
    });
  } catch (err) {
    if (err instanceof TestnetError && err.code === 'TIMEOUT')
      throw failure(`did not start within ${timeoutMs} ms`, err);
    throw err;
  }
}

function portFromLog(proc: ManagedProcess, pattern: RegExp): number | undefined {
  const match = pattern.exec(proc.tail(200));
  return match ? Number(match[1]) : undefined;
}

interface NativeNodeInit {
  tailnet: Tailnet;
  options: StartNativeNodeOptions;
  dir: string;
  socketPath: string;
  proc: ManagedProcess;
  socksPort: number;
  httpProxyPort: number;
}

/** A running native tailscaled on a {@link Tailnet}. Made by {@link startNativeNode}. */
export class NativeNode {
  /** The tailnet it joins. */
  readonly tailnet: Tailnet;
  /** Requested hostname. */
  readonly hostname: string;
  /** Its directory (state, socket, `tailscaled.log`), inside the tailnet's dir. */
  readonly dir: string;
  /** tailscaled's LocalAPI socket (pass to `tailscale --socket`). */
  readonly socketPath: string;
  readonly #options: StartNativeNodeOptions;
  #proc: ManagedProcess;
  #socksPort: number;
  #httpProxyPort: number;
  readonly #untrack: () => void;
  #ips: string[] = [];
  #stopping: Promise<void> | undefined;

  /** @internal Use {@link startNativeNode}. */
  constructor(init: NativeNodeInit) {
    this.tailnet = init.tailnet;
    this.hostname = init.options.hostname;
    this.dir = init.dir;
    this.socketPath = init.socketPath;
    this.#socksPort = init.socksPort;
    this.#httpProxyPort = init.httpProxyPort;
    this.#options = init.options;
    this.#proc = init.proc;
    this.#untrack = init.tailnet.track(this);
  }

  /** Its first tailnet IPv4 address, known once it has been seen Running. Throws before that. */
  ip(): string {
    const ip = this.#ips.find((a) => !a.includes(':')) ?? this.#ips[0];
    if (!ip) throw new TestnetError('NODE_UP_FAILED', `${this.hostname} has no tailnet IP yet (not seen Running)`);
    return ip;
  }

  /** SOCKS5 proxy into the tailnet, on 127.0.0.1 (a new port after {@link NativeNode.restart}). */
  get socksPort(): number {
    return this.#socksPort;
  }

  /** HTTP forward proxy into the tailnet, on 127.0.0.1 (used by {@link NativeNode.fetch}). */
  get httpProxyPort(): number {
    return this.#httpProxyPort;
  }

  /** tailscaled's process id (for memory figures). */
  get pid(): number | undefined {
    return this.#proc.pid;
  }

  /**
   * Stops tailscaled and starts it again on the same state, then waits for Running: the warm
   * restart of a node that is already registered (no key needed).
   */
  async restart(): Promise<NodeStatus> {
    await this.#proc.stop(5_000);
    const daemon = await spawnDaemon(this.tailnet, this.#options, this.dir, this.socketPath);
    this.#proc = daemon.proc;
    this.#socksPort = daemon.socksPort;
    this.#httpProxyPort = daemon.httpProxyPort;
    return this.waitForRunning();
  }

  /** True while tailscaled runs. */
  get running(): boolean {
    return this.#proc.running;
  }

  /** The last `lines` lines of tailscaled's log (the full log is `<dir>/tailscaled.log`). */
  logTail(lines = 40): string {
    return this.#proc.tail(lines);
  }

  /** Runs `tailscale --socket=<socket> <args...>` and returns its output, whatever the exit code. */
  runCli(args: string[], options: { timeoutMs?: number } = {}): Promise<CliResult> {
    const command = [this.tailnet.tools.tailscale, `--socket=${this.socketPath}`, ...args];
    return runCommand(command, { env: childEnv(this.dir), timeoutMs: options.timeoutMs ?? CLI_TIMEOUT_MS });
  }

  /** `tailscale status --json`, parsed. */
  async status(): Promise<NodeStatus> {
    const result = await this.#cli(['status', '--json']);
    const status = parseStatus(result.stdout);
    if (status.BackendState === 'Running' && status.TailscaleIPs.length) this.#ips = status.TailscaleIPs;
    return status;
  }

  /**
   * `tailscale up` with a pre-auth key, then waits for Running. Throws `NODE_UP_FAILED` with
   * tailscale's message when the key is refused (expired, unknown, used).
   */
  async up(options: { authKey: string; timeoutMs?: number }): Promise<NodeStatus> {
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs ?? 30_000;
    const args = [...this.#upArgs(), `--auth-key=${options.authKey}`, `--timeout=${timeoutMs}ms`];
    const result = await this.runCli(args, { timeoutMs: timeoutMs + 5_000 });
    if (result.code !== 0) {
      throw new TestnetError('NODE_UP_FAILED', `${this.hostname}: tailscale up failed: ${result.stderr.trim()}`, {
        command: ['tailscale', ...args.filter((a) => !a.startsWith('--auth-key'))],
        exitCode: result.code,
        output: `${result.stderr}\n--- tailscaled log ---\n${this.#proc.tail(15)}`,
      });
    }
    return this.waitForRunning(timeoutMs);
  }

  /**
   * Starts an interactive login (`tailscale up` without a key) and resolves with the login URL it
   * prints (`<tailnet.url>/register/<auth-id>`). The node keeps waiting for approval:
   * call `tailnet.approveLogin(url, user)`, then {@link NativeNode.waitForRunning}.
   */
  async startLogin(options: { timeoutMs?: number } = {}): Promise<string> {
    const timeoutMs = options.timeoutMs ?? 20_000;
    const command = [this.tailnet.tools.tailscale, `--socket=${this.socketPath}`, ...this.#upArgs()];
    const child = spawn(command[0]!, command.slice(1), { env: childEnv(this.dir), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const found = new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const url = /https?:\/\/\S+\/register\/\S+/.exec(output)?.[0];
        if (url) resolve(url);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('error', reject);
      child.once('close', (code) => {
        reject(
          new TestnetError('NODE_UP_FAILED', `${this.hostname}: tailscale up exited (${code}) without a login URL`, {
            command,
            exitCode: code,
            output,
          }),
        );
      });
    });
    found.catch(() => {}); // after a timeout, the kill below makes it reject again: nobody listens then
    try {
      return await withTimeout(found, timeoutMs, `${this.hostname}'s login URL`);
    } finally {
      // tailscaled holds the pending login; the CLI was only there to print the URL.
      child.kill('SIGTERM');
    }
  }

  /** Polls `status` until BackendState is Running with tailnet IPs. */
  waitForRunning(timeoutMs = this.#options.timeoutMs ?? 30_000): Promise<NodeStatus> {
    return waitFor(
      async () => {
        const status = await this.status();
        return status.BackendState === 'Running' && status.TailscaleIPs.length ? status : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `${this.hostname} to be Running` },
    );
  }

  /**
   * Polls `status` until a peer with this hostname is listed with a home DERP region, and returns it.
   * Listed alone is not enough to talk: until the peer's DERP home reaches us, WireGuard has no
   * address to send to ("no UDP or DERP addr") and the first packets wait for a 5 s handshake retry.
   */
  waitForPeer(hostname: string, timeoutMs = 30_000): Promise<PeerStatus> {
    return waitFor(
      async () => Object.values((await this.status()).Peer).find((p) => p.HostName === hostname && p.Relay !== ''),
      { timeoutMs, intervalMs: 250, what: `${this.hostname} to see peer ${hostname}` },
    );
  }

  /**
   * `tailscale ping` to a tailnet IP or name. Resolves on the first pong; throws `CLI_FAILED` with
   * tailscale's message when there is no reply or no such peer (e.g. hidden by policy).
   */
  async ping(target: string, options: PingOptions = {}): Promise<PingResult> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    // TSMP returns on the first pong, so several short tries ride out a WireGuard handshake in progress.
    // A disco ping keeps going until `--c` pongs unless the path is direct: ask for exactly one.
    const args =
      (options.type ?? 'tsmp') === 'tsmp'
        ? ['ping', '--tsmp', '--c=5', `--timeout=${Math.ceil(timeoutMs / 5)}ms`]
        : ['ping', '--c=1', '--until-direct=false', `--timeout=${timeoutMs}ms`];
    const result = await this.runCli([...args, target], { timeoutMs: timeoutMs + 5_000 });
    const pong = /pong from (\S+) \(([^,)]+)[^)]*\) via (.+) in (\d+(?:\.\d+)?)(ms|s|µs)/.exec(result.stdout);
    if (result.code !== 0 || !pong) {
      throw new TestnetError(
        'CLI_FAILED',
        `${this.hostname}: tailscale ping ${target}: ${(result.stderr || result.stdout).trim()}`,
        {
          command: ['tailscale', ...args, target],
          exitCode: result.code,
          output: result.stdout + result.stderr,
        },
      );
    }
    const scale = pong[5] === 's' ? 1000 : pong[5] === 'µs' ? 0.001 : 1;
    return { nodeName: pong[1]!, ip: pong[2]!, via: pong[3]!, latencyMs: Number(pong[4]) * scale };
  }

  /**
   * Sends an HTTP request into the tailnet through this node's HTTP proxy (`http://` URLs only).
   * MagicDNS names work (`http://b.krkn.test:8080/`). Beware: for an address that is not one of
   * this node's visible peers, tailscaled's userspace proxy dials the host network instead
   * (net/tsdial/tsdial.go:603, SystemDial), so test an invisible peer with {@link NativeNode.ping}
   * or {@link NativeNode.status}, not with fetch.
   */
  fetch(url: string, init?: TailnetRequestInit): Promise<TailnetResponse> {
    return fetchViaProxy(this.httpProxyPort, url, init);
  }

  /** `tailscale logout`. headscale deletes an ephemeral node at once. */
  async logout(): Promise<void> {
    await this.#cli(['logout']);
    this.#ips = [];
  }

  /** Stops tailscaled (SIGTERM, SIGKILL after 5 s) and removes its dir unless the tailnet keeps dirs. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#untrack();
    await this.#proc.stop(5_000);
    if (!this.tailnet.keepDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** Flags shared by every `tailscale up` we run. `--reset` so a second `up` need not repeat old flags. */
  #upArgs(): string[] {
    const args = ['up', '--reset', `--login-server=${this.tailnet.url}`, `--hostname=${this.hostname}`];
    if (this.#options.tags?.length) args.push(`--advertise-tags=${this.#options.tags.join(',')}`);
    return args;
  }

  /** runCli that throws CLI_FAILED on a non-zero exit. */
  async #cli(args: string[]): Promise<CliResult> {
    const result = await this.runCli(args);
    if (result.code !== 0) {
      const down = this.running ? '' : ` (tailscaled ${describeExit(this.#proc.exitInfo!)})`;
      throw new TestnetError(
        'CLI_FAILED',
        `${this.hostname}: tailscale ${args.join(' ')}: ${result.stderr.trim()}${down}`,
        {
          command: ['tailscale', ...args],
          exitCode: result.code,
          output: `${result.stderr}\n--- tailscaled log ---\n${this.#proc.tail(15)}`,
        },
      );
    }
    return result;
  }
}
