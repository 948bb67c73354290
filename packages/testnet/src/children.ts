// Long-running child processes (headscale, tailscaled) and the guarantees around them:
// logs go to a file and a short in-memory tail for error messages, stop() is bounded,
// and nothing outlives the Node process that started it.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, rmSync, type WriteStream } from 'node:fs';
import type { RunAs } from './run.js';
import { sleep } from './wait.js';

/** How a child process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all (e.g. ENOENT). */
  error?: Error;
}

export interface SpawnOptions {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** stdout and stderr are appended here. */
  logFile: string;
  /** Run as this user instead of ours (needs root). setpriv then runs as that user too, so the
   * kernel does not clear the parent-death signal on a later credential change. */
  runAs?: RunAs | undefined;
}

const TAIL_LINES = 200;

// Linux can kill a child when its parent dies (PR_SET_PDEATHSIG), even if the parent is SIGKILLed
// (vitest killing a hung worker, say). Node cannot call prctl, but util-linux's `setpriv` can: it sets
// the flag and execs the real program, so the pid we hold is the program's own.
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => process.platform === 'linux' && existsSync(p));

/**
 * `[file, args]` that run `command` so Linux kills it when this process dies, even by SIGKILL
 * (through util-linux's setpriv where it exists): test daemons never outlive their test.
 */
export function tiedToParent(command: string, args: string[]): [string, string[]] {
  return setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args];
}

/** A child process with its log captured; see {@link startProcess}. */
export class ManagedProcess {
  readonly pid: number | undefined;
  readonly command: string[];
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  /** Set once the process has exited. */
  exitInfo: ExitInfo | undefined;

  readonly #child: ChildProcess;
  readonly #log: WriteStream;
  readonly #tail: string[] = [];
  #partial = '';

  constructor(options: SpawnOptions) {
    this.command = [options.command, ...options.args];
    const [file, args] = tiedToParent(options.command, options.args);
    this.#log = createWriteStream(options.logFile, { flags: 'a' });
    this.#child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...options.runAs,
    });
    this.pid = this.#child.pid;
    this.#child.stdout?.on('data', (chunk: Buffer) => this.#record(chunk));
    this.#child.stderr?.on('data', (chunk: Buffer) => this.#record(chunk));
    this.exited = new Promise((resolve) => {
      this.#child.once('error', (error) => this.#finish({ code: null, signal: null, error }, resolve));
      // 'close' (not 'exit') so the last output lines are recorded before anyone reads the tail.
      this.#child.once('close', (code, signal) => this.#finish({ code, signal }, resolve));
    });
    live.add(this);
    installExitHooks();
  }

  /** The last `lines` lines of output, oldest first. */
  tail(lines = 40): string {
    const all = this.#partial ? [...this.#tail, this.#partial] : this.#tail;
    return all.slice(-lines).join('\n');
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Sends a signal now, without waiting (no-op once exited). */
  signal(sig: NodeJS.Signals): void {
    if (this.running) this.#child.kill(sig);
  }

  /** SIGTERM, wait up to `graceMs`, then SIGKILL; resolves when the process is gone. */
  async stop(graceMs = 5_000): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    this.signal('SIGTERM');
    // ref: false so a pending grace timer never keeps the Node process alive on its own.
    const graceful = await Promise.race([this.exited, sleep(graceMs, undefined, { ref: false })]);
    if (graceful) return graceful;
    this.signal('SIGKILL');
    return this.exited;
  }

  #record(chunk: Buffer): void {
    this.#log.write(chunk);
    const lines = (this.#partial + chunk.toString('utf8')).split('\n');
    this.#partial = lines.pop() ?? '';
    this.#tail.push(...lines);
    if (this.#tail.length > TAIL_LINES) this.#tail.splice(0, this.#tail.length - TAIL_LINES);
  }

  #finish(info: ExitInfo, resolve: (info: ExitInfo) => void): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    live.delete(this);
    this.#log.end();
    resolve(info);
  }
}

/** Spawns a long-running child whose lifetime is bounded by ours. */
export function startProcess(options: SpawnOptions): ManagedProcess {
  return new ManagedProcess(options);
}

/**
 * A minimal environment for a child: PATH, HOME and `extra`. Nothing else is inherited, so stray
 * HEADSCALE_* (viper reads them as config) or TS_* variables of the caller cannot change a testnet.
 */
export function childEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...extra };
}

/** Describes how a process ended, for error messages. */
export function describeExit(info: ExitInfo): string {
  if (info.error) return `could not be started (${info.error.message})`;
  return info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`;
}

// ---- last-resort cleanup ---------------------------------------------------------------------------

const live = new Set<ManagedProcess>();
const tempDirs = new Set<string>();

/** Removes `dir` when the Node process exits, in case nobody called stop(). */
export function removeOnExit(dir: string): void {
  tempDirs.add(dir);
  installExitHooks();
}

/** Forgets a directory registered with {@link removeOnExit} (it was removed normally). */
export function forgetTempDir(dir: string): void {
  tempDirs.delete(dir);
}

let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' handlers must be synchronous: kill() and rmSync() are.
  process.once('exit', () => {
    for (const child of live) child.signal('SIGKILL');
    for (const dir of tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // A dying child may still be writing into it; a throw here would mask the real exit code.
      }
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => onSignal(sig));
  }
}

function onSignal(sig: NodeJS.Signals): void {
  for (const child of live) child.signal('SIGTERM');
  // Listening to a signal switches off Node's default "exit on signal". If nobody else listens
  // (the app has no handler of its own), exit the way the default would; our 'exit' hook finishes up.
  if (process.listenerCount(sig) === 1) {
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  }
}
