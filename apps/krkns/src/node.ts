import type { Logger } from 'pino';
import type { Flags } from '@krkn/cli-kit';
import { TailnetNode } from '@krkn/tailnet';
import { stateDirOf, type controlFlags, type runFlags } from './config.js';

/** The flags that describe krkns's node; commands without --tags or --ephemeral use none. */
export type NodeFlagValues = Pick<Flags<typeof controlFlags>, 'hostname' | 'state-dir' | 'control-url'> &
  Partial<Pick<Flags<typeof runFlags>, 'tags' | 'ephemeral'>>;

/** krkns's node as its flags describe it: the one place krkns constructs a TailnetNode. */
export function krknsNode(flags: NodeFlagValues, log: Logger): TailnetNode {
  return new TailnetNode({
    hostname: flags.hostname,
    stateDir: stateDirOf(flags),
    app: 'krkns',
    controlUrl: flags['control-url'],
    tags: flags.tags ?? [],
    ephemeral: flags.ephemeral ?? false,
    logger: log,
  });
}
