// krkns doctor, ping, whois and policy against a real headscale: the guide's silent failures, named.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TailnetNode } from '@krkn/tailnet';
import { startTailnet, waitFor, type HeadscaleUser, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';

let tailnet: Tailnet;
let user: HeadscaleUser;
let authKey: string;
let peer: TailnetNode;
const dir = mkdtempSync(join(tmpdir(), 'krkns-doctor-'));
const running: Krkns[] = [];

interface Report {
  checks: { id: string; status: string; cause: string; fix?: string }[];
}

async function doctor(stateDir: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; report: Report }> {
  const r = await Krkns.command(['doctor', '--state-dir', stateDir, '--control-url', tailnet.url, '--json'], {
    TS_DEBUG_USE_DERP_HTTP: '1',
    TS_AUTHKEY: '',
    ...env,
  });
  return { code: r.code, report: JSON.parse(r.stdout) as Report };
}

const check = (r: Report, id: string) => r.checks.find((c) => c.id === id);

beforeAll(async () => {
  tailnet = await startTailnet();
  user = await tailnet.createUser('doc');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  peer = new TailnetNode({
    hostname: 'peer',
    stateDir: join(dir, 'peer'),
    controlUrl: tailnet.url,
    authKey,
    logger: pino({ level: 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
  });
  await peer.up();
});

afterAll(async () => {
  await Promise.all(running.map((k) => k.stop('SIGKILL')));
  await (peer as TailnetNode | undefined)?.close();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('krkns doctor', () => {
  it('prints the login URL of a node that waits for login', async () => {
    const waiting = Krkns.start({ controlUrl: tailnet.url, stateDir: join(dir, 'waiting'), hostname: 'waiting' });
    running.push(waiting);
    await waiting.waitFor(/register\//, 30_000);
    const { code, report } = await doctor(join(dir, 'waiting'));
    expect(code).toBe(6);
    const login = check(report, 'login');
    expect(login?.status).toBe('fail');
    expect(login?.cause).toMatch(/waiting for an interactive login: http:\/\/127\.0\.0\.1:\d+\/register\//);
    await waiting.stop();
  });

  it('passes every check for a healthy running krkns, from the daemon itself', async () => {
    const k = await Krkns.run({
      controlUrl: tailnet.url,
      stateDir: join(dir, 'healthy'),
      hostname: 'healthy',
      authKey,
    });
    running.push(k);
    let last: Report | undefined;
    await waitFor(
      async () => {
        const r = await doctor(join(dir, 'healthy'));
        last = r.report;
        return r.code === 0 ? true : undefined;
      },
      { timeoutMs: 20_000, what: 'all checks to pass' },
    ).catch((err: unknown) => {
      const failing = JSON.stringify(last?.checks.filter((c) => c.status !== 'ok'));
      throw new Error(`${err instanceof Error ? err.message : String(err)}; last report: ${failing}`);
    });
    const { report } = await doctor(join(dir, 'healthy'));
    const ids = ['login', 'auth-key', 'authorization', 'limits', 'key-expiry', 'hostname', 'control', 'derp', 'peers'];
    expect(report.checks.map((c) => c.id)).toEqual(ids);
    // The mode and what any peer may do, in one line: in the report, and in the log at start.
    expect(check(report, 'authorization')?.cause).toMatch(/^open mode .* any peer .* may publish, subscribe and read/);
    expect(k.stderr).toMatch(/authorisation: open mode \(--require-capability off\)/);
    expect(check(report, 'limits')?.cause).toBe(
      '20 subscriptions per node; 32 topics per subscription; 10000 pending deliveries per subscription ' +
        '(the oldest fail past it); publishes refused (507) past a store of 10GiB; ' +
        'subscriptions expire after 7d offline',
    );
    expect(check(report, 'auth-key')?.cause).toContain('registered with the auth key');
    expect(check(report, 'hostname')?.cause).toContain('registered under the name it asks for');
    expect(check(report, 'peers')?.cause).toContain('peer');
    expect(check(report, 'derp')?.cause).toContain('DERP region');
  });

  it('says an auth key is ignored because of the stored identity, and how to force it', async () => {
    const k = await Krkns.run({ controlUrl: tailnet.url, stateDir: join(dir, 'cached'), hostname: 'cached', authKey });
    expect(await k.stop()).toBe(0);
    const { code, report } = await doctor(join(dir, 'cached'), { TS_AUTHKEY: authKey });
    expect(code).toBe(6);
    const c = check(report, 'auth-key');
    expect(c).toMatchObject({ status: 'warn' });
    expect(c?.cause).toContain('ignored');
    expect(c?.fix).toContain('TS_FORCE_LOGIN=1');
  });

  it('reports capability mode, with the capability name, when --require-capability is on', async () => {
    const args = ['doctor', '--state-dir', join(dir, 'cached'), '--control-url', tailnet.url, '--json'];
    const limits = ['--max-store-size', '0', '--subscription-expiry', '0', '--max-backlog', '50'];
    const r = await Krkns.command([
      ...args,
      '--require-capability',
      '--capability',
      'example.com/cap/hooks',
      ...limits,
    ]);
    expect(check(JSON.parse(r.stdout) as Report, 'limits')?.cause).toMatch(
      /50 pending deliveries per subscription .*; no store size bound; subscriptions never expire$/,
    );
    const line = check(JSON.parse(r.stdout) as Report, 'authorization');
    expect(line?.status).toBe('ok');
    expect(line?.cause).toMatch(
      /^capability mode \(example\.com\/cap\/hooks\): a peer may .* only the topics its grant/,
    );
  });

  it('reports no peers as policy suppression with the likely causes', async () => {
    // tag:lonely is owned, but no rule mentions it: the control server hides it from everyone.
    await tailnet.setPolicy(
      JSON.stringify({ tagOwners: { 'tag:lonely': ['doc@'] }, grants: [{ src: ['doc@'], dst: ['doc@'], ip: ['*'] }] }),
    );
    try {
      const taggedKey = await tailnet.createPreAuthKey({ tags: ['tag:lonely'] });
      const k = await Krkns.run({
        controlUrl: tailnet.url,
        stateDir: join(dir, 'lonely'),
        hostname: 'lonely',
        authKey: taggedKey,
      });
      running.push(k);
      await waitFor(
        async () => (check((await doctor(join(dir, 'lonely'))).report, 'peers')?.status === 'fail' ? true : undefined),
        { timeoutMs: 20_000, what: 'peers to disappear' },
      );
      const { report } = await doctor(join(dir, 'lonely'));
      const peers = check(report, 'peers');
      expect(peers?.cause).toContain('no peers visible');
      expect(peers?.cause).toMatch(/posture/);
      expect(peers?.cause).toMatch(/tagOwners/);
      expect(peers?.fix).toContain('krkn-policy');
    } finally {
      await tailnet.setPolicy(JSON.stringify({ grants: [{ src: ['*'], dst: ['*'], ip: ['*'] }] }));
    }
  });
});

describe('krkns ping, whois and policy', () => {
  it('pings and names a peer through the running daemon', async () => {
    const ip = peer.addresses[0]!;
    const pong = await Krkns.command(['ping', ip, '--state-dir', join(dir, 'healthy'), '--json']);
    expect(pong.code).toBe(0);
    expect(JSON.parse(pong.stdout)).toMatchObject({ ip, nodeName: 'peer' });
    const who = await Krkns.command(['whois', ip, '--state-dir', join(dir, 'healthy'), '--json']);
    expect(who.code).toBe(0);
    expect(JSON.parse(who.stdout)).toMatchObject({
      node: { name: `peer.${tailnet.domain}` },
      user: { loginName: expect.stringContaining('doc') as unknown },
    });
  });

  it('names an unknown peer clearly', async () => {
    const r = await Krkns.command(['ping', 'nosuchpeer', '--state-dir', join(dir, 'healthy')]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('nosuchpeer');
  });

  it('lints a policy file with file:line findings', async () => {
    const file = join(dir, 'policy.hujson');
    writeFileSync(
      file,
      '{\n  // posture everywhere\n  "defaultSrcPosture": ["posture:human"],\n  "postures": { "posture:human": ["node:tsAutoUpdate"] },\n  "grants": [{ "src": ["tag:ci"], "dst": ["tag:krkn"], "ip": ["80"] }]\n}\n',
    );
    const r = await Krkns.command(['policy', 'lint', file, '--tag', 'tag:krkn']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${file}:3:`);
    expect(r.stdout).toContain('default-src-posture');
    expect(r.stdout).toContain('tag-without-owner');
  });
});
