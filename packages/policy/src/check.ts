/**
 * Path checking: "can node A open a connection to node B on port N, and if not, why not?"
 *
 * How Tailscale combines rules, which this module follows: every `acls` entry and every `grants` entry is
 * an allow rule (an ACL is equivalent to a grant with its ports moved into `ip`). When a policy has both
 * sections, *both* are evaluated and the result is the union of everything either allows. Neither section
 * can deny or narrow what the other allows, and rule order does not matter. (The Krkn guide says an
 * `acls` section "can block things even if grants allow them"; that is not how allow-only rules compose.
 * The real hazard is editing one section while the other still governs a path, which lint reports.)
 * With no rules at all, nothing is allowed.
 *
 * Posture: a rule's `srcPosture` (or, when it has none, `defaultSrcPosture`) is checked on the source
 * device. Tagged service nodes, krkn's embedded nodes in particular, cannot satisfy posture conditions
 * such as `node:tsAutoUpdate` or `node:tsReleaseTrack`, so for a tagged source such a rule never applies.
 */
import { PolicyError } from './errors.js';
import { classifySelector, effectivePosture } from './model.js';
import type { AclRule, GrantRule, Policy, PortRange, Rule } from './model.js';
import { groupMembers, matchSelector } from './match.js';
import type { Principal } from './match.js';

/** A path question for {@link checkPath}. */
export interface CheckQuery {
  /** `tag:x`, a user (`alice@example.com`) or `group:y` (meaning every member's untagged devices). */
  readonly from: string;
  /** Same forms as `from`. */
  readonly to: string;
  /** Destination port, 0–65535. */
  readonly port: number;
  /** Transport protocol; krkn speaks HTTP, so the default is `tcp`. */
  readonly proto?: 'tcp' | 'udp';
}

/** Identifies the rule that opened a path. */
export interface RuleRef {
  readonly kind: 'acl' | 'grant';
  /** Index within `acls` or `grants`. */
  readonly index: number;
  /** 1-based line in the policy file. */
  readonly line: number;
}

/** The answer of {@link checkPath}. */
export interface CheckResult {
  readonly allowed: boolean;
  /** The first rule that opens the path (only when allowed). */
  readonly rule?: RuleRef;
  /** Why: the rule used and its caveats when allowed; near misses and missing pieces when denied. */
  readonly reasons: string[];
}

/**
 * Decides whether `query.from` can reach `query.to` on `query.port` under `policy`, naming the rule that
 * allows it, or explaining the denial: rules that match source and destination but not the port, rules
 * held back by posture, tags without owners, group or user selectors that can never match a tagged node.
 *
 * A group endpoint expands to its members and is allowed only if every member is.
 *
 * @throws {@link PolicyError} `USAGE` for a port out of range or an endpoint that is not a tag, user or group.
 */
export function checkPath(policy: Policy, query: CheckQuery): CheckResult {
  if (!Number.isInteger(query.port) || query.port < 0 || query.port > 65535) {
    throw new PolicyError('USAGE', `port must be an integer 0-65535, got ${String(query.port)}`);
  }
  const from = expandEndpoint(policy, query.from);
  const to = expandEndpoint(policy, query.to);
  const problems = unique([...from.problems, ...to.problems]);
  const proto = query.proto ?? 'tcp';
  const multi = from.principals.length > 1 || to.principals.length > 1;
  const pairs = from.principals.flatMap((s) => to.principals.map((d) => evaluatePair(policy, s, d, query.port, proto)));
  const prefix = (p: PairResult): string => (multi ? `${p.src.name} -> ${p.dst.name}: ` : '');
  const allowedBy = pairs.find((p) => p.allowedBy)?.allowedBy;

  if (problems.length === 0 && pairs.length > 0 && pairs.every((p) => p.allowedBy)) {
    const reasons = pairs.flatMap((p) => [
      `${prefix(p)}${describe(p.allowedBy!)} allows it`,
      ...p.caveats.map((c) => prefix(p) + c),
    ]);
    return { allowed: true, ...(allowedBy ? { rule: ref(allowedBy) } : {}), reasons };
  }
  const reasons = [...problems];
  for (const p of pairs) {
    if (p.allowedBy && problems.length > 0)
      reasons.push(`${prefix(p)}${describe(p.allowedBy)} would allow it otherwise`);
    if (p.allowedBy) continue;
    reasons.push(...p.nearMisses.map((m) => prefix(p) + m));
    if (p.nearMisses.length === 0) reasons.push(`${prefix(p)}${noRuleReason(policy, p, query.port)}`);
    if (!connectedAtAll(policy, p.src, p.dst)) reasons.push(`${prefix(p)}${invisibleReason(p)}`);
  }
  return { allowed: false, reasons: unique(reasons) };
}

interface PairResult {
  readonly src: Principal;
  readonly dst: Principal;
  readonly allowedBy?: Rule;
  readonly caveats: string[];
  readonly nearMisses: string[];
}

interface Endpoint {
  readonly principals: Principal[];
  readonly problems: string[];
}

function expandEndpoint(policy: Policy, raw: string): Endpoint {
  const s = raw.trim();
  switch (classifySelector(s)) {
    case 'tag':
      // tagOwners decides who may apply a tag; a tag missing from it cannot be on any node.
      return {
        principals: [{ kind: 'tag', name: s }],
        problems: Object.hasOwn(policy.tagOwners, s) ? [] : [`${s} has no owner in tagOwners, so no node can hold it`],
      };
    case 'user':
      return { principals: [{ kind: 'user', name: s }], problems: [] };
    case 'group': {
      const members = groupMembers(policy, s);
      if (members === undefined) return { principals: [], problems: [`${s} is not defined in groups`] };
      if (members.length === 0) return { principals: [], problems: [`${s} has no members`] };
      return { principals: members.map((m) => ({ kind: 'user', name: m })), problems: [] };
    }
    default:
      throw new PolicyError(
        'USAGE',
        `cannot check a path for "${raw}": use tag:name, a user like alice@example.com, or group:name`,
      );
  }
}

function evaluatePair(policy: Policy, src: Principal, dst: Principal, port: number, proto: string): PairResult {
  const caveats: string[] = [];
  const nearMisses: string[] = [];
  let withCaveat: { rule: Rule; caveat: string } | undefined;
  for (const rule of [...policy.acls, ...policy.grants]) {
    const verdict = evaluateRule(policy, rule, src, dst, port, proto);
    if (verdict.kind === 'allow') return { src, dst, allowedBy: rule, caveats, nearMisses };
    if (verdict.kind === 'allow-with-caveat') withCaveat ??= { rule, caveat: verdict.message };
    if (verdict.kind === 'near-miss') nearMisses.push(verdict.message);
  }
  // Only rules with posture caveats open the path: report the first, with its caveat.
  if (withCaveat) return { src, dst, allowedBy: withCaveat.rule, caveats: [withCaveat.caveat], nearMisses };
  return { src, dst, caveats, nearMisses };
}

type Verdict =
  | { kind: 'allow' }
  | { kind: 'allow-with-caveat'; message: string }
  | { kind: 'near-miss'; message: string }
  | { kind: 'no-match' };

function evaluateRule(
  policy: Policy,
  rule: Rule,
  src: Principal,
  dst: Principal,
  port: number,
  proto: string,
): Verdict {
  const label = describe(rule);
  const s = matchList(policy, rule.src, src);
  const d =
    rule.kind === 'acl'
      ? aclDestinations(policy, rule, src, dst)
      : { ...matchList(policy, rule.dst, dst, src), ports: [] };
  const ports = rule.kind === 'acl' ? aclPorts(rule, d.ports, port, proto) : grantPorts(rule, port, proto);
  if (s.matched && d.matched && !ports.ok) {
    return { kind: 'near-miss', message: `${label} matches src and dst but not port ${port} (${ports.allows})` };
  }
  if (!s.matched || !d.matched) {
    // A miss is only worth telling when everything else about the rule fits.
    const hint = !s.matched && d.matched ? s.hint : s.matched && !d.matched ? d.hint : undefined;
    return hint && ports.ok ? { kind: 'near-miss', message: `${label}: ${hint}` } : { kind: 'no-match' };
  }
  return postureVerdict(policy, rule, src, label);
}

function postureVerdict(policy: Policy, rule: Rule, src: Principal, label: string): Verdict {
  const { postures, inherited } = effectivePosture(policy, rule);
  if (postures.length === 0) return { kind: 'allow' };
  const named = `posture ${postures.join(' or ')}${inherited ? ' (from defaultSrcPosture)' : ''}`;
  if (src.kind === 'tag') {
    return { kind: 'near-miss', message: `${label} requires ${named}, which service nodes cannot satisfy` };
  }
  return {
    kind: 'allow-with-caveat',
    message: `${label} requires ${named}: only source devices that satisfy it get this path (krkn's embedded nodes do not)`,
  };
}

interface ListMatch {
  readonly matched: boolean;
  readonly hint?: string;
}

function matchList(policy: Policy, selectors: readonly string[], p: Principal, srcUser?: Principal): ListMatch {
  let hint: string | undefined;
  for (const sel of selectors) {
    const m = matchSelector(policy, sel, p, srcUser);
    if (m.matched) return { matched: true };
    hint ??= m.hint;
  }
  return hint === undefined ? { matched: false } : { matched: false, hint };
}

function aclDestinations(
  policy: Policy,
  rule: AclRule,
  src: Principal,
  dst: Principal,
): ListMatch & { ports: PortRange[] } {
  const hits = rule.dst.filter((d) => matchSelector(policy, d.alias, dst, src).matched);
  if (hits.length > 0) return { matched: true, ports: hits.flatMap((h) => [...h.ports]) };
  return {
    ...matchList(
      policy,
      rule.dst.map((d) => d.alias),
      dst,
      src,
    ),
    ports: [],
  };
}

interface PortCheck {
  readonly ok: boolean;
  /** What the rule does allow, for the message: "allows 80", "opens no ports: ...". */
  readonly allows: string;
}

function aclPorts(rule: AclRule, ranges: readonly PortRange[], port: number, proto: string): PortCheck {
  // Without "proto" an ACL covers TCP, UDP and ICMP; with it, only that protocol.
  const protoOk = rule.proto === undefined || protoMatches(rule.proto, proto);
  const ok = protoOk && ranges.some((r) => inRange(r, port));
  const allowed =
    ranges.length > 0
      ? ranges.map(formatRange).join(',')
      : rule.dst.map((d) => d.ports.map(formatRange).join(',')).join(', ');
  return { ok, allows: `allows ${rule.proto ? `${rule.proto}:` : ''}${allowed}` };
}

function grantPorts(rule: GrantRule, port: number, proto: string): PortCheck {
  if (rule.ip === undefined)
    return {
      ok: false,
      allows: 'opens no ports: it grants only app capabilities, which need network access from another rule',
    };
  const ok = rule.ip.some((spec) => protoMatches(spec.proto, proto) && spec.ports.some((r) => inRange(r, port)));
  return { ok, allows: `allows ${rule.ip.map((s) => s.raw).join(', ')}` };
}

/** `*` (or a port-only entry) covers TCP and UDP; otherwise the name or IANA number must agree. */
function protoMatches(ruleProto: string, proto: string): boolean {
  const numbers: Record<string, string> = { tcp: '6', udp: '17' };
  return ruleProto === '*' || ruleProto === proto || ruleProto === numbers[proto];
}

function inRange(r: PortRange, port: number): boolean {
  return port >= r.first && port <= r.last;
}

function formatRange(r: PortRange): string {
  if (r.first === 0 && r.last === 65535) return '*';
  return r.first === r.last ? String(r.first) : `${r.first}-${r.last}`;
}

function noRuleReason(policy: Policy, p: PairResult, port: number): string {
  if (policy.acls.length === 0 && policy.grants.length === 0)
    return 'the policy has no acls or grants, so nothing is allowed';
  return `no acl or grant gives ${p.src.name} a path to ${p.dst.name} on port ${port}`;
}

function invisibleReason(p: PairResult): string {
  return `no rule connects ${p.src.name} and ${p.dst.name} in either direction on any port, so Tailscale leaves each out of the other's peer list: they look invisible to each other`;
}

/**
 * Whether any rule lets a reach b or b reach a, on any port (app-only grants count): Tailscale sends a
 * node only the peers it has some such rule with. Rules whose posture a tagged source cannot meet do not count.
 */
function connectedAtAll(policy: Policy, a: Principal, b: Principal): boolean {
  const connects = (rule: Rule, s: Principal, d: Principal): boolean => {
    const dsts = rule.kind === 'acl' ? rule.dst.map((x) => x.alias) : rule.dst;
    if (!matchList(policy, rule.src, s).matched || !matchList(policy, dsts, d, s).matched) return false;
    return s.kind === 'user' || effectivePosture(policy, rule).postures.length === 0;
  };
  return [...policy.acls, ...policy.grants].some((r) => connects(r, a, b) || connects(r, b, a));
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}

function describe(rule: Rule): string {
  return `${rule.kind} at line ${rule.line}`;
}

function ref(rule: Rule): RuleRef {
  return { kind: rule.kind, index: rule.index, line: rule.line };
}
