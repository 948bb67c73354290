/**
 * Webhook topics and topic patterns: their grammar and matching, the one definition policy,
 * krkns and krknc use.
 *
 * A topic is one or more `/`-separated segments, none empty, with no whitespace, control
 * characters, `/` or `*` inside a segment (`github`, `ci/build`, `stripe/invoice.paid`). A pattern is a
 * topic in which a whole segment may be a wildcard:
 *
 * - `*` matches exactly one segment: `ci/*` matches `ci/build` but not `ci` nor `ci/build/linux`.
 * - `**`, allowed only as the last segment, matches one or more segments: `ci/**` matches `ci/build` and
 *   `ci/build/linux`, but not `ci`. A lone `**` matches every topic.
 * - Anything else must match literally (case-sensitive). Partial wildcards such as `ci-*` are rejected,
 *   so a pattern never means something subtler than it looks.
 */

/** Whether `pattern` (see above for `*` and `**`) matches `topic`; false if either is invalid. */
export function topicMatches(pattern: string, topic: string): boolean {
  if (topicPatternError(pattern) !== undefined || topicError(topic) !== undefined) return false;
  const p = pattern.split('/');
  const t = topic.split('/');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '**') return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== '*' && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

/**
 * A regular expression matching exactly the topics that one of `patterns` matches (see above), so a
 * store can filter topics inside its query. Written in the syntax JavaScript and PostgreSQL (`~`) read
 * alike: literal characters are escaped with a backslash, which both take as "this character".
 * Throws on an invalid pattern (check with {@link topicPatternError} first).
 */
export function topicPatternsRegex(patterns: readonly string[]): string {
  const one = (pattern: string): string => {
    const problem = topicPatternError(pattern);
    if (problem !== undefined) throw new Error(problem);
    const segments = pattern.split('/').map((seg) => {
      if (seg === '**') return '.+';
      if (seg === '*') return '[^/]+';
      return seg.replace(/[^A-Za-z0-9\u0080-\u00ff]/g, '\\$&');
    });
    return `^${segments.join('/')}$`;
  };
  // No patterns match no topic: `$.` asks for a character after the end.
  return patterns.length === 0 ? '$.' : patterns.map((p) => `(${one(p)})`).join('|');
}

/**
 * Whether the granted pattern admits everything `requested` can match. `requested` is a topic or,
 * for subscriptions, a pattern itself ('*' one segment, '**' the rest): a grant of "ci/**"
 * covers a subscription to "ci/*", a grant of "ci/build" does not.
 */
export function patternCovers(granted: string, requested: string): boolean {
  const g = granted.split('/');
  const r = requested.split('/');
  for (let i = 0; i < g.length; i++) {
    if (g[i] === '**') return r.length > i;
    if (i >= r.length || r[i] === '**') return false;
    if (g[i] !== '*' && (r[i] === '*' || g[i] !== r[i])) return false;
  }
  return g.length === r.length;
}

/** Why `topic` is not a valid concrete topic, or undefined when it is. */
export function topicError(topic: string): string | undefined {
  if (topic === '') return 'empty topic';
  const bad = topic.split('/').find((seg) => !isLiteralSegment(seg));
  if (bad === undefined) return undefined;
  if (bad === '') return `topic "${topic}" has an empty segment`;
  return `topic "${topic}" has an invalid segment "${bad}" (${segmentRule}, or "*")`;
}

/** Why `pattern` is not a valid topic pattern, or undefined when it is. */
export function topicPatternError(pattern: string): string | undefined {
  if (pattern === '') return 'empty topic pattern';
  const segs = pattern.split('/');
  for (const [i, seg] of segs.entries()) {
    if (seg === '*') continue;
    if (seg === '**') {
      if (i !== segs.length - 1) return `pattern "${pattern}": "**" is only allowed as the last segment`;
      continue;
    }
    if (seg === '') return `pattern "${pattern}" has an empty segment`;
    if (seg.includes('*')) return `pattern "${pattern}": "*" must be a whole segment (write "a/*", not "a*")`;
    if (!isLiteralSegment(seg)) {
      return `pattern "${pattern}" has an invalid segment "${seg}" (${segmentRule})`;
    }
  }
  return undefined;
}

const segmentRule = 'no spaces, control characters or characters beyond Latin-1';

function isLiteralSegment(seg: string): boolean {
  // \s covers spaces and line breaks; the explicit ranges cover the remaining C0 controls and DEL, and
  // everything beyond Latin-1: a topic travels in the X-Krkn-Topic header of every delivery, and Node
  // refuses such a header value (every attempt would fail, for days of retries).
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point of this check
  return seg.length > 0 && !/[\s/*\u0000-\u001f\u007f\u0100-\uffff]/.test(seg);
}
