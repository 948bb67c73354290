import type { FastifyRequest } from 'fastify';
import { HubError } from './errors.js';
import type { HubNode } from './ports.js';

/**
 * Keeps web pages out: a page a tailnet user visits can make their browser send requests to
 * krkns's tailnet address. Three walls, checked before the caller is identified:
 *
 * - DNS rebinding: a page on evil.example re-points its own name at krkns's 100.x address and
 *   reads the answers as same-origin. Its requests still say `Host: evil.example`, so a Host that is
 *   none of krkns's own names and addresses is refused.
 * - Cross-site requests: a page posts a form (no preflight) to publish, subscribe or redeliver. A
 *   state-changing request whose `Sec-Fetch-Site` says another site, or (older browsers) whose
 *   `Origin` is not krkns itself, is refused. Tools (curl, krknc, webhook senders) send neither.
 * - Simple content types on JSON routes: a form can only send the three CORS-"simple" types, so
 *   routes other than publish (which takes any body) refuse them.
 */
export function checkBrowserRequest(req: FastifyRequest, ownHosts: readonly string[]): void {
  checkHost(req, ownHosts);
  if (req.method === 'GET' || req.method === 'HEAD') return;
  const site = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  // Sec-Fetch-Site decides when present; Origin otherwise.
  const crossSite =
    site !== undefined ? !sameSite.has(site) : origin !== undefined && !ownHosts.includes(originHost(origin));
  if (crossSite) {
    const seen = `Sec-Fetch-Site ${site ?? 'absent'}, Origin ${origin ?? 'absent'}`;
    throw new HubError('CROSS_SITE', `a cross-site request (${seen}) may not change state`);
  }
  if (!req.url.startsWith('/hooks/') && simpleContentTypes.has(mediaType(req.headers['content-type']))) {
    throw new HubError('UNSUPPORTED_MEDIA_TYPE', 'this route takes application/json, never a form');
  }
}

/** Fails (MISDIRECTED_HOST) unless the request's Host is one of krkns's own names or addresses (DNS rebinding). */
export function checkHost(req: FastifyRequest, ownHosts: readonly string[]): void {
  if (!ownHosts.includes(hostName(req.headers.host ?? ''))) {
    const message = `Host "${req.headers.host ?? ''}" is not one of krkns's own names or addresses (DNS rebinding?)`;
    throw new HubError('MISDIRECTED_HOST', message);
  }
}

/** The names krkns answers to: its MagicDNS name (with and without the domain) and its addresses. */
export function ownHostsOf(node: Pick<HubNode, 'hostname' | 'self' | 'addresses'>): string[] {
  const fqdn = (node.self?.name ?? '').replace(/\.$/, '').toLowerCase();
  const names = [fqdn, fqdn.split('.')[0] ?? '', node.hostname.toLowerCase(), ...node.addresses];
  return [...new Set(names.filter(Boolean))];
}

// 'none': the user typed the URL or used a bookmark.
const sameSite = new Set(['same-origin', 'none']);
const simpleContentTypes = new Set(['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain']);

/** The host of a Host header, lower case, without port or IPv6 brackets. */
function hostName(host: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(host);
  if (bracketed) return bracketed[1]!.toLowerCase();
  return host.replace(/:\d+$/, '').replace(/\.$/, '').toLowerCase();
}

function originHost(origin: string): string {
  try {
    return hostName(new URL(origin).host); // "null" (sandboxed pages, file:) throws: refused
  } catch {
    return '';
  }
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}
