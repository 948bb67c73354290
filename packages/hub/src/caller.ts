import type { FastifyRequest } from 'fastify';
import type { WhoIs } from '@krkn/tailnet';
import { HubError } from './errors.js';

/** Who is calling: a tailnet peer named by WhoIs, or the local admin socket. */
export type Caller =
  | {
      kind: 'peer';
      ip: string;
      /** Stable node id: subscriptions are keyed by it, not by the address. */
      nodeId: string;
      node: string;
      user: string;
      tags: string[];
      capMap: Record<string, unknown[]>;
    }
  | { kind: 'admin' };

/** Resolves the caller of a request. */
export type Identify = (req: FastifyRequest) => Promise<Caller>;

/**
 * How long a connection reuses its caller's identity before asking WhoIs again. The peer behind a
 * connection cannot change, but its grants (capMap) and tags can with the tailnet policy; a change
 * reaches a keep-alive connection within this long, about as long as the new policy takes to reach us.
 */
const CALLER_TTL_MS = 1000;

/**
 * Identifies callers by the tailnet address of their connection, with WhoIs. The address is the
 * one the WireGuard peer was authenticated with; nothing in the request itself is trusted. Each WhoIs
 * crosses into the tailnet engine, so a connection keeps its answer for `ttlMs` (see CALLER_TTL_MS):
 * per socket, never shared with another, gone with it; a failed WhoIs is asked again.
 */
export function identifyByWhois(node: { whois(address: string): Promise<WhoIs> }, ttlMs = CALLER_TTL_MS): Identify {
  const known = new WeakMap<object, { ip: string; caller: Caller; until: number }>();
  return async (req) => {
    const socket = req.raw.socket;
    const hit = known.get(socket);
    const now = performance.now();
    if (hit && hit.ip === req.ip && hit.until > now && !socket.destroyed) return hit.caller;
    let who;
    try {
      who = await node.whois(req.ip);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new HubError('UNKNOWN_CALLER', `no tailnet node has address ${req.ip}: ${why}`, { cause: err });
    }
    const caller = peerOf(req.ip, who);
    known.set(socket, { ip: req.ip, caller, until: now + ttlMs });
    return caller;
  };
}

/** The peer WhoIs named behind `ip`: at a request (the caller) and before each delivery (the target). */
export function peerOf(ip: string, who: WhoIs): Extract<Caller, { kind: 'peer' }> {
  return {
    kind: 'peer',
    ip,
    nodeId: who.node.stableId || String(who.node.id),
    node: who.node.name,
    user: who.user.loginName,
    tags: who.node.tags,
    capMap: who.capMap,
  };
}

/** The admin socket: whoever can open it (mode 0600) is the operator. */
export const identifyAdmin: Identify = async () => ({ kind: 'admin' });
