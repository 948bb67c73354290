import { classifySelector } from './model.js';
import type { Policy } from './model.js';

/**
 * A kind of node a path question is about. Tailscale gives every node exactly one owner kind: a tagged
 * node is owned by its tags (it has no user, whoever created it), an untagged node by its user. That is
 * why user and group selectors never match tagged nodes, and tag selectors never match user devices.
 */
export type Principal =
  { readonly kind: 'tag'; readonly name: string } | { readonly kind: 'user'; readonly name: string };

/** Whether a selector matched a principal, and if not, a hint worth telling a person (the non-obvious misses). */
export interface SelectorMatch {
  readonly matched: boolean;
  readonly hint?: string;
}

/** Members of `group` (lower-cased), or undefined when the policy does not define it. Groups cannot nest in Tailscale. */
export function groupMembers(policy: Policy, group: string): string[] | undefined {
  if (!Object.hasOwn(policy.groups, group)) return undefined;
  return (policy.groups[group] ?? []).map((m) => m.toLowerCase());
}

/**
 * Whether selector `raw` on the `side` of a rule selects principal `p`. For `autogroup:self` on the dst
 * side, `srcUser` is the source the rule is being evaluated for (self = "devices of the same user").
 * Addresses (IPs, CIDRs, hosts, ipsets) never match: resolving them needs the tailnet's live node list.
 */
export function matchSelector(policy: Policy, raw: string, p: Principal, srcUser?: Principal): SelectorMatch {
  switch (classifySelector(raw)) {
    case 'wildcard':
      return { matched: true };
    case 'tag':
      return p.kind === 'tag' ? { matched: p.name === raw } : { matched: false };
    case 'user':
      if (p.kind === 'user') return { matched: p.name.toLowerCase() === raw.toLowerCase() };
      return {
        matched: false,
        hint: `${raw} selects that user's untagged devices; a tagged node (${p.name}) has no user and never matches it`,
      };
    case 'group':
      return matchGroup(policy, raw, p);
    case 'autogroup':
      return matchAutogroup(raw, p, srcUser);
    default:
      return { matched: false };
  }
}

function matchGroup(policy: Policy, raw: string, p: Principal): SelectorMatch {
  if (p.kind === 'tag')
    return {
      matched: false,
      hint: `${raw} does not contain tagged nodes; a tagged node (${p.name}) never matches a group`,
    };
  const members = groupMembers(policy, raw);
  if (members === undefined) return { matched: false, hint: `${raw} is not defined in groups` };
  return { matched: members.includes(p.name.toLowerCase()) };
}

function matchAutogroup(raw: string, p: Principal, srcUser?: Principal): SelectorMatch {
  switch (raw) {
    case 'autogroup:danger-all':
      return { matched: true };
    case 'autogroup:tagged':
      return { matched: p.kind === 'tag' };
    case 'autogroup:member':
      if (p.kind === 'user') return { matched: true };
      return {
        matched: false,
        hint: `autogroup:member selects user-owned devices only; a tagged node (${p.name}) never matches it`,
      };
    case 'autogroup:self':
      if (p.kind === 'tag')
        return {
          matched: false,
          hint: `autogroup:self selects a user's own devices; a tagged node (${p.name}) never matches it`,
        };
      return { matched: srcUser?.kind === 'user' && srcUser.name.toLowerCase() === p.name.toLowerCase() };
    default:
      // Role autogroups (admin, owner, ...) depend on admin-console roles the policy file does not record.
      if (p.kind === 'user' && raw !== 'autogroup:internet') {
        return { matched: false, hint: `${raw} depends on roles outside the policy file, so it is not counted` };
      }
      return { matched: false };
  }
}

/** Whether any selector in `selectors` could select a node carrying `tag`. */
export function mayMatchTag(selectors: readonly string[], tag: string): boolean {
  return selectors.some((s) => s === tag || s === '*' || s === 'autogroup:tagged' || s === 'autogroup:danger-all');
}

/** The kinds of selector that only ever select user-owned (human) devices. */
export function isHumanSelector(raw: string): boolean {
  const kind = classifySelector(raw);
  return (
    kind === 'user' ||
    kind === 'group' ||
    raw === 'autogroup:member' ||
    raw === 'autogroup:self' ||
    raw === 'autogroup:shared'
  );
}

/**
 * Whether two selector lists could select a common node. Conservative (answers "yes" when unsure) because
 * it feeds warnings: users and groups overlap through membership, `autogroup:member` overlaps every user
 * selector, `autogroup:tagged` every tag, `*` everything; addresses overlap only when written identically.
 */
export function selectorsOverlap(policy: Policy, a: readonly string[], b: readonly string[]): boolean {
  return a.some((x) => b.some((y) => pairOverlaps(policy, x, y)));
}

function pairOverlaps(policy: Policy, x: string, y: string): boolean {
  if (x === y) return true;
  const all = new Set(['*', 'autogroup:danger-all']);
  if (all.has(x) || all.has(y)) return true;
  if (classifySelector(x) === 'tag' || classifySelector(y) === 'tag') {
    return x === 'autogroup:tagged' || y === 'autogroup:tagged';
  }
  if (!isHumanSelector(x) && !x.startsWith('autogroup:')) return false;
  if (!isHumanSelector(y) && !y.startsWith('autogroup:')) return false;
  const ux = usersOf(policy, x);
  const uy = usersOf(policy, y);
  // undefined = "any user" (autogroups), which overlaps every human selector.
  if (ux === undefined || uy === undefined)
    return (
      x !== 'autogroup:tagged' && y !== 'autogroup:tagged' && x !== 'autogroup:internet' && y !== 'autogroup:internet'
    );
  return ux.some((u) => uy.includes(u));
}

function usersOf(policy: Policy, raw: string): string[] | undefined {
  const kind = classifySelector(raw);
  if (kind === 'user') return [raw.toLowerCase()];
  if (kind === 'group') return groupMembers(policy, raw) ?? [];
  return undefined;
}
