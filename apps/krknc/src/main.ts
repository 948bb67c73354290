#!/usr/bin/env node
// krknc: the workstation and CI client. Each subcommand lives in its own module; this only dispatches.
import { runCommands, type Command } from '@krkn/cli-kit';
import { logout, status } from './admin.js';
import { diagnostics } from './diagnose.js';
import { expose } from './expose.js';
import { listen } from './listen.js';
import { replay } from './replay.js';
import { send } from './send.js';

const commands: Record<string, Command> = {
  listen: { run: listen, summary: 'subscribe to topics on krkns and forward deliveries to a local app' },
  expose: { run: expose, summary: 'make a local listener reachable from tailnet peers (no hub)' },
  send: { run: send, summary: 'publish one event to krkns and print its id (the CI path)' },
  replay: { run: replay, summary: 'forward stored events from krkns to a local app again' },
  status: { run: status, summary: 'show the node, its peers, a running listen, and whether krkns answers' },
  logout: { run: logout, summary: 'log the node out of the tailnet and discard its identity' },
  ...diagnostics,
};

const intro = `krknc joins your tailnet as its own node (krknc-<host>) and gets webhooks from krkns to the app
on your machine, privately, with nothing lost while the laptop sleeps:

  krknc listen --server krkns --topic github/** --forward-to localhost:3000/webhooks

First run: set TS_AUTHKEY for a headless registration, or open the login URL it prints.`;

await runCommands('krknc', intro, commands);
