/**
 * No silent waits: whenever the node waits on something outside the process (the control server,
 * a relay, a peer's first handshake) it says so at once, repeats its progress with the time waited
 * and the last error, and names the likely cause and the fix. The texts live here, the node only
 * says when a wait starts and ends.
 */
import type { Logger } from 'pino';
import { TailnetError } from './errors.js';
import type { NodeStatus, RelayRegion } from './status.js';

/** A wait repeats its progress line this often: nothing is silent for longer. */
const progressEveryMs = 3_000;

/** A healthy node has its home relay within this time after Running; later, it is worth a warning. */
const relayGraceMs = 3_000;

/** While the home relay stays unreachable, the warning repeats this often (the node keeps retrying). */
const relayRepeatMs = 10_000;

/** A first dial to a peer that has not connected after this long is announced as a handshake wait. */
const firstContactNoticeMs = 2_000;

/** What is wrong, and what to do about it: one line each. */
export interface Diagnosis {
  cause: string;
  fix: string;
}

/**
 * One wait, reported: announced at start, then every `everyMs` a warning with the time waited and
 * whatever `progress` says (the last error, the likely cause), until {@link ReportedWait.done}.
 */
export class ReportedWait {
  private readonly since = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(log: Logger, announcement: string, progress: (waited: string) => string, everyMs = progressEveryMs) {
    log.info(announcement);
    this.timer = setInterval(() => {
      const waited = formatDuration(this.waitedMs);
      log.warn({ waited }, progress(waited));
    }, everyMs);
    this.timer.unref();
  }

  get waitedMs(): number {
    return Date.now() - this.since;
  }

  done(): void {
    clearInterval(this.timer);
  }
}

/** "1m30s" for 90000. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${s % 60}s` : `${s}s`;
}

// --- the control server ---------------------------------------------------------------------

const controlUrlFix = 'check --control-url / TS_CONTROL_URL (for headscale: its server_url, reachable from this host)';

/** Translates the control client's last login error (`fetch control key: ... fetch failed: ENOTFOUND`). */
export function explainControlError(error: string | undefined, controlUrl: string): Diagnosis {
  const url = new URL(controlUrl);
  if (error === undefined) {
    return { cause: 'no answer yet', fix: `${controlUrlFix}; a firewall or proxy may be in the way` };
  }
  const code = /fetch failed: (\S+)\s*$/.exec(error)?.[1] ?? '';
  const status = /fetch control key: (\d{3})\b/.exec(error)?.[1];
  if (/^(ENOTFOUND|EAI_AGAIN|EAI_FAIL|EAI_NONAME)$/.test(code)) {
    return { cause: `DNS cannot resolve ${url.hostname} (${code})`, fix: `${controlUrlFix}; check this host's DNS` };
  }
  if (code === 'ECONNREFUSED') {
    return {
      cause: `${url.host} refused the connection (ECONNREFUSED): nothing listens there`,
      fix: `is the control server running on that port? ${controlUrlFix}`,
    };
  }
  if (/^(ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ECONNRESET|UND_ERR_CONNECT_TIMEOUT)$/.test(code)) {
    return {
      cause: `${url.host} cannot be reached (${code})`,
      fix: `a firewall or proxy is in the way, or the host is down; ${controlUrlFix}`,
    };
  }
  if (/CERT|SSL|TLS|EPROTO|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) {
    return {
      cause: `TLS with ${url.host} failed (${code})`,
      fix:
        'an https:// control URL needs a certificate this host trusts (NODE_EXTRA_CA_CERTS=<ca.pem>); ' +
        'a plain-HTTP server needs http://',
    };
  }
  if (/bad port/.test(error)) {
    return {
      cause: `Node.js refuses to fetch from port ${url.port} (reserved for another protocol)`,
      fix: `run the control server on another port; ${controlUrlFix}`,
    };
  }
  if (status) {
    return {
      cause: `${url.origin} answered HTTP ${status} to GET /key: not a Tailscale control server, or a proxy in the way`,
      fix: controlUrlFix,
    };
  }
  return { cause: error, fix: controlUrlFix };
}

/**
 * Reports the wait for the control server's first answer (a login URL, or the node starting).
 * `engineStarted`: the embedded engine has loaded (on a busy host that alone can take seconds).
 */
export function controlWait(
  log: Logger,
  controlUrl: string,
  engineStarted: () => boolean,
  lastError: () => string | undefined,
): ReportedWait {
  return new ReportedWait(log, `contacting control server ${controlUrl}`, (waited) => {
    if (!engineStarted()) {
      return `still loading the embedded Tailscale engine (${waited}, a busy host), then contacting ${controlUrl}`;
    }
    const error = lastError();
    // No error yet: the server may be answering slowly (registration and the first network map take a while).
    if (error === undefined) {
      return `still waiting for control server ${controlUrl} after ${waited}: no error so far, it is slow to answer`;
    }
    const { cause, fix } = explainControlError(error, controlUrl);
    return `no answer from control server ${controlUrl} after ${waited}: ${cause}. Fix: ${fix}`;
  });
}

/** The error up() ends with when the control server never answered. */
export function controlUnreachable(controlUrl: string, timeoutMs: number, lastError: string | undefined): TailnetError {
  const { cause, fix } = explainControlError(lastError, controlUrl);
  return new TailnetError(
    'CONTROL_UNREACHABLE',
    `no answer from control server ${controlUrl} within ${timeoutMs / 1000}s: ${cause}. Fix: ${fix}`,
  );
}

// --- the home relay (DERP) ------------------------------------------------------------------

/**
 * Why the node has no working home relay, or undefined when it has one. `overHttp`: the node
 * speaks plain HTTP to relays (TS_DEBUG_USE_DERP_HTTP=1).
 */
export function explainRelay(
  regions: RelayRegion[],
  homeCode: string,
  controlUrl: string,
  overHttp: boolean,
): Diagnosis | undefined {
  if (regions.length === 0) {
    return {
      cause: 'the control server sent no relay (DERP) map: this embedded node reaches peers only through relays',
      fix: 'give the control server a DERP region (headscale: derp.server.enabled, or derp.urls)',
    };
  }
  const home = regions.find((r) => r.code === homeCode) ?? (regions.length === 1 ? regions[0] : undefined);
  if (!home) {
    return {
      cause: 'no home relay chosen yet',
      fix: 'wait a few seconds; if it stays, check the DERP map the control server sends',
    };
  }
  if (home.lastFrame) return undefined;
  const urls = home.nodes.map((n) => relayUrl(n, overHttp)).join(', ');
  const where = `home relay region ${home.code} (${home.name}) at ${urls}`;
  const control = new URL(controlUrl);
  // headscale's embedded DERP answers on the control server's own plain-HTTP port.
  const plainHttp = !overHttp && control.protocol === 'http:' && home.nodes.some((n) => sameHostPort(n, control));
  if (plainHttp) {
    return {
      cause:
        `no connection to the ${where}: it is served over plain HTTP (same host and port as the http:// control ` +
        'server), but the node speaks HTTPS to relays',
      fix: 'set TS_DEBUG_USE_DERP_HTTP=1 in the environment',
    };
  }
  return {
    cause: `no connection to the ${where}`,
    fix:
      'check that this host reaches that URL (firewall, proxy) and trusts its TLS certificate; ' +
      'a plain-HTTP relay needs TS_DEBUG_USE_DERP_HTTP=1',
  };
}

/** The URL the node dials for a relay server (as tailscale.com's derphttp builds it). */
function relayUrl(node: RelayRegion['nodes'][number], overHttp: boolean): string {
  const [scheme, defaultPort] = overHttp ? ['http', 80] : ['https', 443];
  const port = node.port !== 0 && node.port !== defaultPort ? `:${node.port}` : '';
  return `${scheme}://${node.host}${port}/derp`;
}

function sameHostPort(node: RelayRegion['nodes'][number], url: URL): boolean {
  return node.host === url.hostname && node.port === Number(url.port || 80);
}

/**
 * Checks the home relay relayGraceMs after Running; while it is not connected, warns with the cause
 * and fix every relayRepeatMs, and says when it connects. `diagnose` resolves undefined when all is well.
 */
export function watchRelay(log: Logger, diagnose: () => Promise<Diagnosis | undefined>): { stop(): void } {
  const since = Date.now();
  let warned = false;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const check = async (): Promise<void> => {
    const problem = await diagnose().catch(() => undefined);
    if (stopped) return;
    const waited = formatDuration(Date.now() - since);
    if (!problem) {
      if (warned) log.info({ waited }, `connected to the home relay after ${waited}`);
      return;
    }
    warned = true;
    const consequence = `no home relay after ${waited}, so no peer can reach this node`;
    log.warn({ waited }, `${consequence}: ${problem.cause}. Fix: ${problem.fix}`);
    timer = setTimeout(() => void check(), relayRepeatMs).unref();
  };
  timer = setTimeout(() => void check(), relayGraceMs).unref();
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// --- the name the node got --------------------------------------------------------------------

/**
 * When the control server registered the node under another name than requested (the name was
 * taken): the name given, and what to say about it.
 */
export function nameCollision(
  requested: string,
  self: NodeStatus['self'],
): (Diagnosis & { given: string }) | undefined {
  const given = self.dnsName.split('.')[0] ?? '';
  if (given === '' || given.toLowerCase() === requested.toLowerCase()) return undefined;
  return {
    given,
    cause:
      `the control server registered this node as "${given}" (${self.dnsName}), not "${requested}": ` +
      'another node holds that name',
    fix:
      `doctor names the node that holds "${requested}": remove or rename it, or choose another --hostname ` +
      `(peers reach this one as ${given})`,
  };
}

// --- first contact with a peer ----------------------------------------------------------------

/** Logs once if a first dial to a peer is still waiting after firstContactNoticeMs. */
export function announceFirstContact<T>(log: Logger, peer: string, timeoutMs: number, dial: Promise<T>): Promise<T> {
  const timer = setTimeout(() => {
    log.info(
      { peer },
      `first contact with ${peer}: waiting for the WireGuard handshake (right after a node joins or restarts, ` +
        `its peers may not know yet: the handshake is retried every 3s); giving up after ${timeoutMs / 1000}s`,
    );
  }, firstContactNoticeMs);
  timer.unref();
  return dial.finally(() => clearTimeout(timer));
}
