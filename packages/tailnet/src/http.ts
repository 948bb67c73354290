import { Agent, request, type AgentOptions, type IncomingHttpHeaders, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { TailnetError } from './errors.js';
import type { TailnetNode } from './node.js';
import type { TailnetServer } from './server.js';

/**
 * Bounds on a tailnet HTTP listener, against peers that connect and then send slowly or nothing.
 * A peer is anyone the tailnet policy lets reach the port: a browser tab, a CI job, a stuck script.
 */
export interface ListenerLimits {
  /** Time to send a request's headers, from the connection (or the request's first byte); then 408. */
  headersTimeoutMs: number;
  /** Time for a whole request, body included; also the longest silence in either direction. */
  requestTimeoutMs: number;
  /** How long a keep-alive connection may sit idle between requests. */
  keepAliveTimeoutMs: number;
  /** Open connections on the listener; more are closed as soon as accepted. */
  maxConnections: number;
  /** Open connections from one peer address; more are closed as soon as accepted. */
  maxConnectionsPerPeer: number;
}

/** What {@link serveFastify} uses for limits not given. */
export const defaultListenerLimits: Readonly<ListenerLimits> = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 1024,
  maxConnectionsPerPeer: 64,
};

// Node looks for expired headers and requests on this period; its default is 30 s.
const maxTimeoutCheckMs = 1_000;

/**
 * Serves a fastify app on a port of the node's tailnet addresses, never on a host interface.
 * Call instead of `app.listen()`. `request.ip` is the caller's tailnet IP and
 * `app.server.address()` the tailnet address. Closing the app closes the listener.
 */
export async function serveFastify(
  app: FastifyInstance,
  node: TailnetNode,
  port: number,
  limits: Partial<ListenerLimits> = {},
): Promise<TailnetServer> {
  const bounds = { ...defaultListenerLimits, ...limits };
  if (bounds.headersTimeoutMs > bounds.requestTimeoutMs) {
    throw new TailnetError('BAD_ARGUMENT', 'the headers timeout must not be longer than the request timeout');
  }
  const listener = node.listen(port);
  listener.maxConnections = bounds.maxConnections;
  listener.maxConnectionsPerPeer = bounds.maxConnectionsPerPeer;
  const httpServer = app.server;
  app.addHook('onClose', async () => {
    listener.close();
    httpServer.close(); // stops the timeout checks and closes idle connections
  });
  try {
    await Promise.all([app.ready(), listener.accepting]);
  } catch (err) {
    listener.close();
    throw err;
  }
  armTimeouts(httpServer, bounds);
  // The http.Server never binds: connections come from the tailnet listener.
  httpServer.address = () => listener.address();
  listener.on('connection', (socket) => httpServer.emit('connection', socket));
  return listener;
}

/**
 * Node arms its header and request timeouts only when the server starts listening (the check runs
 * on 'listening'), which a server fed by a tailnet listener never does; fastify sets no idle timeout.
 */
function armTimeouts(httpServer: Server, bounds: ListenerLimits): void {
  httpServer.headersTimeout = bounds.headersTimeoutMs;
  httpServer.requestTimeout = bounds.requestTimeoutMs;
  httpServer.keepAliveTimeout = bounds.keepAliveTimeoutMs;
  httpServer.timeout = bounds.requestTimeoutMs;
  (httpServer as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.min(
    maxTimeoutCheckMs,
    bounds.headersTimeoutMs / 2,
  );
  httpServer.emit('listening');
}

/**
 * How long a tailnetAgent keeps an idle keep-alive connection: shorter than the server's keep-alive
 * timeout (ours and Node's default: 5 s). A connection the server closes first is one the client may
 * pick for its next request just before the FIN arrives: that request fails with "socket hang up".
 */
const agentIdleMs = 4_000;

/**
 * An http.Agent whose connections go over the tailnet, for node:http clients:
 * `http.get('http://peer-name:8080/x', { agent: tailnetAgent(node) })`. Keep-alive; an idle connection
 * is closed after 4 s (`timeout`), before a server with the usual 5 s keep-alive timeout closes it.
 */
export function tailnetAgent(node: TailnetNode, options: AgentOptions & { dialTimeoutMs?: number } = {}): Agent {
  const agent = new Agent({ keepAlive: true, timeout: agentIdleMs, ...options });
  // http.Agent waits for the callback when createConnection returns nothing.
  (agent as unknown as { createConnection: unknown }).createConnection = (
    opts: { host?: string; hostname?: string; port?: number | string },
    done: (err: Error | null, socket?: Duplex) => void,
  ): undefined => {
    const host = opts.hostname ?? opts.host ?? 'localhost';
    node.dial(host, Number(opts.port) || 80, { timeoutMs: options.dialTimeoutMs ?? 15_000 }).then(
      (socket) => done(null, socket),
      (err: unknown) => {
        done(err as Error);
      },
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
