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
import { defaultCredentialHeaders, defaultLimits, defaultRetryScheduleMs } from '@krkn/hub';
import { DEFAULT_MAX_BACKLOG } from '@krkn/hub-store';
import { DEFAULT_CAPABILITY_NAME } from '@krkn/policy';

/** krkns's node name unless told otherwise: `<os hostname>-krkns`, as a DNS label. */
function defaultHostname(): string {
  return `${osHostLabel()}-krkns`;
}

/** Flags every krkns command shares: which node, and how to log. */
export const commonFlags = {
  ...nodeNameFlags({
    program: 'krkns',
    envPrefix: 'KRKNS',
    defaultHostname,
    defaultHostnameHint: '<os hostname>-krkns',
    stateHolds: 'the node identity, event store and admin socket',
  }),
  ...loggingFlags('KRKNS'),
  json: { type: 'bool', describe: 'print the result as JSON' },
  ...helpFlag,
} satisfies FlagSpecs;

const { json: _json, ...daemonFlags } = commonFlags; // a daemon prints no result to format

/** Flags of commands that bring the stored identity up (logout, when krkns is not running). */
export const controlFlags = { ...commonFlags, ...controlUrlFlag } satisfies FlagSpecs;

/** Which store holds the events: `krkns run` and `krkns status` read it. */
export const storeFlags = {
  store: {
    type: 'string',
    env: 'KRKNS_STORE',
    default: 'sqlite',
    describe: 'event store: sqlite (hub.db in the state dir), sqlite:<path>, or postgres://user@host:port/db',
  },
  'store-password-file': {
    type: 'string',
    env: 'KRKNS_STORE_PASSWORD_FILE',
    describe: 'file holding the PostgreSQL password (else KRKNS_STORE_PASSWORD; never in the URL)',
  },
} satisfies FlagSpecs;

/** Flags of `krkns status`. */
export const statusFlags = { ...commonFlags, ...storeFlags } satisfies FlagSpecs;

/**
 * The default drain timeout is the delivery timeout plus this: time to record the outcome of an attempt
 * that used all of its own.
 */
export const DRAIN_MARGIN_MS = 5_000;

/** Flags of `krkns run`. */
export const runFlags = {
  ...daemonFlags,
  ...controlUrlFlag,
  ...storeFlags,
  port: {
    type: 'int',
    env: 'KRKNS_PORT',
    default: 80,
    describe: 'port of the webhook listener on the tailnet address',
    check: tcpPort,
  },
  ...listenerFlags('KRKNS'),
  ...tagsFlag('KRKNS', 'tag:krkn'),
  ephemeral: {
    type: 'bool',
    env: 'KRKNS_EPHEMERAL',
    default: false,
    describe: 'register as an ephemeral node (removed when it stops)',
  },
  'body-limit': {
    type: 'size',
    env: 'KRKNS_BODY_LIMIT',
    default: 10 * 1024 * 1024,
    describe: 'largest webhook body accepted (413 above)',
    check: positive,
  },
  retention: {
    type: 'duration',
    env: 'KRKNS_RETENTION',
    default: 7 * 86400e3,
    describe: 'how long delivered events are kept',
    check: positive,
  },
  'retry-schedule': {
    type: 'durations',
    env: 'KRKNS_RETRY_SCHEDULE',
    default: defaultRetryScheduleMs,
    describe: 'delay before each delivery attempt; after the last, the delivery is failed',
    check: (xs: number[]) => (xs.length >= 1 && xs.length <= 50 ? undefined : 'must list 1 to 50 delays'),
  },
  'delivery-timeout': {
    type: 'duration',
    env: 'KRKNS_DELIVERY_TIMEOUT',
    default: 15e3,
    describe: 'a delivery succeeds with a 2xx within this time',
    check: positive,
  },
  'max-subscriptions-per-node': {
    type: 'int',
    env: 'KRKNS_MAX_SUBSCRIPTIONS_PER_NODE',
    default: defaultLimits.subscriptionsPerNode,
    describe: 'subscriptions one node may hold (409 SUBSCRIPTION_LIMIT past it)',
    check: positive,
  },
  'max-topics-per-subscription': {
    type: 'int',
    env: 'KRKNS_MAX_TOPICS_PER_SUBSCRIPTION',
    default: defaultLimits.topicsPerSubscription,
    describe: 'topics or patterns one subscription may list (400 TOO_MANY_TOPICS past it)',
    check: positive,
  },
  'max-backlog': {
    type: 'int',
    env: 'KRKNS_MAX_BACKLOG',
    default: DEFAULT_MAX_BACKLOG,
    describe: 'pending deliveries one subscription is owed at most; past it the oldest fail unsent, with the reason',
    check: positive,
  },
  'max-store-size': {
    type: 'size',
    env: 'KRKNS_MAX_STORE_SIZE',
    default: defaultLimits.storeBytes,
    describe: 'store size past which publishes answer 507 STORE_LIMIT (0: no bound)',
  },
  'subscription-expiry': {
    type: 'duration',
    env: 'KRKNS_SUBSCRIPTION_EXPIRY',
    default: defaultLimits.subscriptionExpiryMs,
    describe: 'remove a subscription whose node has been offline or gone from the tailnet this long (0: never)',
  },
  'require-capability': {
    type: 'bool',
    env: 'KRKNS_REQUIRE_CAPABILITY',
    default: false,
    describe: 'callers also need an app-capability grant listing their topics',
  },
  capability: {
    type: 'string',
    env: 'KRKNS_CAPABILITY',
    default: DEFAULT_CAPABILITY_NAME,
    describe: 'name of that app capability',
  },
  'credential-header': {
    type: 'list',
    env: 'KRKNS_CREDENTIAL_HEADERS',
    default: [],
    describe: `more headers the events API never returns (always: ${defaultCredentialHeaders.join(', ')}); deliveries keep them`,
    check: (names: string[]) => names.map(headerNameProblem).find(Boolean),
  },
  metrics: {
    type: 'bool',
    env: 'KRKNS_METRICS',
    default: true,
    describe: 'serve Prometheus metrics at GET /metrics on the tailnet listener (read right on every topic needed)',
  },
  'metrics-listen': {
    type: 'string',
    env: 'KRKNS_METRICS_LISTEN',
    describe:
      'also serve /metrics on this host address, e.g. 127.0.0.1:9464 (loopback only unless --metrics-listen-remote)',
  },
  'metrics-listen-remote': {
    type: 'bool',
    env: 'KRKNS_METRICS_LISTEN_REMOTE',
    default: false,
    describe: 'allow a non-loopback --metrics-listen (anyone reaching that address reads the metrics)',
  },
  'metrics-topic-labels': {
    type: 'bool',
    env: 'KRKNS_METRICS_TOPIC_LABELS',
    default: false,
    describe: 'label publish and delivery counters with the topic (one series per topic: keep topics few)',
  },
  'shutdown-timeout': {
    type: 'duration',
    env: 'KRKNS_SHUTDOWN_TIMEOUT',
    default: 10e3,
    describe: 'on SIGTERM, how long in-flight requests may finish',
    check: positive,
  },
  'drain-timeout': {
    type: 'duration',
    env: 'KRKNS_DRAIN_TIMEOUT',
    describe: `on SIGTERM, how long delivery attempts in flight may end and be recorded (default --delivery-timeout + \
${DRAIN_MARGIN_MS / 1000}s); one cut off stays due and goes out again at the next start`,
    check: positive,
  },
} satisfies FlagSpecs;

// An HTTP token (RFC 9110 field-name).
function headerNameProblem(name: string): string | undefined {
  return /^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(name) ? undefined : `${name} is not a header name`;
}

/** The state directory of a parsed command line. */
export function stateDirOf(flags: Pick<Flags<typeof commonFlags>, 'state-dir' | 'hostname'>): string {
  return stateDirFor('krkns', flags);
}

/** Where a krkns state directory keeps its parts. */
export function pathsIn(stateDir: string): { db: string; adminSocket: string } {
  return { db: join(stateDir, 'hub.db'), adminSocket: join(stateDir, 'krkns.sock') };
}
