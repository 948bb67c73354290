import { parseWebhookCapability, patternCovers } from '@krkn/policy';
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
  if (!grant.value[action].some((allowed) => patternCovers(allowed, topic))) {
    throw new HubError(403, 'MISSING_CAPABILITY', `the ${name} grant for ${caller.node} does not allow ${action} on topic ${topic}`);
  }
}
