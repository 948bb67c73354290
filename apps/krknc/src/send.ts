import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ExitCode, helpText, parseFlags, usageError, type FlagSpecs } from '@krkn/cli-kit';
import { dedupeHeaders, type HubClient } from '@krkn/hub-api';
import { topicError } from '@krkn/policy';
import { nodeFlags, serverFlag } from './config.js';
import { loggerFor } from './node.js';
import { Reporter } from './report.js';
import { parseServers, resolveServers, withFailover } from './server.js';
import { openSession } from './session.js';

export const sendFlags = {
  ...nodeFlags,
  ...serverFlag,
  topic: {
    type: 'string',
    env: 'KRKNC_TOPIC',
    describe: 'the topic to publish to, e.g. ci/build',
    check: (t: string) => topicError(t),
  },
  data: {
    type: 'string',
    env: 'KRKNC_DATA',
    placeholder: 'json|@file|-',
    describe: 'the body: literal text, @file for a file, - (or @-) for stdin; sent byte for byte (default: empty)',
  },
  header: {
    type: 'list',
    short: 'H',
    repeatable: true,
    env: 'KRKNC_HEADERS',
    placeholder: 'K: V',
    describe:
      'a request header, e.g. -H "X-GitHub-Event: push", or -H @file for the lines of a file (secrets: use a file ' +
      'or the env var, never argv); repeatable (the env var takes one per line)',
  },
} satisfies FlagSpecs;

const usage =
  "krknc send --server <krkns> --topic <t> [--data '<json>' | --data @file | --data -] [-H 'K: V' ...] [flags]";
const description = `Publishes one event to krkns and prints its id. Content-Type is application/json when the
data parses as JSON, else application/octet-stream; -H overrides it. Exits non-zero with a
message on any failure.
In CI: TS_AUTHKEY=<ephemeral key> krknc send --ephemeral ... joins, publishes, logs out, and the
node is gone from the tailnet. If a 'krknc listen' or 'expose' runs on this state directory, send
publishes through its node.`;

/** `krknc send`. */
export async function send(argv: string[]): Promise<number> {
  // -H values may contain commas (Accept: a, b), which a list flag would split: take them first.
  const { headers: rawHeaders, rest } = takeHeaders(argv);
  const { flags } = parseFlags(sendFlags, rest);
  if (flags.help) {
    process.stdout.write(helpText(usage, description, sendFlags));
    return ExitCode.OK;
  }
  const refs = parseServers(flags.server);
  if (!flags.topic) throw usageError('--topic is required: the topic to publish to, e.g. ci/build');
  const headerLines = rawHeaders.length > 0 ? rawHeaders : (process.env.KRKNC_HEADERS ?? '').split('\n');
  const headers = parseHeaders(expandHeaderFiles(headerLines.filter((l) => l.trim())));
  const body = readData(flags.data);
  if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type') && body.length > 0) {
    headers['content-type'] = isJson(body) ? 'application/json' : 'application/octet-stream';
  }
  if (refs.length > 1) makeIdempotent(headers);
  const log = loggerFor(flags, 'send');
  const session = await openSession(flags, log);
  try {
    const servers = await resolveServers(session, refs, log);
    const failover = (failed: { display: string }, err: Error) =>
      log.warn({ server: failed.display, err: err.message }, 'publishing through the next server');
    const publish = (hub: HubClient) => hub.publish(flags.topic!, body, headers);
    const { result: res, server } = await withFailover(session, servers, 'send', publish, failover);
    log.info(
      {
        event: res.id,
        topic: res.topic,
        bytes: body.length,
        server: server.display,
        duplicate: res.duplicate,
        via: session.via,
      },
      'published',
    );
    if (res.duplicate)
      process.stderr.write(`note: krkns already had this event (same dedupe key): ${res.id} is the first one's id\n`);
    new Reporter(process.stdout, { json: flags.json! }).result('published', { ...res }, [res.id]);
    return ExitCode.OK;
  } finally {
    await session.close();
  }
}

/**
 * With several servers, a publish whose answer was lost may be sent again to the next one: without a
 * dedupe key of its own, it gets an Idempotency-Key, so krkns stores it once whichever replica took it.
 */
function makeIdempotent(headers: Record<string, string>): void {
  const names = Object.keys(headers).map((k) => k.toLowerCase());
  if (!dedupeHeaders.some((h) => names.includes(h))) headers['idempotency-key'] = randomUUID();
}

/** Splits -H/--header values off argv (all forms parseFlags knows: -H v, -Hv, --header v, --header=v). */
export function takeHeaders(argv: string[]): { headers: string[]; rest: string[] } {
  const headers: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === '-H' || a === '--header') {
      if (i + 1 >= argv.length) throw usageError(`flag ${a} needs a value ("Name: value")`);
      headers.push(argv[++i]!);
    } else if (a.startsWith('--header=')) headers.push(a.slice('--header='.length));
    else if (a.startsWith('-H') && a.length > 2) headers.push(a.slice(2));
    else rest.push(a);
  }
  return { headers, rest };
}

/**
 * Header values with each `@file` replaced by that file's non-blank lines: a secret header
 * (Authorization: Bearer ...) then never appears in argv, where `ps` and CI logs show it.
 */
export function expandHeaderFiles(values: string[]): string[] {
  return values.flatMap((v) => {
    if (!v.startsWith('@')) return [v];
    const path = v.slice(1);
    if (!path) throw usageError('-H: "@" needs a file name (-H @headers.txt)');
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw usageError(`-H: cannot read ${path}: ${(err as Error).message}`);
    }
    return text.split(/\r?\n/).filter((l) => l.trim());
  });
}

/** "Name: value" lines to headers; a later line with the same name replaces an earlier one. */
export function parseHeaders(lines: string[]): Record<string, string> {
  const byLowerName = new Map<string, [name: string, value: string]>();
  for (const line of lines) {
    const i = line.indexOf(':');
    const name = i < 0 ? '' : line.slice(0, i).trim();
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(name))
      throw usageError(`-H: ${JSON.stringify(line)} is not a header (write "Name: value")`);
    byLowerName.delete(name.toLowerCase()); // re-insert, so the later line also takes the later place
    byLowerName.set(name.toLowerCase(), [name, line.slice(i + 1).trim()]);
  }
  return Object.fromEntries(byLowerName.values());
}

/** The body from --data: literal, @file, or - / @- for stdin. */
export function readData(data: string | undefined): Buffer {
  if (data === undefined) return Buffer.alloc(0);
  if (data === '-' || data === '@-') return readPath(0, 'stdin');
  if (data.startsWith('@')) {
    const path = data.slice(1);
    if (!path) throw usageError('--data: "@" needs a file name (@payload.json), or use - for stdin');
    return readPath(path, path);
  }
  return Buffer.from(data, 'utf8');
}

function readPath(path: string | 0, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EISDIR'
          ? 'is a directory'
          : e.code === 'EACCES'
            ? 'permission denied'
            : e.message;
    throw usageError(`--data: cannot read ${what}: ${why}`);
  }
}

function isJson(body: Buffer): boolean {
  try {
    JSON.parse(body.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}
