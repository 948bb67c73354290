import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '@krkn/policy';
import { fixturePath } from './helpers.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
  });
  return { code, out, err };
}

function tempFile(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'krkn-policy-')), name);
  writeFileSync(path, text);
  return path;
}

describe('krkn-policy --help', () => {
  it.each([['--help'], ['-h'], ['help'], ['lint', '--help']])('%j prints usage and exits 0', async (...argv) => {
    const r = await run(...argv);
    expect(r.code).toBe(0);
    expect(r.out).toContain('krkn-policy lint <policy.hujson>');
    expect(r.out).toContain('krkn-policy check <policy.hujson> --from X --to Y --port N');
    expect(r.err).toBe('');
  });
});

describe('krkn-policy lint', () => {
  it('exits 0 and says so for a clean policy', async () => {
    const file = fixturePath('000-service-fabric.hujson');
    const r = await run('lint', file, '--tag', 'tag:krkn');
    expect(r).toEqual({ code: 0, out: `${file}: no findings\n`, err: '' });
  });

  it('exits 0 with warnings only, printing file:line: severity rule: message and a fix line', async () => {
    const file = fixturePath('000-group-admins.hujson');
    const r = await run('lint', file);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:13: warn group-to-tag-no-return: grant at line 13 lets group:admins reach tag:krkn`,
      ),
    );
    expect(lines[1]).toMatch(/^ {2}fix: add a grant \{"src": \["tag:krkn"\]/);
    expect(lines[2]).toBe(`${file}: 0 error(s), 1 warning(s), 0 info`);
  });

  it('exits 1 when any finding is an error', async () => {
    const r = await run('lint', fixturePath('000-default-src-posture.hujson'));
    expect(r.code).toBe(1);
    expect(r.out).toContain(':17: error default-src-posture: ');
  });

  it('passes --tag (repeatable) and --capability through', async () => {
    const file = fixturePath('002-acl-sample.hujson');
    expect((await run('lint', file)).code).toBe(0);
    const tagged = await run('lint', file, '--tag', 'tag:krkn', '--tag', 'tag:krknc');
    expect(tagged.code).toBe(1);
    expect(tagged.out.match(/ error tag-without-owner: /g)).toHaveLength(2);
    const tka = await run('lint', fixturePath('004-tka-basic.hujson'), '--capability', 'specht-labs.de/cap/tka');
    expect(tka.out).toContain(
      'error capability-invalid: grant at line 7: krkns cannot use its "specht-labs.de/cap/tka" values',
    );
  });

  it('prints JSON with --json', async () => {
    const file = fixturePath('000-missing-tagowner.hujson');
    const r = await run('lint', file, '--json');
    expect(r.code).toBe(1);
    const json = JSON.parse(r.out) as {
      file: string;
      findings: Array<Record<string, unknown>>;
      summary: Record<string, number>;
    };
    expect(json.file).toBe(file);
    expect(json.summary).toEqual({ error: 1, warn: 0, info: 0 });
    expect(json.findings[0]).toMatchObject({ rule: 'tag-without-owner', severity: 'error', line: 6, file });
  });

  it('exits 2 with file:line:col for a HuJSON syntax error', async () => {
    const file = tempFile('broken.hujson', '{\n  "grants": [\n    {"src": ["*"] "dst": ["*"]}\n  ]\n}\n');
    const r = await run('lint', file);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(`krkn-policy: ${file}:3:19: expected ',' or '}', found '"'\n`);
  });

  it('exits 2 with file:line for a schema error (seed 002 illustrative grants)', async () => {
    const file = fixturePath('002-illustrative-grants.hujson');
    const r = await run('lint', file);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      `krkn-policy: ${file}:3: grants[0]: grants use "src", "dst" and "ip"/"app", not "who"/"can"/"to"\n`,
    );
  });

  it('exits 2 for an unreadable file', async () => {
    const r = await run('lint', '/nonexistent/policy.hujson');
    expect(r.code).toBe(2);
    expect(r.err).toBe('krkn-policy: /nonexistent/policy.hujson: cannot read policy file (ENOENT)\n');
  });
});

describe('krkn-policy check', () => {
  it('exits 0 and names the rule when the path is allowed', async () => {
    const file = fixturePath('002-acl-sample.hujson');
    const r = await run('check', file, '--from', 'tag:ci', '--to', 'tag:api', '--port', '443');
    expect(r).toEqual({
      code: 0,
      out: `allowed: tag:ci -> tag:api port 443 (acl at ${file}:4)\n  - acl at line 4 allows it\n`,
      err: '',
    });
  });

  it('exits 1 and explains when denied', async () => {
    const file = fixturePath('002-acl-sample.hujson');
    const r = await run('check', file, '--from', 'tag:ci', '--to', 'tag:api', '--port', '80');
    expect(r).toEqual({
      code: 1,
      out: 'denied: tag:ci -> tag:api port 80\n  - acl at line 4 matches src and dst but not port 80 (allows 443)\n',
      err: '',
    });
  });

  it('prints JSON with --json', async () => {
    const file = fixturePath('000-missing-tagowner.hujson');
    const r = await run('check', file, '--from', 'tag:krkn', '--to', 'tag:krkn', '--port', '443', '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out)).toEqual({
      file,
      from: 'tag:krkn',
      to: 'tag:krkn',
      port: 443,
      allowed: false,
      reasons: [
        'tag:krkn has no owner in tagOwners, so no node can hold it',
        'grant at line 5 would allow it otherwise',
      ],
    });
  });

  it('accepts --proto udp', async () => {
    const file = tempFile(
      'udp.hujson',
      '{"tagOwners": {"tag:a": []}, "grants": [{"src": ["tag:a"], "dst": ["tag:a"], "ip": ["udp:53"]}]}',
    );
    expect((await run('check', file, '--from', 'tag:a', '--to', 'tag:a', '--port', '53')).code).toBe(1);
    expect((await run('check', file, '--from', 'tag:a', '--to', 'tag:a', '--port', '53', '--proto', 'udp')).code).toBe(
      0,
    );
  });
});

describe('usage errors exit 2', () => {
  const file = fixturePath('000-service-fabric.hujson');
  it.each([
    [[], 'missing command (lint or check)'],
    [['frobnicate', file], 'unknown command "frobnicate"'],
    [['lint'], 'lint needs a policy file'],
    [['lint', file, 'extra'], 'unexpected argument "extra"'],
    [['lint', file, '--bogus'], "Unknown option '--bogus'"],
    [['lint', file, '--from', 'tag:a'], '--from is not an option of lint'],
    [['lint', file, '--tag', 'krkn'], '--tag must look like tag:name, got "krkn"'],
    [['check', file, '--from', 'tag:a', '--to', 'tag:b'], 'check needs --from, --to and --port'],
    [
      ['check', file, '--from', 'tag:a', '--to', 'tag:b', '--port', 'https'],
      '--port must be a number 0-65535, got "https"',
    ],
    [
      ['check', file, '--from', 'tag:a', '--to', 'tag:b', '--port', '99999'],
      '--port must be a number 0-65535, got "99999"',
    ],
    [
      ['check', file, '--from', 'tag:a', '--to', 'tag:b', '--port', '1', '--proto', 'icmp'],
      '--proto must be tcp or udp, got "icmp"',
    ],
    [['check', file, '--from', 'krkn', '--to', 'tag:b', '--port', '1'], 'cannot check a path for "krkn"'],
    [['check', file, '--tag', 'tag:a'], '--tag is not an option of check'],
  ])('%j', async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(message);
    expect(r.err).toContain('krkn-policy --help');
  });
});
