// The check before each delivery, with WhoIs answered by the test (the real tailnet path is covered by
// apps/krkns/test/targets.test.ts): who holds the address, and in capability mode, what they may receive.
import { describe, expect, it } from 'vitest';
import type { DueDelivery } from '@krkn/hub-store';
import type { WhoIs } from '@krkn/tailnet';
import type { AttemptOutcome } from '@krkn/hub';
import { guardTargets } from '../src/target-guard.js';
import { Recorder } from './helpers.js';

const capability = 'krkn.dev/cap/webhooks';

function whoIs(stableId: string, capMap: Record<string, unknown[]> = {}): WhoIs {
  const node = { id: 7, stableId, name: `${stableId}.krkn.test`, hostname: stableId, addresses: [], tags: [] };
  return { node, user: { id: 1, loginName: 'u', displayName: 'u' }, capMap };
}

function due(topic = 'ci/build'): DueDelivery {
  const subscription = {
    id: 'sub_1',
    nodeId: 'nSub',
    nodeName: 'sub.krkn.test',
    address: '100.64.0.2',
    port: 8080,
    path: '/in',
    topics: ['ci/**'],
    createdAt: 0,
    updatedAt: 0,
    offlineSince: null,
    disabled: null,
    held: null,
    secret: null,
    previousSecret: null,
  };
  const sender = { ip: '100.64.0.9', node: 'ci', user: 'u', tags: [] };
  const event = {
    id: 'evt_1',
    seq: 1,
    topic,
    receivedAt: 0,
    dedupeKey: null,
    method: 'POST',
    headers: [],
    body: Buffer.alloc(0),
    size: 0,
    sender,
  };
  const delivery = {
    subscriptionId: 'sub_1',
    eventSeq: 1,
    state: 'pending' as const,
    attempts: 0,
    nextAttemptAt: 0,
    lastStatus: null,
    lastError: null,
  };
  return { delivery, event, subscription };
}

async function attempt(
  whois: (address: string) => Promise<WhoIs>,
  opts: { requireCapability?: boolean; topic?: string } = {},
): Promise<{ outcome: AttemptOutcome; sent: number; asked: string[] }> {
  const rec = new Recorder();
  const asked: string[] = [];
  const config = { requireCapability: opts.requireCapability ?? false, capabilityName: capability };
  const send = guardTargets(async (a) => (asked.push(a), whois(a)), config, rec.send);
  const outcome = await send(due(opts.topic), 1);
  return { outcome, sent: rec.sent.length, asked };
}

describe('guardTargets', () => {
  it('sends when WhoIs names the subscription node at its address', async () => {
    const r = await attempt(async () => whoIs('nSub'));
    expect(r).toEqual({ outcome: { kind: 'delivered', status: 200 }, sent: 1, asked: ['100.64.0.2'] });
  });

  it('holds, unsent, when another node answers at the address, and says who', async () => {
    const r = await attempt(async () => whoIs('nOther'));
    expect(r.sent).toBe(0);
    expect(r.outcome.kind).toBe('held');
    const reason = (r.outcome as { reason: string }).reason;
    expect(reason).toContain('100.64.0.2 now answers for nOther.krkn.test (node nOther)');
    expect(reason).toContain('not for the subscriber sub.krkn.test (node nSub)');
  });

  it('is unreachable, unsent, when nobody holds the address', async () => {
    const r = await attempt(async () => {
      throw new Error('whois: no tailnet node has address 100.64.0.2');
    });
    expect(r.sent).toBe(0);
    expect(r.outcome).toEqual({
      kind: 'unreachable',
      error: 'cannot tell who holds 100.64.0.2 now: whois: no tailnet node has address 100.64.0.2',
    });
  });

  it('in capability mode, refuses unsent a topic the grant no longer covers, sends one it does', async () => {
    const narrowed = async () => whoIs('nSub', { [capability]: [{ subscribe: ['ci/open/*'] }] });
    const refused = await attempt(narrowed, { requireCapability: true, topic: 'ci/build' });
    expect(refused.sent).toBe(0);
    expect(refused.outcome).toMatchObject({ kind: 'refused' });
    expect((refused.outcome as { reason: string }).reason).toMatch(
      /^not sent: .*does not allow subscribe on topic ci\/build/,
    );
    const revoked = await attempt(async () => whoIs('nSub'), { requireCapability: true });
    expect((revoked.outcome as { reason: string }).reason).toMatch(/has no grant of the app capability/);
    const allowed = await attempt(narrowed, { requireCapability: true, topic: 'ci/open/x' });
    expect(allowed).toMatchObject({ outcome: { kind: 'delivered' }, sent: 1 });
  });

  it('in open mode, does not ask for a grant', async () => {
    expect((await attempt(async () => whoIs('nSub'))).outcome.kind).toBe('delivered');
  });
});
