#!/usr/bin/env node
// krknc: the workstation and CI client. Each subcommand lives in its own module; this only dispatches.
import { runCommands, type Command } from '@krkn/cli-kit';
import { diagnostics } from './diagnose.js';

/**
 * A command whose module is loaded when it runs: each imports only what it uses, so its first line
 * (about the wait it starts with) comes sooner on a busy host.
 */
function lazy(load: () => Promise<Command['run']>): Command['run'] {
  return async (argv) => (await load())(argv);
}

const commands: Record<string, Command> = {
  listen: {
    run: lazy(async () => (await import('./listen.js')).listen),
    summary: 'subscribe to topics on krkns and forward deliveries to a local app',
  },
  expose: {
    run: lazy(async () => (await import('./expose.js')).expose),
    summary: 'make a local listener reachable from tailnet peers (no hub)',
  },
  send: {
    run: lazy(async () => (await import('./send.js')).send),
    summary: 'publish one event to krkns and print its id (the CI path)',
  },
  replay: {
    run: lazy(async () => (await import('./replay.js')).replay),
    summary: 'forward stored events from krkns to a local app again',
  },
  status: {
    run: lazy(async () => (await import('./admin.js')).status),
    summary: 'show the node, its peers, a running listen, and whether krkns answers',
  },
  logout: {
    run: lazy(async () => (await import('./admin.js')).logout),
    summary: 'log the node out of the tailnet and discard its identity',
  },
  ...diagnostics,
};

const intro = `krknc joins your tailnet as its own node (krknc-<host>) and gets webhooks from krkns to the app
on your machine, privately, with nothing lost while the laptop sleeps:

  krknc listen --server krkns --topic github/** --forward-to localhost:3000/webhooks

First run: set TS_AUTHKEY for a headless registration, or open the login URL it prints.`;

await runCommands('krknc', intro, commands);
