// Real processes for the krknc end-to-end tests: krkns and krknc run from their dist/ as child
// processes (the way a developer or CI job runs them), a node:http server plays the local app.
import { tiedToParent } from '@krkn/testnet';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
export const krkncMain = join(root, 'apps/krknc/dist/main.js');
export const krknsMain = join(root, 'apps/krkns/dist/main.js');

/** Every process started here, so afterAll can make sure none survives a failed test. */
const live = new Set<Proc>();

/** Kills whatever is still running (SIGKILL after a grace period). */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...live].map((p) => p.stop('SIGTERM', 10_000)));
}

/** A child process whose output the test can wait for. */
export class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout!.on('data', (c: Buffer) => (this.stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    live.add(this);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(this);
        this.exitCode = signal ? null : code;
        resolve(code);
      }),
    );
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Waits (bounded) for a pattern in stdout; fails at once, with the output, if the process exits. */
  async waitFor(
    pattern: RegExp,
    timeoutMs = 30_000,
    stream: 'stdout' | 'stderr' | 'both' = 'stdout',
  ): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = stream === 'stdout' ? this.stdout : stream === 'stderr' ? this.stderr : this.stdout + this.stderr;
      const m = pattern.exec(text);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} exited (${this.exitCode}) before ${pattern}:\n${this.output()}`);
      if (Date.now() > deadline)
        throw new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${pattern}:\n${this.output()}`);
      await sleep(50);
    }
  }

  /** Sends a signal and waits (bounded) for the exit code; SIGKILL if it does not stop. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<number | null> {
    if (!this.running) return this.exitCode ?? null;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  output(): string {
    return `--- stdout\n${this.stdout.slice(-4000)}\n--- stderr\n${this.stderr.slice(-4000)}`;
  }
}

/** Environment for our children: plain-HTTP DERP (the testnet's) and an auth key if given. */
export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const inherited = (k: string) =>
    !(k.startsWith('KRKNC_') || k.startsWith('KRKNS_') || k === 'TS_AUTHKEY' || k === 'TS_AUTH_KEY');
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => inherited(k)));
  Object.assign(env, { TS_DEBUG_USE_DERP_HTTP: '1', NO_COLOR: '1' });
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Starts `node apps/krknc/dist/main.js <args>`. */
export function krknc(args: string[], env: Record<string, string | undefined> = {}, name = `krknc ${args[0]}`): Proc {
  return new Proc(
    name,
    spawn(...tiedToParent(process.execPath, [krkncMain, ...args]), {
      env: childEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
}

/** Runs a krknc command to its end (bounded) and returns its exit code and output. */
export async function runKrknc(
  args: string[],
  env: Record<string, string | undefined> = {},
  opts: { timeoutMs?: number; stdin?: Buffer } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = krknc(args, env);
  p.child.stdin!.end(opts.stdin ?? '');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

/** A running krkns (`krkns run`), ready. */
export interface Krkns {
  proc: Proc;
  ip: string;
  stateDir: string;
}

/** Starts krkns and waits for its "krkns ready:" line. */
export async function startKrkns(opts: {
  controlUrl: string;
  authKey: string;
  stateDir: string;
  hostname: string;
  args?: string[];
}): Promise<Krkns> {
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
  const proc = new Proc(
    'krkns',
    spawn(...tiedToParent(process.execPath, [krknsMain, ...args]), { env: childEnv({ TS_AUTHKEY: opts.authKey }) }),
  );
  const m = await proc.waitFor(/krkns ready: node \S+ \((100\.[\d.]+)/, 90_000);
  return { proc, ip: m[1]!, stateDir: opts.stateDir };
}

/** Runs a krkns command (`events redeliver ...`) to its end and returns its exit code and output. */
export async function runKrkns(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new Proc('krkns', spawn(...tiedToParent(process.execPath, [krknsMain, ...args]), { env: childEnv() }));
  const code = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

/** JSON from krkns's admin socket (what `krkns events ...` uses), for checks on its side. */
export function krknsAdmin<T>(stateDir: string, method: string, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(stateDir, 'krkns.sock'), method, path }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () =>
        res.statusCode === 200 || res.statusCode === 202
          ? resolve(JSON.parse(text) as T)
          : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`)),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** One request the local app received. */
export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** The app on localhost that krknc forwards to: records every request, answers `status`. */
export class LocalApp {
  readonly received: Received[] = [];
  status = 200;
  private server: Server | undefined;
  port = 0;

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.received.push({
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          rawHeaders: req.rawHeaders,
          body: Buffer.concat(chunks),
        });
        res.writeHead(this.status, { 'content-type': 'text/plain', 'x-local': 'yes' });
        res.end(`local ${this.status} for ${req.method} ${req.url}`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Stops listening (the port stays ours to start again on). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }

  /** Requests carrying this krkn event id. */
  withEvent(id: string): Received[] {
    return this.received.filter((r) => r.headers['x-krkn-event-id'] === id);
  }
}

/** A TCP port on 127.0.0.1 that nothing listened on a moment ago (bind port 0, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A temporary directory, removed by remove(). */
export function tempDir(prefix = 'krknc-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Polls until probe returns a value (bounded). */
export async function until<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Parses stdout JSON lines. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Publishes through krkns's admin socket (the cheapest publisher a test has). */
export function krknsPublish(
  stateDir: string,
  topic: string,
  body: Buffer | string,
  headers: Record<string, string> = {},
): Promise<{ id: string; topic: string; duplicate: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: join(stateDir, 'krkns.sock'),
        method: 'POST',
        path: `/hooks/${topic}`,
        headers: { 'content-type': 'application/octet-stream', ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () =>
          res.statusCode === 202
            ? resolve(JSON.parse(text) as { id: string; topic: string; duplicate: boolean })
            : reject(new Error(`publish: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
