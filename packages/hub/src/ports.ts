import type { HubStore } from '@krkn/hub-store';

/**
 * What the deliverer needs from storage: claim what is due (under a lease, so several replicas on one
 * store never attempt one subscriber twice at once), record how each attempt ended, give the lease back.
 */
export type DeliveryStore = Pick<
  HubStore,
  | 'claimDue'
  | 'releaseLease'
  | 'nextDueAt'
  | 'recordDelivered'
  | 'recordRejected'
  | 'recordGone'
  | 'recordUnreachable'
  | 'recordHeld'
  | 'recordRefused'
>;

/** What the hub needs from storage: a subset of @krkn/hub-store's HubStore, every call awaited. */
export type HubStorage = DeliveryStore &
  Pick<
    HubStore,
    | 'publish'
    | 'getEvent'
    | 'listEvents'
    | 'deliveriesOf'
    | 'deliveriesOfEvents'
    | 'redeliver'
    | 'subscribe'
    | 'getSubscription'
    | 'listSubscriptions'
    | 'unsubscribe'
    | 'wake'
    | 'markOffline'
    | 'expire'
    | 'prune'
    | 'stats'
    | 'heartbeat'
    | 'replicas'
    | 'backlogs'
    | 'sizeBytes'
  >;

/**
 * What the hub needs from its tailnet node: who it is (for /status) and which peers are online
 * (to wake parked subscribers). A TailnetNode is one; the bench and unit tests pass their own.
 */
/** A peer as the netmap shows it. */
export interface NetmapPeer {
  online: boolean;
  addresses: string[];
  /** The control server's stable node id (WhoIs's `stableId`); absent or empty if it gives none. */
  stableId?: string;
}

export interface HubNode {
  readonly hostname: string;
  readonly self: { name: string } | undefined;
  readonly addresses: string[];
  readonly state: string;
  /** Set while the node waits for interactive login. */
  readonly loginUrl: string | undefined;
  /** peersKnown false: a restarted node runs from its cached netmap, whose peer list is empty, not true. */
  status(): Promise<{ peers: readonly NetmapPeer[]; peersKnown: boolean }>;
  /** 'peers': the netmap changed; call status() for the list. */
  on(event: 'peers', listener: () => void): unknown;
  off(event: 'peers', listener: () => void): unknown;
}
