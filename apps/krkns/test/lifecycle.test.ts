// krkns as a process: restarts, crashes, signals, bad flags, a second instance, capabilities.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubApiError, HubClient } from '@krkn/hub-api';
import { TailnetNode, tailnetFetch } from '@krkn/tailnet';
import { startTailnet, waitFor, type Tailnet } from '@krkn/testnet';
import { Krkns } from './daemon.js';

let tailnet: Tailnet;
let authKey: string;
let client: TailnetNode;
const dir = mkdtempSync(join(tmpdir(), 'krkns-life-'));
const running: Krkns[] = [];

async function start(name: string, args: string[] = [], key = authKey): Promise<Krkns> {
  const k = await Krkns.run({ controlUrl: tailnet.url, stateDir: join(dir, name), hostname: name, authKey: key, args });
  running.push(k);
  await visible(k);
  return k;
}

/** Waits until traffic flows from the test's client node to krkns (a fresh node takes a moment). */
async function visible(k: Krkns): Promise<void> {
  await waitFor(async () => (await client.ping(k.ip, { timeoutMs: 2_000 })).latencyMs, {
    timeoutMs: 20_000,
    what: `a ping from the client to krkns ${k.ip}`,
  });
}

function hub(k: Krkns, timeoutMs?: number): HubClient {
  return new HubClient(`http://${k.ip}`, (url, init) => tailnetFetch(client, url, init), timeoutMs);
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('life');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  client = new TailnetNode({
    hostname: 'client',
    stateDir: join(dir, 'client'),
    controlUrl: tailnet.url,
    authKey,
    logger: pino({ level: 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
  });
  await client.up();
});

afterAll(async () => {
  await Promise.all(running.map((k) => k.stop('SIGKILL')));
  await (client as TailnetNode | undefined)?.close();
  await (tailnet as Tailnet | undefined)?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('lifecycle', () => {
  it('a restart keeps events, subscriptions and the node identity; SIGTERM exits 0; status reads the stopped state', async () => {
    const first = await start('keeper');
    const { id } = await hub(first).publish('kept', 'body');
    await hub(first).subscribe({ topics: ['kept'], port: 9999 });
    const ip = first.ip;
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(first.stderr).toContain('"msg":"stopped"');

    const second = await Krkns.run({ controlUrl: tailnet.url, stateDir: join(dir, 'keeper'), hostname: 'keeper' }); // no key needed
    running.push(second);
    await visible(second);
    expect(second.ip).toBe(ip);
    expect((await hub(second).getEvent(id)).topic).toBe('kept');
    expect((await hub(second).listSubscriptions()).map((s) => s.topics)).toEqual([['kept']]);
    expect(await second.stop('SIGTERM')).toBe(0);

    // status works while stopped, from the state on disk
    const r = await Krkns.command(['status', '--state-dir', join(dir, 'keeper'), '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      running: false,
      identity: true,
      queue: { events: 1, subscriptions: 1 },
    });
  });

  it('kill -9 during a burst of publishes loses no event that got a 202', async () => {
    const k = await start('crashy');
    const api = hub(k, 5_000); // requests cut by the crash end in a timeout, not a hang
    const acked: string[] = [];
    let stop = false;
    const publishers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop && i < 200; i++) {
        try {
          acked.push((await api.publish('burst', `worker ${w} event ${i}`)).id);
        } catch {
          return; // the daemon is gone: no 202, nothing promised
        }
      }
    });
    await waitFor(async () => (acked.length >= 20 ? true : undefined), {
      timeoutMs: 30_000,
      what: '20 acknowledged publishes',
    });
    await k.stop('SIGKILL');
    stop = true;
    await Promise.all(publishers);

    const again = await Krkns.run({ controlUrl: tailnet.url, stateDir: join(dir, 'crashy'), hostname: 'crashy' });
    running.push(again);
    await visible(again);
    const stored = new Set((await hub(again).listEvents({ topic: 'burst', limit: 1000 })).map((e) => e.id));
    expect(acked.length).toBeGreaterThanOrEqual(20);
    expect(acked.filter((id) => !stored.has(id))).toEqual([]);
  });

  it('a second krkns on the same state directory exits 5, naming the holder', async () => {
    const k = await start('single');
    const second = await Krkns.command([
      'run',
      '--hostname',
      'single',
      '--state-dir',
      join(dir, 'single'),
      '--control-url',
      tailnet.url,
    ]);
    expect(second.code).toBe(5);
    expect(second.stderr).toContain(`in use by process ${k.child.pid}`);
  });

  it('an ephemeral krkns disappears from the tailnet when it stops', async () => {
    const ephemeralKey = await tailnet.createPreAuthKey({ user: 'life', ephemeral: true });
    const k = await start('fleeting', ['--ephemeral'], ephemeralKey);
    expect((await tailnet.listNodes()).some((n) => n.name === 'fleeting')).toBe(true);
    expect(await k.stop('SIGTERM')).toBe(0);
    await waitFor(async () => ((await tailnet.listNodes()).some((n) => n.name === 'fleeting') ? undefined : true), {
      timeoutMs: 10_000,
      what: 'the ephemeral node to be removed',
    });
  });
});

describe('configuration', () => {
  it.each([
    [['run', '--port', '70000'], '--port'],
    [['run', '--body-limit', 'lots'], '--body-limit'],
    [['run', '--retry-schedule', '0,soon'], '--retry-schedule'],
    [['run', '--tags', 'krkn'], '--tags'],
    [['run', '--frobnicate'], '--frobnicate'],
    [['explode'], 'unknown command explode'],
  ])('rejects %j with exit code 2 and a message naming the flag', async (args, named) => {
    const r = await Krkns.command(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(named);
    expect(r.stderr).not.toContain('    at '); // a message, not a stack trace
  });

  it('reads flags from the environment', async () => {
    const r = await Krkns.command(['run'], { KRKNS_RETENTION: 'forever' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('KRKNS_RETENTION');
  });

  it('documents every flag with its environment variable and default in --help', async () => {
    const r = await Krkns.command(['run', '--help']);
    expect(r.code).toBe(0);
    for (const flag of [
      '--hostname',
      '--state-dir',
      '--control-url',
      '--port',
      '--tags',
      '--ephemeral',
      '--log-level',
      '--body-limit',
      '--retention',
      '--retry-schedule',
      '--require-capability',
      '--capability',
    ]) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain('TS_CONTROL_URL');
    expect(r.stdout).toContain('default 10MiB');
    expect(r.stdout).toContain('default 0s,5s,5m,30m,2h,5h,10h,10h');
  });

  it('an invalid auth key exits 3 with the reason', async () => {
    const r = await Krkns.command(
      ['run', '--hostname', 'badkey', '--state-dir', join(dir, 'badkey'), '--control-url', tailnet.url],
      {
        TS_AUTHKEY: 'hskey-auth-invalid',
        TS_DEBUG_USE_DERP_HTTP: '1',
      },
    );
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('auth key');
  });

  it('logout with krkns stopped logs out at the --control-url it is given, and discards the identity', async () => {
    const k = await start('leaver');
    expect(await k.stop('SIGTERM')).toBe(0);
    const stateDir = join(dir, 'leaver');
    // No TS_CONTROL_URL: the flag alone must reach headscale (the default is Tailscale's own server).
    const env = { TS_DEBUG_USE_DERP_HTTP: '1', TS_CONTROL_URL: undefined };
    const args = ['logout', '--hostname', 'leaver', '--state-dir', stateDir, '--control-url', tailnet.url];
    const r = await Krkns.command(args, env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('logged out\n');
    const node = (await tailnet.listNodes()).find((n) => n.name === 'leaver');
    expect(node?.expiry?.getTime()).toBeLessThan(Date.now()); // headscale expires a node that logs out
    const st = await Krkns.command(['status', '--state-dir', stateDir, '--json']);
    expect(JSON.parse(st.stdout)).toMatchObject({ running: false, identity: false });
  });
});

describe('app capabilities (--require-capability)', () => {
  it('lets a caller publish and subscribe only to the topics its grant lists, and says what is missing', async () => {
    await tailnet.setPolicy(
      JSON.stringify({
        tagOwners: { 'tag:hub': ['life@'], 'tag:ci': ['life@'] },
        grants: [
          { src: ['*'], dst: ['*'], ip: ['*'] },
          {
            src: ['tag:ci'],
            dst: ['tag:hub'],
            app: { 'krkn.dev/cap/webhooks': [{ publish: ['ci/*'], subscribe: ['ci/**'] }] },
          },
        ],
      }),
    );
    const hubKey = await tailnet.createPreAuthKey({ tags: ['tag:hub'] });
    const ciKey = await tailnet.createPreAuthKey({ tags: ['tag:ci'] });
    const k = await start('guarded', ['--require-capability'], hubKey);
    const ci = new TailnetNode({
      hostname: 'ci',
      stateDir: join(dir, 'ci'),
      controlUrl: tailnet.url,
      authKey: ciKey,
      logger: pino({ level: 'silent' }),
      engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
    });
    await ci.up();
    try {
      const granted = new HubClient(`http://${k.ip}`, (url, init) => tailnetFetch(ci, url, init));
      await waitFor(async () => (await granted.publish('ci/build', 'ok')).id, {
        timeoutMs: 15_000,
        what: 'the grant to reach krkns',
      });
      const denied = (await granted.publish('prod/deploy', 'no').catch((e: unknown) => e)) as HubApiError;
      expect(denied.code).toBe('MISSING_CAPABILITY');
      expect(denied.status).toBe(403);
      expect(denied.message).toContain('publish on topic prod/deploy');
      await granted.subscribe({ topics: ['ci/*'], port: 8080 });

      const ungranted = (await hub(k)
        .publish('ci/build', 'x')
        .catch((e: unknown) => e)) as HubApiError;
      expect(ungranted.code).toBe('MISSING_CAPABILITY');
      expect(ungranted.message).toContain('krkn.dev/cap/webhooks');
    } finally {
      await ci.close();
    }
  });
});
