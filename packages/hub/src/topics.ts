import { topicError, topicPatternError } from '@krkn/policy';
import { HubError } from './errors.js';

/**
 * The topic itself, or a BAD_TOPIC error saying what is wrong with it. The grammar is
 * @krkn/policy's; `pattern` also admits '*' (one whole segment) and a final '**' (the rest).
 */
export function validTopic(topic: string, kind: 'topic' | 'pattern' = 'topic'): string {
  const problem = kind === 'pattern' ? topicPatternError(topic) : topicError(topic);
  if (problem === undefined) return topic;
  const rule = kind === 'pattern' ? "; '*' is one whole segment, '**' the rest" : '';
  throw new HubError('BAD_TOPIC', `${problem} (topics are '/'-separated segments${rule})`);
}

/**
 * Whether the granted pattern admits everything `requested` can match. `requested` is a topic or,
 * for subscriptions, a pattern itself ('*' one segment, '**' the rest): a grant of "ci/**"
 * covers a subscription to "ci/*", a grant of "ci/build" does not.
 */
export function covers(granted: string, requested: string): boolean {
  const g = granted.split('/');
  const r = requested.split('/');
  for (let i = 0; i < g.length; i++) {
    if (g[i] === '**') return r.length > i;
    if (i >= r.length || r[i] === '**') return false;
    if (g[i] !== '*' && (r[i] === '*' || g[i] !== r[i])) return false;
  }
  return g.length === r.length;
}
