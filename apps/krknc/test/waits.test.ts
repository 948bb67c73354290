// No silent waits (issue 15), end to end against a real headscale: each case runs a real krkns or
// krknc at the default log level and judges it from its stderr alone: the first line about the
// wait comes within 2 s, the progress repeats, and the final message names the cause and the fix.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTailnet, tiedToParent, type Tailnet } from '@krkn/testnet';
import { Proc, childEnv, freePort, krkncMain, krknsMain, startKrkns, stopAll, tempDir } from './helpers.js';

/** One stderr line, with when it arrived (ms after the process started). */
interface Line {
  ms: number;
  text: string;
}

/** A run of a command: its stderr lines as they came, and how it ended. */
interface Run {
  lines: Line[];
  code: number | null;
  /** By itself, or stopped (SIGTERM) once its lines said enough, or at the bound. */
  ended: 'exit' | 'enough' | 'bound';
}

/**
 * Runs a command until it exits or `boundMs` passes (then SIGTERM), recording stderr line by line.
 * `enough` may end the run early once the lines say all the case needs.
 */
function runCommand(
  main: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  boundMs: number,
  enough: (lines: Line[]) => boolean = () => false,
): Promise<Run> {
  const started = Date.now();
  const child = spawn(...tiedToParent(process.execPath, [main, ...args]), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: Line[] = [];
  let ended: Run['ended'] = 'exit';
  let partial = '';
  child.stderr.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    for (const text of parts) if (text.trim()) lines.push({ ms: Date.now() - started, text: message(text) });
    if (ended === 'exit' && enough(lines)) {
      ended = 'enough';
      child.kill('SIGTERM');
    }
  });
  const bound = setTimeout(() => {
    ended = 'bound';
    child.kill('SIGTERM');
  }, boundMs);
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      clearTimeout(bound);
      resolve({ lines, code: signal ? null : code, ended });
    });
  });
}

/** Runs a command to its end (bounded) and returns its stdout. */
function commandOutput(main: string, args: string[]): Promise<string> {
  const [file, argv] = tiedToParent(process.execPath, [main, ...args]);
  const child = spawn(file, argv, { env: childEnv(), stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const bound = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('exit', () => {
      clearTimeout(bound);
      resolve(out);
    }),
  );
}

/** A JSON log line's msg (the default format off a terminal); other lines (`error: ...`) as they are. */
function message(text: string): string {
  try {
    const o = JSON.parse(text) as { msg?: unknown };
    return typeof o.msg === 'string' ? o.msg : text;
  } catch {
    return text;
  }
}

function first(run: Run, pattern: RegExp): Line | undefined {
  return run.lines.find((l) => pattern.test(l.text));
}

function count(run: Run, pattern: RegExp): number {
  return run.lines.filter((l) => pattern.test(l.text)).length;
}

function transcript(run: Run): string {
  return run.lines.map((l) => `${String(l.ms).padStart(6)}ms ${l.text}`).join('\n');
}

interface Case {
  name: string;
  /** Starts the command; resolves with its run. */
  run: () => Promise<Run>;
  /** The line that announces the wait, and when it must come (ms after the command started). */
  announce: RegExp;
  announceWithinMs: number;
  /** The repeated progress line, and how often it must have appeared. */
  progress: RegExp;
  progressAtLeast: number;
  /** The final word: the cause and the fix. */
  final: RegExp[];
  /** How it must end: exit code 4 by itself, or a daemon that runs on, stopped by the case (then exit 0). */
  ends: { by: 'exit' | 'enough'; code: number };
}

let tailnet: Tailnet;
/** A web server that is not a control server: 404 to everything. */
let notControl: Server;
let userKey: string;
let hubKey: string;
const state = tempDir('krkn-waits-');
const dir = (name: string): string => join(state.dir, name);

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('dev');
  userKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  hubKey = await tailnet.createPreAuthKey({ tags: ['tag:krkn'], reusable: true });
  // Only the service nodes may talk to each other: the laptop's user gets no path to krkns.
  const grants = [{ src: ['tag:krkn'], dst: ['tag:krkn'], ip: ['*'] }];
  await tailnet.setPolicy(JSON.stringify({ tagOwners: { 'tag:krkn': ['dev@'] }, grants }));
  // krkns holds the name "dup" before the collision case starts a second one.
  await startKrkns({ controlUrl: tailnet.url, authKey: hubKey, stateDir: dir('hub'), hostname: 'dup' });
  notControl = createServer((_req, res) => res.writeHead(404).end('not here'));
  await new Promise<void>((resolve) => notControl.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  (notControl as Server | undefined)?.close();
  await stopAll();
  await (tailnet as Tailnet | undefined)?.stop();
  state.remove();
});

const addressOf = (server: Server): string => `127.0.0.1:${(server.address() as AddressInfo).port}`;

/** One RegExp from parts, so long patterns stay readable. */
function re(...parts: RegExp[]): RegExp {
  return new RegExp(parts.map((p) => p.source).join(''));
}

const checkControlUrl = /check --control-url \/ TS_CONTROL_URL/;
const fixControlUrl = re(/Fix: .*/, checkControlUrl);
const runDoctor = /Run: krknc doctor --server dup/;
const policyHides = /.*the policy hides it from this node\. /;
const dnsFailure = /DNS cannot resolve krkn-no-such-host\.invalid /;

type Enough = (lines: Line[]) => boolean;

/** Enough once `pattern` has been seen `times` times. */
const seen =
  (pattern: RegExp, times: number): Enough =>
  (lines) =>
    lines.filter((l) => pattern.test(l.text)).length >= times;

const nodeArgs = (name: string, hostname: string, controlUrl: string): string[] => [
  '--hostname',
  hostname,
  '--state-dir',
  dir(name),
  '--control-url',
  controlUrl,
];

function cases(closedPort: number): Case[] {
  type Env = NodeJS.ProcessEnv;
  const krkns = (name: string, host: string, url: string, env: Env, boundMs: number, enough?: Enough): Promise<Run> =>
    runCommand(krknsMain, ['run', ...nodeArgs(name, host, url)], env, boundMs, enough);
  const krknc = (command: string, name: string, url: string, extra: string[]): Promise<Run> =>
    runCommand(krkncMain, [command, ...nodeArgs(name, name, url), ...extra], childEnv({ TS_AUTHKEY: userKey }), 45e3);
  const env = childEnv();
  const noDerpKnob = childEnv({ TS_AUTHKEY: hubKey });
  delete noDerpKnob.TS_DEBUG_USE_DERP_HTTP;
  return [
    {
      name: 'krkns run, control URL that does not resolve',
      run: () => krkns('dns', 'newbie', 'http://krkn-no-such-host.invalid:8080', env, 45_000),
      announce: /^contacting control server http:\/\/krkn-no-such-host\.invalid:8080$/,
      announceWithinMs: 2_000,
      progress: re(/^no answer from control server \S+ after \d+s: /, dnsFailure, /\((ENOTFOUND|EAI_AGAIN)\)/),
      progressAtLeast: 5,
      final: [re(/^error: no answer from control server \S+ within 30s: /, dnsFailure, /.*/, fixControlUrl)],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krknc send, control URL that refuses connections',
      run: () => krknc('send', 'refused', `http://127.0.0.1:${closedPort}`, ['--server', 'dup', '--topic', 't']),
      announce: new RegExp(`^contacting control server http://127\\.0\\.0\\.1:${closedPort}$`),
      announceWithinMs: 2_000,
      progress: /refused the connection \(ECONNREFUSED\): nothing listens there/,
      progressAtLeast: 5,
      final: [
        re(/^error: no answer from control server .* within 30s: .*ECONNREFUSED.*/, /Fix: is the .*/, checkControlUrl),
      ],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krknc send, krkns hidden by the policy',
      run: () => krknc('send', 'laptop', tailnet.url, ['--server', 'dup', '--topic', 't']),
      announce: /^waiting for krkns \(dup\) to appear in this node's peer list$/,
      // The wait starts once the node is up; its announcement follows the node's ready state at once.
      announceWithinMs: 15_000,
      progress: re(/^dup is still not in this node's peer list after \d+s: /, policyHides, runDoctor),
      progressAtLeast: 2,
      final: [re(/^error: no peer named dup on this tailnet after 10s\. .*policy hides it: .*posture.*/, runDoctor)],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krkns run, control URL of a web server that is not a control server',
      run: () => krkns('http404', 'newbie', `http://${addressOf(notControl)}`, env, 45e3),
      announce: /^contacting control server http:\/\/127\.0\.0\.1:\d+$/,
      announceWithinMs: 2_000,
      progress: /answered HTTP 404 to GET \/key: not a Tailscale control server, or a proxy in the way/,
      progressAtLeast: 5,
      final: [re(/^error: no answer from control server .* within 30s: .*answered HTTP 404 .*/, fixControlUrl)],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krkns run, hostname already taken',
      run: () => krkns('dup2', 'dup', tailnet.url, childEnv({ TS_AUTHKEY: hubKey }), 30_000, seen(/not "dup"/, 1)),
      announce: /^contacting control server http:\/\/127\.0\.0\.1:\d+$/,
      announceWithinMs: 2_000,
      progress: /^the control server registered this node as "dup-\w+"/,
      progressAtLeast: 1,
      final: [
        re(/registered this node as "(dup-\w+)" \(\1\.[\w.]+\), not "dup": /, /another node holds that name\. /),
        /Fix: doctor names the node that holds "dup": remove or rename it, or choose another --hostname/,
      ],
      ends: { by: 'enough', code: 0 },
    },
    {
      name: 'krkns run, plain-HTTP DERP without TS_DEBUG_USE_DERP_HTTP',
      run: () => krkns('noknob', 'noknob', tailnet.url, noDerpKnob, 40_000, seen(/^no home relay/, 2)),
      announce: /^contacting control server /,
      announceWithinMs: 2_000,
      progress: /^no home relay after \d+s, so no peer can reach this node: /,
      progressAtLeast: 2,
      final: [
        re(
          /no connection to the home relay region \S+ \(.*\) at https:\/\/127\.0\.0\.1:\d+\/derp: /,
          /it is served over plain HTTP.*/,
          /Fix: set TS_DEBUG_USE_DERP_HTTP=1/,
        ),
      ],
      ends: { by: 'enough', code: 0 },
    },
  ];
}

/**
 * Runs the tasks at most `size` at a time, starting one at most every `spacingMs` (a process's first
 * second is its busiest: starting several at once on a small host skews the 2 s timing); the results
 * in the tasks' order.
 */
async function inPool<T>(size: number, spacingMs: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array<T>(tasks.length);
  let next = 0;
  let nextStart = Date.now();
  const worker = async (): Promise<void> => {
    for (let i = next++; i < tasks.length; i = next++) {
      const wait = nextStart - Date.now();
      nextStart = Math.max(nextStart, Date.now()) + spacingMs;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(size, tasks.length) }, worker));
  return results;
}

describe('no silent waits', () => {
  const title = 'every wait is announced within 2 s, repeats its progress, and ends naming cause and fix';
  it(title, { timeout: 180_000 }, async () => {
    const table = cases(await freePort());
    // The cases are independent (own state directories, own node names): run them side by side,
    // three at a time, so that six engines loading at once on a small host do not skew the timings.
    const runs = await inPool(
      3,
      2_000,
      table.map((c) => c.run),
    );
    // Soft: every case is judged, so one run shows all that fail.
    table.forEach((c, i) => {
      const run = runs[i]!;
      const context = `${c.name}:\n${transcript(run)}`;
      const announced = first(run, c.announce);
      expect.soft(announced, context).toBeDefined();
      expect.soft(announced?.ms ?? Infinity, context).toBeLessThanOrEqual(c.announceWithinMs);
      expect.soft(run.lines[0]?.ms ?? Infinity, `${context}\n(first line of all)`).toBeLessThanOrEqual(2_000);
      expect.soft(count(run, c.progress), context).toBeGreaterThanOrEqual(c.progressAtLeast);
      for (const f of c.final) expect.soft(first(run, f), context).toBeDefined();
      expect.soft({ by: run.ended, code: run.code }, context).toEqual(c.ends);
    });
  });

  it('krkns doctor explains a relay the node cannot reach: plain HTTP without the knob', async () => {
    const env = childEnv({ TS_AUTHKEY: hubKey });
    delete env.TS_DEBUG_USE_DERP_HTTP;
    const run = ['run', ...nodeArgs('noknob2', 'noknob2', tailnet.url)];
    const [file, argv] = tiedToParent(process.execPath, [krknsMain, ...run]);
    const daemon = new Proc('krkns noknob2', spawn(file, argv, { env }));
    await daemon.waitFor(/krkns ready:/, 60_000);
    const args = ['doctor', '--state-dir', dir('noknob2'), '--control-url', tailnet.url, '--json'];
    const stdout = await commandOutput(krknsMain, args);
    const report = JSON.parse(stdout) as { checks: { id: string; status: string; cause: string; fix?: string }[] };
    expect(
      report.checks.find((c) => c.id === 'derp'),
      stdout,
    ).toMatchObject({
      status: 'fail',
      cause: expect.stringMatching(
        /^no connection to the home relay region .* it is served over plain HTTP/,
      ) as unknown,
      fix: 'set TS_DEBUG_USE_DERP_HTTP=1 in the environment',
    });
    await daemon.stop();
  });

  it('krkns doctor names the node that holds the name asked for, and the fix', async () => {
    const hub = await startKrkns({ controlUrl: tailnet.url, authKey: hubKey, stateDir: dir('dup3'), hostname: 'dup' });
    const args = ['doctor', '--state-dir', hub.stateDir, '--control-url', tailnet.url, '--json'];
    const stdout = await commandOutput(krknsMain, args);
    const report = JSON.parse(stdout) as { checks: { id: string; status: string; cause: string; fix?: string }[] };
    const hostname = report.checks.find((c) => c.id === 'hostname');
    expect(hostname, stdout).toMatchObject({ status: 'warn' });
    const holder = /the node dup\.[\w.]+ \(100\.[\d.]+, tag:krkn, online\) holds dup$/;
    expect(hostname!.cause).toMatch(re(/^asks for the name dup but is registered as dup-\w+: /, holder));
    expect(hostname!.fix).toMatch(/delete it .* and rename this one to dup; otherwise choose another --hostname/);
  });
});
