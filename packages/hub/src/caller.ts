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
 * Identifies callers by the tailnet address of their connection, with WhoIs. The address is the
 * one the WireGuard peer was authenticated with; nothing in the request itself is trusted.
 */
export function identifyByWhois(node: { whois(address: string): Promise<WhoIs> }): Identify {
  return async (req) => {
    let who;
    try {
      who = await node.whois(req.ip);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new HubError('UNKNOWN_CALLER', `no tailnet node has address ${req.ip}: ${why}`, { cause: err });
    }
    return peerOf(req.ip, who);
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
