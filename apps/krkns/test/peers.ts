// Our own peers of krkns in its end-to-end tests: in-process tailnet nodes on the test tailnet.
import { join } from 'node:path';
import { pino } from 'pino';
import { TailnetNode } from '@krkn/tailnet';
import type { Tailnet } from '@krkn/testnet';

/**
 * A (not yet up) node named `hostname`, its state under `dir`, quiet, relaying over DERP HTTP as the tests do.
 * An `ephemeral` one (with an ephemeral key) logs out on close(): headscale deletes it at once.
 */
export function peerNode(
  tailnet: Tailnet,
  opts: { hostname: string; authKey: string; dir: string; ephemeral?: boolean },
): TailnetNode {
  return new TailnetNode({
    hostname: opts.hostname,
    ephemeral: opts.ephemeral ?? false,
    stateDir: join(opts.dir, opts.hostname),
    controlUrl: tailnet.url,
    authKey: opts.authKey,
    logger: pino({ level: 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
  });
}
