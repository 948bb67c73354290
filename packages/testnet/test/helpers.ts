import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the echo server saw of one request. */
interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  remoteAddress: string;
}

/**
 * A tiny HTTP server on 127.0.0.1:<free port> that answers `echo <method> <url>` plus the request body,
 * and records every request. A native node in userspace-networking mode forwards inbound tailnet
 * connections to the host's 127.0.0.1, so this server is reachable as http://<node-ip>:<port>.
 */
export async function startEchoServer() {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        remoteAddress: req.socket.remoteAddress ?? '',
      });
      res.setHeader('content-type', 'application/octet-stream');
      res.end(Buffer.concat([Buffer.from(`echo ${req.method} ${req.url}\n`), body]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
