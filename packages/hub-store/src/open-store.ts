import { readFileSync } from 'node:fs';
import { PostgresStore, type PostgresStoreOptions } from './pg-store.js';
import { SqliteStore, type SqliteStoreOptions } from './sqlite-store.js';
import { StoreError, type HubStore } from './types.js';

/** How to open a store named by a store URL. */
export interface OpenStoreOptions {
  /** The SQLite file used for the bare `sqlite` URL (krkns's state dir holds it). */
  defaultSqlitePath: string;
  /** The PostgreSQL password itself (e.g. from an environment variable). */
  password?: string | undefined;
  /** A file holding the PostgreSQL password (first line); wins over `password`. */
  passwordFile?: string | undefined;
  /** Pending deliveries a subscription is owed at most, in either store (see HubStore.publish). */
  maxBacklog?: number;
  sqlite?: SqliteStoreOptions;
  postgres?: Omit<PostgresStoreOptions, 'password'>;
}

/** What a store URL names. */
export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/**
 * Reads a store URL: `sqlite` (the default file), `sqlite:<path>`, or `postgres://user@host:port/db`
 * (also `postgresql://`). A password inside the URL is refused: URLs end up in argv, process lists and
 * logs; pass it through a file or the environment instead.
 */
export function parseStoreUrl(spec: string, defaultSqlitePath: string): StoreLocation {
  if (spec === 'sqlite') return { kind: 'sqlite', path: defaultSqlitePath };
  if (spec.startsWith('sqlite:')) {
    const path = spec.slice('sqlite:'.length);
    if (!path)
      throw new StoreError('BAD_URL', 'store URL "sqlite:" names no file: use sqlite or sqlite:/path/to/hub.db');
    return { kind: 'sqlite', path };
  }
  if (/^postgres(ql)?:\/\//.test(spec)) {
    let url: URL;
    try {
      url = new URL(spec);
    } catch {
      throw new StoreError('BAD_URL', 'the PostgreSQL store URL is not a URL: use postgres://user@host:port/database');
    }
    if (url.password) {
      throw new StoreError(
        'BAD_URL',
        'the store URL holds a password: remove it and pass it in a password file or the environment',
      );
    }
    if (!url.hostname || !url.username || url.pathname.length <= 1) {
      throw new StoreError(
        'BAD_URL',
        `store URL ${spec} needs a user, a host and a database: postgres://user@host:port/database`,
      );
    }
    return { kind: 'postgres', url: spec };
  }
  throw new StoreError(
    'BAD_URL',
    `unknown store "${spec.split(':')[0]}": use sqlite, sqlite:/path or postgres://user@host/db`,
  );
}

/** Opens (and migrates) the store a store URL names; see {@link parseStoreUrl}. */
export async function openStore(spec: string, options: OpenStoreOptions): Promise<HubStore> {
  const location = parseStoreUrl(spec, options.defaultSqlitePath);
  const bound = options.maxBacklog === undefined ? {} : { maxBacklog: options.maxBacklog };
  if (location.kind === 'sqlite') return SqliteStore.open(location.path, { ...options.sqlite, ...bound });
  return PostgresStore.open(location.url, { ...options.postgres, ...bound, password: readPassword(options) });
}

function readPassword(options: OpenStoreOptions): string | undefined {
  if (!options.passwordFile) return options.password;
  try {
    return readFileSync(options.passwordFile, 'utf8').split(/\r?\n/)[0];
  } catch (err) {
    throw new StoreError(
      'BAD_URL',
      `cannot read the store password file ${options.passwordFile}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
