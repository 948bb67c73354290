import { createLogger, doctorCommand, helpText, parseFlags, pingCommand, whoisCommand, ExitCode, type NodeCommandContext } from '@krkn/cli-kit';
import type { DoctorInput } from '@krkn/doctor';
import { main as policyMain } from '@krkn/policy';
import { TailnetNode } from '@krkn/tailnet';
import { pathsIn, runFlags, stateDirOf } from './config.js';

// doctor, ping and whois read the same flags as run, so they look at the same node.
const { 'shutdown-timeout': _s, ...flagsOfNodeCommands } = runFlags;
const diagnoseFlags = { ...flagsOfNodeCommands, json: { type: 'bool', describe: 'print the result as JSON' } } as const;

const print = (s: string): void => void process.stdout.write(`${s}\n`);

/** The doctor's view of a krkns configured by these flags and this environment. */
export function krknsDoctorInput(flags: { 'control-url'?: string | undefined; tags?: string[] | undefined }, stateDir: string, node?: TailnetNode): DoctorInput {
  return {
    app: 'krkns',
    stateDir,
    controlUrl: flags['control-url']!,
    authKeyInEnv: Boolean(process.env.TS_AUTHKEY || process.env.TS_AUTH_KEY),
    forceLogin: /^(1|true|yes|on)$/i.test(process.env.TS_FORCE_LOGIN ?? ''),
    advertisedTags: flags.tags ?? [],
    ...(node ? { node } : {}),
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
    app: 'krkns',
    stateDir,
    adminSocket: pathsIn(stateDir).adminSocket,
    openNode: () =>
      new TailnetNode({
        hostname: flags.hostname!,
        stateDir,
        controlUrl: flags['control-url']!,
        tags: flags.tags!,
        logger: createLogger({ level: 'warn', format: 'pretty' }),
      }),
    doctorInput: (node) => krknsDoctorInput(flags, stateDir, node),
  };
  return { ctx, args, json: Boolean(flags.json) };
}

/** `krkns doctor`. */
export async function doctor(argv: string[]): Promise<number> {
  const c = context(argv, 'krkns doctor [flags]', 'Checks login, auth key, key expiry, tags, control server, DERP and peer visibility, with a cause and a fix for each. Exit 0 only when every check passes.');
  if (typeof c === 'number') return c;
  return doctorCommand(c.ctx, c.json, print, Boolean(process.stdout.isTTY));
}

/** `krkns ping <peer>`. */
export async function ping(argv: string[]): Promise<number> {
  const c = context(argv, 'krkns ping <peer> [flags]', "TSMP-pings a peer (MagicDNS name or tailnet IP) from krkns's own node.");
  if (typeof c === 'number') return c;
  return pingCommand(c.ctx, c.args[0], c.json, print);
}

/** `krkns whois <ip>`. */
export async function whois(argv: string[]): Promise<number> {
  const c = context(argv, 'krkns whois <tailnet IP> [flags]', 'Names the node and user behind a tailnet address, with the capabilities it holds towards krkns.');
  if (typeof c === 'number') return c;
  return whoisCommand(c.ctx, c.args[0], c.json, print);
}

/** `krkns policy lint|check ...`: krkn-policy, built in. */
export async function policy(argv: string[]): Promise<number> {
  return policyMain(argv, { stdout: process.stdout, stderr: process.stderr });
}
