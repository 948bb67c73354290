// The small pure pieces of krknc that the end-to-end tests only touch in passing: argument
// parsing and the persisted set of delivered event ids.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SeenEvents } from '../src/dedupe.js';
import { endToEndHeaders, parseForwardTo } from '../src/forward.js';
import { parseSince } from '../src/replay.js';
import { expandHeaderFiles, parseHeaders, readData, takeHeaders } from '../src/send.js';
import { parseServer, parseServers } from '../src/server.js';
import { isAllowed, isSpoofable } from '../src/expose.js';
import { tempDir } from './helpers.js';

const dir = tempDir();
afterAll(() => dir.remove());

const usage = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    return `${(err as { exitCode?: number }).exitCode}: ${(err as Error).message}`;
  }
  throw new Error('expected a usage error');
};

describe('--server', () => {
  it('takes a short name, a FQDN, an IP, with or without a port', () => {
    expect(parseServer('krkns')).toEqual({ host: 'krkns', port: 80, text: 'krkns' });
    expect(parseServer('krkns.example.ts.net.')).toMatchObject({ host: 'krkns.example.ts.net', port: 80 });
    expect(parseServer('100.64.0.1:8080')).toMatchObject({ host: '100.64.0.1', port: 8080 });
    expect(parseServer('[fd7a:115c:a1e0::1]:81')).toMatchObject({ host: 'fd7a:115c:a1e0::1', port: 81 });
  });

  it('names the flag when it is missing or malformed', () => {
    expect(usage(() => parseServer(undefined))).toMatch(/^2: --server is required/);
    expect(usage(() => parseServer('http://krkns'))).toMatch(/^2: --server: "http:\/\/krkns" is not a node name/);
    expect(usage(() => parseServer('krkns:99999'))).toMatch(/^2: --server: port/);
  });

  it('takes several replicas, comma-separated, in order; each must be valid', () => {
    expect(parseServers('krkns-a,krkns-b:8080').map((r) => [r.host, r.port])).toEqual([
      ['krkns-a', 80],
      ['krkns-b', 8080],
    ]);
    expect(parseServers('krkns')).toEqual([parseServer('krkns')]);
    expect(usage(() => parseServers(undefined))).toMatch(/^2: --server is required/);
    expect(usage(() => parseServers('krkns-a,http://krkns-b'))).toMatch(
      /^2: --server: "http:\/\/krkns-b" is not a node name/,
    );
    expect(usage(() => parseServers('krkns-a,'))).toMatch(/^2: --server: "krkns-a," has an empty name between commas/);
  });
});

describe('--forward-to', () => {
  it('accepts URLs and the stripe-like shorthands', () => {
    expect(parseForwardTo('http://localhost:3000/hooks?x=1').href).toBe('http://localhost:3000/hooks?x=1');
    expect(parseForwardTo('localhost:3000/webhooks').href).toBe('http://localhost:3000/webhooks');
    expect(parseForwardTo('3000').href).toBe('http://localhost:3000/');
    expect(parseForwardTo('https://app.test/x').protocol).toBe('https:');
  });

  it('refuses what is not an http(s) URL', () => {
    expect(usage(() => parseForwardTo(undefined))).toMatch(/^2: --forward-to is required/);
    expect(usage(() => parseForwardTo('ftp://x/y'))).toBe(
      '2: --forward-to: ftp://x/y must be an http:// or https:// URL',
    );
    expect(usage(() => parseForwardTo('http://exa mple'))).toMatch(
      /^2: --forward-to: "http:\/\/exa mple" is not a URL/,
    );
    expect(usage(() => parseForwardTo('http://u:p@localhost/'))).toMatch(/must not carry credentials/);
  });
});

describe('send arguments', () => {
  it('takes -H values whole (commas included) in every form', () => {
    const { headers, rest } = takeHeaders([
      '--topic',
      't',
      '-H',
      'Accept: a, b',
      '-HX-A: 1',
      '--header',
      'X-B: 2',
      '--header=X-C: 3',
    ]);
    expect(headers).toEqual(['Accept: a, b', 'X-A: 1', 'X-B: 2', 'X-C: 3']);
    expect(rest).toEqual(['--topic', 't']);
    expect(parseHeaders(headers)).toEqual({ Accept: 'a, b', 'X-A': '1', 'X-B': '2', 'X-C': '3' });
    expect(usage(() => parseHeaders(['no colon']))).toMatch(/^2: -H: "no colon" is not a header/);
  });

  it("reads -H @file as that file's header lines, so a secret stays out of argv", () => {
    const file = join(dir.dir, 'secret-headers');
    writeFileSync(file, 'Authorization: Bearer s3cret\r\n\nX-Api-Key: k\n', { mode: 0o600 });
    const lines = expandHeaderFiles(['X-A: 1', `@${file}`]);
    expect(parseHeaders(lines)).toEqual({ 'X-A': '1', Authorization: 'Bearer s3cret', 'X-Api-Key': 'k' });
    expect(usage(() => expandHeaderFiles(['@']))).toMatch(/^2: -H: "@" needs a file name/);
    expect(usage(() => expandHeaderFiles([`@${file}.missing`]))).toMatch(/^2: -H: cannot read .*missing/);
  });

  it('reads --data literally, from @file, and names unreadable files', () => {
    expect(readData('{"a":1}').toString()).toBe('{"a":1}');
    expect(readData(undefined).length).toBe(0);
    expect(usage(() => readData('@'))).toMatch(/^2: --data: "@" needs a file name/);
    expect(usage(() => readData(`@${dir.dir}`))).toBe(`2: --data: cannot read ${dir.dir}: is a directory`);
  });
});

describe('replay --since', () => {
  it('takes a duration, an event id or an ISO time', () => {
    const before = Date.now();
    const { since } = parseSince('2h');
    expect(before - 2 * 3600e3 - since!.getTime()).toBeLessThanOrEqual(0);
    expect(parseSince('evt_0mwr3l4syab366e5d7045eb13')).toEqual({ after: 'evt_0mwr3l4syab366e5d7045eb13' });
    expect(parseSince('2026-01-02T03:04:05Z').since!.toISOString()).toBe('2026-01-02T03:04:05.000Z');
    expect(usage(() => parseSince('yesterday'))).toMatch(/^2: --since: "yesterday" is not a duration/);
  });
});

describe('headers passed on', () => {
  it('drops hop-by-hop headers and those Connection names, keeps the rest in order', () => {
    const kept = endToEndHeaders([
      ['Host', 'x'],
      ['Connection', 'keep-alive, X-Hop'],
      ['X-Hop', '1'],
      ['X-Hub-Signature-256', 'sha256=ab'],
      ['Content-Length', '3'],
      ['Transfer-Encoding', 'chunked'],
      ['x-multi', 'a'],
      ['x-multi', 'b'],
    ]);
    expect(kept).toEqual([
      ['X-Hub-Signature-256', 'sha256=ab'],
      ['x-multi', 'a'],
      ['x-multi', 'b'],
    ]);
  });
});

describe('SeenEvents', () => {
  it('remembers ids across a reopen, keeps only the newest, and compacts its file', () => {
    const path = join(dir.dir, 'seen.log');
    const seen = SeenEvents.open(path, 3);
    for (let i = 1; i <= 5; i++) seen.add(`evt_${i}`);
    expect(['evt_1', 'evt_2', 'evt_3', 'evt_4', 'evt_5'].map((id) => seen.has(id))).toEqual([
      false,
      false,
      true,
      true,
      true,
    ]);
    // 6 lines reached twice the capacity: the file was rewritten with the newest three.
    seen.add('evt_6');
    expect(readFileSync(path, 'utf8')).toBe('evt_4\nevt_5\nevt_6\n');
    const again = SeenEvents.open(path, 3);
    expect(again.has('evt_6') && again.has('evt_4') && !again.has('evt_3')).toBe(true);
  });

  it('skips a torn last line', () => {
    const path = join(dir.dir, 'torn.log');
    const seen = SeenEvents.open(path);
    seen.add('evt_a');
    appendFileSync(path, 'evt_b\nevt_c\x00\x00'); // a crash in the middle of writing evt_c
    const again = SeenEvents.open(path);
    expect([again.has('evt_a'), again.has('evt_b'), again.size]).toEqual([true, true, 2]);
    again.add('evt_d');
    expect(SeenEvents.open(path).has('evt_d')).toBe(true);
  });
});

describe('expose --allow', () => {
  const alice = { user: 'alice@example.com', tags: [] };
  const ciRunner = { user: 'tagged-devices', tags: ['tag:ci'] };
  it.each([
    [alice, 'alice@example.com', true],
    [alice, 'ALICE@example.com', true],
    [alice, 'alice@', true],
    [alice, '@example.com', true],
    [alice, 'alice@other.example', false],
    [alice, '@ample.com', false],
    [alice, 'tag:ci', false],
    [ciRunner, 'tag:ci', true],
    [ciRunner, 'tag:cd', false],
    // a tagged node's user is the tag owner's placeholder, never a person
    [ciRunner, 'tagged-devices@', false],
    [{ user: '', tags: [] }, '@', false],
  ])('%o matched by %s: %s', (caller, entry, allowed) => {
    expect(isAllowed(caller, [entry])).toBe(allowed);
  });

  it('recognises spoofable identity headers in any spelling', () => {
    for (const h of [
      'Forwarded',
      'X-Real-IP',
      'X-Forwarded-Proto',
      'x_forwarded_for',
      'X_Krkn_Caller',
      'x-krkn-caller-user',
    ]) {
      expect(isSpoofable(h), h).toBe(true);
    }
    for (const h of ['X-Hub-Signature-256', 'Authorization', 'X-Krkn-Event-Id', 'X-Forwarded'])
      expect(isSpoofable(h), h).toBe(false);
  });
});

describe('SeenEvents durability', () => {
  // strace shows what reaches the kernel: the append and the compacted copy are flushed before add() returns.
  it('flushes every append (fdatasync), and the compacted file and its directory, to disk', () => {
    const log = join(dir.dir, 'durable.log');
    const dist = new URL('../dist/dedupe.js', import.meta.url).href;
    const script = `const { SeenEvents } = await import(${JSON.stringify(dist)});
      const seen = SeenEvents.open(${JSON.stringify(log)}, 1);
      seen.add('evt_one'); seen.add('evt_two');`;
    const trace = join(dir.dir, 'strace.txt');
    const args = ['-f', '-e', 'trace=openat,write,fsync,fdatasync,rename', '-o', trace];
    const run = spawnSync('strace', [...args, process.execPath, '--input-type=module', '-e', script]);
    expect(run.status, run.stderr.toString()).toBe(0);
    const calls = readFileSync(trace, 'utf8').split('\n');
    const fdOf = (path: string, from = 0) => {
      const line = calls.slice(from).find((l) => l.includes(`openat(AT_FDCWD, "${path}"`) && / = \d+$/.test(l));
      return { fd: / = (\d+)$/.exec(line ?? '')?.[1], at: line === undefined ? -1 : calls.indexOf(line, from) };
    };
    const first = fdOf(log);
    const after = calls.slice(first.at);
    const write = after.findIndex((l) => l.includes(`write(${first.fd}, "evt_one`));
    const sync = after.findIndex((l) => new RegExp(`f(data)?sync\\(${first.fd}\\)`).test(l));
    expect([write >= 0, sync > write]).toEqual([true, true]);
    const tmp = calls.find((l) => l.includes(`${log}.tmp-`) && l.includes('openat'));
    const tmpFd = / = (\d+)$/.exec(tmp ?? '')?.[1];
    const tmpAt = calls.indexOf(tmp!);
    const renamed = calls.findIndex((l) => l.includes('rename') && l.includes(`"${log}"`));
    const tmpSync = calls.findIndex((l, i) => i > tmpAt && new RegExp(`f(data)?sync\\(${tmpFd}\\)`).test(l));
    expect([tmpSync > tmpAt, renamed > tmpSync]).toEqual([true, true]);
    const dirFd = fdOf(dir.dir, renamed).fd;
    expect(calls.slice(renamed).some((l) => l.includes(`fsync(${dirFd})`))).toBe(true);
    expect(readFileSync(log, 'utf8')).toBe('evt_two\n');
  });
});
