import { CliError, ExitCode, helpText, parseDuration, parseFlags, usageError, type FlagSpecs } from '@krkn/cli-kit';
import { deliveryHeaders, type EventDetail, type HubClient, type ListEventsQuery } from '@krkn/hub-api';
import { topicPatternError } from '@krkn/policy';
import { forwardFlags, nodeFlags, serverFlag } from './config.js';
import { endToEndHeaders, forwardBuffered, parseForwardTo } from './forward.js';
import { loggerFor } from './node.js';
import { Reporter } from './report.js';
import { hubFailure, hubFor, parseServers, resolveServers, type ResolvedServer } from './server.js';
import { openSession } from './session.js';

export const replayFlags = {
  ...nodeFlags,
  ...serverFlag,
  topic: {
    type: 'string',
    env: 'KRKNC_TOPIC',
    describe: 'topic or pattern to replay (ci/*, github/**)',
    check: (t: string) => topicPatternError(t),
  },
  since: {
    type: 'string',
    env: 'KRKNC_SINCE',
    placeholder: 'duration|id|time',
    describe: 'replay events received in the last <duration> (30m, 2h, 7d), after event <id>, or since an ISO time',
  },
  ...forwardFlags,
  'print-body': {
    type: 'bool',
    env: 'KRKNC_PRINT_BODY',
    default: false,
    describe: 'print each payload under its line',
  },
} satisfies FlagSpecs;

const usage = 'krknc replay --server <krkns> --topic <t> --since <duration|id> --forward-to <local URL> [flags]';
const description = `Fetches events krkns has stored and forwards each to the local app exactly as 'listen'
does (method, original headers, raw body, plus the x-krkn-* headers and x-krkn-replay: 1), in the
order krkns received them. One line per event. Exits 1 if the local app did not accept (2xx) every
event. Replays do not consult or change listen's record of delivered events.`;

const pageSize = 100;

/** `krknc replay`. */
export async function replay(argv: string[]): Promise<number> {
  const { flags } = parseFlags(replayFlags, argv);
  if (flags.help) {
    process.stdout.write(helpText(usage, description, replayFlags));
    return ExitCode.OK;
  }
  const refs = parseServers(flags.server);
  if (!flags.topic) throw usageError('--topic is required: the topic or pattern to replay (ci/*, **)');
  const start = parseSince(flags.since);
  const target = parseForwardTo(flags['forward-to']);
  const log = loggerFor(flags, 'replay');
  const reporter = new Reporter(process.stdout, { json: flags.json!, printBody: flags['print-body'] });
  const session = await openSession(flags, log);
  try {
    // Replicas share one store: the first one found serves the whole replay.
    const server = (await resolveServers(session, refs, log))[0]!;
    const hub = hubFor(session, server);
    let total = 0;
    let failed = 0;
    for await (const event of storedEvents(hub, server, { topic: flags.topic, ...start })) {
      total++;
      const r = await forwardBuffered(
        target,
        { method: 'POST', headers: replayHeaders(event), body: Buffer.from(event.bodyBase64, 'base64') },
        flags['forward-timeout'],
      );
      const ok = r.kind === 'answered' && r.status >= 200 && r.status < 300;
      if (!ok) failed++;
      reporter.event({
        topic: event.topic,
        id: event.id,
        status: r.kind === 'answered' ? r.status : null,
        ms: r.ms,
        ...(r.kind === 'answered' ? {} : { error: r.error }),
        body: Buffer.from(event.bodyBase64, 'base64'),
        contentType: event.contentType,
      });
    }
    reporter.result('summary', { total, failed }, [
      `replayed ${total} event${total === 1 ? '' : 's'} to ${target.href}${failed ? `, ${failed} not accepted` : ''}`,
    ]);
    if (failed > 0)
      throw new CliError(`${failed} of ${total} events were not accepted by ${target.href}`, ExitCode.FAILURE);
    return ExitCode.OK;
  } finally {
    await session.close();
  }
}

/** --since: a duration back from now, an event id, or an ISO time. */
export function parseSince(text: string | undefined): Pick<ListEventsQuery, 'since' | 'after'> {
  if (text === undefined || text.trim() === '')
    throw usageError('--since is required: a duration (30m, 2h, 7d), an event id (evt_...) or an ISO time');
  const t = text.trim();
  const ms = parseDuration(t);
  if (ms !== undefined) return { since: new Date(Date.now() - ms) };
  if (/^evt_[0-9a-z]+$/i.test(t)) return { after: t };
  const time = /^\d{4}-\d{2}-\d{2}/.test(t) ? Date.parse(t) : Number.NaN;
  if (!Number.isNaN(time)) return { since: new Date(time) };
  throw usageError(
    `--since: ${JSON.stringify(text)} is not a duration (30m, 2h, 7d), an event id (evt_...) or an ISO time`,
  );
}

/** Every stored event matching the topic or pattern, with headers and body, paging with `after`. */
async function* storedEvents(hub: HubClient, server: ResolvedServer, q: ListEventsQuery): AsyncGenerator<EventDetail> {
  let query: ListEventsQuery = { ...q, limit: pageSize };
  for (;;) {
    const page = await hub.listEvents(query).catch((err: unknown) => Promise.reject(hubFailure(err, server, 'replay')));
    for (const meta of page) {
      yield await hub
        .getEvent(meta.id)
        .catch((err: unknown) => Promise.reject(hubFailure(err, server, `replay ${meta.id}`)));
    }
    if (page.length < pageSize) return;
    query = { ...query, after: page[page.length - 1]!.id };
  }
}

/** The headers listen would pass on for this event (the original ones and krkn's), marked as a replay. */
function replayHeaders(e: EventDetail): [string, string][] {
  return [
    ...endToEndHeaders(e.headers),
    [deliveryHeaders.eventId, e.id],
    [deliveryHeaders.topic, e.topic],
    [deliveryHeaders.sender, e.sender.node],
    [deliveryHeaders.receivedAt, e.receivedAt],
    ['x-krkn-replay', '1'],
  ];
}
