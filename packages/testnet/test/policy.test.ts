// The "invisible node": with no policy rule between two nodes, headscale leaves each out of the
// other's peer list. Its own tailnet, because the policy applies to every node on it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNativeNode, startTailnet, type NativeNode, type Tailnet } from '../src/index.js';

// Two CI-style nodes that may each reach the server, never each other. HuJSON: comments, trailing commas.
const serverOnly = `{
  "tagOwners": {
    "tag:ci-a": ["alice@"],
    "tag:ci-b": ["alice@"],
    "tag:server": ["alice@"],
  },
  "acls": [
    // no rule mentions ci-a -> ci-b or ci-b -> ci-a
    { "action": "accept", "src": ["tag:ci-a", "tag:ci-b"], "dst": ["tag:server:*"] },
  ],
}`;

let tailnet: Tailnet;
let ciA: NativeNode;
let ciB: NativeNode;
let server: NativeNode;

beforeAll(async () => {
  tailnet = await startTailnet();
  await tailnet.createUser('alice');
  await tailnet.setPolicy(serverOnly); // before the tagged keys: tagOwners must allow their tags
  const join = async (hostname: string, tag: string) =>
    startNativeNode(tailnet, { hostname, authKey: await tailnet.createPreAuthKey({ tags: [tag] }) });
  [ciA, ciB, server] = await Promise.all([
    join('ci-a', 'tag:ci-a'),
    join('ci-b', 'tag:ci-b'),
    join('server', 'tag:server'),
  ]);
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
afterAll(() => tailnet?.stop());

/** Hostnames of the peers `node` can see. */
async function peerNames(node: NativeNode): Promise<string[]> {
  return Object.values((await node.status()).Peer)
    .map((p) => p.HostName)
    .sort();
}

describe('policy', () => {
  it('hides nodes that have no rule between them', async () => {
    // Positive control first: the server sees both, and each CI node sees the server.
    await server.waitForPeer('ci-a');
    await server.waitForPeer('ci-b');
    await ciA.waitForPeer('server');
    await ciB.waitForPeer('server');
    expect((await ciA.status()).Self.Tags).toEqual(['tag:ci-a']);
    expect(await peerNames(ciA)).toEqual(['server']);
    expect(await peerNames(ciB)).toEqual(['server']);
    await expect(ciA.ping(ciB.ip(), { timeoutMs: 3_000 })).rejects.toMatchObject({ code: 'CLI_FAILED' });
    // headscale itself still lists all three: invisible is a per-node view, not a missing node.
    expect((await tailnet.listNodes()).map((n) => n.name).sort()).toEqual(['ci-a', 'ci-b', 'server']);
  });

  it('shows them to each other once a rule connects them', async () => {
    await tailnet.setPolicy(
      serverOnly.replace('"acls": [', '"acls": [ { "action": "accept", "src": ["tag:ci-a"], "dst": ["tag:ci-b:*"] },'),
    );
    const b = await ciA.waitForPeer('ci-b', 15_000);
    expect(b.Tags).toEqual(['tag:ci-b']);
    await ciB.waitForPeer('ci-a', 15_000); // visibility is symmetric even though the rule is one-way
    expect((await ciA.ping(ciB.ip())).nodeName).toBe('ci-b');
  });
});
