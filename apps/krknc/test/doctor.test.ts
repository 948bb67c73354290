// krknc doctor against a real headscale: an invisible krkns is reported as policy suppression,
// naming the rule directions that are missing; once a rule connects them, the checks pass.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTailnet, type Tailnet } from '@krkn/testnet';
import { runKrknc, startKrkns, stopAll, tempDir, until } from './helpers.js';

interface Report {
  checks: { id: string; status: string; cause: string; fix?: string }[];
}

let tailnet: Tailnet;
let authKey: string;
const state = tempDir();

const flags = (...extra: string[]): string[] => [
  '--hostname',
  'laptop',
  '--state-dir',
  join(state.dir, 'laptop'),
  '--control-url',
  tailnet.url,
  '--json',
  ...extra,
];

async function doctor(): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await runKrknc(['doctor', ...flags('--server', 'hub')]);
  return { code: r.code, report: JSON.parse(r.stdout || '{"checks":[]}') as Report, stderr: r.stderr };
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('dev');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  // krkns is a tagged service node; the laptop is a person's (user-owned) node.
  await tailnet.setPolicy(
    JSON.stringify({ tagOwners: { 'tag:krkn': ['dev@'] }, grants: [{ src: ['*'], dst: ['*'], ip: ['*'] }] }),
  );
  const hubKey = await tailnet.createPreAuthKey({ tags: ['tag:krkn'] });
  await startKrkns({ controlUrl: tailnet.url, authKey: hubKey, stateDir: join(state.dir, 'hub'), hostname: 'hub' });
  // Register the laptop once (its first send); doctor then brings the stored identity up by itself.
  const first = await runKrknc(['send', ...flags('--server', 'hub', '--topic', 'setup', '--data', '{}')], {
    TS_AUTHKEY: authKey,
  });
  expect(first.code, first.stderr).toBe(0);
});

afterAll(async () => {
  await stopAll();
  await (tailnet as Tailnet | undefined)?.stop();
  state.remove();
});

describe('krknc doctor', () => {
  it('reports an invisible krkns as policy suppression and names both missing rule directions', async () => {
    // Only the service nodes may talk to each other: no rule mentions the laptop's user.
    await tailnet.setPolicy(
      JSON.stringify({
        tagOwners: { 'tag:krkn': ['dev@'] },
        grants: [{ src: ['tag:krkn'], dst: ['tag:krkn'], ip: ['*'] }],
      }),
    );
    const { code, report } = await until(
      async () => {
        const r = await doctor();
        return r.report.checks.some((c) => c.id === 'server-visible' && c.status === 'fail') ? r : undefined;
      },
      'krkns to disappear from the laptop',
      30_000,
    );
    expect(code).toBe(6);
    const visible = report.checks.find((c) => c.id === 'server-visible')!;
    expect(visible.cause).toContain('hub is not in this node');
    expect(visible.cause).toContain('no path between this node (laptop');
    expect(visible.cause).toMatch(/posture/);
    expect(visible.fix).toMatch(/grant from this node .* to hub.* port 80/);
    expect(visible.fix).toMatch(/one from hub to this node .* \(deliveries\)/);
    expect(report.checks.find((c) => c.id === 'peers')?.status).toBe('fail');
  });

  it('passes once a rule connects the laptop and krkns', async () => {
    await tailnet.setPolicy(
      JSON.stringify({
        tagOwners: { 'tag:krkn': ['dev@'] },
        grants: [
          { src: ['dev@'], dst: ['tag:krkn'], ip: ['80'] },
          { src: ['tag:krkn'], dst: ['dev@'], ip: ['*'] },
        ],
      }),
    );
    const { code, report } = await until(
      async () => {
        const r = await doctor();
        return r.code === 0 ? r : undefined;
      },
      'every check to pass',
      40_000,
    );
    expect(code).toBe(0);
    expect(report.checks.map((c) => c.id)).toEqual(
      expect.arrayContaining(['login', 'control', 'derp', 'peers', 'server-visible', 'server-ping', 'server-api']),
    );
  });
});
