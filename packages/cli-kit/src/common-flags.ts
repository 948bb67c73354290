import { hostname } from 'node:os';
import { tagError } from '@krkn/policy';
import { defaultControlUrl, defaultStateDir } from '@krkn/tailnet';
import type { FlagSpecs } from './flags.js';
import type { Logger } from 'pino';
import { createLogger, logLevels, type LogFormat } from './log.js';

/** --log-level and --log-format, set also by `<PREFIX>_LOG_LEVEL` and `<PREFIX>_LOG_FORMAT`. */
export function loggingFlags(envPrefix: string) {
  return {
    'log-level': {
      type: 'string',
      env: `${envPrefix}_LOG_LEVEL`,
      default: 'info',
      describe: `log level: ${logLevels.join(', ')}`,
      check: (v: string) => (logLevels.includes(v as never) ? undefined : `must be one of ${logLevels.join(', ')}`),
    },
    'log-format': {
      type: 'string',
      env: `${envPrefix}_LOG_FORMAT`,
      describe: 'json or pretty (default pretty on a terminal, json otherwise)',
      check: (v: string) => (v === 'json' || v === 'pretty' ? undefined : 'must be json or pretty'),
    },
  } satisfies FlagSpecs;
}

/** -h, --help. */
export const helpFlag = { help: { type: 'bool', short: 'h', describe: 'show this help' } } satisfies FlagSpecs;

/** This machine's host name as a DNS label (at most 56 characters, leaving room for a suffix). */
export function osHostLabel(): string {
  const label = hostname()
    .split('.')[0]!
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 56);
  return label || 'host';
}

/** --control-url (TS_CONTROL_URL): which control server the node joins. */
export const controlUrlFlag = {
  'control-url': {
    type: 'string',
    env: 'TS_CONTROL_URL',
    default: defaultControlUrl,
    describe: 'the tailnet control server',
  },
} satisfies FlagSpecs;

/** --tags (`<PREFIX>_TAGS`): the tags the node advertises. */
export function tagsFlag(envPrefix: string, example: string) {
  return {
    tags: {
      type: 'list',
      env: `${envPrefix}_TAGS`,
      default: [],
      describe: `tags to advertise, e.g. ${example} (the policy must let the node own them)`,
      check: (tags: string[]) => tags.map(tagError).find(Boolean),
    },
  } satisfies FlagSpecs;
}

/** What {@link loggingFlags} parse to. */
type LoggingFlagValues = { 'log-level'?: string | undefined; 'log-format'?: string | undefined };

/** The logger --log-level and --log-format ask for: on stderr, pretty on a terminal, JSON lines otherwise. */
export function loggerFromFlags(flags: LoggingFlagValues): Logger {
  const format = (flags['log-format'] ?? (process.stderr.isTTY ? 'pretty' : 'json')) as LogFormat;
  return createLogger({ level: flags['log-level'] ?? 'info', format });
}

/** A flag check: the number must be greater than zero. */
export function positive(n: number): string | undefined {
  return n > 0 ? undefined : 'must be greater than zero';
}

/** A flag check: the number must be a TCP port. */
export function tcpPort(p: number): string | undefined {
  return p >= 1 && p <= 65535 ? undefined : 'must be 1-65535';
}

/** What a node's `--hostname` and `--state-dir` are for, per program. */
export interface NodeNameOptions {
  /** The program, naming its state directory: `<data dir>/krkn/<program>/<hostname>`. */
  program: string;
  /** Prefix of `<PREFIX>_HOSTNAME` and `<PREFIX>_STATE_DIR`. */
  envPrefix: string;
  /** The node's name unless told otherwise. */
  defaultHostname: () => string;
  /** That default as the help shows it, e.g. `<os hostname>-krkns`. */
  defaultHostnameHint: string;
  /** What the state directory keeps, for the help. */
  stateHolds: string;
}

/** --hostname and --state-dir (`<PREFIX>_HOSTNAME`, `<PREFIX>_STATE_DIR`): which node, and where it lives. */
export function nodeNameFlags(o: NodeNameOptions) {
  return {
    hostname: {
      type: 'string',
      env: `${o.envPrefix}_HOSTNAME`,
      default: o.defaultHostname,
      describe: `the node's name on the tailnet (default ${o.defaultHostnameHint})`,
    },
    'state-dir': {
      type: 'string',
      env: `${o.envPrefix}_STATE_DIR`,
      describe: `where ${o.stateHolds} live (default <data dir>/krkn/${o.program}/<hostname>)`,
    },
  } satisfies FlagSpecs;
}

/** The state directory a parsed command line names: --state-dir, else the program's default for the hostname. */
export function stateDirFor(program: string, flags: { 'state-dir'?: string | undefined; hostname: string }): string {
  return flags['state-dir'] ?? defaultStateDir(program, flags.hostname);
}
