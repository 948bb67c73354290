import { describe, expect, it } from 'vitest';
import { PolicyError, jsonPointer, lineOf, parseHujson } from '@krkn/policy';

function parseError(text: string, file = 'p.hujson'): PolicyError {
  try {
    parseHujson(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a parse error');
}

describe('parseHujson', () => {
  it('parses plain JSON exactly like JSON.parse', () => {
    const text = '{"a": [1, -2.5e3, true, false, null, "x\\n\\u00e9\\/"], "b": {"c": {}}, "d": []}';
    expect(parseHujson(text).value).toEqual(JSON.parse(text));
  });

  it('accepts line and block comments anywhere whitespace may be', () => {
    const text = `// leading
    { /* before key */ "a" /* between */ : // after colon
      1 /* after value */, "b": [ // in array
        2 /* multi
        line */ ]
    } // trailing`;
    expect(parseHujson(text).value).toEqual({ a: 1, b: [2] });
  });

  it('accepts trailing commas in objects and arrays', () => {
    expect(parseHujson('{"a": [1, 2,], "b": {"c": 3,},}').value).toEqual({ a: [1, 2], b: { c: 3 } });
  });

  it('does not treat // inside strings as comments', () => {
    expect(parseHujson('{"url": "https://example.com/*x*/"}').value).toEqual({ url: 'https://example.com/*x*/' });
  });

  it('records the line of every object key and array element', () => {
    const doc = parseHujson(
      ['{', '  "grants": [', '    {', '      "src": ["tag:a",', '              "tag:b"]', '    }', '  ]', '}'].join(
        '\n',
      ),
    );
    expect(doc.positions.get('')).toEqual({ line: 1, col: 1 });
    expect(doc.positions.get('/grants')).toEqual({ line: 2, col: 3 });
    expect(doc.positions.get('/grants/0')?.line).toBe(3);
    expect(doc.positions.get('/grants/0/src')).toEqual({ line: 4, col: 7 });
    expect(doc.positions.get('/grants/0/src/0')?.line).toBe(4);
    expect(doc.positions.get('/grants/0/src/1')).toEqual({ line: 5, col: 15 });
  });

  it('escapes pointer segments per RFC 6901 and falls back to the nearest ancestor line', () => {
    const doc = parseHujson('{\n"app": {\n"krkn.dev/cap/webhooks": [\n{}\n]\n}\n}');
    const ptr = '/app' + jsonPointer('krkn.dev/cap/webhooks');
    expect(ptr).toBe('/app/krkn.dev~1cap~1webhooks');
    expect(lineOf(doc.positions, ptr)).toBe(3);
    expect(lineOf(doc.positions, ptr + '/0/priority')).toBe(4);
    expect(lineOf(doc.positions, '/missing')).toBe(1);
  });

  it('counts CRLF line endings once and skips a BOM', () => {
    const doc = parseHujson('\ufeff{\r\n"a": 1,\r\n"b": 2\r\n}');
    expect(doc.positions.get('/b')).toEqual({ line: 3, col: 1 });
  });

  it('keeps a "__proto__" key as ordinary data', () => {
    const value = parseHujson('{"__proto__": {"x": 1}}').value as Record<string, unknown>;
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it.each([
    ['{"a": 1', 1, 8, "expected ',' or '}', found end of input"],
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, "expected ',' or '}', found '\"'"],
    ['{\n  "a": tru\n}', 2, 8, "unexpected 't'"],
    ['{\n  a: 1\n}', 2, 3, "expected a string key or '}', found 'a'"],
    ['{"a": "no end\n}', 1, 7, 'unterminated string'],
    ['{"a": 1} /* open', 1, 10, 'unterminated /* comment'],
    ['{"a": 01}', 1, 7, 'invalid number'],
    ['[1,,2]', 1, 4, "unexpected ','"],
    ['{"a": 1}\n{"b": 2}', 2, 1, "unexpected '{' after the top-level value"],
    ['// only a comment', 1, 18, 'empty document'],
    ['{"a": "\\x"}', 1, 8, "invalid escape '\\x'"],
  ])('reports %j at file:line:col', (text, line, col, message) => {
    const err = parseError(text);
    expect(err.code).toBe('PARSE');
    expect(err.message).toBe(`p.hujson:${line}:${col}: ${message}`);
    expect(err.location).toEqual({ file: 'p.hujson', line, col });
  });

  it('rejects duplicate keys at the second key', () => {
    const err = parseError('{\n  "acls": [],\n  "acls": []\n}');
    expect(err.message).toBe('p.hujson:3:3: duplicate key "acls"');
  });
});
