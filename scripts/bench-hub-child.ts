// One hub for bench:hub's loopback columns, in a process of its own, as `krkns run` is: a hub in the
// bench's process would share its event loop (one core) with the publishers and the subscriber, and
// replicas in one process would share one core, so the benchmark would measure that, not the store. A
// Hub on a SQLite file or a PostgreSQL database, served on a loopback port, delivering over loopback to
// the parent's subscriber. Driven over IPC by scripts/bench-hub.ts: it sends a HubStart, gets a HubReady
// (the port), and later sends 'stop' and gets a HubStopped before the process exits.
import { Agent, request } from 'node:http';
import { identifyAdmin, type SendAttempt } from '@krkn/hub';
import { PostgresStore } from '@krkn/hub-store';
import { benchHub, offlineNode, openBenchStore, type BenchStore } from './bench-hub-fixture.js';

export interface HubStart {
  store: BenchStore;
  /** This hub's name among replicas on one store. */
  replica: string;
  subscriberPort: number;
}
export interface HubReady {
  port: number;
}
/** The store's group-commit counters; SQLite counts no publish groups of its own, only all its commits. */
export type HubStopped =
  | {
      /** PostgreSQL: publish groups committed (publishes per group = publishes / groups). */
      publishGroups: number;
    }
  | {
      /** SQLite: transactions committed, of every write that goes through its group commit. */
      commits: number;
    };

function send(message: HubReady | HubStopped): void {
  process.send!(message);
}

async function start({ store: where, replica, subscriberPort }: HubStart): Promise<void> {
  const store = await openBenchStore(where);
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const deliver: SendAttempt = ({ event }, attempt) =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: subscriberPort,
          path: '/in',
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': event.body.length,
            'x-krkn-event-id': event.id,
            'x-krkn-attempt': String(attempt),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            resolve(
              status < 300 ? { kind: 'delivered', status } : { kind: 'rejected', status, error: `HTTP ${status}` },
            );
          });
        },
      );
      req.on('error', reject);
      req.end(event.body);
    });
  const hub = benchHub({
    store,
    node: offlineNode(replica),
    replica,
    send: deliver,
    retentionMs: 86400e3,
    retryScheduleMs: [0, 5000],
  });
  const app = await hub.app(identifyAdmin);
  await app.listen({ host: '127.0.0.1', port: 0 });
  hub.start();
  const stop = async (): Promise<void> => {
    await hub.stop(1000);
    await app.close();
    agent.destroy();
    await store.close();
    send(store instanceof PostgresStore ? { publishGroups: store.publishGroups } : { commits: store.commits });
    process.disconnect();
  };
  process.once('message', () => void stop().catch(fail));
  send({ port: (app.server.address() as { port: number }).port });
}

function fail(err: unknown): never {
  console.error(err);
  process.exit(1);
}

process.once('message', (message: HubStart) => void start(message).catch(fail));
