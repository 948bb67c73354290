#!/usr/bin/env node
// krkns: the webhook hub daemon. Each subcommand lives in its own module; this only dispatches.
import { runCommands, type Command } from '@krkn/cli-kit';
import { eventFlags, events, logout, status } from './admin.js';
import { commonFlags, runFlags, statusFlags } from './config.js';
import { diagnostics } from './diagnose.js';
import { run } from './run.js';

const commands: Record<string, Command> = {
  run: { run, flags: runFlags, summary: 'run the hub in the foreground (joins the tailnet, serves the webhook API)' },
  status: {
    run: status,
    flags: statusFlags,
    summary: 'show the node, listener, storage and queue (works offline too)',
  },
  logout: { run: logout, flags: commonFlags, summary: 'log the node out of the tailnet and discard its identity' },
  events: { run: events, flags: eventFlags, summary: 'list, show or redeliver stored events' },
  ...diagnostics,
};

const intro = `krkns is a webhook hub that joins your tailnet as its own node and listens only on its
tailnet address. Peers publish with POST http://<krkns>/hooks/<topic>; krkns stores each
event before answering 202 and delivers it to every subscriber, retrying until delivered.`;

await runCommands('krkns', intro, commands);
