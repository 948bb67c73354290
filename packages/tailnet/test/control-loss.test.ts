// The control server going away must not hang the node: its WebSocket errors used to deadlock
// the Go program inside the error handler (100% CPU, no call ever answered again).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTailnet, type Tailnet } from '@krkn/testnet';
import { TailnetNode } from '@krkn/tailnet';
import { nodeOptions, tempDir } from './helpers.js';

let tailnet: Tailnet;
let node: TailnetNode;
const state = tempDir();

beforeAll(async () => {
  tailnet = await startTailnet();
  const user = await tailnet.createUser('lossy');
  node = new TailnetNode(
    nodeOptions(tailnet, state.dir, 'lossy', { authKey: await tailnet.createPreAuthKey({ user: user.id }) }),
  );
  await node.up();
});

afterAll(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await node?.close();
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- unset when beforeAll failed
  await tailnet?.stop();
  state.remove();
});

it('stays responsive, and nearly idle, while the control server is gone', async () => {
  process.kill(tailnet.pid!, 'SIGKILL'); // connections to control and DERP now fail with ECONNREFUSED
  await new Promise((r) => setTimeout(r, 3_000));
  const before = process.cpuUsage();
  const started = Date.now();
  await new Promise((r) => setTimeout(r, 3_000));
  const st = await Promise.race([
    node.status(),
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error('status() got no answer: the engine hangs')), 5_000),
    ),
  ]);
  expect(st.self.addresses).toEqual(node.addresses);
  const cpu = process.cpuUsage(before);
  const busy = (cpu.user + cpu.system) / 1e3 / (Date.now() - started);
  expect(busy).toBeLessThan(0.5); // the spinning engine kept a whole core busy (about 1.0)
});
