/**
 * krkn's application capability: which webhook topics a peer may publish to, subscribe to, and read
 * (list stored events and fetch their headers and bodies through the API).
 *
 * A tailnet policy grants it like any app capability:
 *
 * ```hujson
 * { "src": ["group:dev"], "dst": ["tag:krkn"], "ip": ["443"],
 *   "app": { "krkn.dev/cap/webhooks": [{ "publish": ["ci/*"], "subscribe": ["ci/**"], "read": ["ci/**"] }] } }
 * ```
 *
 * The topics and patterns it lists follow the grammar in topic.ts.
 */

import { topicError, topicMatches, topicPatternError } from './topic.js';

/** The capability name krkns looks for unless configured otherwise. */
export const DEFAULT_CAPABILITY_NAME = 'krkn.dev/cap/webhooks';

/**
 * What a peer may do with a topic. `subscribe` gets events pushed to the subscriber's own address;
 * `read` pulls stored events (and their bodies) from the API, so it is granted on its own.
 */
export type TopicAction = 'publish' | 'subscribe' | 'read';

/** The capability a peer effectively holds after priorities are applied. */
export interface EffectiveGrant {
  /** The priority that won (0 when no value set one). */
  readonly priority: number;
  /** Topic patterns the peer may publish to. */
  readonly publish: readonly string[];
  /** Topic patterns the peer may subscribe to. */
  readonly subscribe: readonly string[];
  /** Topic patterns whose stored events the peer may list and read. */
  readonly read: readonly string[];
}

/** The result of {@link parseWebhookCapability}: the effective grant, or every problem found. */
export type CapabilityParseResult = { ok: true; value: EffectiveGrant } | { ok: false; errors: string[] };

const topicActions: readonly TopicAction[] = ['publish', 'subscribe', 'read'];
const VALUE_KEYS = new Set<string>([...topicActions, 'priority']);

/**
 * Turns the capability values a peer holds (the list Tailscale hands the destination, one entry per
 * matching grant value) into one {@link EffectiveGrant}.
 *
 * The values with the highest `priority` win (a value without one has priority 0); values tied at that
 * priority are merged, their topic lists united. Lower-priority values are ignored entirely, so a narrow
 * high-priority value can restrict someone a broad low-priority one would admit. Any invalid value makes
 * the whole result invalid (fail closed): unknown keys, non-array or non-string topics, empty topics,
 * bad patterns, or a priority that is not an integer. An empty list yields an empty grant (allows nothing).
 */
export function parseWebhookCapability(values: readonly unknown[]): CapabilityParseResult {
  const errors: string[] = [];
  const parsed = values.map((v, i) => parseValue(v, `values[${i}]`, errors));
  if (errors.length > 0) return { ok: false, errors };
  const valid = parsed.filter((p): p is EffectiveGrant => p !== undefined);
  const top = valid.reduce((max, p) => Math.max(max, p.priority), -Infinity);
  const winners = valid.filter((p) => p.priority === top);
  return {
    ok: true,
    value: {
      priority: winners.length > 0 ? top : 0,
      publish: unique(winners.flatMap((w) => w.publish)),
      subscribe: unique(winners.flatMap((w) => w.subscribe)),
      read: unique(winners.flatMap((w) => w.read)),
    },
  };
}

/** Whether `grant` lets its holder `action` the concrete `topic`. An invalid topic is never allowed. */
export function topicAllowed(grant: EffectiveGrant, action: TopicAction, topic: string): boolean {
  if (topicError(topic) !== undefined) return false;
  return grant[action].some((pattern) => topicMatches(pattern, topic));
}

function parseValue(v: unknown, where: string, errors: string[]): EffectiveGrant | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    errors.push(`${where}: must be an object like {"publish": ["ci/*"], "subscribe": ["ci/*"], "priority": 100}`);
    return undefined;
  }
  const o = v as Record<string, unknown>;
  const before = errors.length;
  for (const key of Object.keys(o)) {
    if (!VALUE_KEYS.has(key)) errors.push(`${where}: unknown key "${key}" (allowed: ${[...VALUE_KEYS].join(', ')})`);
  }
  const priority = o.priority === undefined ? 0 : o.priority;
  if (typeof priority !== 'number' || !Number.isSafeInteger(priority)) {
    errors.push(`${where}.priority: must be an integer, got ${JSON.stringify(priority)}`);
  }
  const publish = patterns(o.publish, `${where}.publish`, errors);
  const subscribe = patterns(o.subscribe, `${where}.subscribe`, errors);
  const read = patterns(o.read, `${where}.read`, errors);
  if (errors.length > before) return undefined;
  return { priority: priority as number, publish, subscribe, read };
}

function patterns(list: unknown, where: string, errors: string[]): string[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) {
    errors.push(`${where}: must be an array of topic patterns`);
    return [];
  }
  list.forEach((p, i) => {
    if (typeof p !== 'string') errors.push(`${where}[${i}]: must be a string, got ${JSON.stringify(p)}`);
    else {
      const err = topicPatternError(p);
      if (err !== undefined) errors.push(`${where}[${i}]: ${err}`);
    }
  });
  return list.filter((p): p is string => typeof p === 'string');
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}
