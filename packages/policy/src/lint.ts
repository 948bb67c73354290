/**
 * Lint rules for the policy failure modes in the Krkn guide: posture that service nodes cannot meet,
 * tags without owners, groups expected to match tagged nodes, acls and grants side by side, wide-open
 * rules, invisible krkn nodes, and krkn capability grants krkns cannot use.
 */
import { DEFAULT_CAPABILITY_NAME, parseWebhookCapability } from './capability.js';
import { jsonPointer } from './hujson.js';
import { KNOWN_AUTOGROUPS, classifySelector, effectivePosture, policyLine } from './model.js';
import type { GrantRule, Policy, Rule } from './model.js';
import { isHumanSelector, mayMatchTag, selectorsOverlap } from './match.js';

/** How bad a finding is; `error` makes `krkn-policy lint` exit 1. */
export type Severity = 'error' | 'warn' | 'info';

/** The stable ids of the lint rules (the package README lists each with its severity). */
export type LintRuleId =
  | 'default-src-posture'
  | 'posture-on-service-rule'
  | 'tag-without-owner'
  | 'acls-and-grants'
  | 'group-to-tag-no-return'
  | 'wide-open'
  | 'capability-priority-tie'
  | 'capability-invalid'
  | 'invisible-tag'
  | 'undefined-reference'
  | 'unknown-key';

/** One problem found by {@link lint}. */
export interface Finding {
  readonly rule: LintRuleId;
  readonly severity: Severity;
  /** The policy file name, so `file:line` can be printed. */
  readonly file: string;
  /** 1-based line the finding is about. */
  readonly line: number;
  readonly message: string;
  /** What to change, in one sentence. */
  readonly fix: string;
}

/** Options for {@link lint}. */
export interface LintOptions {
  /**
   * Tags krkn's nodes advertise (e.g. `["tag:krkn"]`). Each must be in tagOwners and have some rule.
   * When omitted or empty, the rules about paths to and from krkn (`group-to-tag-no-return`,
   * `posture-on-service-rule`) assume {@link DEFAULT_KRKN_TAG}; the ownership and visibility checks
   * apply only to tags given here, so a policy without krkn in it is not blamed for lacking it.
   */
  readonly krknTags?: readonly string[];
  /** The app-capability name krkns reads; default {@link DEFAULT_CAPABILITY_NAME}. */
  readonly capabilityName?: string;
}

/** The tag krkn's nodes use unless configured otherwise. */
export const DEFAULT_KRKN_TAG = 'tag:krkn';

/** Runs every lint rule over `policy`; findings are sorted by line. */
export function lint(policy: Policy, options: LintOptions = {}): Finding[] {
  const ctx: Ctx = { policy, options, findings: [] };
  for (const rule of RULES) rule(ctx);
  return ctx.findings.sort((a, b) => a.line - b.line);
}

interface Ctx {
  readonly policy: Policy;
  readonly options: LintOptions;
  readonly findings: Finding[];
}

type Emit = Omit<Finding, 'file'>;

function emit(ctx: Ctx, f: Emit): void {
  ctx.findings.push({ ...f, file: ctx.policy.file });
}

function allRules(policy: Policy): Rule[] {
  return [...policy.acls, ...policy.grants];
}

function dstAliases(rule: Rule): readonly string[] {
  return rule.kind === 'acl' ? rule.dst.map((d) => d.alias) : rule.dst;
}

function label(rule: Rule): string {
  return `${rule.kind} at line ${rule.line}`;
}

/** The tags krkn's nodes carry: as configured, else {@link DEFAULT_KRKN_TAG}. */
function krknTagsOrDefault(ctx: Ctx): readonly string[] {
  const tags = ctx.options.krknTags ?? [];
  return tags.length > 0 ? tags : [DEFAULT_KRKN_TAG];
}

/** Selectors that can select tagged (service) nodes, krkn's included. */
function tagSelectors(selectors: readonly string[]): string[] {
  return selectors.filter((s) => classifySelector(s) === 'tag' || s === 'autogroup:tagged');
}

/** The guide's first failure mode: a global posture default silently drops service nodes from the graph. */
function defaultSrcPosture(ctx: Ctx): void {
  const { policy } = ctx;
  const postures = policy.defaultSrcPosture ?? [];
  if (postures.length === 0) return;
  const inheriting = allRules(policy).filter((r) => effectivePosture(policy, r).inherited);
  const serviceSources = inheriting.filter((r) => r.src.some((s) => s === '*' || tagSelectors([s]).length > 0));
  // Error when a tagged source inherits it (that path can never open) or krkn's tags were named.
  const severe = serviceSources.length > 0 || (ctx.options.krknTags?.length ?? 0) > 0;
  const lines = serviceSources.map((r) => r.line).join(', ');
  emit(ctx, {
    rule: 'default-src-posture',
    severity: severe ? 'error' : 'warn',
    line: policyLine(policy, '/defaultSrcPosture'),
    message:
      `defaultSrcPosture applies ${postures.join(', ')} to every rule without its own srcPosture` +
      (lines
        ? ` (including the ${serviceSources.length === 1 ? 'rule at line' : 'rules at lines'} ${lines}, whose sources can be tagged nodes)`
        : '') +
      `; service nodes such as krkn's embedded nodes do not auto-update and have no release track, so they fail it and vanish from other nodes' peer lists`,
    fix: 'remove defaultSrcPosture and set "srcPosture" only on rules whose sources are human devices',
  });
}

/** Posture on a rule that involves tagged service nodes: as a source it can never pass; as a destination it blocks krknc. */
function postureOnServiceRule(ctx: Ctx): void {
  for (const rule of allRules(ctx.policy)) {
    const own = rule.srcPosture ?? [];
    if (own.length === 0) continue;
    const srcTags = tagSelectors(rule.src);
    const dstTags = tagSelectors(dstAliases(rule));
    if (srcTags.length === 0 && dstTags.length === 0) continue;
    const line = policyLine(ctx.policy, rule.pointer + '/srcPosture');
    if (srcTags.length > 0) {
      emit(ctx, {
        rule: 'posture-on-service-rule',
        severity: 'error',
        line,
        message: `${label(rule)} requires ${own.join(', ')} of its sources, which include tagged service nodes (${srcTags.join(', ')}); they can never satisfy posture, so the rule never applies to them`,
        fix: 'split the rule: keep srcPosture on a rule for human sources, and add a posture-free rule for the tagged sources',
      });
    } else if (dstTags.some((t) => krknTagsOrDefault(ctx).includes(t))) {
      emit(ctx, {
        rule: 'posture-on-service-rule',
        severity: 'warn',
        line,
        message: `${label(rule)} requires ${own.join(', ')} to reach krkn (${dstTags.join(', ')}); posture is checked on the source, and krknc's embedded node is a source that cannot satisfy it even on a human's machine`,
        fix: 'give krknc and other embedded nodes a posture-free rule to krkn (for example from a tag such as tag:krknc)',
      });
    } else {
      emit(ctx, {
        rule: 'posture-on-service-rule',
        severity: 'info',
        line,
        message: `${label(rule)} requires ${own.join(', ')} to reach tagged nodes (${dstTags.join(', ')}); fine for human sources, but an embedded (tsnet-style) node used as a client there cannot satisfy it`,
        fix: 'no change needed if only human devices use this path; otherwise add a posture-free rule for the embedded clients',
      });
    }
  }
}

/** Every tag used in rules (and every krkn tag) must be in tagOwners, or no node can hold it. */
function tagWithoutOwner(ctx: Ctx): void {
  const { policy } = ctx;
  const seen = new Set<string>();
  const check = (tag: string, line: number, where: string): void => {
    if (seen.has(tag) || Object.hasOwn(policy.tagOwners, tag)) return;
    seen.add(tag);
    emit(ctx, {
      rule: 'tag-without-owner',
      severity: 'error',
      line,
      message: `${tag} ${where} but is not in tagOwners, so no node can hold it and rules naming it match nothing`,
      fix: `add "${tag}": ["group:admins"] (or whoever may apply it) to tagOwners`,
    });
  };
  for (const rule of allRules(policy)) {
    const fields: Array<[string, readonly string[]]> = [
      ['src', rule.src],
      ['dst', dstAliases(rule)],
      ['via', rule.kind === 'grant' ? (rule.via ?? []) : []],
    ];
    for (const [field, list] of fields) {
      list.forEach((s, i) => {
        if (classifySelector(s) === 'tag')
          check(s, policyLine(policy, `${rule.pointer}/${field}/${i}`), `is used by ${label(rule)}`);
      });
    }
  }
  for (const tag of ctx.options.krknTags ?? [])
    check(tag, policyLine(policy, '/tagOwners'), 'is a tag krkn advertises');
}

/** Both sections evaluated together is a common source of "I fixed the grant but nothing changed". */
function aclsAndGrants(ctx: Ctx): void {
  const { policy } = ctx;
  if (policy.acls.length === 0 || policy.grants.length === 0) return;
  // Precise semantics: Tailscale allows the union of both sections; neither blocks the other (see check.ts).
  emit(ctx, {
    rule: 'acls-and-grants',
    severity: 'warn',
    line: policyLine(policy, '/acls'),
    message: `the policy has both acls (${policy.acls.length}) and grants (${policy.grants.length}); Tailscale evaluates both and allows the union, so a path closed in one section can stay open through the other, and editing one section changes nothing the other allows`,
    fix: 'move each acl into grants ({"src": [...], "dst": ["tag:x"], "ip": ["443"]} for "dst": ["tag:x:443"]) and delete the acls section',
  });
}

/**
 * Humans can reach krkn but krkn cannot reach them back: krkns delivers webhooks by dialling each
 * subscriber, and the human-side selectors of the forward rule never match krkn's tagged node.
 */
function groupToTagNoReturn(ctx: Ctx): void {
  const { policy } = ctx;
  const krknTags = krknTagsOrDefault(ctx);
  const rules = allRules(policy);
  for (const rule of rules) {
    const dsts = dstAliases(rule);
    const targets = dsts.filter((d) => krknTags.includes(d));
    if (targets.length === 0 || !rule.src.every(isHumanSelector) || !dsts.every((d) => classifySelector(d) === 'tag'))
      continue;
    const returns = rules.some(
      (r) => targets.some((t) => mayMatchTag(r.src, t)) && selectorsOverlap(policy, dstAliases(r), rule.src),
    );
    if (returns) continue;
    const who = rule.src.join(', ');
    emit(ctx, {
      rule: 'group-to-tag-no-return',
      severity: 'warn',
      line: rule.line,
      message: `${label(rule)} lets ${who} reach ${targets.join(', ')}, but no rule lets ${targets.join(', ')} reach ${who}: krkns delivers to subscribers by dialling them, and group and user selectors never match tagged nodes, so deliveries to these subscribers cannot connect`,
      fix: `add a grant {"src": ["${targets[0]}"], "dst": ${JSON.stringify(rule.src)}, "ip": ["tcp:<krknc listen port>"]}, or run subscribers under a tag and allow ${targets[0]} to reach that tag`,
    });
  }
}

/** `*` to `*`: the guide's temporary debugging rule, left in place. */
function wideOpen(ctx: Ctx): void {
  for (const rule of allRules(ctx.policy)) {
    if (!rule.src.includes('*') || !dstAliases(rule).includes('*')) continue;
    emit(ctx, {
      rule: 'wide-open',
      severity: 'warn',
      line: rule.line,
      message: `${label(rule)} allows every node to reach every node (src "*", dst "*"); fine as a temporary test that the policy graph is satisfiable, not for production`,
      fix: 'replace it with tag-scoped rules, e.g. {"src": ["tag:krkn"], "dst": ["tag:krkn"], "ip": ["*"]}',
    });
  }
}

interface CapGrant {
  readonly rule: GrantRule;
  readonly line: number;
  readonly priority: number;
}

/** krkn capability values krkns cannot parse (error), and equal priorities for overlapping grants (warn). */
function capabilities(ctx: Ctx): void {
  const name = ctx.options.capabilityName ?? DEFAULT_CAPABILITY_NAME;
  const valid: CapGrant[] = [];
  for (const rule of ctx.policy.grants) {
    const values = rule.app?.[name];
    if (values === undefined || !Object.hasOwn(rule.app ?? {}, name)) continue;
    const line = policyLine(ctx.policy, rule.pointer + '/app' + jsonPointer(name));
    const parsed = parseWebhookCapability(values);
    if (parsed.ok) {
      valid.push({ rule, line, priority: parsed.value.priority });
      continue;
    }
    emit(ctx, {
      rule: 'capability-invalid',
      severity: 'error',
      line,
      message: `${label(rule)}: krkns cannot use its "${name}" values: ${parsed.errors.join('; ')}`,
      fix: 'write values like {"publish": ["ci/*"], "subscribe": ["ci/**"], "priority": 100}: topic lists of "/"-separated segments where "*" is one whole segment and "**" ends a pattern',
    });
  }
  priorityTies(ctx, name, valid);
}

function priorityTies(ctx: Ctx, name: string, grants: readonly CapGrant[]): void {
  const { policy } = ctx;
  grants.forEach((a, i) => {
    for (const b of grants.slice(i + 1)) {
      if (a.priority !== b.priority) continue;
      if (!selectorsOverlap(policy, a.rule.src, b.rule.src) || !selectorsOverlap(policy, a.rule.dst, b.rule.dst))
        continue;
      emit(ctx, {
        rule: 'capability-priority-tie',
        severity: 'warn',
        line: b.line,
        message: `grants at lines ${a.rule.line} and ${b.rule.line} both give "${name}" at priority ${a.priority} to overlapping sources (${a.rule.src.join(', ')} / ${b.rule.src.join(', ')}); a node matching both gets the union of their topics, which is rarely what distinct grants were meant to say`,
        fix: 'give the grants different priorities (the higher one wins outright), or merge them into one grant',
      });
    }
  });
}

/** Krkn's tags with no rule at all: their nodes are sent to no one and look like they do not exist. */
function invisibleTag(ctx: Ctx): void {
  const rules = allRules(ctx.policy);
  for (const tag of ctx.options.krknTags ?? []) {
    if (rules.some((r) => mayMatchTag(r.src, tag) || mayMatchTag(dstAliases(r), tag))) continue;
    emit(ctx, {
      rule: 'invisible-tag',
      severity: 'error',
      line: policyLine(ctx.policy, ctx.policy.grants.length > 0 ? '/grants' : '/acls'),
      message: `no acl or grant mentions ${tag} (nor autogroup:tagged or "*"), so nodes with it have no path to anything and every other node leaves them out of its peer list`,
      fix: `add a grant for the paths krkn needs, e.g. {"src": ["${tag}"], "dst": ["${tag}"], "ip": ["*"]} and one from its clients to ${tag}`,
    });
  }
}

/** Names that must be defined elsewhere in the file; Tailscale rejects a policy that uses undefined ones. */
function undefinedReferences(ctx: Ctx): void {
  const { policy } = ctx;
  const report = (pointer: string, message: string, fix: string): void =>
    emit(ctx, { rule: 'undefined-reference', severity: 'error', line: policyLine(policy, pointer), message, fix });
  const selector = (raw: string, pointer: string): void => {
    const kind = classifySelector(raw);
    if (kind === 'group' && !Object.hasOwn(policy.groups, raw))
      report(pointer, `${raw} is not defined in groups`, `define "${raw}": [...] in groups, or fix the name`);
    if (kind === 'host' && !Object.hasOwn(policy.hosts, raw))
      report(
        pointer,
        `"${raw}" is neither a hosts alias nor a user, tag, group or address`,
        `define it in hosts, or write the user as name@domain`,
      );
    if (kind === 'autogroup' && !KNOWN_AUTOGROUPS.includes(raw))
      report(pointer, `${raw} is not an autogroup Tailscale knows`, `use one of ${KNOWN_AUTOGROUPS.join(', ')}`);
    if (kind === 'invalid')
      report(
        pointer,
        `"${raw}" is not a valid selector`,
        'use *, a user, group:, tag:, autogroup:, a hosts alias or an IP/CIDR',
      );
  };
  for (const rule of allRules(policy)) {
    rule.src.forEach((s, i) => selector(s, `${rule.pointer}/src/${i}`));
    dstAliases(rule).forEach((s, i) => selector(s, `${rule.pointer}/dst/${i}`));
    (rule.srcPosture ?? []).forEach((p, i) => posture(ctx, p, `${rule.pointer}/srcPosture/${i}`, report));
  }
  (policy.defaultSrcPosture ?? []).forEach((p, i) => posture(ctx, p, `/defaultSrcPosture/${i}`, report));
  for (const [tag, owners] of Object.entries(policy.tagOwners)) {
    owners.forEach((o, i) => {
      if (classifySelector(o) === 'group' && !Object.hasOwn(policy.groups, o)) {
        report(
          `/tagOwners${jsonPointer(tag, i)}`,
          `${o} (an owner of ${tag}) is not defined in groups`,
          `define "${o}" in groups, or fix the name`,
        );
      }
    });
  }
}

function posture(ctx: Ctx, name: string, pointer: string, report: (p: string, m: string, f: string) => void): void {
  if (!Object.hasOwn(ctx.policy.postures, name))
    report(pointer, `${name} is not defined in postures`, `define "${name}": [...] in postures, or fix the name`);
}

/** Unknown keys are usually typos (`grant` for `grants`) that silently drop a whole section. */
function unknownKeys(ctx: Ctx): void {
  for (const w of ctx.policy.warnings) {
    emit(ctx, {
      rule: 'unknown-key',
      severity: 'warn',
      line: w.line,
      message: w.message,
      fix: 'remove the key or correct its spelling',
    });
  }
}

const RULES: ReadonlyArray<(ctx: Ctx) => void> = [
  defaultSrcPosture,
  postureOnServiceRule,
  tagWithoutOwner,
  aclsAndGrants,
  groupToTagNoReturn,
  wideOpen,
  capabilities,
  invisibleTag,
  undefinedReferences,
  unknownKeys,
];
