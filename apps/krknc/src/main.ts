#!/usr/bin/env node
// krknc: the workstation and CI client. Each subcommand lives in its own module; this only dispatches.
import { ExitCode, runMain, usageError } from '@krkn/cli-kit';
import { logout, status } from './admin.js';
import { doctor, ping, policy, whois } from './diagnose.js';
import { expose } from './expose.js';
import { listen } from './listen.js';
import { replay } from './replay.js';
import { send } from './send.js';

const commands: Record<string, { run: (argv: string[]) => Promise<number>; summary: string }> = {
  listen: { run: listen, summary: 'subscribe to topics on krkns and forward deliveries to a local app' },
  expose: { run: expose, summary: 'make a local listener reachable from tailnet peers (no hub)' },
  send: { run: send, summary: 'publish one event to krkns and print its id (the CI path)' },
  replay: { run: replay, summary: 'forward stored events from krkns to a local app again' },
  status: { run: status, summary: 'show the node, its peers, a running listen, and whether krkns answers' },
  logout: { run: logout, summary: 'log the node out of the tailnet and discard its identity' },
  doctor: { run: doctor, summary: 'check login, keys, tags, control, DERP, peers and krkns; name causes and fixes' },
  ping: { run: ping, summary: "TSMP-ping a peer from krknc's own node" },
  whois: { run: whois, summary: 'name the node and user behind a tailnet address' },
  policy: { run: policy, summary: 'lint a tailnet policy, or check a path through it (krkn-policy)' },
};

const usage = `Usage: krknc <command> [flags]

krknc joins your tailnet as its own node (krknc-<host>) and gets webhooks from krkns to the app
on your machine, privately, with nothing lost while the laptop sleeps:

  krknc listen --server krkns --topic github/** --forward-to localhost:3000/webhooks

First run: set TS_AUTHKEY for a headless registration, or open the login URL it prints.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

Run 'krknc <command> --help' for its flags. Exit codes: 0 ok, 1 failure, 2 bad usage,
3 auth key refused or expired, 4 control server or krkns unreachable (or no such peer),
5 state dir locked or corrupt, 6 check failed (status), 130 interrupted.
`;

await runMain(async () => {
  const [name, ...rest] = process.argv.slice(2);
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage);
    return name ? ExitCode.OK : ExitCode.USAGE;
  }
  const command = commands[name];
  if (!command) throw usageError(`unknown command ${name} (see krknc --help)`);
  return command.run(rest);
});
