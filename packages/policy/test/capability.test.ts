import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CAPABILITY_NAME,
  parseWebhookCapability,
  patternCovers,
  topicAllowed,
  topicMatches,
  topicPatternError,
} from '@krkn/policy';
import type { EffectiveGrant } from '@krkn/policy';

function ok(values: unknown[]): EffectiveGrant {
  const r = parseWebhookCapability(values);
  if (!r.ok) throw new Error(r.errors.join('; '));
  return r.value;
}

function errors(values: unknown[]): string[] {
  const r = parseWebhookCapability(values);
  if (r.ok) throw new Error('expected errors');
  return r.errors;
}

describe('topicMatches', () => {
  it.each([
    ['github', 'github', true],
    ['github', 'gitlab', false],
    ['github', 'GitHub', false],
    ['ci/build', 'ci/build', true],
    // "*" is exactly one whole segment.
    ['ci/*', 'ci/build', true],
    ['ci/*', 'ci', false],
    ['ci/*', 'ci/build/linux', false],
    ['*/build', 'ci/build', true],
    ['*', 'github', true],
    ['*', 'ci/build', false],
    // "**" ends a pattern and matches one or more segments.
    ['ci/**', 'ci/build', true],
    ['ci/**', 'ci/build/linux', true],
    ['ci/**', 'ci', false],
    ['ci/**', 'cd/build', false],
    ['**', 'github', true],
    ['**', 'a/b/c', true],
    ['ci/*/linux', 'ci/build/linux', true],
    ['ci/*/linux', 'ci/build/mac', false],
    // Invalid patterns or topics never match.
    ['ci-*', 'ci-build', false],
    ['**/x', 'a/x', false],
    ['ci/*', 'ci/', false],
    ['*', '', false],
  ])('%j matches %j: %s', (pattern, topic, expected) => {
    expect(topicMatches(pattern, topic)).toBe(expected);
  });

  it('explains bad patterns', () => {
    expect(topicPatternError('ci-*')).toBe('pattern "ci-*": "*" must be a whole segment (write "a/*", not "a*")');
    expect(topicPatternError('**/x')).toBe('pattern "**/x": "**" is only allowed as the last segment');
    expect(topicPatternError('a//b')).toBe('pattern "a//b" has an empty segment');
    expect(topicPatternError('/a')).toBe('pattern "/a" has an empty segment');
    expect(topicPatternError('a b')).toMatch(/invalid segment "a b"/);
    expect(topicPatternError('')).toBe('empty topic pattern');
    expect(topicPatternError('stripe/invoice.paid')).toBeUndefined();
  });
});

describe('patternCovers', () => {
  it.each([
    ['ci/build', 'ci/build', true],
    ['ci/build', 'ci/*', false], // a topic grant does not cover a pattern subscription
    ['ci/*', 'ci/build', true],
    ['ci/*', 'ci/*', true],
    ['ci/*', 'ci/**', false],
    ['ci/**', 'ci/*', true],
    ['ci/**', 'ci/**', true],
    ['ci/**', 'ci/build/linux', true],
    ['ci/**', 'ci', false],
    ['**', '**', true],
    ['*', 'ci/build', false],
    ['*/build', 'ci/*', false],
  ])('a grant of %j covers %j: %s', (granted, requested, expected) => {
    expect(patternCovers(granted, requested)).toBe(expected);
  });
});

describe('parseWebhookCapability', () => {
  it('is named krkn.dev/cap/webhooks by default', () => {
    expect(DEFAULT_CAPABILITY_NAME).toBe('krkn.dev/cap/webhooks');
  });

  it('parses the documented value shape', () => {
    expect(ok([{ publish: ['ci/*', 'github'], subscribe: ['ci/*'], priority: 100 }])).toEqual({
      priority: 100,
      publish: ['ci/*', 'github'],
      subscribe: ['ci/*'],
    });
  });

  it('defaults missing lists to empty and priority to 0', () => {
    expect(ok([{ publish: ['github'] }])).toEqual({ priority: 0, publish: ['github'], subscribe: [] });
    expect(ok([])).toEqual({ priority: 0, publish: [], subscribe: [] });
  });

  it('lets the highest priority win outright (seed 004: higher priority takes precedence)', () => {
    const g = ok([
      { subscribe: ['github'], priority: 50 },
      { publish: ['**'], subscribe: ['**'], priority: 300 },
      { publish: ['ci/*'], subscribe: ['github', 'ci/**'], priority: 150 },
    ]);
    expect(g).toEqual({ priority: 300, publish: ['**'], subscribe: ['**'] });
  });

  it('lets a narrow high-priority value restrict a broad low-priority one', () => {
    const g = ok([{ publish: ['**'] }, { publish: ['ci/*'], priority: 10 }]);
    expect(topicAllowed(g, 'publish', 'ci/build')).toBe(true);
    expect(topicAllowed(g, 'publish', 'github')).toBe(false);
  });

  it('merges values tied at the top priority (union, first-seen order, no duplicates)', () => {
    const g = ok([
      { publish: ['ci/*'], priority: 100 },
      { publish: ['github', 'ci/*'], subscribe: ['deploy/**'], priority: 100 },
      { publish: ['everything/**'], priority: 1 },
    ]);
    expect(g).toEqual({ priority: 100, publish: ['ci/*', 'github'], subscribe: ['deploy/**'] });
  });

  it('handles negative priorities', () => {
    expect(
      ok([
        { publish: ['a'], priority: -5 },
        { publish: ['b'], priority: -1 },
      ]).publish,
    ).toEqual(['b']);
  });

  it('reports every problem and fails closed', () => {
    expect(
      errors([
        { publish: ['ci/*'], role: 'admin' },
        'not an object',
        { publish: 'ci/*' },
        { subscribe: [3, '', 'ci-*'], priority: '100' },
        { priority: 1.5 },
        { publish: ['ok'] },
      ]),
    ).toEqual([
      'values[0]: unknown key "role" (allowed: publish, subscribe, priority)',
      'values[1]: must be an object like {"publish": ["ci/*"], "subscribe": ["ci/*"], "priority": 100}',
      'values[2].publish: must be an array of topic patterns',
      'values[3].priority: must be an integer, got "100"',
      'values[3].subscribe[0]: must be a string, got 3',
      'values[3].subscribe[1]: empty topic pattern',
      'values[3].subscribe[2]: pattern "ci-*": "*" must be a whole segment (write "a/*", not "a*")',
      'values[4].priority: must be an integer, got 1.5',
    ]);
  });

  it('rejects the TKA-style values of seed 004 (role/period are not krkn keys)', () => {
    expect(errors([{ role: 'cluster-admin', period: '8h', priority: 100 }])).toEqual([
      'values[0]: unknown key "role" (allowed: publish, subscribe, priority)',
      'values[0]: unknown key "period" (allowed: publish, subscribe, priority)',
    ]);
  });
});

describe('topicAllowed', () => {
  const grant = ok([{ publish: ['ci/*', 'github'], subscribe: ['ci/**'], priority: 100 }]);

  it('checks the list for the action', () => {
    expect(topicAllowed(grant, 'publish', 'github')).toBe(true);
    expect(topicAllowed(grant, 'publish', 'ci/build')).toBe(true);
    expect(topicAllowed(grant, 'publish', 'ci/build/linux')).toBe(false);
    expect(topicAllowed(grant, 'subscribe', 'ci/build/linux')).toBe(true);
    expect(topicAllowed(grant, 'subscribe', 'github')).toBe(false);
  });

  it('never allows an invalid concrete topic, even under "**"', () => {
    const all = ok([{ publish: ['**'] }]);
    expect(topicAllowed(all, 'publish', 'a/b')).toBe(true);
    expect(topicAllowed(all, 'publish', 'ci/*')).toBe(false);
    expect(topicAllowed(all, 'publish', '')).toBe(false);
    expect(topicAllowed(all, 'publish', 'a//b')).toBe(false);
  });
});
