#!/usr/bin/env node
// krkns: the webhook hub daemon. Each subcommand lives in its own module; this only dispatches.
import { ExitCode, runMain, usageError } from '@krkn/cli-kit';
import { events, logout, status } from './admin.js';
import { doctor, ping, policy, whois } from './diagnose.js';
import { run } from './run.js';

const commands: Record<string, { run: (argv: string[]) => Promise<number>; summary: string }> = {
  run: { run, summary: 'run the hub in the foreground (joins the tailnet, serves the webhook API)' },
  status: { run: status, summary: 'show the node, listener, storage and queue (works offline too)' },
  logout: { run: logout, summary: "log the node out of the tailnet and discard its identity" },
  events: { run: events, summary: 'list, show or redeliver stored events' },
  doctor: { run: doctor, summary: 'check login, keys, tags, control, DERP and peer visibility; name causes and fixes' },
  ping: { run: ping, summary: "TSMP-ping a peer from krkns's own node" },
  whois: { run: whois, summary: 'name the node and user behind a tailnet address' },
  policy: { run: policy, summary: 'lint a tailnet policy, or check a path through it (krkn-policy)' },
};

const usage = `Usage: krkns <command> [flags]

krkns is a webhook hub that joins your tailnet as its own node and listens only on its
tailnet address. Peers publish with POST http://<krkns>/hooks/<topic>; krkns stores each
event before answering 202 and delivers it to every subscriber, retrying until delivered.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

Run 'krkns <command> --help' for its flags. Exit codes: 0 ok, 1 failure, 2 bad usage,
3 auth key refused or expired, 4 control server unreachable, 5 state dir locked or corrupt,
6 check failed, 130 interrupted.
`;

await runMain(async () => {
  const [name, ...rest] = process.argv.slice(2);
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage);
    return name ? ExitCode.OK : ExitCode.USAGE;
  }
  const command = commands[name];
  if (!command) throw usageError(`unknown command ${name} (see krkns --help)`);
  return command.run(rest);
});
