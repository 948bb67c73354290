#!/usr/bin/env node
// krknc: the workstation and CI client. Each subcommand lives in its own module; this only dispatches.
import { runCommands, type Command } from '@krkn/cli-kit';
import { logout, status, statusFlags } from './admin.js';
import { controlFlags } from './config.js';
import { diagnostics } from './diagnose.js';
import { expose, exposeFlags } from './expose.js';
import { listen, listenFlags } from './listen.js';
import { replay, replayFlags } from './replay.js';
import { send, sendFlags } from './send.js';

const commands: Record<string, Command> = {
  listen: {
    run: listen,
    flags: listenFlags,
    summary: 'subscribe to topics on krkns and forward deliveries to a local app',
  },
  expose: { run: expose, flags: exposeFlags, summary: 'make a local listener reachable from tailnet peers (no hub)' },
  send: { run: send, flags: sendFlags, summary: 'publish one event to krkns and print its id (the CI path)' },
  replay: { run: replay, flags: replayFlags, summary: 'forward stored events from krkns to a local app again' },
  status: {
    run: status,
    flags: statusFlags,
    summary: 'show the node, its peers, a running listen, and whether krkns answers',
  },
  logout: { run: logout, flags: controlFlags, summary: 'log the node out of the tailnet and discard its identity' },
  ...diagnostics,
};

const intro = `krknc joins your tailnet as its own node (krknc-<host>) and gets webhooks from krkns to the app
on your machine, privately, with nothing lost while the laptop sleeps:

  krknc listen --server krkns --topic github/** --forward-to localhost:3000/webhooks

First run: set TS_AUTHKEY for a headless registration, or open the login URL it prints.`;

await runCommands('krknc', intro, commands);
