import { createLogger, doctorCommand, helpText, parseFlags, pingCommand, whoisCommand, ExitCode, type NodeCommandContext } from '@krkn/cli-kit';
import type { DoctorInput } from '@krkn/doctor';
import { main as policyMain } from '@krkn/policy';
import { TailnetNode } from '@krkn/tailnet';
import { nodeFlags, pathsIn, serverFlag, stateDirOf } from './config.js';
import { parseServer } from './server.js';

const diagnoseFlags = { ...nodeFlags, ...serverFlag } as const;

const print = (s: string): void => void process.stdout.write(`${s}\n`);

/** The doctor's view of krknc: its node, and the krkns it talks to when --server is given. */
export function krkncDoctorInput(flags: { 'control-url'?: string | undefined; tags?: string[] | undefined; server?: string | undefined }, stateDir: string, node?: TailnetNode): DoctorInput {
  const server = flags.server ? parseServer(flags.server) : undefined;
  return {
    app: 'krknc',
    stateDir,
    controlUrl: flags['control-url']!,
    authKeyInEnv: Boolean(process.env.TS_AUTHKEY || process.env.TS_AUTH_KEY),
    forceLogin: /^(1|true|yes|on)$/i.test(process.env.TS_FORCE_LOGIN ?? ''),
    advertisedTags: flags.tags ?? [],
    ...(node ? { node } : {}),
    ...(server ? { counterpart: { name: server.host, port: server.port } } : {}),
  };
}

function context(argv: string[], usage: string, description: string): { ctx: NodeCommandContext; args: string[]; json: boolean } | number {
  const { flags, args } = parseFlags(diagnoseFlags, argv);
  if (flags.help) {
    process.stdout.write(helpText(usage, description, diagnoseFlags));
    return ExitCode.OK;
  }
  const stateDir = stateDirOf(flags);
  const ctx: NodeCommandContext = {
    app: 'krknc',
    stateDir,
    adminSocket: pathsIn(stateDir).adminSocket,
    openNode: () =>
      new TailnetNode({ hostname: flags.hostname!, stateDir, app: 'krknc', controlUrl: flags['control-url']!, tags: flags.tags!, logger: createLogger({ level: 'warn', format: 'pretty' }) }),
    doctorInput: (node) => krkncDoctorInput(flags, stateDir, node),
  };
  return { ctx, args, json: Boolean(flags.json) };
}

/** `krknc doctor [--server krkns]`. */
export async function doctor(argv: string[]): Promise<number> {
  const c = context(
    argv,
    'krknc doctor [--server <krkns>] [flags]',
    'Checks login, auth key, key expiry, tags, control server, DERP, peer visibility and, with --server, whether krkns is visible, answers a ping and its API. Each with a cause and a fix; exit 0 only when all pass.',
  );
  if (typeof c === 'number') return c;
  return doctorCommand(c.ctx, c.json, print, Boolean(process.stdout.isTTY));
}

/** `krknc ping <peer>`. */
export async function ping(argv: string[]): Promise<number> {
  const c = context(argv, 'krknc ping <peer> [flags]', "TSMP-pings a peer (MagicDNS name or tailnet IP) from krknc's own node.");
  if (typeof c === 'number') return c;
  return pingCommand(c.ctx, c.args[0], c.json, print);
}

/** `krknc whois <ip>`. */
export async function whois(argv: string[]): Promise<number> {
  const c = context(argv, 'krknc whois <tailnet IP> [flags]', 'Names the node and user behind a tailnet address, with the capabilities it holds towards krknc.');
  if (typeof c === 'number') return c;
  return whoisCommand(c.ctx, c.args[0], c.json, print);
}

/** `krknc policy lint|check ...`: krkn-policy, built in. */
export async function policy(argv: string[]): Promise<number> {
  return policyMain(argv, { stdout: process.stdout, stderr: process.stderr });
}
