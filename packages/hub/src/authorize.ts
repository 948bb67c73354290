import { parseWebhookCapability, patternCovers, type TopicAction } from '@krkn/policy';
import type { Caller } from './caller.js';
import { HubError } from './errors.js';

/** What authorisation needs from the hub's configuration. */
export interface AuthorizeConfig {
  /** Without it, the tailnet policy (who may reach krkns at all) is the only wall. */
  requireCapability: boolean;
  capabilityName: string;
}

/**
 * Checks that the caller may publish to, subscribe to, or read (pull stored events of) a topic. With
 * requireCapability, a peer needs an app-capability grant naming the topic; the admin socket
 * may do everything.
 */
export function authorize(config: AuthorizeConfig, caller: Caller, action: TopicAction, topic: string): void {
  if (caller.kind === 'admin' || !config.requireCapability) return;
  const name = config.capabilityName;
  const values = caller.capMap[name];
  if (!values || values.length === 0) {
    const example = `"app": {"${name}": [{"${action}": ["${topic}"]}]}`;
    const message = `${caller.node} has no grant of the app capability ${name}; add a grant with ${example}`;
    throw new HubError('MISSING_CAPABILITY', `${message} to the tailnet policy`);
  }
  const grant = parseWebhookCapability(values);
  if (!grant.ok) {
    const message = `the ${name} grant for ${caller.node} cannot be parsed: ${grant.errors.join('; ')}`;
    throw new HubError('MISSING_CAPABILITY', message);
  }
  if (!grant.value[action].some((allowed) => patternCovers(allowed, topic))) {
    const message = `the ${name} grant for ${caller.node} does not allow ${action} on topic ${topic}`;
    throw new HubError('MISSING_CAPABILITY', message);
  }
}

/** Fails (MISSING_CAPABILITY) unless the caller may read stored events of `topic` (the read right). */
export function authorizeRead(config: AuthorizeConfig, caller: Caller, topic: string): void {
  authorize(config, caller, 'read', topic);
}

/**
 * Fails (MISSING_CAPABILITY) unless the caller may read the events of at least one topic: the
 * gate of the web inspector, before it lists anything.
 */
export function authorizeReadSome(config: AuthorizeConfig, caller: Caller): void {
  if (caller.kind === 'admin' || !config.requireCapability) return;
  const grant = parseWebhookCapability(caller.capMap[config.capabilityName] ?? []);
  if (!grant.ok || grant.value.read.length === 0) authorizeRead(config, caller, '**');
}

/**
 * The topic patterns whose stored events the caller may read: every topic for the admin socket and in
 * open mode, else its grant's `read` list (none without a usable grant). Listings filter by it in the query.
 */
export function readablePatterns(config: AuthorizeConfig, caller: Caller): 'every topic' | readonly string[] {
  if (caller.kind === 'admin' || !config.requireCapability) return 'every topic';
  const grant = parseWebhookCapability(caller.capMap[config.capabilityName] ?? []);
  return grant.ok ? grant.value.read : [];
}

/** Whether the caller may read stored events of `topic` (the read right). */
export function mayRead(config: AuthorizeConfig, caller: Caller, topic: string): boolean {
  try {
    authorizeRead(config, caller, topic);
    return true;
  } catch (err) {
    if (err instanceof HubError) return false;
    throw err;
  }
}

/**
 * The authorisation mode and what any peer may do in it, in one line: krkns logs it at start and
 * `doctor` reports it.
 */
export function authorizationSummary(config: AuthorizeConfig): string {
  const always = 'credential headers are never returned; a peer redelivers only to its own subscriptions';
  if (!config.requireCapability) {
    return (
      'open mode (--require-capability off): any peer the tailnet policy lets reach krkns may publish, ' +
      `subscribe and read on every topic; ${always}`
    );
  }
  return (
    `capability mode (${config.capabilityName}): a peer may publish, subscribe and read only the topics ` +
    `its grant lists for each, and nothing without a grant; ${always}`
  );
}
