// The texts of the waits (pure logic): each error the control client reports is translated into a
// cause and a fix; a relay that never answered is explained from the DERP map.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { PeerStatus, RelayRegion } from '@krkn/tailnet';
import {
  ReportedWait,
  announceFirstContact,
  explainControlError,
  explainRelay,
  formatDuration,
  nameCollision,
} from '../src/waits.js';

/** A real pino logger writing into an array: the messages a wait logged, in order. */
function capture(): { log: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const key = (url: string, tail: string): string => `fetch control key: Get "${url}/key?v=142": ${tail}`;

describe('explainControlError', () => {
  const url = 'https://hs.example.com:8443';
  it.each([
    ['fetch failed: ENOTFOUND', /^DNS cannot resolve hs\.example\.com \(ENOTFOUND\)$/, /check this host's DNS/],
    ['fetch failed: EAI_AGAIN', /^DNS cannot resolve hs\.example\.com \(EAI_AGAIN\)$/, /TS_CONTROL_URL/],
    ['fetch failed: ECONNREFUSED', /^hs\.example\.com:8443 refused the connection \(ECONNREFUSED\)/, /^is the control/],
    ['fetch failed: UND_ERR_CONNECT_TIMEOUT', /^\S+ cannot be reached \(UND_ERR_CONNECT_TIMEOUT\)$/, /firewall/],
    ['fetch failed: DEPTH_ZERO_SELF_SIGNED_CERT', /^TLS with \S+ failed \(DEPTH_ZERO_SELF_SIGNED_CERT\)$/, /EXTRA_CA/],
    ['fetch failed: ERR_SSL_WRONG_VERSION_NUMBER', /^TLS with .* failed/, /a plain-HTTP server needs http:\/\//],
    ['fetch failed: bad port', /^Node\.js refuses to fetch from port 8443/, /another port/],
  ])('%s', (tail, cause, fix) => {
    const d = explainControlError(key(url, tail), url);
    expect(d.cause).toMatch(cause);
    expect(d.fix).toMatch(fix);
  });

  it('an HTTP status from GET /key: not a control server', () => {
    const d = explainControlError('fetch control key: 404 Not Found', url);
    expect(d.cause).toBe(
      'https://hs.example.com:8443 answered HTTP 404 to GET /key: ' +
        'not a Tailscale control server, or a proxy in the way',
    );
    expect(d.fix).toMatch(/--control-url \/ TS_CONTROL_URL .*server_url/);
  });

  it('an error it does not know is quoted as it is', () => {
    expect(explainControlError('register request: something odd', url)).toEqual({
      cause: 'register request: something odd',
      fix: expect.stringMatching(/TS_CONTROL_URL/) as string,
    });
  });

  it('no error at all: no answer yet', () => {
    expect(explainControlError(undefined, url).cause).toBe('no answer yet');
  });
});

describe('explainRelay', () => {
  const control = 'http://127.0.0.1:8080';
  const region = (over: Partial<RelayRegion> = {}): RelayRegion => ({
    id: 999,
    code: 'hs',
    name: 'Headscale',
    nodes: [{ host: '127.0.0.1', port: 8080 }],
    ...over,
  });

  it('a region a frame came from is fine', () => {
    expect(explainRelay([region({ lastFrame: '2026-12-02T13:00:00Z' })], 'hs', control, false)).toBeUndefined();
  });

  it('the DERP on the plain-HTTP control port without the knob: says the knob', () => {
    const d = explainRelay([region()], 'hs', control, false)!;
    expect(d.cause).toBe(
      'no connection to the home relay region hs (Headscale) at https://127.0.0.1:8080/derp: ' +
        'it is served over plain HTTP ' +
        '(same host and port as the http:// control server), but the node speaks HTTPS to relays',
    );
    expect(d.fix).toBe('set TS_DEBUG_USE_DERP_HTTP=1 in the environment');
  });

  it('with the knob, or elsewhere: the URL dialed and the common causes', () => {
    const withKnob = explainRelay([region()], 'hs', control, true)!;
    expect(withKnob.cause).toBe('no connection to the home relay region hs (Headscale) at http://127.0.0.1:8080/derp');
    const remote = explainRelay([region({ nodes: [{ host: 'derp.example.com', port: 0 }] })], 'hs', control, false)!;
    expect(remote.cause).toContain('at https://derp.example.com/derp');
    expect(remote.fix).toMatch(/firewall, proxy.*TLS certificate.*TS_DEBUG_USE_DERP_HTTP=1/);
  });

  it('no DERP map at all', () => {
    expect(explainRelay([], '', control, false)?.fix).toMatch(/derp\.server\.enabled/);
  });
});

describe('nameCollision', () => {
  const self = (dnsName: string): PeerStatus => ({
    ...{ stableId: 'nDup', hostname: 'dup', dnsName, addresses: [], online: true },
    ...{ os: 'js', tags: [], user: '', relay: '' },
  });
  it('the name asked for: nothing to say', () => {
    expect(nameCollision('dup', self('dup.example.ts.net'))).toBeUndefined();
  });
  it('another name: both names and the fix', () => {
    const d = nameCollision('dup', self('dup-1.example.ts.net'))!;
    expect(d.given).toBe('dup-1');
    expect(d.cause).toBe(
      'the control server registered this node as "dup-1" (dup-1.example.ts.net), not "dup": ' +
        'another node holds that name',
    );
    expect(d.fix).toMatch(/doctor names the node that holds "dup".*another --hostname/);
  });
});

it('formatDuration', () => {
  expect([formatDuration(400), formatDuration(3_000), formatDuration(90_000)]).toEqual(['0s', '3s', '1m30s']);
});

describe('ReportedWait', () => {
  it('announces at once, repeats its progress with the time waited, and stops at done()', async () => {
    const { log, lines } = capture();
    const wait = new ReportedWait(log, 'waiting for X', (waited) => `still no X after ${waited}`, 100);
    await sleep(350);
    wait.done();
    const seen = lines.length;
    await sleep(250);
    expect(lines[0]).toMatchObject({ level: 30, msg: 'waiting for X' });
    expect(lines.slice(1).map((l) => l.level)).toEqual(Array(seen - 1).fill(40));
    expect(seen - 1).toBeGreaterThanOrEqual(2);
    expect(lines[1]!.msg).toBe('still no X after 0s');
    expect(lines.length).toBe(seen);
  });
});

describe('announceFirstContact', () => {
  it('says nothing when the dial is quick', async () => {
    const { log, lines } = capture();
    await announceFirstContact(log, '100.64.0.1:80', 15_000, sleep(50));
    await sleep(50);
    expect(lines).toEqual([]);
  });

  it('names the handshake wait once when the first dial stalls past 2 s', { timeout: 10_000 }, async () => {
    const { log, lines } = capture();
    await announceFirstContact(log, '100.64.0.1:80', 15_000, sleep(2_300));
    expect(lines.map((l) => l.msg)).toEqual([
      'first contact with 100.64.0.1:80: waiting for the WireGuard handshake ' +
        '(right after a node joins or restarts, its peers may not know yet: the handshake is retried every 3s); ' +
        'giving up after 15s',
    ]);
  });
});
