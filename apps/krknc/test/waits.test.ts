// No silent waits (issue 15), end to end against a real headscale: each case runs a real krkns or
// krknc at the default log level and judges it from its stderr alone: the first line about the
// wait comes within 2 s, the progress repeats, and the final message names the cause and the fix.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTailnet, tiedToParent, type Tailnet } from '@krkn/testnet';
import { childEnv, freePort, krkncMain, krknsMain, startKrkns, stopAll, tempDir } from './helpers.js';

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
  const child = spawn(...tiedToParent(process.execPath, [main, ...args]), { env: childEnv(), stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const bound = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) => child.once('exit', () => (clearTimeout(bound), resolve(out))));
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
  await tailnet.setPolicy(JSON.stringify({ tagOwners: { 'tag:krkn': ['dev@'] }, grants: [{ src: ['tag:krkn'], dst: ['tag:krkn'], ip: ['*'] }] }));
  // krkns holds the name "dup" before the collision case starts a second one.
  await startKrkns({ controlUrl: tailnet.url, authKey: hubKey, stateDir: dir('hub'), hostname: 'dup' });
  notControl = createServer((_req, res) => res.writeHead(404).end('not here'));
  await new Promise<void>((resolve) => notControl.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  notControl?.close();
  await stopAll();
  await tailnet?.stop();
  state.remove();
});

function cases(closedPort: number): Case[] {
  const krkns = (name: string, hostname: string, controlUrl: string, env: NodeJS.ProcessEnv, boundMs: number, enough?: (l: Line[]) => boolean) =>
    runCommand(krknsMain, ['run', '--hostname', hostname, '--state-dir', dir(name), '--control-url', controlUrl], env, boundMs, enough);
  const noDerpKnob = childEnv({ TS_AUTHKEY: hubKey });
  delete noDerpKnob.TS_DEBUG_USE_DERP_HTTP;
  return [
    {
      name: 'krkns run, control URL that does not resolve',
      run: () => krkns('dns', 'newbie', 'http://krkn-no-such-host.invalid:8080', childEnv(), 45_000),
      announce: /^contacting control server http:\/\/krkn-no-such-host\.invalid:8080$/,
      announceWithinMs: 2_000,
      progress: /^no answer from control server \S+ after \d+s: DNS cannot resolve krkn-no-such-host\.invalid \((ENOTFOUND|EAI_AGAIN)\)/,
      progressAtLeast: 5,
      final: [/^error: no answer from control server \S+ within 30s: DNS cannot resolve krkn-no-such-host\.invalid .*Fix: check --control-url \/ TS_CONTROL_URL/],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krknc send, control URL that refuses connections',
      run: () =>
        runCommand(
          krkncMain,
          ['send', '--hostname', 'refused', '--state-dir', dir('refused'), '--control-url', `http://127.0.0.1:${closedPort}`, '--server', 'dup', '--topic', 't'],
          childEnv({ TS_AUTHKEY: userKey }),
          45_000,
        ),
      announce: new RegExp(`^contacting control server http://127\\.0\\.0\\.1:${closedPort}$`),
      announceWithinMs: 2_000,
      progress: /refused the connection \(ECONNREFUSED\): nothing listens there/,
      progressAtLeast: 5,
      final: [/^error: no answer from control server .* within 30s: .*ECONNREFUSED.*Fix: is the control server running on that port\? check --control-url/],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krknc send, krkns hidden by the policy',
      run: () =>
        runCommand(
          krkncMain,
          ['send', '--hostname', 'laptop', '--state-dir', dir('laptop'), '--control-url', tailnet.url, '--server', 'dup', '--topic', 't'],
          childEnv({ TS_AUTHKEY: userKey }),
          45_000,
        ),
      announce: /^waiting for krkns \(dup\) to appear in this node's peer list$/,
      // The wait starts once the node is up; its announcement follows the node's ready state at once.
      announceWithinMs: 15_000,
      progress: /^dup is still not in this node's peer list after \d+s: .*the policy hides it .*Run: krknc doctor --server dup/,
      progressAtLeast: 2,
      final: [/^error: no peer named dup on this tailnet after 10s\. .*policy hides it: .*posture.*Run: krknc doctor --server dup/],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krkns run, control URL of a web server that is not a control server',
      run: () => krkns('http404', 'newbie', `http://127.0.0.1:${(notControl.address() as AddressInfo).port}`, childEnv(), 45_000),
      announce: /^contacting control server http:\/\/127\.0\.0\.1:\d+$/,
      announceWithinMs: 2_000,
      progress: /answered HTTP 404 to GET \/key: not a Tailscale control server, or a proxy in the way/,
      progressAtLeast: 5,
      final: [/^error: no answer from control server .* within 30s: .*answered HTTP 404 .*Fix: check --control-url/],
      ends: { by: 'exit', code: 4 },
    },
    {
      name: 'krkns run, hostname already taken',
      run: () => krkns('dup2', 'dup', tailnet.url, childEnv({ TS_AUTHKEY: hubKey }), 30_000, (l) => l.some((x) => /not "dup"/.test(x.text))),
      announce: /^contacting control server http:\/\/127\.0\.0\.1:\d+$/,
      announceWithinMs: 2_000,
      progress: /^the control server registered this node as "dup-\w+"/,
      progressAtLeast: 1,
      final: [/registered this node as "(dup-\w+)" \(\1\.[\w.]+\), not "dup": another node holds that name\. Fix: doctor names the node that holds "dup".*another --hostname/],
      ends: { by: 'enough', code: 0 },
    },
    {
      name: 'krkns run, plain-HTTP DERP without TS_DEBUG_USE_DERP_HTTP',
      run: () => krkns('noknob', 'noknob', tailnet.url, noDerpKnob, 40_000, (l) => l.filter((x) => /^no home relay/.test(x.text)).length >= 2),
      announce: /^contacting control server /,
      announceWithinMs: 2_000,
      progress: /^no home relay after \d+s, so no peer can reach this node: /,
      progressAtLeast: 2,
      final: [/no connection to the home relay region \S+ \(.*\) at https:\/\/127\.0\.0\.1:\d+\/derp: it is served over plain HTTP.*Fix: set TS_DEBUG_USE_DERP_HTTP=1/],
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
  it('every wait is announced within 2 s, repeats its progress, and ends naming cause and fix', { timeout: 180_000 }, async () => {
    const table = cases(await freePort());
    // The cases are independent (own state directories, own node names): run them side by side,
    // three at a time, so that six engines loading at once on a small host do not skew the timings.
    const runs = await inPool(3, 1_500, table.map((c) => c.run));
    table.forEach((c, i) => {
      const run = runs[i]!;
      const context = `${c.name}:\n${transcript(run)}`;
      const announced = first(run, c.announce);
      expect(announced, context).toBeDefined();
      expect(announced!.ms, context).toBeLessThanOrEqual(c.announceWithinMs);
      expect(run.lines[0]!.ms, `${context}\n(first line of all)`).toBeLessThanOrEqual(2_000);
      expect(count(run, c.progress), context).toBeGreaterThanOrEqual(c.progressAtLeast);
      for (const f of c.final) expect(first(run, f), context).toBeDefined();
      expect({ by: run.ended, code: run.code }, context).toEqual(c.ends);
    });
  });

  it('krkns doctor names the node that holds the name asked for, and the fix', async () => {
    const second = await startKrkns({ controlUrl: tailnet.url, authKey: hubKey, stateDir: dir('dup3'), hostname: 'dup' });
    const stdout = await commandOutput(krknsMain, ['doctor', '--state-dir', second.stateDir, '--control-url', tailnet.url, '--json']);
    const report = JSON.parse(stdout) as { checks: { id: string; status: string; cause: string; fix?: string }[] };
    const hostname = report.checks.find((c) => c.id === 'hostname');
    expect(hostname, stdout).toMatchObject({ status: 'warn' });
    expect(hostname!.cause).toMatch(/^asks for the name dup but is registered as dup-\w+: the node dup\.[\w.]+ \(100\.[\d.]+, tag:krkn, online\) holds dup$/);
    expect(hostname!.fix).toMatch(/delete it .* and rename this one to dup; otherwise choose another --hostname/);
  });
});
