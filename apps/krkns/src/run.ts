import type { Logger } from 'pino';
import {
  ExitCode,
  aborted,
  adminRoutes,
  bringUp,
  helpText,
  listenAdminSocket,
  listenerLimitsOf,
  loggerFromFlags,
  parseFlags,
  readyLine,
  usageError,
  type OwnNode,
} from '@krkn/cli-kit';
import { Hub, defaultCredentialHeaders, identifyAdmin, identifyByWhois, ownHostsOf, tailnetSender } from '@krkn/hub';
import type { HubStore } from '@krkn/hub-store';
import { inspectorRoutes } from '@krkn/inspector';
import { HubMetrics, MetricsListenError, parseHostAddress, serveMetricsOnHost, type HostAddress } from '@krkn/metrics';
import { ensurePrivateDir, formatDuration, serveFastify } from '@krkn/tailnet';
import { DRAIN_MARGIN_MS, pathsIn, runFlags, stateDirOf } from './config.js';
import { krknsDoctorInput } from './diagnose.js';
import { krknsNode } from './node.js';
import { openHubStore } from './store.js';

const usage = 'krkns run [flags]';
const description = `Runs the webhook hub in the foreground (what systemd and containers call). It joins the tailnet
as its own node, serves the webhook API on its tailnet address only, stores every event before
answering 202, and delivers events to subscribers with retries.
First start: set TS_AUTHKEY for a headless registration, or open the login URL it prints.
TS_FORCE_LOGIN=1 registers again even if an identity is stored.`;

/** `krkns run`: the daemon. Resolves with the exit code once it has stopped. */
export async function run(argv: string[]): Promise<number> {
  const { flags } = parseFlags(runFlags, argv);
  if (flags.help) {
    process.stdout.write(helpText(usage, description, runFlags));
    return ExitCode.OK;
  }
  const log = loggerFromFlags(flags);
  const stateDir = stateDirOf(flags);
  const paths = pathsIn(stateDir);
  const metricsHost = metricsHostOf(flags['metrics-listen'], flags['metrics-listen-remote']);

  // The store first: a wrong URL or password ends krkns before it joins the tailnet.
  ensurePrivateDir(stateDir);
  const store = await openHubStore(flags, stateDir, { maxBacklog: flags['max-backlog'] });
  log.info({ store: store.description }, 'store open');
  const node = krknsNode(flags, log);
  // The node's state lock is taken next, so a second krkns on this directory stops here.
  let own: OwnNode;
  try {
    own = await bringUp(node, log);
  } catch (err) {
    await store.close();
    throw err;
  }
  const { stop, up } = own;
  // One authorisation config for the API and for the check before each delivery.
  const authz = { requireCapability: flags['require-capability'], capabilityName: flags.capability };
  const hub = new Hub({
    store,
    node,
    logger: log,
    send: tailnetSender(node, flags['delivery-timeout'], authz),
    config: {
      bodyLimit: flags['body-limit'],
      retentionMs: flags.retention,
      retryScheduleMs: flags['retry-schedule'],
      deliveryTimeoutMs: flags['delivery-timeout'],
      ...authz,
      maxConcurrentDeliveries: 16,
      credentialHeaders: [...defaultCredentialHeaders, ...flags['credential-header']],
      limits: {
        subscriptionsPerNode: flags['max-subscriptions-per-node'],
        topicsPerSubscription: flags['max-topics-per-subscription'],
        storeBytes: flags['max-store-size'],
        subscriptionExpiryMs: flags['subscription-expiry'],
      },
    },
  });
  const metrics = new HubMetrics(hub, node, { topicLabels: flags['metrics-topic-labels'] });
  if (flags.metrics) hub.exposeMetrics(() => metrics.render());
  const admin = await hub.app(identifyAdmin);
  const doctor = () => krknsDoctorInput(flags, stateDir, node);
  await admin.register(adminRoutes, { node, log, doctor, stop: () => stop.abort() });

  const closers: (() => Promise<void>)[] = [];
  try {
    await listenAdminSocket(admin, paths.adminSocket);
    const status = await up;
    const listenerUrl = `http://${status.self.dnsName || status.self.addresses[0]}${flags.port === 80 ? '' : `:${flags.port}`}`;
    const identify = identifyByWhois(node);
    const api = await hub.app(identify, { url: listenerUrl, guardBrowsers: true });
    await api.register(inspectorRoutes, { prefix: '/ui', hub, identify, hosts: () => ownHostsOf(node) });
    await serveFastify(api, node, flags.port, listenerLimitsOf(flags));
    const metricsServer = metricsHost && (await serveMetricsOnHost(metricsHost, () => metrics.render(), log));
    if (metricsServer) closers.push(() => metricsServer.close());
    hub.start();
    log.info({ node: status.self.dnsName, addresses: status.self.addresses, listener: listenerUrl, stateDir }, 'ready');
    process.stdout.write(`${readyLine('krkns', status, listenerUrl)}\n`);
    await aborted(stop.signal);
    await Promise.all(closers.map((close) => close()));
    const drainMs = flags['drain-timeout'] ?? flags['delivery-timeout'] + DRAIN_MARGIN_MS;
    await shutdown({ hub, api, admin, own, store, log, timeoutMs: flags['shutdown-timeout'], drainMs });
    return own.engineFailure === undefined ? ExitCode.OK : ExitCode.FAILURE;
  } catch (err) {
    await Promise.allSettled([admin.close(), own.dispose(), ...closers.map((close) => close())]);
    await store.close();
    throw err;
  }
}

/**
 * Stops in order: new requests get 503 and the listener stops accepting; requests in flight get up
 * to timeoutMs and delivery attempts in flight up to drainMs to end and be recorded (one cut off is
 * not recorded: it stays due); only then storage closes and the node leaves (an ephemeral node logs
 * out so it vanishes at once).
 */
async function shutdown(p: {
  hub: Hub;
  api: { close(): Promise<void> };
  admin: { close(): Promise<void> };
  own: OwnNode;
  store: HubStore;
  log: Logger;
  timeoutMs: number;
  drainMs: number;
}): Promise<void> {
  const started = Date.now();
  const waitingFor = p.hub.inFlight;
  if (waitingFor.requests + waitingFor.deliveries > 0) {
    p.log.info(
      waitingFor,
      `stopping: new requests get 503; waiting up to ${formatDuration(p.timeoutMs)} (--shutdown-timeout) for ` +
        `${waitingFor.requests} request(s) and up to ${formatDuration(p.drainMs)} (--drain-timeout) for ` +
        `${waitingFor.deliveries} delivery attempt(s) in flight`,
    );
  }
  await p.hub.stop(p.timeoutMs, p.drainMs);
  const cutOff = p.hub.inFlight;
  if (cutOff.requests + cutOff.deliveries > 0) {
    p.log.warn(cutOff, 'stopped waiting: deliveries cut off are attempted again at the next start');
  }
  await Promise.race([
    p.api.close(),
    new Promise((r) => setTimeout(r, Math.max(0, p.timeoutMs - (Date.now() - started))).unref()),
  ]);
  await p.admin.close();
  await p.store.close();
  await p.own.dispose();
  p.log.info({ ms: Date.now() - started }, 'stopped');
}

/** The `--metrics-listen` address, checked before anything starts (a bad one is a usage error). */
function metricsHostOf(text: string | undefined, allowRemote: boolean): HostAddress | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    return parseHostAddress(text, allowRemote);
  } catch (err) {
    if (err instanceof MetricsListenError) throw usageError(`--metrics-listen: ${err.message}`);
    throw err;
  }
}
