import { TailnetError } from '@krkn/tailnet';

/** Exit codes shared by krkns and krknc (documented in the README). */
export const ExitCode = {
  OK: 0,
  /** Something failed at run time (see the message). */
  FAILURE: 1,
  /** Bad command line or configuration value. */
  USAGE: 2,
  /** The auth key (or the tags it asks for) was refused, or the key has expired. */
  AUTH: 3,
  /** The control server (or, for clients, krkns) could not be reached. */
  UNREACHABLE: 4,
  /** The state directory is in use by another process, or its state is corrupt. */
  STATE: 5,
  /** A check failed (doctor, ping). */
  CHECK_FAILED: 6,
  /** Interrupted before it was ready (Ctrl-C while waiting for login). */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** An error that ends the program with a one-line message and a specific exit code. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.FAILURE,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A bad flag or value: exit code 2. */
export function usageError(message: string): CliError {
  return new CliError(message, ExitCode.USAGE);
}

/** The exit code for an error from the tailnet library. */
function exitCodeFor(err: unknown): ExitCodeValue {
  if (err instanceof CliError) return err.exitCode;
  if (!(err instanceof TailnetError)) return ExitCode.FAILURE;
  switch (err.code) {
    case 'AUTH_KEY_INVALID':
    case 'AUTH_KEY_EXPIRED':
    case 'TAGS_NOT_PERMITTED':
      return ExitCode.AUTH;
    case 'CONTROL_UNREACHABLE':
    case 'UNKNOWN_PEER':
    case 'DIAL_FAILED':
    case 'TIMEOUT':
      return ExitCode.UNREACHABLE;
    case 'STATE_LOCKED':
    case 'STATE_CORRUPT':
    case 'STATE_IO':
      return ExitCode.STATE;
    case 'BAD_ARGUMENT':
      return ExitCode.USAGE;
    case 'ABORTED':
      return ExitCode.INTERRUPTED;
    default:
      return ExitCode.FAILURE;
  }
}

/**
 * Runs a command's main and exits with its code: a known error prints one line (no stack
 * trace) to stderr; an unexpected one prints its stack, since that is a bug.
 */
export async function runMain(
  main: () => Promise<number>,
  stderr: NodeJS.WritableStream = process.stderr,
): Promise<never> {
  let code: number;
  try {
    code = await main();
  } catch (err) {
    const known =
      err instanceof CliError || err instanceof TailnetError || (err as { code?: unknown }).code !== undefined;
    stderr.write(`error: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}\n`);
    code = exitCodeFor(err);
  }
  // Writes to a pipe are asynchronous: let them drain before exiting, or the output is cut.
  await Promise.all([process.stdout, stderr].map((s) => new Promise((r) => s.write('', () => r(undefined)))));
  process.exit(code);
}
