import { request, type IncomingHttpHeaders } from 'node:http';
import { TestnetError } from './errors.js';

/** A request sent into the tailnet by {@link NativeNode.fetch}. */
export interface TailnetRequestInit {
  /** Default `GET`. */
  method?: string;
  /** Extra request headers (`host` is set from the URL). */
  headers?: Record<string, string>;
  /** Sent as-is (bytes are not re-encoded). */
  body?: string | Buffer;
  /** Bound on the whole exchange, in ms. Default 15 000. */
  timeoutMs?: number;
}

/** The answer to a {@link NativeNode.fetch}. The body is kept as raw bytes. */
export interface TailnetResponse {
  /** HTTP status; tailscaled's proxy answers 502 when it cannot reach the target. */
  status: number;
  /** Response headers, lower-cased. */
  headers: IncomingHttpHeaders;
  /** The body, byte for byte. */
  body: Buffer;
  /** The body decoded as UTF-8. */
  text(): string;
  /** The body parsed as JSON. */
  json(): unknown;
}

/**
 * Sends one HTTP request through a forward proxy listening on 127.0.0.1:`proxyPort`
 * (tailscaled's `--outbound-http-proxy-listen`): the request line carries the absolute URL,
 * and the proxy dials the target over the tailnet. Only `http://` targets (no CONNECT tunnelling).
 */
export function fetchViaProxy(proxyPort: number, url: string, init: TailnetRequestInit = {}): Promise<TailnetResponse> {
  const target = new URL(url);
  if (target.protocol !== 'http:') {
    return Promise.reject(new TestnetError('HTTP_FAILED', `only http:// URLs go through the node's proxy, not ${url}`));
  }
  const timeoutMs = init.timeoutMs ?? 15_000;
  const what = `${init.method ?? 'GET'} ${url} via proxy :${proxyPort}`;
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: proxyPort,
      method: init.method ?? 'GET',
      path: target.href, // absolute-form request target: what makes this a proxy request
      headers: { host: target.host, ...init.headers },
      agent: false,
    });
    // One exit for every failure (timeout, socket error, broken response); settling twice is a no-op.
    const fail = (err: Error) => {
      clearTimeout(timer);
      req.destroy();
      reject(
        err instanceof TestnetError
          ? err
          : new TestnetError('HTTP_FAILED', `${what}: ${err.message}`, {}, { cause: err }),
      );
    };
    const timer = setTimeout(
      () => fail(new TestnetError('TIMEOUT', `${what} took longer than ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.once('error', fail);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', fail);
      res.once('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: () => body.toString('utf8'),
          json: () => JSON.parse(body.toString('utf8')) as unknown,
        });
      });
    });
    req.end(init.body);
  });
}
