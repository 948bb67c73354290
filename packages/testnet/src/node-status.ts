// The part of `tailscale status --json` (ipn/ipnstate.Status) that tests use, with the nulls that
// Go prints for empty slices and maps turned into empty arrays and objects.

/** One node in a status report (ipnstate.PeerStatus subset). Field names as tailscale prints them. */
export interface PeerStatus {
  /** Stable node id. */
  ID: string;
  /** The node's own hostname (not unique, not a DNS name). */
  HostName: string;
  /** MagicDNS name with trailing dot, e.g. `a.krkn.test.`. */
  DNSName: string;
  /** Tailnet addresses, IPv4 first. */
  TailscaleIPs: string[];
  /** Connected to the control server. */
  Online: boolean;
  /** ACL tags (empty for user-owned nodes). */
  Tags: string[];
  /** Home DERP region code (`krkn` on a testnet); empty until the node has reported one. */
  Relay: string;
}

/** A node's view of the tailnet (ipnstate.Status subset). */
export interface NodeStatus {
  /** `NoState`, `NeedsLogin`, `NeedsMachineAuth`, `Stopped`, `Starting` or `Running`. */
  BackendState: string;
  /** Pending interactive login URL, if any. */
  AuthURL: string;
  /** This node's tailnet addresses. */
  TailscaleIPs: string[];
  /** This node. */
  Self: PeerStatus;
  /** The peers this node can see, keyed by node public key. Absent peers are invisible to it. */
  Peer: Record<string, PeerStatus>;
  /** MagicDNS suffix, e.g. `krkn.test`. */
  MagicDNSSuffix: string;
  /** Health warnings. */
  Health: string[];
}

type Json = Record<string, unknown>;

const obj = (v: unknown): Json => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

function parsePeer(value: unknown): PeerStatus {
  const json = obj(value);
  return {
    ID: str(json.ID),
    HostName: str(json.HostName),
    DNSName: str(json.DNSName),
    TailscaleIPs: strs(json.TailscaleIPs),
    Online: json.Online === true,
    Tags: strs(json.Tags),
    Relay: str(json.Relay),
  };
}

/** Parses the output of `tailscale status --json`. */
export function parseStatus(text: string): NodeStatus {
  const json = obj(JSON.parse(text));
  const peers = Object.entries(obj(json.Peer)).map(([key, peer]) => [key, parsePeer(peer)] as const);
  return {
    BackendState: str(json.BackendState),
    AuthURL: str(json.AuthURL),
    TailscaleIPs: strs(json.TailscaleIPs),
    Self: parsePeer(json.Self),
    Peer: Object.fromEntries(peers),
    MagicDNSSuffix: str(json.MagicDNSSuffix),
    Health: strs(json.Health),
  };
}
