/**
 * What went wrong, as a stable string a test or caller can branch on.
 *
 * - `TOOL_NOT_FOUND`: a pinned binary (headscale, tailscaled, tailscale) is missing; run `bash scripts/tools.sh`.
 * - `HEADSCALE_START_FAILED`: headscale exited or never answered `GET /health` while starting.
 * - `HEADSCALE_EXITED`: headscale was running and then exited on its own.
 * - `CLI_FAILED`: a `headscale` or `tailscale` CLI call exited non-zero.
 * - `NODE_START_FAILED`: tailscaled exited or its socket never came up.
 * - `NODE_UP_FAILED`: `tailscale up` failed (e.g. the auth key was refused).
 * - `BAD_LOGIN_URL`: a login URL does not end in `/register/<auth-id>`.
 * - `NOT_FOUND`: a user looked up by name does not exist.
 * - `HTTP_FAILED`: an HTTP request through a node's proxy failed below HTTP (connect, reset).
 * - `TIMEOUT`: a bounded wait ran out.
 * - `POSTGRES_START_FAILED`: PostgreSQL is not installed, `initdb` failed, or the server exited or never became ready.
 * - `SMALL_DISK_FAILED`: a small tmpfs for a full-disk test could not be mounted (not root).
 */
export type TestnetErrorCode =
  | 'TOOL_NOT_FOUND'
  | 'HEADSCALE_START_FAILED'
  | 'HEADSCALE_EXITED'
  | 'CLI_FAILED'
  | 'NODE_START_FAILED'
  | 'NODE_UP_FAILED'
  | 'BAD_LOGIN_URL'
  | 'NOT_FOUND'
  | 'HTTP_FAILED'
  | 'TIMEOUT'
  | 'POSTGRES_START_FAILED'
  | 'SMALL_DISK_FAILED';

/** Extra facts attached to a {@link TestnetError}, for humans reading a failed test. */
export interface TestnetErrorDetails {
  /** The command line that failed, when a process was involved. */
  command?: string[];
  /** Exit code of that process, when it exited. */
  exitCode?: number | null;
  /** Its stderr (CLI calls) or the last lines of its log (daemons). */
  output?: string;
}

/** The one error class this package throws. Branch on {@link TestnetError.code}, not on the message. */
export class TestnetError extends Error {
  /** Stable reason; see {@link TestnetErrorCode}. */
  readonly code: TestnetErrorCode;
  /** Command, exit code and output of the process involved, if any. */
  readonly details: TestnetErrorDetails;

  constructor(code: TestnetErrorCode, message: string, details: TestnetErrorDetails = {}, options?: ErrorOptions) {
    // The output goes into the message too: vitest prints the message, and that is where people look.
    super(details.output ? `${message}\n--- output ---\n${details.output.trimEnd()}` : message, options);
    this.name = 'TestnetError';
    this.code = code;
    this.details = details;
  }
}
