/** What kind of failure a {@link PolicyError} reports; callers (and the CLI's exit code) switch on it. */
export type PolicyErrorCode =
  /** The file is not valid HuJSON; the message starts with `file:line:col:`. */
  | 'PARSE'
  /** The HuJSON is fine but does not have the shape of a tailnet policy; the message starts with `file:line:`. */
  | 'SCHEMA'
  /** A caller (or the command line) passed an argument this package cannot use. */
  | 'USAGE'
  /** The policy file could not be read. */
  | 'IO';

/** Where in a file a {@link PolicyError} points, when it points anywhere. */
export interface PolicyErrorLocation {
  /** The file name as the caller gave it. */
  readonly file: string;
  /** 1-based line. */
  readonly line: number;
  /** 1-based column (UTF-16 code units), when known. */
  readonly col?: number;
}

/** The one error class of this package; `code` says what went wrong, `location` where. */
export class PolicyError extends Error {
  override readonly name = 'PolicyError';

  constructor(
    readonly code: PolicyErrorCode,
    message: string,
    readonly location?: PolicyErrorLocation,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
