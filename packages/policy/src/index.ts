/**
 * @krkn/policy — reads, lints and path-checks Tailscale tailnet policy files for krkn.
 *
 * ```ts
 * const policy = await loadPolicy('policy.hujson');          // or parsePolicy(text, 'policy.hujson')
 * for (const f of lint(policy, { krknTags: ['tag:krkn'] })) console.log(`${f.file}:${f.line}: ${f.message}`);
 * const r = checkPath(policy, { from: 'tag:krkn', to: 'group:dev', port: 8080 });
 * const cap = parseWebhookCapability(values);                 // krkns: the peer's app-capability values
 * if (cap.ok && topicAllowed(cap.value, 'publish', 'ci/build')) { ... }
 * ```
 */
export { PolicyError } from './errors.js';
export type { PolicyErrorCode, PolicyErrorLocation } from './errors.js';
export { parseHujson, jsonPointer, lineOf } from './hujson.js';
export type { HujsonDocument, JsonObject, JsonValue, Position } from './hujson.js';
export {
  parsePolicy,
  policyFromDocument,
  classifySelector,
  effectivePosture,
  policyLine,
  parsePorts,
  splitAliasPorts,
  KNOWN_AUTOGROUPS,
} from './model.js';
export type {
  AclDestination,
  AclRule,
  GrantRule,
  IpSpec,
  Policy,
  PolicyWarning,
  PortRange,
  Rule,
  SelectorKind,
} from './model.js';
export { loadPolicy } from './io.js';
export { lint, DEFAULT_KRKN_TAG } from './lint.js';
export type { Finding, LintOptions, LintRuleId, Severity } from './lint.js';
export { checkPath } from './check.js';
export type { CheckQuery, CheckResult, RuleRef } from './check.js';
export { DEFAULT_CAPABILITY_NAME, parseWebhookCapability, topicAllowed } from './capability.js';
export { patternCovers, topicMatches, topicError, topicPatternError, topicPatternsRegex } from './topic.js';
export { tagError } from './tag.js';
export type { CapabilityParseResult, EffectiveGrant, TopicAction } from './capability.js';
export { main } from './cli.js';
export type { CliIo, ExitCode, Writer } from './cli.js';
