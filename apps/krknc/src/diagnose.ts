import { createLogger, diagnosticCommands } from '@krkn/cli-kit';
import { doctorInputFrom, type DoctorInput } from '@krkn/doctor';
import type { TailnetNode } from '@krkn/tailnet';
import { nodeFlags, pathsIn, serverFlag, stateDirOf } from './config.js';
import { krkncNode } from './node.js';
import { parseServers } from './server.js';

/** The doctor's view of krknc: its node, and the krkns it talks to when --server is given. */
export function krkncDoctorInput(
  flags: { 'control-url'?: string | undefined; tags?: string[] | undefined; server?: string | undefined },
  stateDir: string,
  node?: TailnetNode,
): DoctorInput {
  const server = flags.server ? parseServers(flags.server)[0] : undefined; // of several replicas, the first
  return doctorInputFrom({
    app: 'krknc',
    stateDir,
    controlUrl: flags['control-url']!,
    advertisedTags: flags.tags ?? [],
    node,
    counterpart: server && { name: server.host, port: server.port },
  });
}

/** doctor (with --server: is krkns visible, pingable, answering?), ping, whois and policy. */
export const diagnostics = diagnosticCommands({
  app: 'krknc',
  flags: { ...nodeFlags, ...serverFlag },
  stateDir: stateDirOf,
  adminSocket: (stateDir) => pathsIn(stateDir).adminSocket,
  // A command's own short-lived node: only its warnings matter.
  openNode: (flags) => krkncNode({ ...flags, ephemeral: false }, createLogger({ level: 'warn', format: 'pretty' })),
  doctorInput: krkncDoctorInput,
  doctorDescription:
    'Checks login, auth key, key expiry, tags, control server, DERP, peer visibility and, with --server, whether krkns is visible, answers a ping and its API. Each with a cause and a fix; exit 0 only when all pass.',
});
