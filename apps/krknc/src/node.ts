import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { CliError, ExitCode, createLogger, showLoginOnTerminal, type Flags, type LogFormat } from '@krkn/cli-kit';
import { FileStateStore, TailnetNode, type NodeStatus } from '@krkn/tailnet';
import { commonFlags, nodeFlags, stateDirOf } from './config.js';

/** The logger of a command: pretty on a terminal, JSON lines otherwise, always on stderr. */
export function loggerFor(flags: Flags<typeof commonFlags>, command: string): Logger {
  const format = (flags['log-format'] ?? (process.stderr.isTTY ? 'pretty' : 'json')) as LogFormat;
  return createLogger({ level: flags['log-level']!, format }).child({ command });
}

/** A node this process runs, with Ctrl-C/SIGTERM wired to `stop`. */
export interface OwnNode {
  node: TailnetNode;
  /** Aborted by SIGINT/SIGTERM (and by whoever wants the command to end). */
  stop: AbortController;
  /** Resolves when the node is Running. */
  up: Promise<NodeStatus>;
  /** Removes the signal handlers and closes the node. */
  dispose(): Promise<void>;
}

/**
 * Creates the node and starts joining, the way krkns does: the login URL is shown on a terminal
 * (the library logs it at info level for everyone else), and a signal aborts the wait. Resolves
 * once the state directory is locked, so "another krknc runs here" fails before anything else.
 */
export async function startNode(flags: Flags<typeof nodeFlags>, log: Logger, { controlTimeoutMs }: { controlTimeoutMs?: number } = {}): Promise<OwnNode> {
  const stateDir = stateDirOf(flags);
  const node = new TailnetNode({
    hostname: flags.hostname!,
    stateDir,
    app: 'krknc',
    controlUrl: flags['control-url']!,
    tags: flags.tags!,
    ephemeral: flags.ephemeral!,
    logger: log,
  });
  showLoginOnTerminal(node, process.stderr);
  const stop = new AbortController();
  const onSignal = (sig: string): void => {
    if (stop.signal.aborted) return;
    log.info({ signal: sig }, 'stopping');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const dispose = async (): Promise<void> => {
    // The handlers stay until the node is closed: a second signal during shutdown (a terminal's
    // SIGINT, then a supervisor's SIGTERM) must not kill the process half-way.
    await node.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const up = node.up({ signal: stop.signal, ...(controlTimeoutMs ? { controlTimeoutMs } : {}) });
  // up() takes the state lock synchronously at its start: a lock error is already settled here.
  const early = await Promise.race([up.then(() => undefined, (err: unknown) => err), new Promise((r) => setImmediate(r))]);
  if (early) {
    await dispose();
    throw early;
  }
  up.catch(() => undefined); // the caller awaits it; this keeps an early abort from being "unhandled"
  return { node, stop, up, dispose };
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Whether the state directory holds a usable identity (a logout leaves none). */
export function identityIn(stateDir: string): 'none' | 'registered' {
  if (!existsSync(stateDir)) return 'none';
  try {
    return FileStateStore.open(stateDir).hasIdentity() ? 'registered' : 'none';
  } catch (err) {
    throw new CliError((err as Error).message, ExitCode.STATE);
  }
}
