import type { Logger } from 'pino';
import { aborted, bringUp, loggerFromFlags, type Flags, type OwnNode } from '@krkn/cli-kit';
import { TailnetNode } from '@krkn/tailnet';
import { stateDirOf, type commonFlags, type controlFlags, type nodeFlags } from './config.js';

/** The logger of a command, bound to its name. */
export function loggerFor(flags: Flags<typeof commonFlags>, command: string): Logger {
  return loggerFromFlags(flags).child({ command });
}

/** The flags that describe krknc's node; commands without --tags or --ephemeral use none. */
export type NodeFlagValues = Pick<Flags<typeof controlFlags>, 'hostname' | 'state-dir' | 'control-url'> &
  Partial<Pick<Flags<typeof nodeFlags>, 'tags' | 'ephemeral'>>;

/** krknc's node as its flags describe it: the one place krknc constructs a TailnetNode. */
export function krkncNode(flags: NodeFlagValues, log: Logger): TailnetNode {
  return new TailnetNode({
    hostname: flags.hostname,
    stateDir: stateDirOf(flags),
    app: 'krknc',
    controlUrl: flags['control-url'],
    tags: flags.tags ?? [],
    ephemeral: flags.ephemeral ?? false,
    logger: log,
  });
}

/**
 * Creates krknc's node and starts joining (see bringUp): resolves once the state directory is
 * locked, so "another krknc runs here" fails before anything else.
 */
export function startNode(
  flags: NodeFlagValues,
  log: Logger,
  opts: { controlTimeoutMs?: number } = {},
): Promise<OwnNode> {
  return bringUp(krkncNode(flags, log), log, opts);
}

export { aborted, type OwnNode };
