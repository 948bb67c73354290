import { describe, expect, it } from 'vitest';
import { PolicyError, checkPath } from '@krkn/policy';
import { fixture, policy } from './helpers.js';

describe('checkPath: allowed', () => {
  it('names the grant that opens the path (seed 000 service fabric)', () => {
    const r = checkPath(fixture('000-service-fabric.hujson'), { from: 'tag:krkn', to: 'tag:krkn', port: 443 });
    expect(r).toEqual({
      allowed: true,
      rule: { kind: 'grant', index: 0, line: 11 },
      reasons: ['grant at line 11 allows it'],
    });
  });

  it('names the acl that opens the path (seed 002 ACL sample)', () => {
    const r = checkPath(fixture('002-acl-sample.hujson'), { from: 'tag:ci', to: 'tag:api', port: 443 });
    expect(r).toEqual({
      allowed: true,
      rule: { kind: 'acl', index: 1, line: 4 },
      reasons: ['acl at line 4 allows it'],
    });
  });

  it('expands a group and requires every member to be allowed', () => {
    const r = checkPath(fixture('002-acl-sample.hujson'), { from: 'group:dev', to: 'tag:db', port: 5432 });
    expect(r.allowed).toBe(true);
    expect(r.rule).toEqual({ kind: 'acl', index: 0, line: 3 });
    expect(r.reasons).toEqual([
      'alice@example.com -> tag:db: acl at line 3 allows it',
      'bob@example.com -> tag:db: acl at line 3 allows it',
    ]);
    const partial = policy(`{"groups": {"group:g": ["a@x.y", "b@x.y"]}, "tagOwners": {"tag:k": []},
      "grants": [{"src": ["a@x.y"], "dst": ["tag:k"], "ip": ["443"]}]}`);
    const denied = checkPath(partial, { from: 'group:g', to: 'tag:k', port: 443 });
    expect(denied.allowed).toBe(false);
    expect(denied.reasons).toContain('b@x.y -> tag:k: no acl or grant gives b@x.y a path to tag:k on port 443');
  });

  it('matches users through autogroup:member and tags through autogroup:tagged and "*"', () => {
    const p = policy(`{"tagOwners": {"tag:k": [], "tag:ci": []}, "grants": [
      {"src": ["autogroup:member"], "dst": ["tag:k"], "ip": ["443"]},
      {"src": ["autogroup:tagged"], "dst": ["tag:k"], "ip": ["80"]},
      {"src": ["*"], "dst": ["tag:k"], "ip": ["22"]}]}`);
    expect(checkPath(p, { from: 'alice@example.com', to: 'tag:k', port: 443 }).rule?.index).toBe(0);
    expect(checkPath(p, { from: 'tag:ci', to: 'tag:k', port: 80 }).rule?.index).toBe(1);
    expect(checkPath(p, { from: 'tag:ci', to: 'tag:k', port: 22 }).rule?.index).toBe(2);
    expect(checkPath(p, { from: 'alice@example.com', to: 'tag:k', port: 22 }).rule?.index).toBe(2);
    const tagged = checkPath(p, { from: 'tag:ci', to: 'tag:k', port: 443 });
    expect(tagged.allowed).toBe(false);
    expect(tagged.reasons).toContain(
      'grant at line 2: autogroup:member selects user-owned devices only; a tagged node (tag:ci) never matches it',
    );
  });

  it('handles ports ranges, lists and autogroup:self for users', () => {
    const p = policy(`{"tagOwners": {"tag:k": []}, "grants": [
      {"src": ["tag:k"], "dst": ["tag:k"], "ip": ["tcp:1000-2000", "8443"]},
      {"src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["22"]}]}`);
    expect(checkPath(p, { from: 'tag:k', to: 'tag:k', port: 1500 }).allowed).toBe(true);
    expect(checkPath(p, { from: 'tag:k', to: 'tag:k', port: 8443 }).allowed).toBe(true);
    expect(checkPath(p, { from: 'a@x.y', to: 'a@x.y', port: 22 }).allowed).toBe(true);
    expect(checkPath(p, { from: 'a@x.y', to: 'b@x.y', port: 22 }).allowed).toBe(false);
  });

  it('allows a user path held back by posture only with a caveat', () => {
    const r = checkPath(fixture('000-posture-on-service.hujson'), {
      from: 'alice@example.com',
      to: 'tag:krkn',
      port: 443,
    });
    expect(r.allowed).toBe(true);
    expect(r.rule?.line).toBe(25);
    expect(r.reasons).toEqual([
      'grant at line 25 allows it',
      "grant at line 25 requires posture posture:human: only source devices that satisfy it get this path (krkn's embedded nodes do not)",
    ]);
  });

  it('unites acls and grants: a path open in either section is open', () => {
    const p = fixture('000-acls-and-grants.hujson');
    expect(checkPath(p, { from: 'alice@example.com', to: 'tag:api', port: 443 }).rule).toMatchObject({ kind: 'acl' });
    expect(checkPath(p, { from: 'tag:krkn', to: 'tag:krkn', port: 443 }).rule).toMatchObject({ kind: 'grant' });
  });
});

describe('checkPath: denied', () => {
  it('names a rule that matches src and dst but not the port', () => {
    const p = policy(`{"tagOwners": {"tag:a": [], "tag:b": []}, "grants": [
      {"src": ["tag:a"], "dst": ["tag:b"], "ip": ["80"]}]}`);
    expect(checkPath(p, { from: 'tag:a', to: 'tag:b', port: 443 })).toEqual({
      allowed: false,
      reasons: ['grant at line 2 matches src and dst but not port 443 (allows 80)'],
    });
  });

  it('names an ACL port mismatch, and a protocol mismatch', () => {
    const r = checkPath(fixture('002-acl-sample.hujson'), { from: 'tag:ci', to: 'tag:api', port: 80 });
    expect(r.reasons).toEqual(['acl at line 4 matches src and dst but not port 80 (allows 443)']);
    const udp = policy(
      `{"tagOwners": {"tag:a": []}, "grants": [{"src": ["tag:a"], "dst": ["tag:a"], "ip": ["udp:443"]}]}`,
    );
    expect(checkPath(udp, { from: 'tag:a', to: 'tag:a', port: 443 }).reasons).toEqual([
      'grant at line 1 matches src and dst but not port 443 (allows udp:443)',
    ]);
    expect(checkPath(udp, { from: 'tag:a', to: 'tag:a', port: 443, proto: 'udp' }).allowed).toBe(true);
  });

  it('explains that app-only grants open no ports', () => {
    const r = checkPath(fixture('004-krkn-same-priority.hujson'), {
      from: 'alice@example.com',
      to: 'tag:krkn',
      port: 8443,
    });
    expect(r.reasons).toEqual([
      'grant at line 10 matches src and dst but not port 8443 (allows 443)',
      'grant at line 16 matches src and dst but not port 8443 (allows 443)',
    ]);
    const app = policy(
      `{"tagOwners": {"tag:k": []}, "grants": [{"src": ["tag:k"], "dst": ["tag:k"], "app": {"x": [{}]}}]}`,
    );
    expect(checkPath(app, { from: 'tag:k', to: 'tag:k', port: 443 }).reasons[0]).toContain(
      'opens no ports: it grants only app capabilities',
    );
  });

  it('explains posture that service nodes cannot satisfy, including defaultSrcPosture (seed 000)', () => {
    const r = checkPath(fixture('000-default-src-posture.hujson'), { from: 'tag:krkn', to: 'tag:krkn', port: 443 });
    expect(r.allowed).toBe(false);
    expect(r.reasons[0]).toBe(
      'grant at line 19 requires posture posture:human (from defaultSrcPosture), which service nodes cannot satisfy',
    );
    expect(r.reasons[1]).toContain('invisible');
    const own = checkPath(fixture('000-posture-on-service.hujson'), { from: 'tag:krkn', to: 'tag:krkn', port: 443 });
    expect(own.reasons[0]).toBe('grant at line 19 requires posture posture:human, which service nodes cannot satisfy');
  });

  it('says a tag without an owner cannot be held, and which rule would otherwise allow', () => {
    const r = checkPath(fixture('000-missing-tagowner.hujson'), { from: 'tag:krkn', to: 'tag:krkn', port: 443 });
    expect(r).toEqual({
      allowed: false,
      reasons: [
        'tag:krkn has no owner in tagOwners, so no node can hold it',
        'grant at line 5 would allow it otherwise',
      ],
    });
  });

  it('explains that a tagged source never matches a group (seed 000 group:admins)', () => {
    const r = checkPath(fixture('000-group-admins.hujson'), { from: 'tag:ci', to: 'tag:krkn', port: 443 });
    expect(r.allowed).toBe(false);
    expect(r.reasons).toEqual([
      'grant at line 13: group:admins does not contain tagged nodes; a tagged node (tag:ci) never matches a group',
      "no rule connects tag:ci and tag:krkn in either direction on any port, so Tailscale leaves each out of the other's peer list: they look invisible to each other",
    ]);
  });

  it('explains that a tagged source never matches a user selector', () => {
    const p = policy(
      `{"tagOwners": {"tag:k": [], "tag:ci": []}, "grants": [{"src": ["alice@example.com"], "dst": ["tag:k"], "ip": ["*"]}]}`,
    );
    expect(checkPath(p, { from: 'tag:ci', to: 'tag:k', port: 1 }).reasons[0]).toContain(
      'a tagged node (tag:ci) has no user and never matches it',
    );
  });

  it('says krkn cannot reach subscribers when only the forward path exists, without calling them invisible', () => {
    const r = checkPath(fixture('000-group-admins.hujson'), { from: 'tag:krkn', to: 'alice@example.com', port: 8080 });
    expect(r).toEqual({
      allowed: false,
      reasons: ['no acl or grant gives tag:krkn a path to alice@example.com on port 8080'],
    });
  });

  it('reports undefined and empty groups, and an empty policy', () => {
    const p = policy('{"groups": {"group:empty": []}}');
    expect(checkPath(p, { from: 'group:nope', to: 'tag:x', port: 1 }).reasons).toContain(
      'group:nope is not defined in groups',
    );
    expect(checkPath(p, { from: 'group:empty', to: 'a@b.c', port: 1 }).reasons).toEqual(['group:empty has no members']);
    expect(checkPath(p, { from: 'a@b.c', to: 'c@d.e', port: 1 }).reasons).toEqual([
      'the policy has no acls or grants, so nothing is allowed',
      "no rule connects a@b.c and c@d.e in either direction on any port, so Tailscale leaves each out of the other's peer list: they look invisible to each other",
    ]);
  });
});

describe('checkPath: usage', () => {
  it.each([
    [{ from: 'tag:a', to: 'tag:b', port: 70000 }, 'port must be an integer 0-65535, got 70000'],
    [{ from: 'tag:a', to: 'tag:b', port: 1.5 }, 'port must be an integer 0-65535, got 1.5'],
    [
      { from: 'dev', to: 'tag:b', port: 1 },
      'cannot check a path for "dev": use tag:name, a user like alice@example.com, or group:name',
    ],
    [
      { from: 'tag:a', to: '100.64.0.1', port: 1 },
      'cannot check a path for "100.64.0.1": use tag:name, a user like alice@example.com, or group:name',
    ],
  ])('rejects %j', (query, message) => {
    const p = policy('{}');
    expect(() => checkPath(p, query)).toThrow(PolicyError);
    expect(() => checkPath(p, query)).toThrow(message);
    try {
      checkPath(p, query);
    } catch (err) {
      expect((err as PolicyError).code).toBe('USAGE');
    }
  });
});
