// The headscale configuration of a testnet. Every key was checked in the headscale v0.29.2 source
// (hscontrol/types/config.go unless noted); the line numbers are there so the next upgrade can re-check.

import { join } from 'node:path';

export interface HeadscaleConfigInput {
  dir: string;
  httpPort: number;
  stunPort: number;
  domain: string;
  ephemeralInactivityTimeout: string;
  logLevel: string;
  /** `prefixes.v4`: the IPv4 prefix node addresses come from. */
  ipv4Prefix: string;
  /** `prefixes.allocation`. */
  ipAllocation: 'sequential' | 'random';
  /** `tuning.node_store_batch_timeout`; headscale's default (500ms) when absent. */
  nodeStoreBatchTimeout?: string;
  /** `tuning.batch_change_delay`; headscale's default (800ms) when absent. */
  batchChangeDelay?: string;
}

/** Where headscale keeps its files inside a testnet directory. */
export function headscalePaths(dir: string) {
  return {
    config: join(dir, 'config.json'),
    socket: join(dir, 'headscale.sock'),
    database: join(dir, 'db.sqlite'),
    noiseKey: join(dir, 'noise_private.key'),
    derpKey: join(dir, 'derp_server_private.key'),
    log: join(dir, 'headscale.log'),
  };
}

/**
 * The config object. headscale loads it with viper, which picks the parser from the file extension,
 * so we write plain JSON to `config.json` and need no YAML library.
 */
export function headscaleConfig(input: HeadscaleConfigInput): Record<string, unknown> {
  const paths = headscalePaths(input.dir);
  const listen = `127.0.0.1:${input.httpPort}`;
  return {
    server_url: `http://${listen}`, // :1194; must start with http:// or https:// (:598)
    listen_addr: listen, // :1212
    metrics_listen_addr: '', // :1213; empty disables the metrics listener (hscontrol/app.go:863)
    // Remote gRPC only listens with TLS or grpc_allow_insecure (hscontrol/app.go:788); the CLI uses the
    // unix socket. Port 0 anyway, so it could never clash if someone turned it on.
    grpc_listen_addr: '127.0.0.1:0', // :1214
    grpc_allow_insecure: false, // :1215
    unix_socket: paths.socket, // :1253
    unix_socket_permission: '0770',
    noise: { private_key_path: paths.noiseKey }, // :1224, required (:581); generated when missing
    // :1019, :1039, :1151. Sequential allocation never wraps back to a freed address (hscontrol/db/ip.go:245);
    // random allocation scans the whole prefix from a random start, so a freed one is found again.
    prefixes: { v4: input.ipv4Prefix, v6: 'fd7a:115c:a1e0::/48', allocation: input.ipAllocation },
    database: { type: 'sqlite', sqlite: { path: paths.database } }, // :812, :841
    derp: {
      server: {
        enabled: true, // :693
        region_id: 999, // :694
        region_code: 'krkn', // :695
        region_name: 'krkn testnet', // :696
        stun_listen_addr: `127.0.0.1:${input.stunPort}`, // :698, required when enabled (:708)
        private_key_path: paths.derpKey, // :700
        // No real derp.server.ipv4/ipv6 (:702-703): clients dial the host of server_url, 127.0.0.1.
        // But ipv6 "none" (headscale copies it into DERPNode.IPv6, hscontrol/derp/server/derp_server.go:127):
        // tailcfg/derpmap.go:180 "none" disables IPv6 for the node. Without it, netcheck plans IPv6 STUN
        // probes to a node with no v6 address (net/netcheck/netcheck.go:546, nodeMight6 is true for "")
        // and waits out stunProbeTimeout (3 s) on every join before choosing a home DERP.
        ipv6: 'none',
      },
      urls: [], // :713; the default points at controlplane.tailscale.com
      paths: [], // :731
      auto_update_enabled: false, // :738
    },
    disable_check_updates: true, // :1089, read by the CLI (cmd/headscale/cli/root.go:71)
    logtail: { enabled: false }, // :760
    log: { level: input.logLevel, format: 'text' }, // :778
    policy: { mode: 'database' }, // :769; `headscale policy set` stores it in the database
    dns: {
      magic_dns: true, // :872
      base_domain: input.domain, // :873; must differ from server_url's host (:1204)
      // override_local_dns=true requires global nameservers (:616); we want none (no internet).
      override_local_dns: false, // :874
      nameservers: { global: [] }, // :875
    },
    // Minimum is more than 65s (:605); read at :483.
    node: { ephemeral: { inactivity_timeout: input.ephemeralInactivityTimeout } },
    tuning: {
      // :455, must be positive (:658). hscontrol/state/node_store.go:383 applies queued node writes only
      // on this tick; a streamed map request makes two in a row (state.go:2805, then :636).
      ...(input.nodeStoreBatchTimeout ? { node_store_batch_timeout: input.nodeStoreBatchTimeout } : {}),
      // :452. A node's own first map is sent at once (mapper/batcher.go AddNode); what changed for its
      // peers (it came online, its disco key) waits for this tick.
      ...(input.batchChangeDelay ? { batch_change_delay: input.batchChangeDelay } : {}),
    },
  };
}
