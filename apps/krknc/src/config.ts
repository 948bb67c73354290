import { join } from 'node:path';
import {
  controlUrlFlag,
  helpFlag,
  listenerFlags,
  loggingFlags,
  nodeNameFlags,
  osHostLabel,
  positive,
  stateDirFor,
  tagsFlag,
  tcpPort,
  type FlagSpecs,
  type Flags,
} from '@krkn/cli-kit';

/** krknc's node name unless told otherwise: `krknc-<os hostname>`, as a DNS label. */
function defaultHostname(): string {
  return `krknc-${osHostLabel()}`;
}

/** Flags every krknc command shares: which node, and how to log. */
export const commonFlags = {
  ...nodeNameFlags({
    program: 'krknc',
    envPrefix: 'KRKNC',
    defaultHostname,
    defaultHostnameHint: 'krknc-<os hostname>',
    stateHolds: 'the node identity, delivered-event ids and admin socket',
  }),
  ...loggingFlags('KRKNC'),
  json: { type: 'bool', env: 'KRKNC_JSON', describe: 'print results as JSON (one object per line for streams)' },
  ...helpFlag,
} satisfies FlagSpecs;

/** Which control server: for commands that may bring the node up. */
export const controlFlags = {
  ...commonFlags,
  ...controlUrlFlag,
} satisfies FlagSpecs;

/** Flags of commands that join the tailnet themselves (and may register the node). */
export const nodeFlags = {
  ...controlFlags,
  ephemeral: {
    type: 'bool',
    env: 'KRKNC_EPHEMERAL',
    default: false,
    describe: 'register as an ephemeral node (with an ephemeral auth key: gone as soon as krknc exits)',
  },
  ...tagsFlag('KRKNC', 'tag:ci'),
} satisfies FlagSpecs;

/** `--server`: which krkns. */
export const serverFlag = {
  server: {
    type: 'string',
    env: 'KRKNC_SERVER',
    placeholder: 'host[:port]',
    describe: 'the krkns node: MagicDNS short name, FQDN or 100.x IP, with :port if not 80',
  },
} satisfies FlagSpecs;

/** Flags of commands that forward to a local app. */
export const forwardFlags = {
  'forward-to': {
    type: 'string',
    env: 'KRKNC_FORWARD_TO',
    placeholder: 'url',
    describe: 'the local app, e.g. http://localhost:3000/webhooks (localhost:3000/x and 3000 work too)',
  },
  'forward-timeout': {
    type: 'duration',
    env: 'KRKNC_FORWARD_TIMEOUT',
    default: 30e3,
    describe: 'how long the local app may take to answer (then 504)',
    check: positive,
  },
} satisfies FlagSpecs;

/** The tailnet listener of listen and expose: its port and its bounds against slow or greedy peers. */
export const portFlag = {
  port: {
    type: 'int',
    env: 'KRKNC_PORT',
    default: 8080,
    describe: "port of krknc's listener on its tailnet address",
    check: tcpPort,
  },
  ...listenerFlags('KRKNC'),
} satisfies FlagSpecs;

/** The state directory of a parsed command line. */
export function stateDirOf(flags: Pick<Flags<typeof commonFlags>, 'state-dir' | 'hostname'>): string {
  return stateDirFor('krknc', flags);
}

/** Where a krknc state directory keeps its parts (next to the node's own files). */
export function pathsIn(stateDir: string): { adminSocket: string; seenEvents: string; webhookSecrets: string } {
  return {
    adminSocket: join(stateDir, 'krknc.sock'),
    seenEvents: join(stateDir, 'delivered-events.log'),
    webhookSecrets: join(stateDir, 'webhook-secrets.json'),
  };
}
