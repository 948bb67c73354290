import { describe, expect, it } from 'vitest';
import {
  PolicyError,
  classifySelector,
  effectivePosture,
  parsePolicy,
  parsePorts,
  splitAliasPorts,
} from '@krkn/policy';
import { fixture, policy } from './helpers.js';

function schemaError(text: string): PolicyError {
  try {
    parsePolicy(text, 'p.hujson');
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a schema error');
}

describe('parsePolicy', () => {
  it('reads the ACL sample of seed 002', () => {
    const p = fixture('002-acl-sample.hujson');
    expect(p.acls).toHaveLength(2);
    expect(p.acls[0]).toMatchObject({
      kind: 'acl',
      index: 0,
      line: 3,
      src: ['group:dev'],
      dst: [
        { raw: 'tag:api:443', alias: 'tag:api', ports: [{ first: 443, last: 443 }] },
        { raw: 'tag:db:5432', alias: 'tag:db', ports: [{ first: 5432, last: 5432 }] },
      ],
    });
    expect(p.groups['group:dev']).toEqual(['alice@example.com', 'bob@example.com']);
    expect(Object.keys(p.tagOwners)).toEqual(['tag:api', 'tag:db', 'tag:ci']);
    expect(p.grants).toEqual([]);
  });

  it('reads grants with ip forms, app capabilities, posture and via', () => {
    const p = policy(`{
      "grants": [
        { "src": ["*"], "dst": ["tag:a"], "ip": ["*", "443", "tcp:80", "udp:53", "1000-2000", "icmp:*", "6:22,25"],
          "srcPosture": ["posture:x"], "via": ["tag:exit"] },
        { "src": ["group:g"], "dst": ["tag:a"], "app": { "krkn.dev/cap/webhooks": [{ "publish": ["a"] }] } },
      ],
    }`);
    expect(p.grants[0]?.ip).toEqual([
      { raw: '*', proto: '*', ports: [{ first: 0, last: 65535 }] },
      { raw: '443', proto: '*', ports: [{ first: 443, last: 443 }] },
      { raw: 'tcp:80', proto: 'tcp', ports: [{ first: 80, last: 80 }] },
      { raw: 'udp:53', proto: 'udp', ports: [{ first: 53, last: 53 }] },
      { raw: '1000-2000', proto: '*', ports: [{ first: 1000, last: 2000 }] },
      { raw: 'icmp:*', proto: 'icmp', ports: [{ first: 0, last: 65535 }] },
      {
        raw: '6:22,25',
        proto: '6',
        ports: [
          { first: 22, last: 22 },
          { first: 25, last: 25 },
        ],
      },
    ]);
    expect(p.grants[0]).toMatchObject({ srcPosture: ['posture:x'], via: ['tag:exit'], line: 3 });
    expect(p.grants[1]?.ip).toBeUndefined();
    expect(p.grants[1]?.app).toEqual({ 'krkn.dev/cap/webhooks': [{ publish: ['a'] }] });
  });

  it('accepts the legacy users/ports spellings of ACL src/dst and a proto', () => {
    const p = policy('{"acls": [{"action": "accept", "users": ["a@b.c"], "ports": ["tag:x:*"], "proto": "TCP"}]}');
    expect(p.acls[0]).toMatchObject({ src: ['a@b.c'], dst: [{ alias: 'tag:x' }], proto: 'tcp' });
  });

  it('keeps ssh, tests and autoApprovers without reasoning about them', () => {
    const p = policy(
      '{"ssh": [{"action": "check", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"]}], "tests": [{"src": "a@b.c", "accept": ["tag:x:443"]}], "autoApprovers": {"routes": {}}}',
    );
    expect(p.ssh).toHaveLength(1);
    expect(p.tests).toHaveLength(1);
    expect(p.autoApprovers).toEqual({ routes: {} });
  });

  it('turns unknown keys into warnings with lines, and ignores #-keys', () => {
    const p = policy(
      '{\n"grant": [],\n"#meta": 1,\n"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"],\n "comment": "x", "#id": 2}]\n}',
    );
    expect(p.warnings).toEqual([
      { pointer: '/grant', line: 2, message: 'unknown top-level key "grant"; Tailscale ignores or rejects it' },
      { pointer: '/grants/0/comment', line: 5, message: 'unknown grant key "comment" in grants[0]; it is ignored' },
    ]);
  });

  it('rejects the illustrative who/can/to grants of seed 002 with a pointed message', () => {
    const err = (() => {
      try {
        fixture('002-illustrative-grants.hujson');
      } catch (e) {
        return e as PolicyError;
      }
      throw new Error('expected an error');
    })();
    expect(err.code).toBe('SCHEMA');
    expect(err.message).toBe(
      '002-illustrative-grants.hujson:3: grants[0]: grants use "src", "dst" and "ip"/"app", not "who"/"can"/"to"',
    );
  });

  it.each([
    ['[]', 1, 'the policy must be an object'],
    ['{\n"acls": {}\n}', 2, 'acls must be an array'],
    [
      '{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}',
      1,
      'acls[0]: "action" must be "accept" (the only ACL action)',
    ],
    [
      '{"acls": [\n{"action": "accept", "src": ["*"],\n "dst": ["tag:krkn"]}]}',
      3,
      'ACL destination "tag:krkn" needs a port: write "tag:krkn:*" or "tag:krkn:443"',
    ],
    [
      '{"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:x:99999"]}]}',
      1,
      'ACL destination "tag:x:99999": port 99999 is out of range',
    ],
    ['{"grants": [\n{"src": ["*"], "dst": ["*"]}]}', 2, 'grants[0]: a grant needs "ip", "app" or both'],
    ['{"grants": [{"dst": ["*"], "ip": ["*"]}]}', 1, 'grants[0]: missing "src"'],
    ['{"grants": [{"src": ["*", 3], "dst": ["*"], "ip": ["*"]}]}', 1, 'grants[0].src[1] must be a string'],
    [
      '{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["tcp:80-20"]}]}',
      1,
      '"ip" entry "tcp:80-20": port range "80-20" is inverted',
    ],
    [
      '{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["t c p:80"]}]}',
      1,
      '"ip" entry "t c p:80": unknown protocol "t c p"',
    ],
    ['{"grants": [{"src": ["*"], "dst": ["*"], "app": {"x": {}}}]}', 1, 'capability "x" must be an array of values'],
    ['{"groups": {"admins": ["a@b.c"]}}', 1, 'key "admins" in groups must look like "group:name"'],
    ['{"tagOwners": {"tag:x": "a@b.c"}}', 1, 'tagOwners.tag:x must be an array'],
    ['{"hosts": {"db": "not-an-ip"}}', 1, 'host "db" must be an IP address or CIDR string'],
  ])('schema error for %j', (text, line, message) => {
    const err = schemaError(text);
    expect(err.code).toBe('SCHEMA');
    expect(err.message).toBe(`p.hujson:${line}: ${message}`);
  });
});

describe('selectors and ports', () => {
  it.each([
    ['*', 'wildcard'],
    ['alice@example.com', 'user'],
    ['alice@github', 'user'],
    ['group:dev', 'group'],
    ['tag:krkn', 'tag'],
    ['autogroup:member', 'autogroup'],
    ['ipset:office', 'ipset'],
    ['100.64.0.1', 'ip'],
    ['10.0.0.0/8', 'ip'],
    ['fd7a:115c:a1e0::1', 'ip'],
    ['my-server', 'host'],
    ['tag:', 'invalid'],
    ['a b', 'invalid'],
  ])('classifies %s as %s', (raw, kind) => {
    expect(classifySelector(raw)).toBe(kind);
  });

  it('parses port specs', () => {
    expect(parsePorts('*')).toEqual([{ first: 0, last: 65535 }]);
    expect(parsePorts('22,80-81')).toEqual([
      { first: 22, last: 22 },
      { first: 80, last: 81 },
    ]);
    expect(parsePorts('http')).toBe('invalid port "http"');
  });

  it('splits ACL destinations at the last colon, with brackets for IPv6', () => {
    expect(splitAliasPorts('tag:krkn:443')).toEqual({ alias: 'tag:krkn', ports: [{ first: 443, last: 443 }] });
    expect(splitAliasPorts('*:*')).toEqual({ alias: '*', ports: [{ first: 0, last: 65535 }] });
    expect(splitAliasPorts('[fd7a::1]:80')).toEqual({ alias: 'fd7a::1', ports: [{ first: 80, last: 80 }] });
    expect(splitAliasPorts('nohost')).toBe('missing ":ports"');
  });
});

describe('effectivePosture', () => {
  it('uses the rule posture when set, else defaultSrcPosture (replacing, not adding)', () => {
    const p = policy(`{"postures": {"posture:a": [], "posture:b": []}, "defaultSrcPosture": ["posture:a"],
      "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"], "srcPosture": ["posture:b"]}, {"src": ["*"], "dst": ["*"], "ip": ["*"]}]}`);
    expect(effectivePosture(p, p.grants[0]!)).toEqual({ postures: ['posture:b'], inherited: false });
    expect(effectivePosture(p, p.grants[1]!)).toEqual({ postures: ['posture:a'], inherited: true });
  });
});
