import { createLogger, diagnosticCommands, formatDurationMs, formatSize, type Flags } from '@krkn/cli-kit';
import { authorizationSummary } from '@krkn/hub';
import { doctorInputFrom, type DoctorInput } from '@krkn/doctor';
import type { TailnetNode } from '@krkn/tailnet';
import { pathsIn, runFlags, stateDirOf } from './config.js';
import { krknsNode } from './node.js';

// doctor, ping and whois read the same flags as run, so they look at the same node (the store is not theirs).
const { 'shutdown-timeout': _s, store: _store, 'store-password-file': _pw, ...flagsOfNodeCommands } = runFlags;

type LimitFlags = Pick<
  Flags<typeof runFlags>,
  | 'max-subscriptions-per-node'
  | 'max-topics-per-subscription'
  | 'max-backlog'
  | 'max-store-size'
  | 'subscription-expiry'
>;
type DoctorFlags = Pick<Flags<typeof runFlags>, 'control-url' | 'tags' | 'require-capability' | 'capability'> &
  LimitFlags;

/** The doctor's view of a krkns configured by these flags and this environment. */
export function krknsDoctorInput(flags: DoctorFlags, stateDir: string, node?: TailnetNode): DoctorInput {
  const mode = { requireCapability: flags['require-capability'], capabilityName: flags.capability };
  const appChecks = [
    { id: 'authorization', status: 'ok' as const, cause: authorizationSummary(mode) },
    { id: 'limits', status: 'ok' as const, cause: limitsSummary(flags) },
  ];
  const base = { app: 'krkns', stateDir, controlUrl: flags['control-url'], advertisedTags: flags.tags };
  return doctorInputFrom({ ...base, node, appChecks });
}

/** The bounds in force, in one line (README: Limits). */
function limitsSummary(flags: LimitFlags): string {
  const store = flags['max-store-size'];
  const expiry = flags['subscription-expiry'];
  return [
    `${flags['max-subscriptions-per-node']} subscriptions per node`,
    `${flags['max-topics-per-subscription']} topics per subscription`,
    `${flags['max-backlog']} pending deliveries per subscription (the oldest fail past it)`,
    store === 0 ? 'no store size bound' : `publishes refused (507) past a store of ${formatSize(store)}`,
    expiry === 0 ? 'subscriptions never expire' : `subscriptions expire after ${formatDurationMs(expiry)} offline`,
  ].join('; ');
}

/** doctor, ping, whois and policy. */
export const diagnostics = diagnosticCommands({
  app: 'krkns',
  flags: { ...flagsOfNodeCommands, json: { type: 'bool', describe: 'print the result as JSON' } },
  stateDir: stateDirOf,
  adminSocket: (stateDir) => pathsIn(stateDir).adminSocket,
  // A command's own short-lived node: only its warnings matter.
  openNode: (flags) => krknsNode({ ...flags, ephemeral: false }, createLogger({ level: 'warn', format: 'pretty' })),
  doctorInput: krknsDoctorInput,
  doctorDescription:
    'Checks login, auth key, key expiry, tags, control server, DERP and peer visibility, with a cause and a fix for each. Exit 0 only when every check passes.',
});
