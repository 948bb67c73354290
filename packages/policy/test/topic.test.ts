import { describe, expect, it } from 'vitest';
import { topicMatches, topicPatternsRegex } from '../src/index.js';

const topics = [
  'ci',
  'ci/build',
  'ci/build/linux',
  'cid/build',
  'stripe/invoice.paid',
  'stripeXinvoice.paid',
  'a+b/(c)',
  'é/[x]',
];
const patterns = ['ci', 'ci/*', 'ci/**', '*', '**', '*/build', 'stripe/invoice.paid', 'a+b/*', 'é/[x]', '*/*/linux'];

describe('topicPatternsRegex', () => {
  it('matches exactly the topics topicMatches accepts, pattern by pattern', () => {
    for (const pattern of patterns) {
      const re = new RegExp(topicPatternsRegex([pattern]));
      for (const topic of topics)
        expect([pattern, topic, re.test(topic)]).toEqual([pattern, topic, topicMatches(pattern, topic)]);
    }
  });

  it('matches a topic any one of several patterns accepts, and none for no pattern', () => {
    const re = new RegExp(topicPatternsRegex(['ci/*', 'stripe/**']));
    expect(topics.filter((t) => re.test(t))).toEqual(['ci/build', 'stripe/invoice.paid']);
    expect(topics.filter((t) => new RegExp(topicPatternsRegex([])).test(t))).toEqual([]);
  });

  it('escapes literal characters with a backslash (the form the store conformance tests run on PostgreSQL)', () => {
    expect(topicPatternsRegex(['a.b/*'])).toBe('(^a\\.b/[^/]+$)');
    expect(topicPatternsRegex(['a.b/**'])).toBe('(^a\\.b/.+$)');
    expect(topicPatternsRegex(['a+b/*'])).toBe('(^a\\+b/[^/]+$)');
    expect(topicPatternsRegex(['é/[y]'])).toBe('(^é/\\[y\\]$)');
    expect(topicPatternsRegex(['*/c', 'ci/**'])).toBe('(^[^/]+/c$)|(^ci/.+$)');
  });

  it('refuses an invalid pattern', () => {
    expect(() => topicPatternsRegex(['ci-*'])).toThrow(/whole segment/);
  });
});
