import { formatReport, reportExitCode, runChecks, type CheckResult, type DoctorInput } from '@krkn/doctor';
import { TailnetError, inspectStateDir, type PingResult, type TailnetNode, type WhoIs } from '@krkn/tailnet';
import { main as policyMain } from '@krkn/policy';
import { AdminClient } from './admin.js';
import type { Command } from './commands.js';
import { CliError, ExitCode } from './exit.js';
import { helpText, parseFlags, type FlagSpec, type FlagSpecs, type Flags } from './flags.js';

/** What the shared node commands need from an app. */
interface NodeCommandContext {
  /** "krkns" or "krknc". */
  app: string;
  stateDir: string;
  adminSocket: string;
  /** A node on the stored identity, for when the daemon is not running. */
  openNode: () => TailnetNode;
  /** The doctor's input for a node this command runs itself. */
  doctorInput: (node?: TailnetNode) => DoctorInput;
}

type Print = (text: string) => void;

/** `<app> ping <peer>`: a TSMP ping over the node's own identity. */
async function pingCommand(
  ctx: NodeCommandContext,
  peer: string | undefined,
  json: boolean,
  print: Print,
): Promise<number> {
  if (!peer) throw new CliError(`usage: ${ctx.app} ping <peer name or tailnet IP>`, ExitCode.USAGE);
  const pong = await viaNode<PingResult>(ctx, { method: 'POST', path: '/admin/ping', body: { peer } }, (node) =>
    node.ping(peer),
  );
  print(json ? JSON.stringify(pong) : `pong from ${pong.nodeName} (${pong.ip}) in ${pong.latencyMs.toFixed(1)} ms`);
  return ExitCode.OK;
}

/** `<app> whois <ip>`: the node and user behind a tailnet address, with its capabilities. */
async function whoisCommand(
  ctx: NodeCommandContext,
  ip: string | undefined,
  json: boolean,
  print: Print,
): Promise<number> {
  if (!ip) throw new CliError(`usage: ${ctx.app} whois <tailnet IP>`, ExitCode.USAGE);
  const who = await viaNode<WhoIs>(ctx, { method: 'GET', path: `/admin/whois?ip=${encodeURIComponent(ip)}` }, (node) =>
    node.whois(ip),
  );
  if (json) print(JSON.stringify(who, null, 2));
  else {
    print(`node:  ${who.node.name} (${who.node.addresses.join(', ')})`);
    print(`user:  ${who.user.loginName}${who.user.displayName ? ` (${who.user.displayName})` : ''}`);
    print(`tags:  ${who.node.tags.join(', ') || 'none'}`);
    for (const [cap, values] of Object.entries(who.capMap)) print(`cap:   ${cap} ${JSON.stringify(values)}`);
  }
  return ExitCode.OK;
}

/**
 * `<app> doctor`: from the running daemon over its admin socket; otherwise from the state on
 * disk, bringing the stored identity up for the live checks when there is one.
 */
async function doctorCommand(ctx: NodeCommandContext, json: boolean, print: Print, color: boolean): Promise<number> {
  let checks: CheckResult[];
  const admin = new AdminClient(ctx.adminSocket);
  if (await admin.answers()) {
    checks = (await admin.json<{ checks: CheckResult[] }>('GET', '/admin/doctor')).checks;
  } else if (identityReadable(ctx.stateDir)) {
    const node = ctx.openNode();
    try {
      await node.up({ controlTimeoutMs: 15_000 });
      checks = await runChecks(ctx.doctorInput(node));
    } catch (err) {
      checks = [
        ...(await runChecks(ctx.doctorInput())),
        {
          id: 'node',
          status: 'fail',
          cause: `the stored identity cannot come up: ${(err as Error).message}`,
          fix: 'see the cause; the exit code of a normal start names its kind',
        },
      ];
    } finally {
      await node.close();
    }
  } else {
    checks = await runChecks(ctx.doctorInput());
  }
  print(json ? JSON.stringify({ checks }, null, 2) : formatReport(checks, color).trimEnd());
  return reportExitCode(checks);
}

/** Asks the running daemon, or runs `direct` on a temporary node on the stored identity. */
async function viaNode<T>(
  ctx: NodeCommandContext,
  req: { method: string; path: string; body?: unknown },
  direct: (node: TailnetNode) => Promise<T>,
): Promise<T> {
  const admin = new AdminClient(ctx.adminSocket);
  if (await admin.answers()) return admin.json<T>(req.method, req.path, req.body);
  if (!inspectStateDir(ctx.stateDir).identity) {
    throw new CliError(`${ctx.app} has no identity in ${ctx.stateDir} yet: start it once first`, ExitCode.FAILURE);
  }
  const node = ctx.openNode();
  try {
    await node.up({ controlTimeoutMs: 15_000 });
    return await direct(node);
  } finally {
    await node.close();
  }
}

// The doctor reports a state file it cannot read as a finding, so here that counts as no identity.
function identityReadable(stateDir: string): boolean {
  try {
    return inspectStateDir(stateDir).identity;
  } catch (err) {
    if (err instanceof TailnetError) return false;
    throw err;
  }
}

/** How an app's diagnostic commands find their node. */
export interface DiagnosticSpec<S extends FlagSpecs> {
  app: string;
  /** The commands' flags (with json and help). */
  flags: S;
  stateDir: (flags: Flags<S>) => string;
  adminSocket: (stateDir: string) => string;
  /** A node on the stored identity, for when the daemon is not running. */
  openNode: (flags: Flags<S>, stateDir: string) => TailnetNode;
  doctorInput: (flags: Flags<S>, stateDir: string, node?: TailnetNode) => DoctorInput;
  doctorDescription: string;
}

/**
 * The diagnostic subcommands both apps have: doctor, ping, whois (over the node's own identity)
 * and policy (krkn-policy, built in).
 */
export function diagnosticCommands<S extends FlagSpecs & { json: FlagSpec<'bool'>; help: FlagSpec<'bool'> }>(
  spec: DiagnosticSpec<S>,
): Record<'doctor' | 'ping' | 'whois' | 'policy', Command> {
  const { app } = spec;
  const print = (s: string): void => void process.stdout.write(`${s}\n`);
  const withContext =
    (
      usage: string,
      description: string,
      body: (ctx: NodeCommandContext, args: string[], json: boolean) => Promise<number>,
    ) =>
    async (argv: string[]): Promise<number> => {
      const { flags, args } = parseFlags(spec.flags, argv);
      if (flags.help) {
        process.stdout.write(helpText(usage, description, spec.flags));
        return ExitCode.OK;
      }
      const stateDir = spec.stateDir(flags);
      const ctx: NodeCommandContext = {
        app,
        stateDir,
        adminSocket: spec.adminSocket(stateDir),
        openNode: () => spec.openNode(flags, stateDir),
        doctorInput: (node) => spec.doctorInput(flags, stateDir, node),
      };
      return body(ctx, args, Boolean(flags.json));
    };
  return {
    doctor: {
      flags: spec.flags,
      summary: 'check login, keys, tags, control, DERP and peer visibility; name causes and fixes',
      run: withContext(`${app} doctor [flags]`, spec.doctorDescription, (ctx, _args, json) =>
        doctorCommand(ctx, json, print, (process.stdout as { isTTY?: boolean }).isTTY === true),
      ),
    },
    ping: {
      flags: spec.flags,
      summary: `TSMP-ping a peer from ${app}'s own node`,
      run: withContext(
        `${app} ping <peer> [flags]`,
        `TSMP-pings a peer (MagicDNS name or tailnet IP) from ${app}'s own node.`,
        (ctx, args, json) => pingCommand(ctx, args[0], json, print),
      ),
    },
    whois: {
      flags: spec.flags,
      summary: 'name the node and user behind a tailnet address',
      run: withContext(
        `${app} whois <tailnet IP> [flags]`,
        `Names the node and user behind a tailnet address, with the capabilities it holds towards ${app}.`,
        (ctx, args, json) => whoisCommand(ctx, args[0], json, print),
      ),
    },
    policy: {
      summary: 'lint a tailnet policy, or check a path through it (krkn-policy)',
      run: (argv) => policyMain(argv, { stdout: process.stdout, stderr: process.stderr }),
    },
  };
}
