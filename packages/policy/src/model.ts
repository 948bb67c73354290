import { PolicyError } from './errors.js';
import { jsonPointer, lineOf, parseHujson } from './hujson.js';
import type { HujsonDocument, JsonObject, JsonValue, Position } from './hujson.js';

/** An inclusive port range; a single port has `first === last`, "any port" is 0–65535. */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

/** One `dst` entry of an ACL, `alias:ports` split apart (`tag:krkn:443` → `tag:krkn`, 443). */
export interface AclDestination {
  readonly raw: string;
  readonly alias: string;
  readonly ports: readonly PortRange[];
}

/** One entry of a grant's `ip` list: a protocol (`*` for "any") and ports. */
export interface IpSpec {
  readonly raw: string;
  /** Lower-case protocol name or number as written; `*` when the entry names only ports (or is `*`). */
  readonly proto: string;
  readonly ports: readonly PortRange[];
}

interface RuleBase {
  /** Position in its section (`acls[index]` or `grants[index]`). */
  readonly index: number;
  /** JSON pointer of the rule, e.g. `/grants/3`; append `/src/0` and ask {@link policyLine} for finer lines. */
  readonly pointer: string;
  /** 1-based line of the rule's opening brace. */
  readonly line: number;
  readonly src: readonly string[];
  /** The rule's own `srcPosture`, if it has the key (see {@link effectivePosture} for the default). */
  readonly srcPosture?: readonly string[];
}

/** A legacy `acls` entry. Only `"action": "accept"` exists in Tailscale, so every ACL is an allow rule. */
export interface AclRule extends RuleBase {
  readonly kind: 'acl';
  readonly dst: readonly AclDestination[];
  /** Lower-case `proto` as written; absent means TCP, UDP and ICMP. */
  readonly proto?: string;
}

/** A `grants` entry: network access (`ip`) and/or application capabilities (`app`). */
export interface GrantRule extends RuleBase {
  readonly kind: 'grant';
  readonly dst: readonly string[];
  /** Absent when the grant has only `app` capabilities: such a grant opens no ports. */
  readonly ip?: readonly IpSpec[];
  /** Capability name → the list of values, as written. */
  readonly app?: Readonly<Record<string, readonly JsonValue[]>>;
  readonly via?: readonly string[];
}

/** Either kind of access rule. */
export type Rule = AclRule | GrantRule;

/** Something in the file that is not an error but deserves a mention (unknown keys, mostly). */
export interface PolicyWarning {
  readonly pointer: string;
  readonly line: number;
  readonly message: string;
}

/** A tailnet policy file, checked for shape and with every rule's line kept. */
export interface Policy {
  readonly file: string;
  /** `group:name` → member users. */
  readonly groups: Readonly<Record<string, readonly string[]>>;
  /** host alias → IP or CIDR. */
  readonly hosts: Readonly<Record<string, string>>;
  /** `tag:name` → owners. A tag absent here cannot be held by any node. */
  readonly tagOwners: Readonly<Record<string, readonly string[]>>;
  /** `posture:name` → conditions. */
  readonly postures: Readonly<Record<string, readonly string[]>>;
  /** Postures applied to every rule without its own `srcPosture`. */
  readonly defaultSrcPosture?: readonly string[];
  readonly acls: readonly AclRule[];
  readonly grants: readonly GrantRule[];
  /** Kept as written; krkn does not reason about Tailscale SSH. */
  readonly ssh: readonly JsonValue[];
  /** Kept as written. */
  readonly tests: readonly JsonValue[];
  /** Kept as written. */
  readonly autoApprovers?: JsonValue;
  readonly warnings: readonly PolicyWarning[];
  /** JSON pointer → position, from {@link parseHujson}. */
  readonly positions: ReadonlyMap<string, Position>;
}

/** What a `src`/`dst` selector names; see {@link classifySelector}. */
export type SelectorKind = 'wildcard' | 'user' | 'group' | 'tag' | 'autogroup' | 'ip' | 'ipset' | 'host' | 'invalid';

/**
 * Classifies a selector the way Tailscale reads it: `*`, `tag:x`, `group:x`, `autogroup:x`, `ipset:x`,
 * anything with `@` is a user (`alice@example.com`, also `alice@github`), an IPv4/IPv6 address or CIDR,
 * or else a `hosts` alias name.
 */
export function classifySelector(raw: string): SelectorKind {
  if (raw === '*') return 'wildcard';
  for (const kind of ['tag', 'group', 'autogroup', 'ipset'] as const) {
    if (raw.startsWith(kind + ':')) return raw.length > kind.length + 1 ? kind : 'invalid';
  }
  if (raw.includes('@')) return 'user';
  if (isIpOrCidr(raw)) return 'ip';
  if (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(raw)) return 'host';
  return 'invalid';
}

/** The autogroups Tailscale documents; anything else under `autogroup:` is a typo or a newer feature. */
export const KNOWN_AUTOGROUPS: readonly string[] = [
  'autogroup:member',
  'autogroup:tagged',
  'autogroup:self',
  'autogroup:internet',
  'autogroup:shared',
  'autogroup:nonroot',
  'autogroup:danger-all',
  'autogroup:owner',
  'autogroup:admin',
  'autogroup:it-admin',
  'autogroup:network-admin',
  'autogroup:billing-admin',
  'autogroup:auditor',
];

/**
 * The postures a rule actually requires: its own `srcPosture` if it lists any, else `defaultSrcPosture`.
 * Tailscale documents the default as *replacing*, not adding to, a rule's own posture. Whether an
 * explicit empty `srcPosture: []` opts a rule out of the default is not documented; we assume it does
 * not, which is the pessimistic reading for service nodes.
 */
export function effectivePosture(policy: Policy, rule: Rule): { postures: readonly string[]; inherited: boolean } {
  if (rule.srcPosture && rule.srcPosture.length > 0) return { postures: rule.srcPosture, inherited: false };
  return { postures: policy.defaultSrcPosture ?? [], inherited: true };
}

/** The line of a JSON pointer in the policy file (nearest enclosing value when the pointer is absent). */
export function policyLine(policy: Policy, pointer: string): number {
  return lineOf(policy.positions, pointer);
}

/**
 * Parses a tailnet policy file (HuJSON text) into a {@link Policy}.
 *
 * Sections krkn does not reason about (`ssh`, `tests`, `autoApprovers`, `nodeAttrs`, ...) are accepted and
 * kept or skipped; unknown top-level keys and unknown rule keys become {@link Policy.warnings}, not errors.
 * Keys starting with `#` are ignored silently (some policy editors store metadata there).
 *
 * @throws {@link PolicyError} `PARSE` for bad HuJSON, `SCHEMA` (message `file:line: ...`) for a wrong shape.
 */
export function parsePolicy(text: string, file = '<input>'): Policy {
  return policyFromDocument(parseHujson(text, file));
}

/** Like {@link parsePolicy}, for an already parsed {@link HujsonDocument}. */
export function policyFromDocument(doc: HujsonDocument): Policy {
  return new SchemaReader(doc).read();
}

const TOP_LEVEL_KEYS = new Set([
  'groups',
  'hosts',
  'tagOwners',
  'autoApprovers',
  'acls',
  'grants',
  'postures',
  'defaultSrcPosture',
  'ssh',
  'tests',
  'sshTests',
  'nodeAttrs',
  'ipsets',
  'derpMap',
  'disableIPv4',
  'randomizeClientPort',
  'OneCGNATRoute',
]);
const ACL_KEYS = new Set(['action', 'src', 'dst', 'proto', 'srcPosture', 'users', 'ports']);
const GRANT_KEYS = new Set(['src', 'dst', 'ip', 'app', 'srcPosture', 'via']);
const ANY_PORT: PortRange = { first: 0, last: 65535 };

class SchemaReader {
  private readonly warnings: PolicyWarning[] = [];

  constructor(private readonly doc: HujsonDocument) {}

  read(): Policy {
    const root = this.object(this.doc.value, '');
    this.warnUnknownKeys(root, '', TOP_LEVEL_KEYS, 'top-level key', 'Tailscale ignores or rejects it');
    const defaultSrcPosture =
      root.defaultSrcPosture === undefined ? undefined : this.strings(root.defaultSrcPosture, '/defaultSrcPosture');
    return {
      file: this.doc.file,
      groups: this.stringListMap(root.groups, '/groups', 'group:'),
      hosts: this.hosts(root.hosts),
      tagOwners: this.stringListMap(root.tagOwners, '/tagOwners', 'tag:'),
      postures: this.stringListMap(root.postures, '/postures', 'posture:'),
      ...(defaultSrcPosture ? { defaultSrcPosture } : {}),
      acls: this.array(root.acls, '/acls').map((v, i) => this.acl(v, i)),
      grants: this.array(root.grants, '/grants').map((v, i) => this.grant(v, i)),
      ssh: this.array(root.ssh, '/ssh'),
      tests: this.array(root.tests, '/tests'),
      ...(root.autoApprovers !== undefined ? { autoApprovers: root.autoApprovers } : {}),
      warnings: this.warnings,
      positions: this.doc.positions,
    };
  }

  private acl(value: JsonValue, index: number): AclRule {
    const pointer = jsonPointer('acls', index);
    const o = this.object(value, pointer);
    this.warnUnknownKeys(o, pointer, ACL_KEYS, 'ACL key', 'it is ignored');
    if (o.action !== 'accept') {
      this.fail(
        pointer + (o.action === undefined ? '' : '/action'),
        `${where(pointer)}: "action" must be "accept" (the only ACL action)`,
      );
    }
    // `users` and `ports` are the legacy spellings of `src` and `dst`.
    const srcKey = o.src !== undefined ? 'src' : 'users';
    const dstKey = o.dst !== undefined ? 'dst' : 'ports';
    const src = this.requiredStrings(o, srcKey, pointer);
    const dst = this.requiredStrings(o, dstKey, pointer).map((raw, i) =>
      this.aclDestination(raw, `${pointer}/${dstKey}/${i}`),
    );
    return {
      kind: 'acl',
      index,
      pointer,
      line: this.line(pointer),
      src,
      dst,
      ...this.optionalProto(o.proto, pointer + '/proto'),
      ...this.optionalPosture(o, pointer),
    };
  }

  private grant(value: JsonValue, index: number): GrantRule {
    const pointer = jsonPointer('grants', index);
    const o = this.object(value, pointer);
    this.warnUnknownKeys(o, pointer, GRANT_KEYS, 'grant key', 'it is ignored');
    if (o.src === undefined && (o.who !== undefined || o.to !== undefined)) {
      this.fail(pointer, `${where(pointer)}: grants use "src", "dst" and "ip"/"app", not "who"/"can"/"to"`);
    }
    const src = this.requiredStrings(o, 'src', pointer);
    const dst = this.requiredStrings(o, 'dst', pointer);
    if (o.ip === undefined && o.app === undefined)
      this.fail(pointer, `${where(pointer)}: a grant needs "ip", "app" or both`);
    const ip =
      o.ip === undefined
        ? undefined
        : this.strings(o.ip, pointer + '/ip').map((raw, i) => this.ipSpec(raw, `${pointer}/ip/${i}`));
    const app = o.app === undefined ? undefined : this.app(o.app, pointer + '/app');
    const via = o.via === undefined || o.via === null ? undefined : this.strings(o.via, pointer + '/via');
    return {
      kind: 'grant',
      index,
      pointer,
      line: this.line(pointer),
      src,
      dst,
      ...(ip ? { ip } : {}),
      ...(app ? { app } : {}),
      ...(via ? { via } : {}),
      ...this.optionalPosture(o, pointer),
    };
  }

  private aclDestination(raw: string, pointer: string): AclDestination {
    const split = splitAliasPorts(raw);
    if (typeof split === 'string') {
      // A bare alias ("tag:krkn", "alice@example.com") is the usual mistake: say so instead of "invalid port".
      const prefixed = ['tag', 'group', 'autogroup'].includes(classifySelector(raw));
      const colons = raw.split(':').length - 1;
      const needsPort = prefixed
        ? colons === 1
        : colons === 0 && ['user', 'wildcard', 'host'].includes(classifySelector(raw));
      this.fail(
        pointer,
        needsPort
          ? `ACL destination "${raw}" needs a port: write "${raw}:*" or "${raw}:443"`
          : `ACL destination "${raw}": ${split}`,
      );
    }
    return { raw, ...split };
  }

  private ipSpec(raw: string, pointer: string): IpSpec {
    if (raw === '*') return { raw, proto: '*', ports: [ANY_PORT] };
    const colon = raw.indexOf(':');
    const proto = colon < 0 ? '*' : raw.slice(0, colon).toLowerCase();
    if (colon >= 0 && !isProto(proto)) this.fail(pointer, `"ip" entry "${raw}": unknown protocol "${proto}"`);
    const ports = parsePorts(colon < 0 ? raw : raw.slice(colon + 1));
    if (typeof ports === 'string') this.fail(pointer, `"ip" entry "${raw}": ${ports}`);
    return { raw, proto, ports };
  }

  private app(value: JsonValue, pointer: string): Record<string, readonly JsonValue[]> {
    const o = this.object(value, pointer);
    const entries = Object.entries(o).map(([name, v]): [string, JsonValue[]] => {
      if (!Array.isArray(v)) this.fail(pointer + jsonPointer(name), `capability "${name}" must be an array of values`);
      return [name, v];
    });
    return Object.fromEntries(entries);
  }

  private optionalProto(value: JsonValue | undefined, pointer: string): { proto?: string } {
    if (value === undefined) return {};
    const proto =
      typeof value === 'number' ? String(value) : typeof value === 'string' ? value.toLowerCase() : undefined;
    if (proto === undefined || !isProto(proto))
      this.fail(pointer, `"proto" must be a protocol name or number 0-255, got ${JSON.stringify(value)}`);
    return { proto };
  }

  private optionalPosture(o: JsonObject, pointer: string): { srcPosture?: string[] } {
    return o.srcPosture === undefined ? {} : { srcPosture: this.strings(o.srcPosture, pointer + '/srcPosture') };
  }

  private hosts(value: JsonValue | undefined): Record<string, string> {
    const o = value === undefined ? {} : this.object(value, '/hosts');
    for (const [name, v] of Object.entries(o)) {
      if (typeof v !== 'string' || !isIpOrCidr(v))
        this.fail(jsonPointer('hosts', name), `host "${name}" must be an IP address or CIDR string`);
    }
    return Object.fromEntries(Object.entries(o)) as Record<string, string>;
  }

  /** `groups`, `tagOwners`, `postures`: an object whose keys carry a fixed prefix and whose values are string lists. */
  private stringListMap(value: JsonValue | undefined, pointer: string, prefix: string): Record<string, string[]> {
    const o = value === undefined ? {} : this.object(value, pointer);
    const entries = Object.entries(o).map(([key, v]): [string, string[]] => {
      const p = pointer + jsonPointer(key);
      if (!key.startsWith(prefix) || key.length === prefix.length)
        this.fail(p, `key "${key}" in ${pointer.slice(1)} must look like "${prefix}name"`);
      return [key, this.strings(v, p)];
    });
    return Object.fromEntries(entries);
  }

  private requiredStrings(o: JsonObject, key: string, pointer: string): string[] {
    if (o[key] === undefined) this.fail(pointer, `${where(pointer)}: missing "${key}"`);
    return this.strings(o[key], `${pointer}/${key}`);
  }

  private strings(value: JsonValue | undefined, pointer: string): string[] {
    const arr = this.array(value, pointer);
    arr.forEach((v, i) => {
      if (typeof v !== 'string') this.fail(`${pointer}/${i}`, `${where(pointer)}[${i}] must be a string`);
    });
    return (arr as string[]).map((s) => s.trim());
  }

  private array(value: JsonValue | undefined, pointer: string): JsonValue[] {
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) this.fail(pointer, `${where(pointer)} must be an array`);
    return value;
  }

  private object(value: JsonValue | undefined, pointer: string): JsonObject {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.fail(pointer, `${pointer === '' ? 'the policy' : where(pointer)} must be an object`);
    }
    return value;
  }

  private warnUnknownKeys(
    o: JsonObject,
    pointer: string,
    known: ReadonlySet<string>,
    what: string,
    effect: string,
  ): void {
    for (const key of Object.keys(o)) {
      if (known.has(key) || key.startsWith('#')) continue;
      const p = pointer + jsonPointer(key);
      this.warnings.push({
        pointer: p,
        line: this.line(p),
        message: `unknown ${what} "${key}"${pointer ? ` in ${where(pointer)}` : ''}; ${effect}`,
      });
    }
  }

  private line(pointer: string): number {
    return lineOf(this.doc.positions, pointer);
  }

  private fail(pointer: string, message: string): never {
    const line = this.line(pointer);
    throw new PolicyError('SCHEMA', `${this.doc.file}:${line}: ${message}`, { file: this.doc.file, line });
  }
}

/** `/grants/3/src` → `grants[3].src`, the way people talk about policy paths. */
function where(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((seg, i) => (/^\d+$/.test(seg) ? `[${seg}]` : i === 0 ? seg : `.${seg}`))
    .join('');
}

/**
 * Splits an ACL destination `alias:ports` at the last colon (`tag:krkn:443`), with RFC 3986 brackets for
 * IPv6 (`[fd7a::1]:80`). Returns an error message instead of throwing so the caller can word it.
 */
export function splitAliasPorts(raw: string): { alias: string; ports: PortRange[] } | string {
  let alias: string;
  let portPart: string;
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']:');
    if (close < 0) return 'bracketed IPv6 needs "]:ports"';
    alias = raw.slice(1, close);
    portPart = raw.slice(close + 2);
  } else {
    const colon = raw.lastIndexOf(':');
    if (colon <= 0) return 'missing ":ports"';
    alias = raw.slice(0, colon);
    portPart = raw.slice(colon + 1);
  }
  const ports = parsePorts(portPart);
  return typeof ports === 'string' ? ports : { alias, ports };
}

/** Parses `*`, `443`, `80,443`, `1000-2000` (and mixes); returns an error message on failure. */
export function parsePorts(spec: string): PortRange[] | string {
  if (spec === '*') return [ANY_PORT];
  const ranges: PortRange[] = [];
  for (const part of spec.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part.trim());
    if (!m) return `invalid port "${part}"`;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (last > 65535) return `port ${last} is out of range`;
    if (first > last) return `port range "${part}" is inverted`;
    ranges.push({ first, last });
  }
  return ranges;
}

function isProto(proto: string): boolean {
  if (/^\d{1,3}$/.test(proto)) return Number(proto) <= 255;
  return /^[a-z][a-z0-9-]*$/.test(proto);
}

function isIpOrCidr(s: string): boolean {
  const [addr, bits, ...rest] = s.split('/');
  if (addr === undefined || rest.length > 0) return false;
  if (bits !== undefined && !/^\d{1,3}$/.test(bits)) return false;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  if (v4) return v4.slice(1).every((o) => Number(o) <= 255) && (bits === undefined || Number(bits) <= 32);
  return addr.includes(':') && /^[0-9A-Fa-f:.]+$/.test(addr) && (bits === undefined || Number(bits) <= 128);
}
