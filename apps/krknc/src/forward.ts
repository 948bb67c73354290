import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { usageError } from '@krkn/cli-kit';

export { endToEndHeaders, pairsFromRaw } from '@krkn/hub-api';

/**
 * The local app's URL from --forward-to. Like `stripe listen`, a scheme-less `localhost:3000/hooks`
 * or a bare port `3000` means http on this machine.
 */
export function parseForwardTo(text: string | undefined, flag = '--forward-to'): URL {
  if (text === undefined || text.trim() === '')
    throw usageError(`${flag} is required: the local app's URL, e.g. http://localhost:3000/webhooks`);
  const t = text.trim();
  const withScheme = /^\d+$/.test(t)
    ? `http://localhost:${t}/`
    : /^[a-z][a-z0-9+.-]*:\/\//i.test(t)
      ? t
      : `http://${t}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw usageError(`${flag}: ${JSON.stringify(text)} is not a URL (e.g. http://localhost:3000/webhooks)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usageError(`${flag}: ${text} must be an http:// or https:// URL`);
  if (!url.hostname) throw usageError(`${flag}: ${text} has no host`);
  if (url.username || url.password)
    throw usageError(`${flag}: ${text} must not carry credentials (pass them with the request instead)`);
  return url;
}

/** How a request to the local app ended. */
export type ForwardResult =
  /** The app answered (any status). */
  | { kind: 'answered'; status: number; headers: IncomingHttpHeaders; body: Buffer; ms: number }
  /** Nothing accepts connections there: the app is down. */
  | { kind: 'unreachable'; error: string; ms: number }
  /** Connected, but no (complete) answer in time. */
  | { kind: 'timeout'; error: string; ms: number }
  /** Connected, and the connection broke (the app crashed mid-request, say). */
  | { kind: 'failed'; error: string; ms: number };

// Connection errors that mean nobody listens at the URL (as opposed to a broken exchange).
const downCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** Keep at most this much of the local app's answer (krkns only looks at the status). */
const answerCap = 1 << 20;

class ForwardTimeout extends Error {}

/**
 * Starts a request to the local app. Every request gets a fresh connection: a pooled one may have
 * been closed by an app that restarted meanwhile, and a local connect costs nothing.
 */
export function openLocal(url: URL, method: string, headers: [string, string][]): ClientRequest {
  const raw = [['Host', url.host] as [string, string], ...headers].flat();
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return send(url, { method, headers: raw, agent: false });
}

/** Why a request to the local app failed, as a {@link ForwardResult} kind. */
export function classify(err: Error & { code?: string }): 'unreachable' | 'timeout' | 'failed' {
  if (err instanceof ForwardTimeout) return 'timeout';
  return err.code !== undefined && downCodes.has(err.code) ? 'unreachable' : 'failed';
}

/** A short reason for an error ("ECONNREFUSED", "no answer within 30s"). */
export function reason(err: Error & { code?: string }): string {
  return err instanceof ForwardTimeout ? err.message : (err.code ?? err.message);
}

/**
 * Sends one message to the local app with the given method, headers (end-to-end only: pass them
 * through {@link endToEndHeaders}) and raw body, byte for byte; waits up to timeoutMs for the
 * whole answer.
 */
export function forwardBuffered(
  url: URL,
  msg: { method: string; headers: [string, string][]; body: Buffer },
  timeoutMs: number,
): Promise<ForwardResult> {
  const started = performance.now();
  const ms = (): number => Math.round(performance.now() - started);
  return new Promise<ForwardResult>((resolve) => {
    const req = openLocal(url, msg.method, [...msg.headers, ['Content-Length', String(msg.body.length)]]);
    const timer = setTimeout(() => req.destroy(new ForwardTimeout(`no answer within ${timeoutMs / 1000}s`)), timeoutMs);
    const fail = (err: Error & { code?: string }): void => {
      clearTimeout(timer);
      resolve({ kind: classify(err), error: reason(err), ms: ms() });
    };
    req.on('error', fail);
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (c: Buffer) => {
        if (kept < answerCap) chunks.push(c);
        kept += c.length;
      });
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({
          kind: 'answered',
          status: res.statusCode ?? 502,
          headers: res.headers,
          body: Buffer.concat(chunks).subarray(0, answerCap),
          ms: ms(),
        });
      });
    });
    req.end(msg.body);
  });
}

/** Arms the forward timeout on a streaming request until its answer starts. */
export function timeoutUntilAnswer(req: ClientRequest, timeoutMs: number): void {
  const timer = setTimeout(() => req.destroy(new ForwardTimeout(`no answer within ${timeoutMs / 1000}s`)), timeoutMs);
  req.once('response', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
}
