// One krkns replica for bench:hub, in a process of its own: replicas sharing one Node process would
// share one event loop (one core), and the benchmark would measure that, not the shared store. A Hub on
// a PostgreSQL store, served on a loopback port, delivering over loopback to the parent's subscriber.
// Driven over IPC by scripts/bench-hub.ts: it sends a ReplicaStart, gets a ReplicaReady (the port), and
// later sends 'stop' and gets a ReplicaStopped before the process exits.
import { Agent, request } from 'node:http';
import { identifyAdmin, type SendAttempt } from '@krkn/hub';
import { PostgresStore } from '@krkn/hub-store';
import { benchHub, offlineNode } from './bench-hub-fixture.js';

export interface ReplicaStart {
  url: string;
  password: string;
  replica: string;
  subscriberPort: number;
}
export interface ReplicaReady {
  port: number;
}
export interface ReplicaStopped {
  /** Publish groups committed (publishes per group = publishes / groups). */
  publishGroups: number;
}

function send(message: ReplicaReady | ReplicaStopped): void {
  process.send!(message);
}

async function start({ url, password, replica, subscriberPort }: ReplicaStart): Promise<void> {
  const store = await PostgresStore.open(url, { password });
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
    send({ publishGroups: store.publishGroups });
    process.disconnect();
  };
  process.once('message', () => void stop().catch(fail));
  send({ port: (app.server.address() as { port: number }).port });
}

function fail(err: unknown): never {
  console.error(err);
  process.exit(1);
}

process.once('message', (message: ReplicaStart) => void start(message).catch(fail));
