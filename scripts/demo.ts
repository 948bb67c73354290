// The krkn demo: a private tailnet on loopback, the hub (krkns) and the client (krknc listen) as real
// processes, a small app on localhost that receives the webhooks, and events published by an
// ephemeral CI identity (krknc send) and by a native tailscaled peer.
// Run: npm run demo   (builds first; needs `bash scripts/tools.sh` once). Nothing leaves 127.0.0.1;
// everything is stopped and removed on finish, on failure and on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  TestnetError,
  startNativeNode,
  startTailnet,
  type NativeNode,
  type Tailnet,
} from '../packages/testnet/src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = { krkns: join(root, 'apps/krkns/dist/main.js'), krknc: join(root, 'apps/krknc/dist/main.js') };
/** The secret GitHub and the local app share in this demo (a repository's webhook secret). */
const webhookSecret = 'demo-webhook-secret';
/** Bounds: the whole demo, and each child's graceful stop. */
const demoTimeoutMs = 120_000;
const stopGraceMs = 8_000;
/** The children's log level: warn keeps them quiet unless something is wrong (KRKN_DEMO_LOG_LEVEL=debug to see more). */
const logLevel = process.env.KRKN_DEMO_LOG_LEVEL ?? 'warn';

// ---- output --------------------------------------------------------------------------------------

// isTTY is undefined, not false, when stdout is a pipe or a file.
const tty = (process.stdout.isTTY as boolean | undefined) === true && !process.env.NO_COLOR;
const paint = (code: string, s: string): string => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const started = Date.now();
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const out = (line = ''): void => void process.stdout.write(`${line}\n`);
const prefixes: Record<string, string> = {
  krkns: '35',
  krknc: '36',
  app: '32',
  ci: '33',
  native: '34',
  tailnet: '90',
  demo: '90',
};
/** One line from a participant: `[krkns] ...`. */
const from = (who: string, line: string): void => out(`  ${paint(prefixes[who] ?? '0', `[${who}]`)} ${line}`);
let stepNo = 0;
/** A numbered step: what happens next, and the command a user would type for it. */
function step(title: string, ...commands: string[]): void {
  out();
  out(`${paint('1', `${++stepNo}. ${title}`)} ${paint('90', `(${elapsed()})`)}`);
  for (const c of commands) out(`   ${paint('90', `$ ${c}`)}`);
}

// ---- child processes -----------------------------------------------------------------------------

// As @krkn/testnet does for headscale and tailscaled: on Linux, `setpriv --pdeathsig KILL` makes the
// kernel kill the child if this process dies without cleaning up (even by SIGKILL).
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => process.platform === 'linux' && existsSync(p));
const children = new Set<Child>();
// The children's settings are the flags the demo passes: a KRKNC_JSON=1 or TS_AUTHKEY of the caller's shell must not change them.
const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(KRKNC_|KRKNS_|TS_)/.test(k)));

/** krkns or krknc as a child process: output split in lines, the last ones kept for error messages. */
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly stdout: string[] = [];
  private readonly recent: string[] = [];
  private readonly listeners = new Set<(line: string) => void>();

  constructor(
    readonly name: string,
    program: keyof typeof bin,
    args: string[],
    env: Record<string, string>,
    /** Called with each stdout line (the command's own output, as a user sees it). */
    onLine?: (line: string) => void,
  ) {
    const argv = [process.execPath, bin[program], ...args];
    const [file, ...rest] = setpriv ? [setpriv, '--pdeathsig', 'KILL', '--', ...argv] : argv;
    this.proc = spawn(file!, rest, { cwd: root, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(this);
    lines(this.proc.stdout!, (line) => {
      this.stdout.push(line);
      this.keep(line);
      onLine?.(line);
      for (const l of this.listeners) l(line);
    });
    // At --log-level warn the children's logs are quiet: whatever they do say is worth showing.
    lines(this.proc.stderr!, (line) => {
      this.keep(line);
      if (line.trim()) from(name, paint('33', line));
    });
    this.exited = new Promise((resolve) => {
      this.proc.once('error', () => resolve({ code: null, signal: null }));
      this.proc.once('close', (code, signal) => resolve({ code, signal }));
    });
    void this.exited.then((e) => {
      this.exit = e;
      children.delete(this);
    });
  }

  /** Resolves with the first stdout line matching `pattern`; rejects if the child exits first or after timeoutMs. */
  waitForLine(pattern: RegExp, what: string, timeoutMs: number): Promise<string> {
    const seen = this.stdout.find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        this.listeners.delete(onLine);
        fn();
      };
      const onLine = (line: string): void => {
        if (pattern.test(line)) done(() => resolve(line));
      };
      const timer = setTimeout(
        () => done(() => reject(this.failure(`${what} did not happen within ${timeoutMs / 1000}s`))),
        timeoutMs,
      );
      this.listeners.add(onLine);
      void this.exited.then((e) => done(() => reject(this.failure(`exited (${describe(e)}) before ${what}`))));
    });
  }

  /** Resolves with the exit code; rejects after timeoutMs (and kills the child). */
  async finished(timeoutMs: number): Promise<number> {
    const timer = setTimeout(() => void this.stop(), timeoutMs);
    const e = await this.exited;
    clearTimeout(timer);
    if (e.signal) throw this.failure(`did not finish within ${timeoutMs / 1000}s`);
    return e.code ?? 1;
  }

  /**
   * SIGTERM, up to graceMs to exit, then SIGKILL. After a Ctrl-C the child got the terminal's SIGINT
   * too and is already stopping: it gets a moment first, so a second signal does not cut that short.
   */
  async stop(graceMs = stopGraceMs, interrupted = false): Promise<void> {
    if (interrupted && (await this.exitsWithin(3_000))) return;
    if (this.exit) return;
    this.proc.kill('SIGTERM');
    if (await this.exitsWithin(graceMs)) return;
    from(this.name, paint('33', `did not stop within ${graceMs / 1000}s of SIGTERM: killed`));
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), ms))),
    ]);
    clearTimeout(timer);
    return exited;
  }

  /** An error naming this child, with its last output lines. */
  failure(message: string): DemoError {
    return new DemoError(`${this.name} ${message}`, this.name, this.recent.slice(-25));
  }

  private keep(line: string): void {
    this.recent.push(line);
    if (this.recent.length > 200) this.recent.splice(0, this.recent.length - 200);
  }
}

class DemoError extends Error {
  constructor(
    message: string,
    readonly who?: string,
    readonly tail: string[] = [],
  ) {
    super(message);
  }
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) onLine(p.replace(/\r$/, ''));
  });
  stream.on('end', () => partial && onLine(partial));
}

function describe(e: { code: number | null; signal: NodeJS.Signals | null }): string {
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

// ---- the local app -------------------------------------------------------------------------------

interface Received {
  id: string;
  topic: string;
  body: Buffer;
}

/** "Your app on localhost": prints every webhook it gets and checks GitHub signatures. */
class LocalApp {
  private readonly received = new Map<string, Received>();
  private readonly waiters = new Map<string, (r: Received) => void>();
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.show(req, Buffer.concat(chunks));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/webhooks`;
  }

  /** Resolves when the event with this id has arrived. */
  waitFor(id: string, timeoutMs: number): Promise<Received> {
    const got = this.received.get(id);
    if (got) return Promise.resolve(got);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new DemoError(`event ${id} did not reach the local app within ${timeoutMs / 1000}s`, 'krknc'));
      }, timeoutMs);
      this.waiters.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  }

  close(): void {
    this.server?.closeAllConnections();
    this.server?.close();
  }

  private show(req: IncomingMessage, body: Buffer): void {
    const h = (name: string): string | undefined => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    };
    from('app', `${paint('1', `${req.method} ${req.url}`)}  (${body.length} bytes)`);
    for (const name of [
      'x-krkn-event-id',
      'x-krkn-topic',
      'x-krkn-sender',
      'x-krkn-attempt',
      'content-type',
      'x-github-event',
      'x-hub-signature-256',
    ]) {
      const v = h(name);
      if (v !== undefined) from('app', `  ${paint('90', `${name}:`)} ${v}`);
    }
    const all = body.toString('utf8').replace(/\n$/, '').split('\n');
    const shown = all.slice(0, 8);
    shown.forEach((l, i) =>
      from('app', `  ${paint('90', i === 0 ? 'body:' : '     ')} ${l.length > 100 ? `${l.slice(0, 100)}…` : l}`),
    );
    if (all.length > shown.length) from('app', `        ${paint('90', '…')}`);
    const signature = h('x-hub-signature-256');
    if (signature) {
      const expected = `sha256=${createHmac('sha256', webhookSecret).update(body).digest('hex')}`;
      const ok = signature.length === expected.length && timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
      from(
        'app',
        ok
          ? paint(
              '32',
              `  signature OK: HMAC-SHA256(secret, the ${body.length} raw bytes received) equals X-Hub-Signature-256`,
            )
          : paint('31', `  signature MISMATCH: expected ${expected}`),
      );
      if (!ok) this.badSignature = true;
    }
    const id = h('x-krkn-event-id');
    if (id && !this.received.has(id)) {
      const r = { id, topic: h('x-krkn-topic') ?? '', body };
      this.received.set(id, r);
      this.waiters.get(id)?.(r);
      this.waiters.delete(id);
    }
  }

  badSignature = false;
}

// ---- the demo ------------------------------------------------------------------------------------

let tailnet: Tailnet | undefined;
let tempDir: string | undefined;
let app: LocalApp | undefined;
let listener: Child | undefined;
let hub: Child | undefined;
let stopping: Promise<never> | undefined;

/** The command line a user would type, with the long parts shortened. */
function shown(program: string, args: string[], env: Record<string, string> = {}): string {
  const quote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const short = (a: string): string => (tempDir ? a.replaceAll(tempDir, '$DEMO') : a);
  const vars = Object.entries(env).map(([k, v]) => `${k}=${k === 'TS_AUTHKEY' ? `${v.slice(0, 12)}…` : v}`);
  return [...vars, program, ...args.map((a) => short(quote(a)))].join(' ');
}

async function main(): Promise<void> {
  for (const [name, path] of Object.entries(bin)) {
    if (!existsSync(path))
      throw new DemoError(`${path} is missing: build first (npm run build), or run the demo with npm run demo`, name);
  }
  out(paint('1', 'krkn demo: a webhook hub and its client, each its own node on a private tailnet on 127.0.0.1'));
  tempDir = mkdtempSync(join(tmpdir(), 'krkn-demo-'));

  // 1. The tailnet.
  step('A local tailnet: headscale (control server and DERP relay) on loopback');
  tailnet = await startTailnet();
  from(
    'tailnet',
    `headscale at ${tailnet.url}, MagicDNS domain ${tailnet.domain}; state and files in $DEMO=${tempDir}`,
  );
  const user = await tailnet.createUser('demo');
  const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  const ciKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true, ephemeral: true });
  from('tailnet', `user "demo": a reusable pre-auth key (hub, laptop, build box) and an ephemeral one (CI)`);
  // A native tailscaled peer for step 7, joining in the background meanwhile.
  const nativeUp = startNativeNode(tailnet, { hostname: 'build-box', authKey });
  nativeUp.catch(() => undefined); // awaited in step 7

  const env = { TS_AUTHKEY: authKey, TS_DEBUG_USE_DERP_HTTP: '1' };
  const quiet = ['--log-format', 'pretty', '--log-level', logLevel];

  // 2. The hub.
  const hubArgs = [
    'run',
    '--hostname',
    'krkns',
    '--state-dir',
    join(tempDir, 'krkns'),
    '--control-url',
    tailnet.url,
    ...quiet,
  ];
  step(
    'Start the hub, krkns: it joins the tailnet as its own node and listens only there',
    shown('krkns', hubArgs, env),
  );
  hub = new Child('krkns', 'krkns', hubArgs, env, (line) => from('krkns', line));
  await hub.waitForLine(/^krkns ready:/, 'its ready line', 60_000);

  // 3. The local app.
  app = new LocalApp();
  await app.start();
  step(`Your app on localhost: ${app.url} (a plain node:http server; it prints what it gets)`);
  from('app', `listening on ${app.url}`);

  // 4. krknc listen.
  const listenArgs = [
    'listen',
    '--hostname',
    'krknc-laptop',
    '--state-dir',
    join(tempDir, 'krknc'),
    '--control-url',
    tailnet.url,
    '--server',
    'krkns',
    '--topic',
    'demo/**',
    '--forward-to',
    app.url,
    ...quiet,
  ];
  step(
    'Start krknc listen on your laptop: subscribes on krkns, forwards deliveries to your app',
    shown('krknc', listenArgs, env),
  );
  listener = new Child('krknc', 'krknc', listenArgs, env, (line) => from('krknc', line));
  await listener.waitForLine(/^forwarding /, 'its subscription', 60_000);

  // 5. A CI job publishes with krknc send --ephemeral.
  const build = JSON.stringify({ pipeline: 'build', commit: '4f6148e', status: 'passed', durationSeconds: 73 });
  const ciId = await ciSend(
    'A CI job publishes its result: joins with an ephemeral key, sends, logs out, is gone',
    'ci-job-1',
    ['--topic', 'demo/ci', '--data', build],
    ciKey,
  );
  await arrival(ciId);

  // 6. A GitHub-style signed webhook, sent byte for byte.
  const payload = `{\n  "ref": "refs/heads/main",\n  "repository": { "full_name": "acme/shop" },\n  "head_commit": { "message": "Café menu: add crème brûlée ☕" }\n}\n`;
  const payloadFile = join(tempDir, 'push.json');
  writeFileSync(payloadFile, payload);
  const signature = `sha256=${createHmac('sha256', webhookSecret).update(payload).digest('hex')}`;
  const ghId = await ciSend(
    'A GitHub-style webhook, signed over its raw body (X-Hub-Signature-256): krkn keeps the bytes, so your app can verify it',
    'ci-job-2',
    [
      '--topic',
      'demo/github',
      '--data',
      `@${payloadFile}`,
      '-H',
      'X-GitHub-Event: push',
      '-H',
      `X-Hub-Signature-256: ${signature}`,
    ],
    ciKey,
  );
  await arrival(ghId);
  if (app.badSignature)
    throw new DemoError('the local app could not verify the GitHub signature: the body was changed on the way');

  // 7. A native tailscaled peer publishes with plain HTTP over the tailnet.
  step(
    'Any tailnet peer can publish: a native tailscaled node ("build-box") POSTs over the tailnet',
    `curl -H 'content-type: application/json' -d '{"job":"nightly",…}' http://krkns/hooks/demo/native   # on build-box`,
  );
  const native: NativeNode = await nativeUp;
  await native.waitForPeer('krkns', 30_000);
  const nightly = JSON.stringify({ job: 'nightly', tests: 1287, failures: 0 });
  const res = await native.fetch('http://krkns/hooks/demo/native', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: nightly,
    timeoutMs: 20_000,
  });
  from('native', `krkns answered ${res.status} ${res.text().trim()}`);
  if (res.status !== 202)
    throw new DemoError(`krkns answered ${res.status} to build-box's POST: ${res.text()}`, 'krkns');
  const nativeId = (res.json() as { id: string }).id;
  await arrival(nativeId);

  // 8. Status.
  const krknsStatusArgs = ['status', '--state-dir', join(tempDir, 'krkns')];
  step(
    "krkns status: node, listener, storage and delivery queue (over the daemon's admin socket)",
    shown('krkns', krknsStatusArgs),
  );
  await oneShot('krkns', 'krkns', krknsStatusArgs, {}, 15_000);
  const nodes = await tailnet.listNodes();
  const ciLeft = nodes.filter((n) => n.givenName.startsWith('ci-job-')).length;
  from(
    'tailnet',
    `headscale's nodes: ${nodes.map((n) => `${n.givenName} (${n.online ? 'online' : 'offline'})`).join(', ')}`,
  );
  from(
    'tailnet',
    ciLeft === 0
      ? 'the CI jobs left no node behind: ephemeral nodes are deleted when they log out'
      : `${ciLeft} CI node(s) still listed`,
  );
  const krkncStatusArgs = ['status', '--state-dir', join(tempDir, 'krknc'), '--server', 'krkns'];
  step(
    'krknc status beside the running listen: it asks that process, and checks the server',
    shown('krknc', krkncStatusArgs),
  );
  await oneShot('krknc', 'krknc', krkncStatusArgs, {}, 20_000);
}

/** Waits until the event has reached the local app and krknc listen has printed its line. */
async function arrival(id: string): Promise<void> {
  await app!.waitFor(id, 20_000);
  await listener!.waitForLine(new RegExp(`\\b${id}\\b`), `its line for ${id}`, 5_000);
}

/** `krknc send --ephemeral` as a CI job would run it, in a fresh state directory; returns the event id. */
async function ciSend(title: string, hostname: string, args: string[], key: string): Promise<string> {
  const env = { TS_AUTHKEY: key, TS_DEBUG_USE_DERP_HTTP: '1' };
  const full = [
    'send',
    '--ephemeral',
    '--hostname',
    hostname,
    '--state-dir',
    join(tempDir!, hostname),
    '--control-url',
    tailnet!.url,
    '--server',
    'krkns',
    ...args,
  ];
  step(title, shown('krknc', full, env));
  const t0 = Date.now();
  const stdout = await oneShot(
    'ci',
    'krknc',
    [...full, '--log-format', 'pretty', '--log-level', logLevel],
    env,
    45_000,
    (line) => from('ci', `published ${paint('36', line)}`),
  );
  const id = stdout.find((l) => /^evt_/.test(l.trim()))?.trim();
  if (!id) throw new DemoError(`krknc send printed no event id (output: ${stdout.join(' | ')})`, 'ci');
  from(
    'ci',
    paint(
      '90',
      `joined, sent and left the tailnet in ${((Date.now() - t0) / 1000).toFixed(1)}s (an ephemeral node: headscale deletes it at logout)`,
    ),
  );
  return id;
}

/** Runs a command to completion; its stdout lines are shown under `who`. Fails on a non-zero exit. */
async function oneShot(
  who: string,
  program: keyof typeof bin,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<string[]> {
  const child = new Child(who, program, args, env, onLine ?? ((line) => from(who, line)));
  const code = await child.finished(timeoutMs);
  if (code !== 0) throw child.failure(`${program} ${args[0]} failed with exit code ${code}`);
  return child.stdout;
}

/** Stops everything once (children first, then the tailnet), removes the temp dir, and exits. */
function shutdown(code: number, reason?: string): Promise<never> {
  stopping ??= (async () => {
    out();
    out(`${paint('1', reason ?? `${++stepNo}. Stop everything`)} ${paint('90', `(${elapsed()})`)}`);
    const t0 = Date.now();
    // A safety net: whatever hangs, the demo ends.
    setTimeout(() => {
      out(paint('31', 'cleanup took longer than 30s: killing what is left'));
      process.exit(code || 1);
    }, 30_000).unref();
    app?.close();
    // listen first (krkns keeps its subscription for next time), then the hub, then the tailnet.
    const interrupted = code === 130;
    await Promise.all(
      [...children].filter((c) => c !== listener && c !== hub).map((c) => c.stop(stopGraceMs, interrupted)),
    ); // a send cut short
    await listener?.stop(stopGraceMs, interrupted);
    await hub?.stop(stopGraceMs, interrupted);
    for (const c of [listener, hub]) if (c?.exit) from(c.name, paint('90', `stopped (${describe(c.exit)})`));
    await tailnet?.stop();
    if (tailnet) from('tailnet', paint('90', 'headscale and build-box stopped'));
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    out(`   ${paint('90', `all stopped and temp files removed in ${((Date.now() - t0) / 1000).toFixed(1)}s`)}`);
    out();
    if (code === 0)
      out(
        paint('32', `Demo finished in ${elapsed()}.`) +
          ' Next: README.md ("krknc — the client") for running it on your own tailnet.',
      );
    process.exit(code);
  })();
  return stopping;
}

// Last resort if the process exits without shutdown() finishing (setpriv covers SIGKILL on Linux).
process.on('exit', () => {
  for (const c of children) c.proc.kill('SIGKILL');
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
});
let firstSignalAt = 0;
const onSignal = (sig: NodeJS.Signals, code: number): void => {
  // Under tsx one Ctrl-C arrives twice (from the terminal, and relayed by tsx's parent process):
  // only a second signal a moment later means "stop waiting".
  if (firstSignalAt === 0) firstSignalAt = Date.now();
  else if (Date.now() - firstSignalAt < 1_000) return;
  else {
    out(paint('31', `${sig} again: exiting without waiting`));
    process.exit(code);
  }
  void shutdown(code, `Interrupted (${sig}): stopping everything`);
};
process.on('SIGINT', () => onSignal('SIGINT', 130));
process.on('SIGTERM', () => onSignal('SIGTERM', 143));
setTimeout(() => {
  out(paint('31', `\nThe demo did not finish within ${demoTimeoutMs / 1000}s.`));
  for (const c of children) for (const l of c.failure('').tail) from(c.name, paint('90', l));
  void shutdown(1, 'Timed out: stopping everything');
}, demoTimeoutMs).unref();

main().then(
  () => shutdown(0),
  (err: unknown) => {
    if (stopping) return stopping; // after Ctrl-C, failures are just the interruption
    out();
    const [first, ...more] = String((err as { message?: unknown }).message ?? err).split('\n');
    out(paint('31', `Demo failed: ${first}`));
    if (err instanceof DemoError) {
      if (err.tail.length > 0) out(paint('90', `   last output of ${err.who}:`));
      for (const l of err.tail) out(paint('90', `   | ${l}`));
    } else if (err instanceof TestnetError) {
      // headscale or tailscaled: the message goes on with the command's last output lines.
      if (err.details.command) out(paint('90', `   command: ${err.details.command.join(' ')}`));
      for (const l of more.slice(-25)) out(paint('90', `   | ${l}`));
    } else out(paint('90', String((err as Error).stack ?? err))); // not expected: a bug, so the stack
    return shutdown(1, 'Stopping everything after the failure');
  },
);
