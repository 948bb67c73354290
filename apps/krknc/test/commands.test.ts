// krknc send (the CI path), expose, status/logout and the errors a user meets, end to end against
// a real krkns on a real (local) tailnet, with a native tailscaled peer.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TailnetNode } from '@krkn/tailnet';
import { startNativeNode, startTailnet, type NativeNode, type Tailnet } from '@krkn/testnet';
import { LocalApp, krknc, krknsAdmin, runKrknc, startKrkns, stopAll, tempDir, until, type Krkns } from './helpers.js';

let tailnet: Tailnet;
let hub: Krkns;
let native: NativeNode;
let authKey: string;
let userId: number;
const app = new LocalApp();
const state = tempDir();

/** Node flags for a krknc with its own identity under the test's temp dir. */
function node(hostname: string, extra: string[] = []): string[] {
  return [
    '--hostname',
    hostname,
    '--state-dir',
    join(state.dir, hostname),
    '--control-url',
    tailnet.url,
    '--log-format',
    'json',
    ...extra,
  ];
}

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('ci');
  userId = user.id;
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  await app.start();
  [hub, native] = await Promise.all([
    startKrkns({ controlUrl: tailnet.url, authKey, stateDir: join(state.dir, 'hub'), hostname: 'hub' }),
    startNativeNode(tailnet, { hostname: 'peer', authKey }),
  ]);
});

afterAll(async () => {
  await stopAll();
  await app.stop();
  await (tailnet as Tailnet | undefined)?.stop();
  state.remove();
});

describe('krknc send', () => {
  it('publishes from a fresh ephemeral CI identity, prints the id, and the node is gone after exit', async () => {
    const ephemeralKey = await tailnet.createPreAuthKey({ user: userId, ephemeral: true });
    const r = await runKrknc(
      [
        'send',
        ...node('ci-runner', ['--ephemeral', '--server', 'hub', '--topic', 'ci/build', '--data', '{"status":"green"}']),
      ],
      { TS_AUTHKEY: ephemeralKey },
    );
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^evt_\w+$/);
    const { event } = await krknsAdmin<{
      event: { sender: { node: string }; contentType: string; bodyBase64: string };
    }>(hub.stateDir, 'GET', `/events/${id}`);
    expect(event.sender.node).toBe(`ci-runner.${tailnet.domain}`);
    expect(event.contentType).toBe('application/json');
    expect(Buffer.from(event.bodyBase64, 'base64').toString()).toBe('{"status":"green"}');
    await until(
      async () => ((await tailnet.listNodes()).some((n) => n.name === 'ci-runner') ? undefined : true),
      'the ephemeral node to leave',
      10_000,
    );
  });

  it('reads the body from stdin, as octet-stream unless -H says otherwise, and prints JSON with --json', async () => {
    const r = await runKrknc(
      [
        'send',
        ...node('tester', [
          '--server',
          'hub',
          '--topic',
          'ci/logs',
          '--data',
          '-',
          '-H',
          'Content-Type: text/plain',
          '--json',
        ]),
      ],
      { TS_AUTHKEY: authKey },
      { stdin: Buffer.from('line 1\nline 2\n') },
    );
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { type: string; id: string; topic: string; duplicate: boolean };
    expect(out).toMatchObject({ type: 'published', topic: 'ci/logs', duplicate: false });
    const { event } = await krknsAdmin<{ event: { contentType: string; bodyBase64: string } }>(
      hub.stateDir,
      'GET',
      `/events/${out.id}`,
    );
    expect(event.contentType).toBe('text/plain');
    expect(Buffer.from(event.bodyBase64, 'base64').toString()).toBe('line 1\nline 2\n');
  });
});

describe('krknc send secrets', () => {
  it('takes secret headers from -H @file and from KRKNC_HEADERS, never from argv', async () => {
    const file = join(state.dir, 'send-secrets');
    writeFileSync(file, 'X-Api-Key: from-file\nAuthorization: Bearer from-file\n', { mode: 0o600 });
    const args = [
      'send',
      ...node('secrets', ['--server', 'hub', '--topic', 'ci/secret', '--data', '{}', '-H', `@${file}`]),
    ];
    expect(args.join(' ')).not.toContain('from-file');
    const r = await runKrknc(args, { TS_AUTHKEY: authKey });
    expect(r.code, r.stderr).toBe(0);
    type Detail = { event: { headers: [string, string][]; withheldHeaders: string[] } };
    const { event } = await krknsAdmin<Detail>(hub.stateDir, 'GET', `/events/${r.stdout.trim()}`);
    expect(event.headers).toContainEqual(['x-api-key', 'from-file']);
    expect(event.withheldHeaders).toEqual(['authorization']); // stored and delivered, never read back
    const envArgs = ['send', ...node('secrets', ['--server', 'hub', '--topic', 'ci/secret', '--data', '{}'])];
    const fromEnv = await runKrknc(envArgs, { TS_AUTHKEY: authKey, KRKNC_HEADERS: 'X-Api-Key: from-env' });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    const again = await krknsAdmin<Detail>(hub.stateDir, 'GET', `/events/${fromEnv.stdout.trim()}`);
    expect(again.event.headers).toContainEqual(['x-api-key', 'from-env']);
  });
});

describe('krknc expose', () => {
  it("forwards a native peer's request to the local app, names the caller, and streams the answer back", async () => {
    const exposer = krknc(['expose', ...node('devbox', ['--port', '8080', '--forward-to', `${app.url}/base`])], {
      TS_AUTHKEY: authKey,
    });
    const ready = await exposer.waitFor(/^krknc ready: node devbox\.krkn\.test \((100\.[\d.]+)/m, 60_000);
    const ip = ready[1]!;
    await native.waitForPeer('devbox');
    app.status = 201;
    try {
      const res = await native.fetch(`http://${ip}:8080/path/x?q=1`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-signature': 'abc',
          // identity claims a caller must not be able to make to the local app
          'x-krkn-caller': 'spoofed',
          x_krkn_caller_user: 'admin@example.com',
          forwarded: 'for=10.0.0.1;proto=https',
          'x-real-ip': '10.0.0.1',
          'x-forwarded-port': '443',
          x_forwarded_for: '10.0.0.1',
          'true-client-ip': '10.0.0.1',
        },
        body: '{"hello":"tailnet"}',
      });
      expect(res.status).toBe(201);
      expect(res.text()).toBe('local 201 for POST /base/path/x?q=1');
      expect(res.headers['x-local']).toBe('yes');
      const got = app.received.at(-1)!;
      expect(got.url).toBe('/base/path/x?q=1');
      expect(got.body.toString()).toBe('{"hello":"tailnet"}');
      expect(got.headers['x-signature']).toBe('abc');
      expect(got.headers['x-krkn-caller']).toBe(`peer.${tailnet.domain}`);
      expect(got.headers['x-forwarded-for']).toBe(native.ip());
      expect(got.headers['x-krkn-caller-user']).toBe('ci');
      const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      for (const spoof of [
        'forwarded',
        'x-real-ip',
        'x-forwarded-port',
        'x_forwarded_for',
        'x_krkn_caller_user',
        'true-client-ip',
      ]) {
        expect(names).not.toContain(spoof);
      }
      expect(names.filter((n) => n === 'x-krkn-caller' || n === 'x-forwarded-for')).toHaveLength(2);
      await exposer.waitFor(/peer\.krkn\.test \(ci@?\) {2}POST \/path\/x\?q=1 {2}→ 201 {2}\d+ms/, 5_000);
    } finally {
      app.status = 200;
    }
    await app.stop();
    try {
      const res = await native.fetch(`http://${ip}:8080/down`);
      expect(res.status).toBe(502);
      expect(res.text()).toMatch(/local app .* is not answering \(ECONNREFUSED\)/);
    } finally {
      await app.start();
    }
    expect(await exposer.stop('SIGINT')).toBe(0);
  });

  it('with --allow, refuses a caller it does not name (403) before the local app sees anything', async () => {
    const exposer = krknc(
      [
        'expose',
        ...node('guarded', ['--port', '8081', '--forward-to', app.url, '--allow', 'tag:ci,ci@elsewhere.example']),
      ],
      { TS_AUTHKEY: authKey },
    );
    const ready = await exposer.waitFor(/^krknc ready: node guarded\.krkn\.test \((100\.[\d.]+)/m, 60_000);
    try {
      await native.waitForPeer('guarded');
      const before = app.received.length;
      const res = await native.fetch(`http://${ready[1]!}:8081/secret`, { method: 'POST', body: 'payload' });
      expect(res.status).toBe(403);
      expect(res.text()).toBe(`krknc: peer.${tailnet.domain} is not allowed to call this node (--allow)\n`);
      expect(app.received.length).toBe(before);
      await exposer.waitFor(/peer\.krkn\.test \(ci\) {2}POST \/secret {2}→ 403 not in --allow/, 5_000);
    } finally {
      expect(await exposer.stop('SIGINT')).toBe(0);
    }
  });

  it('cuts a silent connection at --header-timeout and closes those past --max-connections-per-peer at once', async () => {
    const exposer = krknc(
      [
        'expose',
        ...node('bounded', [
          '--port',
          '8082',
          '--forward-to',
          app.url,
          '--header-timeout',
          '2s',
          '--max-connections-per-peer',
          '2',
        ]),
      ],
      { TS_AUTHKEY: authKey },
    );
    await exposer.waitFor(/^krknc ready: node bounded\.krkn\.test/m, 60_000);
    const raw = new TailnetNode({
      hostname: 'raw',
      stateDir: join(state.dir, 'raw'),
      controlUrl: tailnet.url,
      authKey,
      logger: pino({ level: 'silent' }),
      engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
    });
    try {
      await raw.up();
      // Each connection is timed from its own dial: the first dial to a peer the server has only just
      // learnt of can take seconds (SYN retransmits), and must not count against the next connection.
      const sockets = [];
      const dialStarted: number[] = [];
      const dialed: number[] = [];
      for (let i = 0; i < 3; i++) {
        dialStarted.push(performance.now());
        sockets.push(await raw.dial('bounded', 8082));
        dialed.push(performance.now());
      }
      const closedAt = sockets.map(
        (s, i) =>
          new Promise<{ ms: number; sinceAccepted: number; got: string }>((resolve) => {
            let got = '';
            s.on('data', (b: Buffer) => (got += b.toString()));
            s.on('error', () => undefined);
            const done = (): void => {
              const now = performance.now();
              resolve({ ms: now - dialStarted[i]!, sinceAccepted: now - dialed[i]!, got });
            };
            s.once('end', done);
            s.once('close', done);
          }),
      );
      const [first, second, third] = await Promise.all(closedAt);
      expect(third!.sinceAccepted).toBeLessThan(1_500); // past the cap: closed as soon as accepted
      for (const held of [first!, second!]) {
        expect(held.got).toMatch(/^HTTP\/1\.1 408 /);
        // Not before the timeout counted from the dial, nor long after it counted from the accept.
        expect(held.ms).toBeGreaterThanOrEqual(2_000);
        expect(
          held.sinceAccepted,
          `dials took ${dialed.map((t, i) => t - dialStarted[i]!).join(', ')} ms`,
        ).toBeLessThan(4_500);
      }
      for (const s of sockets) s.destroy();
    } finally {
      await raw.close();
      expect(await exposer.stop('SIGINT')).toBe(0);
    }
  });

  it("with --allow naming the caller's login, lets it through", async () => {
    const exposer = krknc(
      ['expose', ...node('guarded', ['--port', '8081', '--forward-to', app.url, '--allow', 'tag:ci,ci@'])],
      { TS_AUTHKEY: authKey },
    );
    const ready = await exposer.waitFor(/^krknc ready: node guarded\.krkn\.test \((100\.[\d.]+)/m, 60_000);
    try {
      await native.waitForPeer('guarded');
      const res = await native.fetch(`http://${ready[1]!}:8081/open`);
      expect(res.status).toBe(200);
      expect(app.received.at(-1)!.url).toBe('/open');
    } finally {
      expect(await exposer.stop('SIGINT')).toBe(0);
    }
  });
});

describe('errors a user meets', () => {
  it('rejects an invalid --forward-to before joining anything (exit 2)', async () => {
    const r = await runKrknc([
      'listen',
      ...node('tester', ['--server', 'hub', '--topic', 'a', '--forward-to', 'ftp://example.com/x']),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: --forward-to: ftp://example.com/x must be an http:// or https:// URL\n');
  });

  it('rejects an unreadable --data file (exit 2)', async () => {
    const r = await runKrknc([
      'send',
      ...node('tester', ['--server', 'hub', '--topic', 'a', '--data', '@/nonexistent/payload.json']),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: --data: cannot read /nonexistent/payload.json: no such file\n');
  });

  it('names a server that is not on the tailnet (exit 4)', async () => {
    const r = await runKrknc(
      ['listen', ...node('tester', ['--server', 'nosuch', '--topic', 'a', '--forward-to', app.url])],
      { TS_AUTHKEY: authKey },
    );
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(
      /^error: no peer named nosuch on this tailnet after 10s\. Either krkns is not running .*$/m,
    );
    expect(r.stderr).toMatch(
      /^error: no peer named nosuch .* the policy hides it: .*posture.*Run: krknc doctor --server nosuch/m,
    );
  });

  it('says when the server does not answer (exit 4)', async () => {
    const r = await runKrknc(['send', ...node('tester', ['--server', 'hub:81', '--topic', 'a', '--data', '{}'])]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^error: send: cannot reach krkns at http:\/\/hub:81: .*DIAL_FAILED/m);
  });
});

describe('krknc status and logout', () => {
  it('shows the login URL while a node waits for interactive login, and goes on once it is approved', async () => {
    const p = krknc(['expose', ...node('newbie', ['--forward-to', app.url])], {}, 'krknc expose (login)');
    const [, url] = await p.waitFor(/to authenticate newbie, visit: (http\S+?)"/, 30_000, 'stderr');
    const r = await runKrknc(['status', ...node('newbie')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/krknc expose is running \(pid \d+/);
    expect(r.stdout).toContain(`login URL:  ${url}`);
    await tailnet.approveLogin(url!, 'ci');
    await p.waitFor(/^krknc ready: node newbie\.krkn\.test/m, 30_000);
    expect(await p.stop('SIGTERM')).toBe(0);
  });

  it('status reads the state directory of a stopped krknc, and goes online to check the server', async () => {
    const fresh = await runKrknc(['status', ...node('nobody')]);
    expect(fresh.code).toBe(0);
    expect(fresh.stdout).toContain('krknc is not running');
    expect(fresh.stdout).toContain('identity:   none yet');

    const r = await runKrknc(['status', ...node('tester', ['--server', 'hub'])]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('identity:   registered');
    expect(r.stdout).toMatch(/peers: .*hub\.krkn\.test \(100\.[\d.]+, online\)/);
    expect(r.stdout).toMatch(/server: +hub\.krkn\.test .*reachable/);

    const bad = await runKrknc(['status', ...node('tester', ['--server', 'hub:81'])]);
    expect(bad.code).toBe(6);
    expect(bad.stdout).toContain('NOT reachable');
  });

  it('logout discards the identity', async () => {
    const r = await runKrknc(['logout', ...node('tester')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('logged out\n');
    const after = await runKrknc(['status', ...node('tester', ['--offline'])]);
    expect(after.stdout).toContain('identity:   none yet');
    // The next start registers again with TS_AUTHKEY (the logged-out state is not taken for an identity).
    const again = await runKrknc(['send', ...node('tester', ['--server', 'hub', '--topic', 'ci/again'])], {
      TS_AUTHKEY: authKey,
    });
    expect(again.code, again.stderr).toBe(0);
    expect((await runKrknc(['status', ...node('tester', ['--offline'])])).stdout).toContain('identity:   registered');
  });
});
