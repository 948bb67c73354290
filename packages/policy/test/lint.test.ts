import { describe, expect, it } from 'vitest';
import { lint } from '@krkn/policy';
import type { Finding, LintOptions, LintRuleId, Policy } from '@krkn/policy';
import { fixture, policy } from './helpers.js';

function findings(p: Policy, rule: LintRuleId, options?: LintOptions): Finding[] {
  return lint(p, options).filter((f) => f.rule === rule);
}

const KRKN = { krknTags: ['tag:krkn'] };

describe('lint: clean policies', () => {
  it.each(['000-service-fabric.hujson', '000-human-posture-ok.hujson', '004-krkn-priority-hierarchy.hujson'])(
    '%s has no findings',
    (name) => {
      expect(lint(fixture(name), KRKN)).toEqual([]);
    },
  );

  it('returns findings sorted by line, each with file, line, message and fix', () => {
    const all = lint(fixture('000-posture-on-service.hujson'), KRKN);
    expect(all.map((f) => f.line)).toEqual([...all.map((f) => f.line)].sort((a, b) => a - b));
    for (const f of all) {
      expect(f.file).toBe('000-posture-on-service.hujson');
      expect(f.message.length).toBeGreaterThan(20);
      expect(f.fix.length).toBeGreaterThan(10);
    }
  });
});

describe('default-src-posture', () => {
  it('is an error when tagged sources inherit it (seed 000)', () => {
    const [f, ...rest] = findings(fixture('000-default-src-posture.hujson'), 'default-src-posture');
    expect(rest).toEqual([]);
    expect(f).toMatchObject({ severity: 'error', line: 17, file: '000-default-src-posture.hujson' });
    expect(f?.message).toContain('defaultSrcPosture applies posture:human');
    expect(f?.message).toContain('rule at line 19');
    expect(f?.message).toContain('do not auto-update and have no release track');
  });

  it('is a warning when only human rules inherit it and no krkn tag is given', () => {
    const p = policy(`{"groups": {"group:dev": ["a@b.c"]}, "postures": {"posture:human": []},
      "defaultSrcPosture": ["posture:human"], "grants": [{"src": ["group:dev"], "dst": ["group:dev"], "ip": ["*"]}]}`);
    expect(findings(p, 'default-src-posture').map((f) => f.severity)).toEqual(['warn']);
    expect(findings(p, 'default-src-posture', KRKN).map((f) => f.severity)).toEqual(['error']);
  });

  it('is silent without defaultSrcPosture', () => {
    expect(findings(fixture('000-posture-on-service.hujson'), 'default-src-posture', KRKN)).toEqual([]);
  });
});

describe('posture-on-service-rule', () => {
  const all = findings(fixture('000-posture-on-service.hujson'), 'posture-on-service-rule', KRKN);

  it('is an error when the sources are tagged service nodes', () => {
    expect(all[0]).toMatchObject({ severity: 'error', line: 23 });
    expect(all[0]?.message).toContain(
      'grant at line 19 requires posture:human of its sources, which include tagged service nodes (tag:krkn)',
    );
  });

  it('is a warning when the destination is krkn (krknc is an embedded source)', () => {
    expect(all[1]).toMatchObject({ severity: 'warn', line: 29 });
    expect(all[1]?.message).toContain("krknc's embedded node");
  });

  it('is only info for human rules to other tagged nodes', () => {
    expect(all[2]).toMatchObject({ severity: 'info', line: 35 });
    expect(all).toHaveLength(3);
  });

  it('is silent for posture on human-to-human rules (seed 000 correct pattern)', () => {
    expect(findings(fixture('000-human-posture-ok.hujson'), 'posture-on-service-rule', KRKN)).toEqual([]);
  });

  it('also sees autogroup:tagged sources', () => {
    const p = policy(
      `{"postures": {"posture:p": []}, "grants": [{"src": ["autogroup:tagged"], "dst": ["*"], "ip": ["*"], "srcPosture": ["posture:p"]}]}`,
    );
    expect(findings(p, 'posture-on-service-rule').map((f) => f.severity)).toEqual(['error']);
  });
});

describe('tag-without-owner', () => {
  it('is an error for a tag used in a rule but missing from tagOwners (seed 000)', () => {
    const f = findings(fixture('000-missing-tagowner.hujson'), 'tag-without-owner', KRKN);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'error', line: 6 });
    expect(f[0]?.message).toBe(
      'tag:krkn is used by grant at line 5 but is not in tagOwners, so no node can hold it and rules naming it match nothing',
    );
  });

  it('checks ACL destinations and the tags krkn advertises', () => {
    const p = fixture('002-acl-sample.hujson');
    expect(findings(p, 'tag-without-owner')).toEqual([]);
    const f = findings(p, 'tag-without-owner', { krknTags: ['tag:krkn'] });
    expect(f.map((x) => x.message)).toEqual([
      'tag:krkn is a tag krkn advertises but is not in tagOwners, so no node can hold it and rules naming it match nothing',
    ]);
    const q = policy('{"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:api:443"]}]}');
    expect(findings(q, 'tag-without-owner')[0]?.message).toMatch(/^tag:api is used by acl at line 1/);
  });

  it('is silent when every tag is owned', () => {
    expect(findings(fixture('000-service-fabric.hujson'), 'tag-without-owner', KRKN)).toEqual([]);
  });
});

describe('acls-and-grants', () => {
  it('warns when both sections have rules, and explains the union', () => {
    const f = findings(fixture('000-acls-and-grants.hujson'), 'acls-and-grants');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'warn', line: 11 });
    expect(f[0]?.message).toContain('evaluates both and allows the union');
  });

  it('is silent for grants only or acls only', () => {
    expect(findings(fixture('000-service-fabric.hujson'), 'acls-and-grants')).toEqual([]);
    expect(findings(fixture('002-acl-sample.hujson'), 'acls-and-grants')).toEqual([]);
    expect(
      findings(policy('{"acls": [], "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]}'), 'acls-and-grants'),
    ).toEqual([]);
  });
});

describe('group-to-tag-no-return', () => {
  it('warns when humans reach krkn but krkn cannot reach them (seed 000 group:admins)', () => {
    const f = findings(fixture('000-group-admins.hujson'), 'group-to-tag-no-return');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'warn', line: 13 });
    expect(f[0]?.message).toContain('group and user selectors never match tagged nodes');
    expect(f[0]?.fix).toContain('{"src": ["tag:krkn"], "dst": ["group:admins"]');
  });

  it('is silent when a rule gives krkn the reverse path', () => {
    expect(findings(fixture('004-krkn-priority-hierarchy.hujson'), 'group-to-tag-no-return')).toEqual([]);
    // The reverse rule may name a member rather than the group, or use "*".
    const p = policy(`{"groups": {"group:a": ["x@y.z"]}, "tagOwners": {"tag:krkn": []}, "grants": [
      {"src": ["group:a"], "dst": ["tag:krkn"], "ip": ["443"]},
      {"src": ["autogroup:tagged"], "dst": ["x@y.z"], "ip": ["8080"]}]}`);
    expect(findings(p, 'group-to-tag-no-return')).toEqual([]);
  });

  it('only looks at krkn tags (tag:krkn unless told otherwise)', () => {
    const p = fixture('002-acl-sample.hujson');
    expect(findings(p, 'group-to-tag-no-return')).toEqual([]);
    expect(findings(p, 'group-to-tag-no-return', { krknTags: ['tag:api'] }).map((f) => f.line)).toEqual([3]);
  });
});

describe('wide-open', () => {
  it('warns on src * to dst * (seed 000 temporary rule)', () => {
    const f = findings(fixture('000-wide-open.hujson'), 'wide-open');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'warn', line: 5 });
    expect(f[0]?.message).toContain('not for production');
  });

  it('sees ACL *:* too, and not a * source with a scoped destination', () => {
    expect(
      findings(policy('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'), 'wide-open'),
    ).toHaveLength(1);
    expect(
      findings(
        policy('{"tagOwners": {"tag:x": []}, "grants": [{"src": ["*"], "dst": ["tag:x"], "ip": ["*"]}]}'),
        'wide-open',
      ),
    ).toEqual([]);
  });
});

describe('capability-invalid', () => {
  it('is an error when krkns cannot parse the values', () => {
    const p = policy(`{"tagOwners": {"tag:krkn": []}, "grants": [
      {"src": ["tag:krkn"], "dst": ["tag:krkn"], "ip": ["443"],
       "app": {"krkn.dev/cap/webhooks": [{"publish": ["ci-*"], "topics": []}]}}]}`);
    const f = findings(p, 'capability-invalid');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'error', line: 3 });
    expect(f[0]?.message).toContain('values[0]: unknown key "topics"');
    expect(f[0]?.message).toContain('"*" must be a whole segment');
  });

  it('checks the configured capability name only', () => {
    const tka = fixture('004-tka-multiple-roles.hujson');
    expect(findings(tka, 'capability-invalid')).toEqual([]);
    const f = findings(tka, 'capability-invalid', { capabilityName: 'specht-labs.de/cap/tka' });
    expect(f).toHaveLength(5);
    expect(f[0]?.message).toContain('unknown key "role"');
  });

  it('is silent for valid values', () => {
    expect(findings(fixture('004-krkn-priority-hierarchy.hujson'), 'capability-invalid')).toEqual([]);
  });
});

describe('capability-priority-tie', () => {
  it('warns for equal priorities on overlapping sources (seed 004 same-priority pitfall)', () => {
    const f = findings(fixture('004-krkn-same-priority.hujson'), 'capability-priority-tie');
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'warn', line: 20 });
    expect(f[0]?.message).toContain('grants at lines 10 and 16 both give "krkn.dev/cap/webhooks" at priority 100');
  });

  it('is silent for distinct priorities (seed 004 hierarchy)', () => {
    expect(findings(fixture('004-krkn-priority-hierarchy.hujson'), 'capability-priority-tie')).toEqual([]);
  });

  it('is silent for equal priorities on disjoint sources', () => {
    const p =
      policy(`{"groups": {"group:a": ["a@x.y"], "group:b": ["b@x.y"]}, "tagOwners": {"tag:krkn": []}, "grants": [
      {"src": ["group:a"], "dst": ["tag:krkn"], "app": {"krkn.dev/cap/webhooks": [{"publish": ["a"], "priority": 1}]}},
      {"src": ["group:b"], "dst": ["tag:krkn"], "app": {"krkn.dev/cap/webhooks": [{"publish": ["b"], "priority": 1}]}},
      {"src": ["tag:ci"], "dst": ["tag:krkn"], "app": {"krkn.dev/cap/webhooks": [{"publish": ["c"], "priority": 1}]}}]}`);
    expect(findings(p, 'capability-priority-tie')).toEqual([]);
  });

  it('treats autogroup:member as overlapping every user and group', () => {
    const p = policy(`{"groups": {"group:a": ["a@x.y"]}, "tagOwners": {"tag:krkn": []}, "grants": [
      {"src": ["autogroup:member"], "dst": ["tag:krkn"], "app": {"krkn.dev/cap/webhooks": [{"subscribe": ["a"]}]}},
      {"src": ["group:a"], "dst": ["*"], "app": {"krkn.dev/cap/webhooks": [{"subscribe": ["b"]}]}}]}`);
    expect(findings(p, 'capability-priority-tie')).toHaveLength(1);
  });
});

describe('invisible-tag', () => {
  it('is an error when no rule mentions a krkn tag', () => {
    const f = findings(fixture('002-acl-sample.hujson'), 'invisible-tag', KRKN);
    expect(f).toHaveLength(1);
    expect(f[0]).toMatchObject({ severity: 'error', line: 2 });
    expect(f[0]?.message).toContain('leaves them out of its peer list');
  });

  it('is silent when a rule mentions it, also through "*", and when no tags are given', () => {
    expect(findings(fixture('000-service-fabric.hujson'), 'invisible-tag', KRKN)).toEqual([]);
    expect(findings(fixture('000-wide-open.hujson'), 'invisible-tag', KRKN)).toEqual([]);
    expect(findings(fixture('002-acl-sample.hujson'), 'invisible-tag')).toEqual([]);
  });
});

describe('undefined-reference', () => {
  it('finds the undefined groups of the seed 004 example', () => {
    const f = findings(fixture('004-tka-multiple-roles.hujson'), 'undefined-reference');
    expect(f.map((x) => [x.line, x.message])).toEqual([
      [13, 'group:k8s-viewers is not defined in groups'],
      [44, 'group:developer-oncall is not defined in groups'],
      [60, 'group:platform-oncall is not defined in groups'],
    ]);
    expect(f.every((x) => x.severity === 'error')).toBe(true);
  });

  it('finds undefined postures, hosts, autogroups, tag owners and invalid selectors', () => {
    const p = policy(`{"tagOwners": {"tag:x": ["group:nobody"]}, "defaultSrcPosture": ["posture:none"], "grants": [
      {"src": ["autogroup:members", "db-host", "a b"], "dst": ["tag:x"], "ip": ["*"], "srcPosture": ["posture:gone"]}]}`);
    expect(findings(p, 'undefined-reference').map((f) => f.message)).toEqual([
      'posture:none is not defined in postures',
      'group:nobody (an owner of tag:x) is not defined in groups',
      'autogroup:members is not an autogroup Tailscale knows',
      '"db-host" is neither a hosts alias nor a user, tag, group or address',
      '"a b" is not a valid selector',
      'posture:gone is not defined in postures',
    ]);
  });

  it('is silent when everything is defined', () => {
    expect(findings(fixture('000-default-src-posture.hujson'), 'undefined-reference')).toEqual([]);
    const p = policy(
      '{"hosts": {"db-host": "10.0.0.5"}, "grants": [{"src": ["autogroup:member"], "dst": ["db-host", "10.0.0.0/8"], "ip": ["*"]}]}',
    );
    expect(findings(p, 'undefined-reference')).toEqual([]);
  });
});

describe('unknown-key', () => {
  it('warns for unknown keys with their lines', () => {
    const p = policy('{\n  "grant": [],\n  "grants": []\n}');
    expect(findings(p, 'unknown-key')).toEqual([
      {
        rule: 'unknown-key',
        severity: 'warn',
        file: 'inline.hujson',
        line: 2,
        message: 'unknown top-level key "grant"; Tailscale ignores or rejects it',
        fix: 'remove the key or correct its spelling',
      },
    ]);
  });

  it('is silent for documented keys', () => {
    const p = policy(
      '{"nodeAttrs": [], "sshTests": [], "ipsets": {}, "derpMap": {}, "disableIPv4": false, "randomizeClientPort": true}',
    );
    expect(findings(p, 'unknown-key')).toEqual([]);
  });
});
