import { CliError, ExitCode, type ExitCodeValue, type Flags } from '@krkn/cli-kit';
import { StoreError, openStore, type HubStore, type StoreErrorCode } from '@krkn/hub-store';
import { pathsIn, type storeFlags } from './config.js';

/** The environment variable holding the PostgreSQL password (the password file wins over it). */
const STORE_PASSWORD_ENV = 'KRKNS_STORE_PASSWORD';

// What a store failure at start means for the exit code (README: exit codes).
const exitCodeOf: Record<StoreErrorCode, ExitCodeValue> = {
  BAD_URL: ExitCode.USAGE,
  CONNECT_FAILED: ExitCode.UNREACHABLE,
  UNAVAILABLE: ExitCode.UNREACHABLE,
  CORRUPT: ExitCode.STATE,
  SCHEMA_TOO_NEW: ExitCode.STATE,
  NOT_FOUND: ExitCode.FAILURE,
  FULL: ExitCode.FAILURE,
  SUBSCRIPTION_LIMIT: ExitCode.FAILURE,
};

/**
 * Opens the store `--store` names: the SQLite file in the state directory by default, or a PostgreSQL
 * database (password from --store-password-file or KRKNS_STORE_PASSWORD, never the command line).
 * `bounds.maxBacklog` bounds each subscription's pending deliveries (see HubStore.publish).
 * A store that cannot be used ends krkns with a one-line message: exit 2 for a bad URL or password
 * file, 4 when the database refuses or does not answer, 5 for a corrupt or newer database, 1 for a full disk.
 */
export async function openHubStore(
  flags: Flags<typeof storeFlags>,
  stateDir: string,
  bounds: { maxBacklog?: number } = {},
): Promise<HubStore> {
  try {
    return await openStore(flags.store, {
      ...bounds,
      defaultSqlitePath: pathsIn(stateDir).db,
      passwordFile: flags['store-password-file'],
      password: process.env[STORE_PASSWORD_ENV] || undefined,
    });
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    throw new CliError(`--store: ${err.message}`, exitCodeOf[err.code], { cause: err });
  }
}
