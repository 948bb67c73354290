import type { Logger } from 'pino';
import type { NodeStatus, TailnetNode } from '@krkn/tailnet';
import { showLoginOnTerminal } from './login.js';

/** A node a command runs, with Ctrl-C and SIGTERM wired to `stop`. */
export interface OwnNode {
  node: TailnetNode;
  /** Aborted by SIGINT/SIGTERM (and by whoever wants the command to end). */
  stop: AbortController;
  /** Resolves when the node is Running. */
  up: Promise<NodeStatus>;
  /** Closes the node, then removes the signal handlers. */
  dispose(): Promise<void>;
  /** Set when the engine stopped by itself (a crash): the command should exit non-zero. */
  readonly engineFailure: string | undefined;
}

/**
 * Starts joining the way both apps do: the login URL shown on a terminal (the library logs it at
 * info level for everyone else), a signal aborts the wait. Resolves once the state directory is
 * locked, so "another process runs here" fails before anything else starts.
 */
export async function bringUp(
  node: TailnetNode,
  log: Logger,
  { controlTimeoutMs }: { controlTimeoutMs?: number } = {},
): Promise<OwnNode> {
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
  const early = await Promise.race([
    up.then(
      () => undefined,
      (err: unknown) => ({ err }),
    ),
    new Promise<undefined>((r) => setImmediate(() => r(undefined))),
  ]);
  if (early) {
    await dispose();
    throw early.err;
  }
  up.catch(() => undefined); // the caller awaits it; this keeps an early abort from being "unhandled"
  const own = { node, stop, up, dispose, engineFailure: undefined as string | undefined };
  // A crashed engine leaves the process without its node: stop, so a supervisor restarts it.
  node.once('exit', (reason) => {
    own.engineFailure = reason;
    log.error({ reason }, 'the tailnet engine stopped; exiting');
    stop.abort();
  });
  return own;
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
