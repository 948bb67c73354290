// identifyByWhois over real loopback HTTP connections: a connection keeps its caller for a while,
// another connection asks WhoIs again, and a failed WhoIs is never kept.

import { Agent, request } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { WhoIs } from '@krkn/tailnet';
import { identifyByWhois } from '../src/caller.js';
import { HubError } from '../src/errors.js';

const whoIs = (grant: string): WhoIs => ({
  node: { id: 7, stableId: 'nPub', name: 'ci.krkn.test', hostname: 'ci', addresses: ['127.0.0.1'], tags: [] },
  user: { id: 1, loginName: 'ci@', displayName: 'CI' },
  capMap: { 'krkn.dev/cap/webhooks': [{ publish: [grant] }] },
});

let app: FastifyInstance | undefined;
const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) a.destroy();
  await app?.close();
});

/** A server answering each request with its caller's grant, identified with `whois`; and its port. */
async function serve(whois: (ip: string) => Promise<WhoIs>, ttlMs?: number): Promise<number> {
  const identify = identifyByWhois({ whois }, ttlMs);
  app = Fastify();
  app.get('/who', async (req) => {
    try {
      const caller = await identify(req);
      return caller.kind === 'peer' ? caller.capMap['krkn.dev/cap/webhooks'] : 'admin';
    } catch (err) {
      return { error: (err as HubError).code };
    }
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return (app.server.address() as { port: number }).port;
}

/** A client whose requests share one keep-alive connection. */
function connection(port: number): () => Promise<unknown> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  agents.push(agent);
  return () =>
    new Promise((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/who', agent }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(JSON.parse(text)));
      })
        .on('error', reject)
        .end();
    });
}

describe('identifyByWhois', () => {
  it('asks WhoIs once per connection, not once per request', async () => {
    const asked: string[] = [];
    const port = await serve(async (ip) => (asked.push(ip), whoIs('ci/*')), 60_000);
    const first = connection(port);
    for (let i = 0; i < 3; i++) expect(await first()).toEqual([{ publish: ['ci/*'] }]);
    expect(asked).toEqual(['127.0.0.1']);
    await connection(port)(); // a new connection from the same address: asked again, never shared
    expect(asked).toEqual(['127.0.0.1', '127.0.0.1']);
  });

  it('asks again once the identity is older than its time to live: a changed grant reaches the connection', async () => {
    let grant = 'ci/*';
    let asked = 0;
    const port = await serve(async () => (asked++, whoIs(grant)), 50);
    const c = connection(port);
    expect(await c()).toEqual([{ publish: ['ci/*'] }]);
    grant = 'prod/*';
    await new Promise((r) => setTimeout(r, 80));
    expect(await c()).toEqual([{ publish: ['prod/*'] }]);
    expect(asked).toBe(2);
  });

  it('does not keep a failed WhoIs: the next request on the connection asks again', async () => {
    let fail = true;
    let asked = 0;
    const port = await serve(async () => {
      asked++;
      if (fail) throw new Error('no such peer yet');
      return whoIs('ci/*');
    }, 60_000);
    const c = connection(port);
    expect(await c()).toEqual({ error: 'UNKNOWN_CALLER' });
    fail = false;
    expect(await c()).toEqual([{ publish: ['ci/*'] }]);
    expect(asked).toBe(2);
  });
});
