// Runs the real krkns binary (dist/main.js) as a child process, the way systemd would.
import { tiedToParent } from '@krkn/testnet';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));

interface RunOptions {
  controlUrl: string;
  stateDir: string;
  hostname: string;
  authKey?: string;
  args?: string[];
  /** More environment (e.g. KRKNS_STORE_PASSWORD). */
  env?: NodeJS.ProcessEnv;
}

/** A krkns process. */
export class Krkns {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly stateDir: string,
  ) {
    child.stdout!.on('data', (c: Buffer) => (this.stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Runs `krkns <args>` and waits for it to exit. */
  static async command(
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const k = new Krkns(
      spawn(...tiedToParent(process.execPath, [main, ...args]), { env: { ...process.env, ...env } }),
      '',
    );
    const code = await k.exited;
    return { code, stdout: k.stdout, stderr: k.stderr };
  }

  /** Starts `krkns run` without waiting for it (it may be waiting for a login). */
  static start(opts: RunOptions): Krkns {
    const args = [
      'run',
      '--hostname',
      opts.hostname,
      '--state-dir',
      opts.stateDir,
      '--control-url',
      opts.controlUrl,
      '--log-format',
      'json',
      ...(opts.args ?? []),
    ];
    const env = { ...process.env, TS_DEBUG_USE_DERP_HTTP: '1', TS_AUTHKEY: opts.authKey ?? '', ...opts.env };
    return new Krkns(spawn(...tiedToParent(process.execPath, [main, ...args]), { env }), opts.stateDir);
  }

  /** Starts `krkns run` and resolves once it printed its ready line (or rejects with its output). */
  static async run(opts: RunOptions): Promise<Krkns> {
    const k = Krkns.start(opts);
    await k.waitFor(/krkns ready:/, 60_000);
    return k;
  }

  /** The node's tailnet IPv4 address, from the ready line. */
  get ip(): string {
    const m = /ready: node \S+ \((100\.[\d.]+)/.exec(this.stdout);
    if (!m) throw new Error(`no address in krkns output:\n${this.stdout}`);
    return m[1]!;
  }

  /** Waits for a pattern in stdout+stderr; rejects early if the process exits. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let done = false as boolean; // set by the callback below, while the loop awaits
    void this.exited.then(() => (done = true));
    while (!pattern.test(this.stdout + this.stderr)) {
      if (done)
        throw new Error(
          `krkns exited (${this.child.exitCode}) before ${pattern}:\n${this.stdout}\n${this.stderr.slice(-3000)}`,
        );
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${pattern}:\n${this.stdout}\n${this.stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Sends a signal and waits (bounded) for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
