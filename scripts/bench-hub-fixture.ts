// What the hub and inspector benchmarks share: a Hub on loopback with no tailnet behind it.
import { pino } from 'pino';
import { Hub, defaultCredentialHeaders, type HubNode, type SendAttempt } from '@krkn/hub';
import type { HubStore } from '@krkn/hub-store';

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
