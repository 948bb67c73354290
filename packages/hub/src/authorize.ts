import { parseWebhookCapability } from '@krkn/policy';
import type { Caller } from './caller.js';
import { HubError } from './errors.js';

/** What authorisation needs from the hub's configuration. */
export interface AuthorizeConfig {
  /** Without it, the tailnet policy (who may reach krkns at all) is the only wall. */
  requireCapability: boolean;
  capabilityName: string;
}

/**
 * Checks that the caller may publish to, or subscribe to (and read), a topic. With
 * requireCapability, a peer needs an app-capability grant naming the topic; the admin socket
 * may do everything.
 */
export function authorize(config: AuthorizeConfig, caller: Caller, action: 'publish' | 'subscribe', topic: string): void {
  if (caller.kind === 'admin' || !config.requireCapability) return;
  const name = config.capabilityName;
  const values = caller.capMap[name];
  if (!values || values.length === 0) {
    throw new HubError(403, 'MISSING_CAPABILITY', `${caller.node} has no grant of the app capability ${name}; add a grant with "app": {"${name}": [{"${action}": ["${topic}"]}]} to the tailnet policy`);
  }
  const grant = parseWebhookCapability(values);
  if (!grant.ok) {
    throw new HubError(403, 'MISSING_CAPABILITY', `the ${name} grant for ${caller.node} cannot be parsed: ${grant.errors.join('; ')}`);
  }
  if (!grant.value[action].some((allowed) => covers(allowed, topic))) {
    throw new HubError(403, 'MISSING_CAPABILITY', `the ${name} grant for ${caller.node} does not allow ${action} on topic ${topic}`);
  }
}

/**
 * Whether the granted pattern admits everything `requested` can match. `requested` is a topic or,
 * for subscriptions, a pattern itself ('*' one segment, '**' the rest): a grant of "ci/**"
 * covers a subscription to "ci/*", a grant of "ci/build" does not.
 */
export function covers(granted: string, requested: string): boolean {
  const g = granted.split('/');
  const r = requested.split('/');
  for (let i = 0; i < g.length; i++) {
    if (g[i] === '**') return r.length > i;
    if (i >= r.length || r[i] === '**') return false;
    if (g[i] !== '*' && (r[i] === '*' || g[i] !== r[i])) return false;
  }
  return g.length === r.length;
}
