// The hub's background work (pruning, the heartbeat, the delivery loop, recording attempts) over a real
// SQLite store that fails under it: every failure is logged with `err` an Error, and the work goes on.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '@krkn/hub-store';
import { Hub, defaultCredentialHeaders, type Caller } from '@krkn/hub';
import { FakeNode, Recorder } from './helpers.js';

interface LogLine {
  level: number;
  msg: string;
  err?: { type: string; message: string; stack: string };
}

const ci: Caller = {
  kind: 'peer',
  ip: '100.64.0.10',
  nodeId: 'n-ci',
  node: 'ci.krkn.test',
  user: 'ci',
  tags: [],
  capMap: {},
};

let dir: string;
let dbPath: string;
let store: SqliteStore;
let lines: LogLine[];
let rec: Recorder;
let hub: Hub;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'krkn-hub-faults-'));
  dbPath = join(dir, 'hub.db');
  store = SqliteStore.open(dbPath);
  lines = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  rec = new Recorder();
  hub = new Hub({
    store,
    node: new FakeNode(),
    logger,
    send: rec.send,
    config: {
      bodyLimit: 1024,
      retentionMs: 86400e3,
      retryScheduleMs: [0, 60_000],
      deliveryTimeoutMs: 1000,
      requireCapability: false,
      capabilityName: 'krkn.dev/cap/webhooks',
      maxConcurrentDeliveries: 4,
      credentialHeaders: defaultCredentialHeaders,
    },
  });
});
afterEach(async () => {
  await hub.stop(100);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Waits (bounded) until `n` lines with message `msg` were logged; returns them. */
async function logged(msg: string, n = 1): Promise<LogLine[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const found = lines.filter((l) => l.msg === msg);
    if (found.length >= n) return found;
    if (Date.now() > deadline) throw new Error(`no ${n} log line(s) "${msg}" in:\n${JSON.stringify(lines, null, 1)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The line is an error-level log whose `err` is a serialised Error from the closed database. */
function expectStoreFailure(line: LogLine | undefined, level: 'error' | 'warn' = 'error'): void {
  expect(line?.level).toBe(pino.levels.values[level]);
  expect(line?.err?.message).toBe('The database connection is not open');
  expect(line?.err?.stack).toContain('TypeError');
}

describe('store failures in background work', () => {
  it('pruning, the heartbeat and the delivery loop log them and go on trying', async () => {
    await store.close(); // every call now fails, as a database gone under the process does
    hub.start();
    expectStoreFailure((await logged('cannot prune events past retention'))[0]);
    expectStoreFailure((await logged('cannot write the replica heartbeat; trying again at the next beat'))[0], 'warn');
    // The delivery loop keeps coming back (every second) rather than stopping at the first failure.
    const scans = await logged('cannot read the delivery queue; trying again shortly', 2);
    for (const line of scans) expectStoreFailure(line);
  });

  it('an attempt whose outcome cannot be recorded is logged, stays due, and goes out again', async () => {
    await store.subscribe({
      nodeId: 'n-sub',
      nodeName: 'sub',
      address: '100.64.0.2',
      port: 80,
      path: '/',
      topics: ['t'],
    });
    rec.hold = true;
    hub.start();
    const { id } = await hub.publish(ci, { topic: 't', method: 'POST', headers: [], body: Buffer.from('x') });
    while (rec.waiting === 0) await new Promise((r) => setTimeout(r, 10));
    await store.close();
    rec.release();
    const [failed] = await logged('cannot record a delivery attempt');
    expectStoreFailure(failed);
    expect(failed).toMatchObject({ event: id });
    await logged('cannot read the delivery queue; trying again shortly');
    await hub.stop(100);

    // Nothing of the attempt was written: on the database, the delivery is still owed, no attempt spent.
    const reopened = SqliteStore.open(dbPath);
    try {
      expect(await reopened.deliveriesOf(id)).toMatchObject([{ state: 'pending', attempts: 0 }]);
    } finally {
      await reopened.close();
    }
  });

  it('an attempt listener that throws is logged as such; the outcome stays recorded, the queue goes on', async () => {
    const sub = { nodeId: 'n-sub', nodeName: 'sub', address: '100.64.0.2', port: 80, path: '/', topics: ['t'] };
    await store.subscribe(sub);
    hub.events.on('attempt', () => {
      throw new Error('a bug in a metrics listener');
    });
    hub.start();
    const publish = (body: string) =>
      hub.publish(ci, { topic: 't', method: 'POST', headers: [], body: Buffer.from(body) });
    const first = await publish('1');
    const [failed] = await logged('a listener of delivery attempts failed');
    expect(failed?.err?.message).toBe('a bug in a metrics listener');
    // Neither the attempt nor the queue after it is disturbed: each event sent once, recorded delivered.
    const second = await publish('2');
    await logged('a listener of delivery attempts failed', 2);
    expect(rec.sent.map((s) => s.event)).toEqual([first.id, second.id]);
    for (const { id } of [first, second]) {
      expect(await store.deliveriesOf(id)).toMatchObject([{ state: 'delivered', attempts: 1 }]);
    }
  });
});
