// A node restarted from its state talks to its peers at once, even when they learn of the restart late.
//
// Tailscale drops its WireGuard session with a peer when control reports that the peer restarted. If
// that report arrives after the restarted peer's first handshake, the restarted side keeps sending on a
// session the other side no longer has, and WireGuard alone notices only after 15 s. headscale's
// batch_change_delay (here 4 s instead of 800 ms) makes that order certain: a restarted node gets its
// own map at once, its peers hear of the restart one tick later.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTailnet, waitFor, type Tailnet } from '@krkn/testnet';
import { TailnetNode, tailnetFetch } from '@krkn/tailnet';
import { captureLogger, nodeOptions, startHelloPeer, tempDir } from './helpers.js';

const peersLearnAfterMs = 4_000;
let tailnet: Tailnet;
let alpha: { close(): Promise<void> } | undefined;
let authKey: string;
const state = tempDir();
const nodes: TailnetNode[] = [];

beforeAll(async () => {
  tailnet = await startTailnet({ batchChangeDelay: `${peersLearnAfterMs}ms` });
  const user = await tailnet.createUser('restart');
  authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  alpha = await startHelloPeer(tailnet, state.dir, authKey);
});

afterAll(async () => {
  await Promise.all([alpha?.close(), ...nodes.map((n) => n.close())]);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await tailnet?.stop();
  state.remove();
});

async function hello(node: TailnetNode): Promise<number> {
  const started = Date.now();
  const res = await tailnetFetch(node, 'http://alpha/hello');
  expect(await res.text()).toBe('hello');
  return Date.now() - started;
}

it('reaches a peer that learns of its restart seconds later, and drops our session then', async () => {
  const firstLife = new TailnetNode(nodeOptions(tailnet, state.dir, 'beta', { authKey }));
  nodes.push(firstLife);
  await firstLife.up();
  // alpha learns of beta one batch tick after beta joined: until then beta's handshakes go unanswered.
  await waitFor(() => hello(firstLife).then(() => true), {
    timeoutMs: 30_000,
    what: "beta's first life reaching alpha",
  });
  await firstLife.close();

  const { logger, lines } = captureLogger('debug');
  const beta = new TailnetNode(nodeOptions(tailnet, state.dir, 'beta', { logger }));
  nodes.push(beta);
  await beta.up();
  const restarted = Date.now();
  const took: number[] = [];
  // New connections across the moment alpha hears of the restart and drops the session beta made.
  while (Date.now() - restarted < peersLearnAfterMs * 2.5) {
    const since = Date.now() - restarted;
    took.push(
      await hello(beta).catch((err: unknown) => {
        throw new Error(
          `connection ${took.length} (${since} ms after the restart) failed; before: ${took.join(', ')} ms`,
          {
            cause: err,
          },
        );
      }),
    );
    await new Promise((r) => setTimeout(r, 250));
  }
  const resets = lines.filter((l) => l.msg.includes('resetting the WireGuard session'));
  // The session alpha dropped was found dead and replaced: no connection waited for WireGuard's own 15 s.
  expect(resets.length, `connections took ${took.join(', ')} ms`).toBeGreaterThan(0);
  expect(Math.max(...took), `connections took ${took.join(', ')} ms`).toBeLessThan(5_000);
});
