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
