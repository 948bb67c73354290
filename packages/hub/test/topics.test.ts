// The topic grammar as the hub applies it: validTopic (what a publish, a subscription or a
// listing accepts), topicMatches from @krkn/policy (how an event fans out), patternCovers (whether a
// grant admits a subscription pattern).
import { describe, expect, it } from 'vitest';
import { patternCovers, topicMatches } from '@krkn/policy';
import { HubError } from '@krkn/hub';
import { validTopic } from '../src/topics.js';

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof HubError ? err.code : 'not a HubError';
  }
};

describe('validTopic', () => {
  it.each([
    // topic, as a topic, as a pattern
    ['github', 'ok', 'ok'],
    ['ci/build', 'ok', 'ok'],
    ['stripe/invoice.paid', 'ok', 'ok'],
    ['ci/*', 'BAD_TOPIC', 'ok'],
    ['ci/**', 'BAD_TOPIC', 'ok'],
    ['**', 'BAD_TOPIC', 'ok'],
    ['ci/**/x', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['ci-*', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['a//b', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['/a', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['a/', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['a b', 'BAD_TOPIC', 'BAD_TOPIC'],
    ['a\tb', 'BAD_TOPIC', 'BAD_TOPIC'],
  ])('%j: as a topic %s, as a pattern %s', (topic, asTopic, asPattern) => {
    expect(codeOf(() => validTopic(topic)) ?? 'ok').toBe(asTopic);
    expect(codeOf(() => validTopic(topic, 'pattern')) ?? 'ok').toBe(asPattern);
  });

  it('says what is wrong and what the grammar is', () => {
    expect(() => validTopic('a//b')).toThrow(/empty segment.*'\/'-separated segments/);
    expect(() => validTopic('ci-*', 'pattern')).toThrow(/whole segment/);
  });
});

describe('topicMatches (fan-out)', () => {
  it.each([
    ['ci/build', 'ci/build', true],
    ['ci/build', 'ci/test', false],
    ['ci/*', 'ci/build', true],
    ['ci/*', 'ci', false],
    ['ci/*', 'ci/build/linux', false],
    ['ci/**', 'ci/build', true],
    ['ci/**', 'ci/build/linux', true],
    ['ci/**', 'ci', false],
    ['**', 'anything/at/all', true],
    ['*/build', 'ci/build', true],
    ['CI/build', 'ci/build', false],
    ['ci/*', 'ci/a b', false],
  ])('%s matches %s: %s', (pattern, topic, expected) => {
    expect(topicMatches(pattern, topic)).toBe(expected);
  });
});

describe('patternCovers (grant vs requested topic or pattern)', () => {
  it.each([
    ['ci/**', 'ci/build', true],
    ['ci/**', 'ci/*', true],
    ['ci/**', 'ci/**', true],
    ['ci/**', 'ci', false],
    ['ci/*', 'ci/build', true],
    ['ci/*', 'ci/*', true],
    ['ci/*', 'ci/**', false],
    ['ci/build', 'ci/*', false],
    ['ci/build', 'ci/build', true],
    ['*', 'github', true],
    ['*', 'ci/build', false],
    ['**', '**', true],
  ])('a grant of %s covers %s: %s', (granted, requested, expected) => {
    expect(patternCovers(granted, requested)).toBe(expected);
  });
});
