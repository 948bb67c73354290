import { describe, expect, it } from 'vitest';
import { decodeErrorBody } from '@krkn/hub-api';

describe('decodeErrorBody', () => {
  it('reads {error:{code,message}}', () => {
    expect(decodeErrorBody({ error: { code: 'UNKNOWN_PEER', message: 'no such peer' } })).toEqual({
      code: 'UNKNOWN_PEER',
      message: 'no such peer',
    });
  });

  it.each([
    ['nothing', undefined],
    ['null', null],
    ['a string', 'error'],
    ['no error key', { message: 'x' }],
    ['error as a string', { error: 'boom' }],
    ['error without a code', { error: { message: 'x' } }],
    ['a numeric code', { error: { code: 500, message: 'x' } }],
    ['a missing message', { error: { code: 'X' } }],
  ])('refuses %s', (_what, body) => {
    expect(decodeErrorBody(body)).toBeUndefined();
  });
});
