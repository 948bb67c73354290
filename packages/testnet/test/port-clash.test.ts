// The start retry when a probed port is taken before headscale binds it. The only stub in the suite:
// port selection hands out a port that another (real) headscale already serves.
import { afterAll, expect, it, vi } from 'vitest';
import * as ports from '../src/ports.js';
import { startTailnet, type Tailnet } from '../src/index.js';

vi.mock('../src/ports.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/ports.js')>();
  return { ...real, freeTcpPort: vi.fn(real.freeTcpPort) };
});

const started: Tailnet[] = [];
afterAll(() => Promise.all(started.map((t) => t.stop())));

it('retries on new ports, and never mistakes another headscale’s /health for its own', async () => {
  const other = await startTailnet();
  started.push(other);
  vi.mocked(ports.freeTcpPort).mockResolvedValueOnce(other.httpPort);

  const lines: string[] = [];
  const mine = await startTailnet({ log: (line) => lines.push(line) });
  started.push(mine);

  expect(lines.some((line) => line.includes('port clash'))).toBe(true);
  expect(mine.httpPort).not.toBe(other.httpPort);
  await mine.createUser('mine');
  expect(await other.listUsers()).toEqual([]); // the user went to our headscale, not the squatter
});
