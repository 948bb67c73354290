import { createServer } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from 'pino';

/** Why a metrics host address was refused. */
export class MetricsListenError extends Error {
  override readonly name = 'MetricsListenError';
  constructor(
    readonly code: 'BAD_ADDRESS' | 'NOT_LOOPBACK',
    message: string,
  ) {
    super(message);
  }
}

/** A parsed `--metrics-listen` value. */
export interface HostAddress {
  host: string;
  port: number;
}

const loopback = (host: string): boolean => host === '::1' || host.startsWith('127.');

/**
 * Parses "127.0.0.1:9464" or "[::1]:9464". A non-loopback address exposes the metrics beyond this
 * host, outside the tailnet's authorisation: it is refused unless `allowRemote` says the operator
 * means it.
 */
export function parseHostAddress(text: string, allowRemote: boolean): HostAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const host = m?.[1] ?? m?.[2] ?? '';
  const port = Number(m?.[3]);
  if (!m || isIP(host) === 0 || port < 1 || port > 65535) {
    throw new MetricsListenError('BAD_ADDRESS', `${JSON.stringify(text)} is not an IP:port such as 127.0.0.1:9464`);
  }
  if (!loopback(host) && !allowRemote) {
    const message = `${host} is not a loopback address: metrics there are readable by anyone who reaches this host`;
    throw new MetricsListenError('NOT_LOOPBACK', `${message}; add --metrics-listen-remote if that is meant`);
  }
  return { host, port };
}

// A scrape is one small GET: anything slower or bigger is not a Prometheus server.
const requestTimeoutMs = 10_000;
const headersTimeoutMs = 5_000;
const maxHeaderBytes = 8 * 1024;

/**
 * Serves GET /metrics on a host address (for a Prometheus outside the tailnet). Nothing else is
 * served; request bodies are never read. Resolves once listening; close() also ends idle
 * keep-alive scrape connections, so it never waits for the next scrape.
 */
export async function serveMetricsOnHost(
  address: HostAddress,
  render: () => Promise<{ contentType: string; body: string }>,
  log: Logger,
): Promise<{ close(): Promise<void> }> {
  const server = createServer(
    { requestTimeout: requestTimeoutMs, headersTimeout: headersTimeoutMs, maxHeaderSize: maxHeaderBytes },
    (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics')
        return void res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics here\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return void res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET only\n');
      }
      render().then(
        (page) =>
          res.writeHead(200, { 'content-type': page.contentType }).end(req.method === 'HEAD' ? undefined : page.body),
        (err: unknown) => {
          log.error({ err: err instanceof Error ? err : new Error(String(err)) }, 'cannot render metrics');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable; see the krkns log\n');
        },
      );
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
