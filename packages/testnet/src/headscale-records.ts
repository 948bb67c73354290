// Typed views of what `headscale ... -o json` prints. The CLI marshals the protobuf Go structs with
// encoding/json (cmd/headscale/cli/utils.go formatOutput), so fields are snake_case, zero values are
// omitted (`online: false` is simply absent), timestamps are {seconds, nanos}, and an empty list is `null`.

/** A headscale user. */
export interface HeadscaleUser {
  /** Numeric id (what `preauthkeys create -u` takes). */
  id: number;
  /** Login name; policies refer to it as `name@`. */
  name: string;
}

/** A node as headscale sees it (`headscale nodes list`). */
export interface HeadscaleNode {
  /** Numeric id (what `nodes rename/expire/delete -i` take). */
  id: number;
  /** The hostname the node registered with. */
  name: string;
  /** The MagicDNS label headscale gave it (differs from `name` after a rename or a clash). */
  givenName: string;
  /** Tailnet addresses, IPv4 first as headscale lists them. */
  ipAddresses: string[];
  /** Whether the node holds a live map session with headscale. */
  online: boolean;
  /** ACL tags, e.g. `tag:ci`. */
  tags: string[];
  /** Owning user; absent for nodes owned by tags. */
  user: HeadscaleUser | undefined;
  /** When the node key expires; `undefined` when it never does. */
  expiry: Date | undefined;
  /** Last time headscale heard from the node. */
  lastSeen: Date | undefined;
  /** True when it joined with an ephemeral pre-auth key (deleted on logout or after inactivity). */
  ephemeral: boolean;
}

type Json = Record<string, unknown>;

function asObject(value: unknown): Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

function asString(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function asStrings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** protobuf Timestamp → Date; Go's zero time (year 1) and absent values → undefined. */
function asDate(value: unknown): Date | undefined {
  const seconds = asObject(value).seconds;
  const nanos = asObject(value).nanos;
  if (typeof seconds !== 'number' || seconds <= 0) return undefined;
  return new Date(seconds * 1000 + (typeof nanos === 'number' ? Math.floor(nanos / 1e6) : 0));
}

/** Parses a user object. */
export function parseUser(value: unknown): HeadscaleUser {
  const json = asObject(value);
  return { id: Number(json.id ?? 0), name: asString(json.name) };
}

/** Parses a node object. */
export function parseNode(value: unknown): HeadscaleNode {
  const json = asObject(value);
  return {
    id: Number(json.id ?? 0),
    name: asString(json.name),
    givenName: asString(json.given_name),
    ipAddresses: asStrings(json.ip_addresses),
    online: json.online === true,
    tags: asStrings(json.tags),
    user: json.user === undefined ? undefined : parseUser(json.user),
    expiry: asDate(json.expiry),
    lastSeen: asDate(json.last_seen),
    ephemeral: asObject(json.pre_auth_key).ephemeral === true,
  };
}

/** Parses a JSON list that the CLI prints as `null` when empty. */
export function parseList<T>(value: unknown, parseItem: (item: unknown) => T): T[] {
  return Array.isArray(value) ? value.map(parseItem) : [];
}

/** The `key` field of a created pre-auth key. */
export function parsePreAuthKey(value: unknown): string {
  return asString(asObject(value).key);
}

/** The message of an error the CLI printed as `{"error": "..."}` on stderr (with `-o json`). */
export function parseCliError(stderr: string): string {
  try {
    const message = asString(asObject(JSON.parse(stderr)).error);
    if (message) return message;
  } catch {
    // Not JSON: e.g. a fatal config error logged before the CLI parsed `-o`.
  }
  return stderr.trim();
}
