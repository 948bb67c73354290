// Our own peers of krkns in its end-to-end tests: in-process tailnet nodes on the test tailnet.
import { join } from 'node:path';
import { pino } from 'pino';
import { TailnetNode } from '@krkn/tailnet';
import type { Tailnet } from '@krkn/testnet';

/** A (not yet up) node named `hostname`, its state under `dir`, quiet, relaying over DERP HTTP as the tests do. */
export function peerNode(tailnet: Tailnet, opts: { hostname: string; authKey: string; dir: string }): TailnetNode {
  return new TailnetNode({
    hostname: opts.hostname,
    stateDir: join(opts.dir, opts.hostname),
    controlUrl: tailnet.url,
    authKey: opts.authKey,
    logger: pino({ level: 'silent' }),
    engineEnv: { TS_DEBUG_USE_DERP_HTTP: '1' },
  });
}
