/** Typed views of the engine's JSON answers (ipnstate.Status, WhoIs, ipnstate.PingResult). */

/** One node of the tailnet as seen from this node. */
export interface PeerStatus {
  /** The control server's stable id for the node; empty if it gives none. */
  stableId: string;
  /** Hostname the node reported (not necessarily unique). */
  hostname: string;
  /** MagicDNS name without the trailing dot, e.g. "krkns.example.ts.net". */
  dnsName: string;
  /** Tailnet IPs, IPv4 first. */
  addresses: string[];
  /** Connected to the control server. */
  online: boolean;
  os: string;
  tags: string[];
  /** The owning user's login name ("tagged-devices" for tagged nodes). */
  user: string;
  /** RFC 3339 time the node key expires, if it does. */
  keyExpiry?: string;
  /** Home DERP region code; empty until the node has one (no traffic can reach it before). */
  relay: string;
}

/** The node, its peers and its place in the tailnet. */
export interface NodeStatus {
  backendState: string;
  /** Set while the node waits for interactive login. */
  authUrl?: string;
  self: PeerStatus;
  peers: PeerStatus[];
  /**
   * False while a restarted node runs from its cached netmap, which holds no peers: control has not
   * sent them yet. Dials and pings wait for them (within their timeout); `peers` is empty until then.
   */
  peersKnown: boolean;
  /** The tailnet's MagicDNS suffix, e.g. "example.ts.net". */
  magicDnsSuffix: string;
}

/** Who is behind a tailnet address. */
export interface WhoIs {
  node: {
    id: number;
    stableId: string;
    /** MagicDNS name without the trailing dot. */
    name: string;
    hostname: string;
    addresses: string[];
    tags: string[];
  };
  user: { id: number; loginName: string; displayName: string };
  /**
   * Capabilities the policy grants that node towards this one, by capability name (e.g.
   * "example.com/cap/webhooks" → the list of JSON values from the matching grants).
   */
  capMap: Record<string, unknown[]>;
}

/** The answer to a TSMP ping. */
export interface PingResult {
  /** The address pinged. */
  ip: string;
  nodeName: string;
  latencyMs: number;
}

interface RawPeer {
  ID?: string;
  HostName?: string;
  DNSName?: string;
  TailscaleIPs?: string[] | null;
  Online?: boolean;
  OS?: string;
  Tags?: string[] | null;
  UserID?: number;
  KeyExpiry?: string;
  Relay?: string;
}

interface RawStatus {
  BackendState: string;
  AuthURL?: string;
  Self?: RawPeer;
  Peer?: Record<string, RawPeer> | null;
  MagicDNSSuffix?: string;
  KrknPeersKnown: boolean;
  User?: Record<string, { LoginName?: string }> | null;
}

export function parseStatus(json: string): NodeStatus {
  const raw = JSON.parse(json) as RawStatus;
  const users = raw.User ?? {};
  const peer = (p: RawPeer = {}): PeerStatus => ({
    stableId: p.ID ?? '',
    hostname: p.HostName ?? '',
    dnsName: (p.DNSName ?? '').replace(/\.$/, ''),
    addresses: sortV4First(p.TailscaleIPs ?? []),
    online: p.Online ?? false,
    os: p.OS ?? '',
    tags: p.Tags ?? [],
    user: users[String(p.UserID)]?.LoginName ?? '',
    relay: p.Relay ?? '',
    ...(p.KeyExpiry ? { keyExpiry: p.KeyExpiry } : {}),
  });
  return {
    backendState: raw.BackendState,
    ...(raw.AuthURL ? { authUrl: raw.AuthURL } : {}),
    self: peer(raw.Self),
    peers: Object.values(raw.Peer ?? {}).map(peer),
    peersKnown: raw.KrknPeersKnown,
    magicDnsSuffix: raw.MagicDNSSuffix ?? '',
  };
}

/** WhoIs as the engine sends it: Go encodes a node without addresses as `null` (capMap is never null). */
type RawWhoIs = Omit<WhoIs, 'node'> & { node: Omit<WhoIs['node'], 'addresses'> & { addresses: string[] | null } };

export function parseWhois(json: string): WhoIs {
  const w = JSON.parse(json) as RawWhoIs;
  return { ...w, node: { ...w.node, addresses: sortV4First(w.node.addresses ?? []) } };
}

export function parsePing(json: string): PingResult {
  const p = JSON.parse(json) as { IP: string; NodeName: string; LatencySeconds: number };
  return { ip: p.IP, nodeName: p.NodeName, latencyMs: p.LatencySeconds * 1000 };
}

function sortV4First(addrs: string[]): string[] {
  return [...addrs].sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')));
}

/** One DERP region of the map the control server sent (engine `relays`). */
export interface RelayRegion {
  id: number;
  /** Short code, e.g. "headscale"; a node's `relay` names its home region by this code. */
  code: string;
  name: string;
  /** Relay servers of the region; port 0 means the scheme's default (443, or 80 over plain HTTP). */
  nodes: { host: string; port: number }[];
  /** RFC 3339 time a frame last came from this region; absent: never connected. */
  lastFrame?: string;
}

export function parseRelays(json: string): RelayRegion[] {
  return (JSON.parse(json) as RelayRegion[] | null) ?? [];
}
