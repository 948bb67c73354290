import { defaultListenerLimits, type ListenerLimits } from '@krkn/tailnet';
import type { FlagSpecs, Flags } from './flags.js';

const positive = (n: number): string | undefined => (n > 0 ? undefined : 'must be greater than zero');

/**
 * The bounds of a tailnet HTTP listener (timeouts against slow peers, connection caps), set also
 * by `<PREFIX>_HEADER_TIMEOUT` and so on.
 */
export function listenerFlags(envPrefix: string) {
  const d = defaultListenerLimits;
  return {
    'header-timeout': {
      type: 'duration',
      env: `${envPrefix}_HEADER_TIMEOUT`,
      default: d.headersTimeoutMs,
      describe: 'a caller must send its request headers within this time (then 408, and the connection is closed)',
      check: positive,
    },
    'request-timeout': {
      type: 'duration',
      env: `${envPrefix}_REQUEST_TIMEOUT`,
      default: d.requestTimeoutMs,
      describe: 'time for a whole request, body included; also the longest silence on a connection',
      check: positive,
    },
    'keepalive-timeout': {
      type: 'duration',
      env: `${envPrefix}_KEEPALIVE_TIMEOUT`,
      default: d.keepAliveTimeoutMs,
      describe: 'an idle keep-alive connection is closed after this',
      check: positive,
    },
    'max-connections': {
      type: 'int',
      env: `${envPrefix}_MAX_CONNECTIONS`,
      default: d.maxConnections,
      describe: 'open connections on the tailnet listener; more are closed at once',
      check: positive,
    },
    'max-connections-per-peer': {
      type: 'int',
      env: `${envPrefix}_MAX_CONNECTIONS_PER_PEER`,
      default: d.maxConnectionsPerPeer,
      describe: 'open connections from one tailnet address; more are closed at once',
      check: positive,
    },
  } satisfies FlagSpecs;
}

/** The listener bounds a parsed command line asks for. */
export function listenerLimitsOf(flags: Flags<ReturnType<typeof listenerFlags>>): ListenerLimits {
  return {
    headersTimeoutMs: flags['header-timeout'],
    requestTimeoutMs: flags['request-timeout'],
    keepAliveTimeoutMs: flags['keepalive-timeout'],
    maxConnections: flags['max-connections'],
    maxConnectionsPerPeer: flags['max-connections-per-peer'],
  };
}
