import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { CliError, ExitCode, aborted, bringUp, createLogger, type Flags, type LogFormat, type OwnNode } from '@krkn/cli-kit';
import { FileStateStore, TailnetNode } from '@krkn/tailnet';
import { commonFlags, nodeFlags, stateDirOf } from './config.js';

/** The logger of a command: pretty on a terminal, JSON lines otherwise, always on stderr. */
export function loggerFor(flags: Flags<typeof commonFlags>, command: string): Logger {
  const format = (flags['log-format'] ?? (process.stderr.isTTY ? 'pretty' : 'json')) as LogFormat;
  return createLogger({ level: flags['log-level']!, format }).child({ command });
}

/**
 * Creates krknc's node and starts joining (see bringUp): resolves once the state directory is
 * locked, so "another krknc runs here" fails before anything else.
 */
export function startNode(flags: Flags<typeof nodeFlags>, log: Logger, opts: { controlTimeoutMs?: number } = {}): Promise<OwnNode> {
  const node = new TailnetNode({
    hostname: flags.hostname!,
    stateDir: stateDirOf(flags),
    app: 'krknc',
    controlUrl: flags['control-url']!,
    tags: flags.tags!,
    ephemeral: flags.ephemeral!,
    logger: log,
  });
  return bringUp(node, log, opts);
}

export { aborted, type OwnNode };

/** Whether the state directory holds a usable identity (a logout leaves none). */
export function identityIn(stateDir: string): 'none' | 'registered' {
  try {
    return FileStateStore.identityIn(stateDir) ? 'registered' : 'none';
  } catch (err) {
    throw new CliError((err as Error).message, ExitCode.STATE);
  }
}
