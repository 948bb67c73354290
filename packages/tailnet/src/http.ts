import { Agent, request, type AgentOptions, type IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TailnetNode } from './node.js';
import type { TailnetServer } from './server.js';

/**
 * Serves a fastify app on a port of the node's tailnet addresses, never on a host interface.
 * Call instead of `app.listen()`. `request.ip` is the caller's tailnet IP and
 * `app.server.address()` the tailnet address. Closing the app closes the listener.
 */
export async function serveFastify(app: FastifyInstance, node: TailnetNode, port: number): Promise<TailnetServer> {
  const listener = node.listen(port);
  const httpServer = app.server;
  app.addHook('onClose', async () => {
    listener.close();
    httpServer.closeIdleConnections();
  });
  try {
    await app.ready();
  } catch (err) {
    listener.close();
    throw err;
  }
  // The http.Server never binds: connections come from the tailnet listener.
  httpServer.address = () => listener.address();
  listener.on('connection', (socket) => httpServer.emit('connection', socket));
  return listener;
}

/**
 * An http.Agent whose connections go over the tailnet, for node:http clients:
 * `http.get('http://peer-name:8080/x', { agent: tailnetAgent(node) })`.
 */
export function tailnetAgent(node: TailnetNode, options: AgentOptions & { dialTimeoutMs?: number } = {}): Agent {
  const agent = new Agent({ keepAlive: true, ...options });
  // http.Agent waits for the callback when createConnection returns nothing.
  (agent as unknown as { createConnection: unknown }).createConnection = (
    opts: { host?: string; hostname?: string; port?: number | string },
    done: (err: Error | null, socket?: Duplex) => void,
  ): undefined => {
    const host = opts.hostname ?? opts.host ?? 'localhost';
    node.dial(host, Number(opts.port) || 80, { timeoutMs: options.dialTimeoutMs ?? 15_000 }).then(
      (socket) => done(null, socket),
      (err: Error) => done(err),
    );
    return undefined;
  };
  return agent;
}

/**
 * fetch() over the tailnet: `await tailnetFetch(node, 'http://krkns/healthz')`. Takes the usual
 * RequestInit (method, headers, body, signal) and returns a standard Response. http:// only:
 * WireGuard already encrypts every byte between the two nodes.
 */
export async function tailnetFetch(
  node: TailnetNode,
  url: string | URL,
  init: RequestInit = {},
  agent = tailnetAgent(node),
): Promise<Response> {
  const target = new URL(url);
  if (target.protocol !== 'http:') throw new TypeError(`tailnetFetch supports http:// URLs, not ${target.protocol}`);
  const body = init.body == null ? undefined : Buffer.from(await new Response(init.body).arrayBuffer());
  const headers = Object.fromEntries(new Headers(init.headers).entries());
  return new Promise<Response>((resolve, reject) => {
    const req = request(
      target,
      { method: init.method ?? 'GET', headers, agent, signal: init.signal ?? undefined },
      (res) => {
        const status = res.statusCode ?? 502;
        const nullBody = status === 204 || status === 304 || init.method === 'HEAD';
        resolve(
          new Response(nullBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
            status,
            statusText: res.statusMessage ?? '',
            headers: toHeaders(res.headers),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function toHeaders(h: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (Array.isArray(v)) for (const item of v) out.append(k, item);
    else if (v !== undefined) out.set(k, v);
  }
  return out;
}
