/** Every way a {@link TailnetError} can fail, as a stable code callers can switch on. */
export type TailnetErrorCode =
  /** The control server refused the auth key (malformed, unknown, already used). */
  | 'AUTH_KEY_INVALID'
  /** The control server says the auth key has expired. */
  | 'AUTH_KEY_EXPIRED'
  /** The control server refused the tags the node advertises (not in tagOwners for its user or key). */
  | 'TAGS_NOT_PERMITTED'
  /** The control server did not answer within the bounded wait. */
  | 'CONTROL_UNREACHABLE'
  /** The caller's AbortSignal fired, or the node was closed while waiting. */
  | 'ABORTED'
  /** Another process holds the state directory. */
  | 'STATE_LOCKED'
  /** The persisted state cannot be read; it is left untouched. */
  | 'STATE_CORRUPT'
  /** The state directory or file cannot be created or written. */
  | 'STATE_IO'
  /** A method that needs a running node was called before up() or after close(). */
  | 'NOT_RUNNING'
  /** An option or argument is invalid. */
  | 'BAD_ARGUMENT'
  /** The peer or address is not on this tailnet (or policy hides it). */
  | 'UNKNOWN_PEER'
  /** The dial reached no listener (refused or reset). */
  | 'DIAL_FAILED'
  /** A dial or ping got no answer in time. */
  | 'TIMEOUT'
  /** The port already has a listener in this node. */
  | 'PORT_IN_USE'
  /** The WebAssembly engine failed or exited unexpectedly. */
  | 'ENGINE';

/** The one error class of this package; `code` says what went wrong. */
export class TailnetError extends Error {
  override readonly name = 'TailnetError';

  constructor(
    readonly code: TailnetErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Maps the Go side's error codes (see tailnet-wasm/go) to ours. */
export function fromEngineError(err: unknown): TailnetError {
  if (err instanceof TailnetError) return err;
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const codes: Record<string, TailnetErrorCode> = {
    DIAL_RESOLVE: 'UNKNOWN_PEER',
    DIAL_NOT_TAILNET: 'UNKNOWN_PEER',
    PING_UNKNOWN: 'UNKNOWN_PEER',
    WHOIS_UNKNOWN: 'UNKNOWN_PEER',
    DIAL_TIMEOUT: 'TIMEOUT',
    PING_TIMEOUT: 'TIMEOUT',
    DIAL_FAILED: 'DIAL_FAILED',
    PING_FAILED: 'DIAL_FAILED',
    BAD_ADDRESS: 'BAD_ARGUMENT',
  };
  return new TailnetError(codes[e.code ?? ''] ?? 'ENGINE', message, { cause: err });
}
