// What the hub and inspector benchmarks share: a Hub on loopback with no tailnet behind it.
import { pino } from 'pino';
import { Hub, defaultCredentialHeaders, type HubNode, type SendAttempt } from '@krkn/hub';
import { PostgresStore, SqliteStore, type HubStore } from '@krkn/hub-store';

/** A node that is never online: no tailnet here, so no subscriber is ever woken by it. */
export function offlineNode(hostname: string): HubNode {
  return {
    hostname,
    self: undefined,
    addresses: ['127.0.0.1'],
    state: 'Running',
    loginUrl: undefined,
    status: async () => ({ peers: [], peersKnown: true }),
    on: () => undefined,
    off: () => undefined,
  };
}

/** The store a benchmark's hub runs on, as plain data: it crosses IPC to bench-hub-child.ts. */
export type BenchStore =
  | {
      kind: 'sqlite';
      path: string;
      /** The anchor's store: fsyncs on the event loop, as before (see SqliteStoreOptions). */
      fsyncOnEventLoop?: boolean;
    }
  | { kind: 'postgres'; url: string; password: string };

/** Opens (and migrates) the store `where` names. */
export async function openBenchStore(where: BenchStore): Promise<SqliteStore | PostgresStore> {
  return where.kind === 'sqlite'
    ? SqliteStore.open(where.path, { fsyncOnEventLoop: where.fsyncOnEventLoop })
    : PostgresStore.open(where.url, { password: where.password });
}

/** A quiet Hub over `store` with krkns's limits; what a benchmark varies is passed in. */
export function benchHub(opts: {
  store: HubStore;
  node: HubNode;
  send: SendAttempt;
  retentionMs: number;
  retryScheduleMs: number[];
  /** This hub's name among replicas on one store (default: the node's hostname). */
  replica?: string;
}): Hub {
  const { store, node, send, retentionMs, retryScheduleMs, replica } = opts;
  return new Hub({
    store,
    node,
    replica,
    logger: pino({ level: 'silent' }),
    send,
    config: {
      bodyLimit: 10 << 20,
      retentionMs,
      retryScheduleMs,
      deliveryTimeoutMs: 15000,
      requireCapability: false,
      capabilityName: 'x',
      maxConcurrentDeliveries: 16,
      credentialHeaders: defaultCredentialHeaders,
    },
  });
}
