import { PolicyError } from './errors.js';

/** A plain JSON value, as {@link parseHujson} produces it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object with plain string keys. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A 1-based line and column (UTF-16 code units) in the source text. */
export interface Position {
  readonly line: number;
  readonly col: number;
}

/**
 * A parsed HuJSON file: the plain value plus where each part came from.
 *
 * `positions` maps an RFC 6901 JSON pointer to the position of the object *key* (for members) or of the
 * element's first character (for array elements); the root is `""`. Findings and errors point at keys,
 * because that is where a person reading the policy looks.
 */
export interface HujsonDocument {
  readonly file: string;
  readonly value: JsonValue;
  readonly positions: ReadonlyMap<string, Position>;
}

/**
 * Parses HuJSON ("JSON with commas and comments", the tailnet policy format): `//` and `/* *\/` comments,
 * and trailing commas in objects and arrays. Everything else is strict JSON.
 *
 * Duplicate object keys are rejected: Tailscale refuses them, and silently keeping one would make the
 * linter reason about a policy the control plane never accepts.
 *
 * @throws {@link PolicyError} with code `PARSE` and a message starting `file:line:col:`.
 */
export function parseHujson(text: string, file = '<input>'): HujsonDocument {
  const parser = new Parser(text, file);
  const value = parser.parseDocument();
  return { file, value, positions: parser.positions };
}

/** Builds an RFC 6901 JSON pointer from path segments, e.g. `jsonPointer('grants', 0, 'src')` → `/grants/0/src`. */
export function jsonPointer(...segments: ReadonlyArray<string | number>): string {
  return segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

/**
 * The line of `pointer` in `positions`, falling back to the nearest ancestor that has one (and to 1), so
 * a caller can ask for a member that was absent and still get the line of the object that lacks it.
 */
export function lineOf(positions: ReadonlyMap<string, Position>, pointer: string): number {
  let p = pointer;
  for (;;) {
    const pos = positions.get(p);
    if (pos) return pos.line;
    if (p === '') return 1;
    p = p.slice(0, p.lastIndexOf('/'));
  }
}

class Parser {
  readonly positions = new Map<string, Position>();
  private i = 0;
  private line = 1;
  private lineStart = 0;

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {
    // A UTF-8 BOM is common in files saved by Windows editors; it is not part of the document.
    if (text.charCodeAt(0) === 0xfeff) this.i = 1;
  }

  parseDocument(): JsonValue {
    this.skipTrivia();
    if (this.i >= this.text.length) this.fail('empty document');
    const value = this.parseValue('');
    this.skipTrivia();
    if (this.i < this.text.length) this.fail(`unexpected ${this.describe()} after the top-level value`);
    return value;
  }

  private parseValue(pointer: string): JsonValue {
    this.positions.set(pointer, this.pos());
    const c = this.text[this.i];
    if (c === '{') return this.parseObject(pointer);
    if (c === '[') return this.parseArray(pointer);
    if (c === '"') return this.parseString();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.parseNumber();
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.text.startsWith(word, this.i)) {
        this.advance(word.length);
        return value;
      }
    }
    return this.fail(`unexpected ${this.describe()}`);
  }

  private parseObject(pointer: string): JsonObject {
    const obj: JsonObject = {};
    this.advance(1);
    for (;;) {
      this.skipTrivia();
      if (this.text[this.i] === '}') {
        this.advance(1);
        return obj;
      }
      if (this.text[this.i] !== '"') this.fail(`expected a string key or '}', found ${this.describe()}`);
      const keyPos = this.pos();
      const key = this.parseString();
      if (Object.prototype.hasOwnProperty.call(obj, key)) this.fail(`duplicate key "${key}"`, keyPos);
      this.skipTrivia();
      if (this.text[this.i] !== ':') this.fail(`expected ':' after key "${key}", found ${this.describe()}`);
      this.advance(1);
      this.skipTrivia();
      const child = pointer + jsonPointer(key);
      const value = this.parseValue(child);
      this.positions.set(child, keyPos);
      // defineProperty, not assignment: a key named "__proto__" must stay an ordinary member.
      Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
      if (!this.separator('}')) return obj;
    }
  }

  private parseArray(pointer: string): JsonValue[] {
    const arr: JsonValue[] = [];
    this.advance(1);
    for (;;) {
      this.skipTrivia();
      if (this.text[this.i] === ']') {
        this.advance(1);
        return arr;
      }
      arr.push(this.parseValue(pointer + jsonPointer(arr.length)));
      if (!this.separator(']')) return arr;
    }
  }

  /** After a member or element: `,` means "maybe another" (trailing commas allowed); the closer ends it. */
  private separator(close: '}' | ']'): boolean {
    this.skipTrivia();
    const c = this.text[this.i];
    if (c === ',') {
      this.advance(1);
      return true;
    }
    if (c === close) {
      this.advance(1);
      return false;
    }
    return this.fail(`expected ',' or '${close}', found ${this.describe()}`);
  }

  private parseString(): string {
    const start = this.pos();
    this.advance(1);
    let out = '';
    for (;;) {
      const c = this.text[this.i];
      if (c === undefined || c === '\n') this.fail('unterminated string', start);
      if (c === '"') {
        this.advance(1);
        return out;
      }
      if (c === '\\') {
        out += this.parseEscape();
        continue;
      }
      if (c.charCodeAt(0) < 0x20) this.fail('control character in string (escape it)');
      out += c;
      this.advance(1);
    }
  }

  private parseEscape(): string {
    const c = this.text[this.i + 1];
    const simple: Record<string, string> = {
      '"': '"',
      '\\': '\\',
      '/': '/',
      b: '\b',
      f: '\f',
      n: '\n',
      r: '\r',
      t: '\t',
    };
    if (c !== undefined && simple[c] !== undefined) {
      this.advance(2);
      return simple[c];
    }
    if (c === 'u') {
      const hex = this.text.slice(this.i + 2, this.i + 6);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid \\u escape');
      this.advance(6);
      return String.fromCharCode(parseInt(hex, 16));
    }
    return this.fail(`invalid escape '\\${c ?? ''}'`);
  }

  private parseNumber(): number {
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(this.text.slice(this.i, this.i + 400));
    if (!m) this.fail('invalid number');
    const after = this.text[this.i + m[0].length];
    if (after !== undefined && /[0-9A-Za-z.]/.test(after)) this.fail('invalid number');
    this.advance(m[0].length);
    return Number(m[0]);
  }

  /** Whitespace and comments, which HuJSON allows anywhere whitespace is. */
  private skipTrivia(): void {
    for (;;) {
      const c = this.text[this.i];
      if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
        this.advance(1);
      } else if (c === '/' && this.text[this.i + 1] === '/') {
        while (this.i < this.text.length && this.text[this.i] !== '\n') this.advance(1);
      } else if (c === '/' && this.text[this.i + 1] === '*') {
        const start = this.pos();
        const end = this.text.indexOf('*/', this.i + 2);
        if (end < 0) this.fail('unterminated /* comment', start);
        this.advance(end + 2 - this.i);
      } else {
        return;
      }
    }
  }

  /** Moves forward, keeping line and column in step (only `\n` starts a line, so CRLF counts once). */
  private advance(n: number): void {
    const end = this.i + n;
    for (; this.i < end; this.i++) {
      if (this.text[this.i] === '\n') {
        this.line++;
        this.lineStart = this.i + 1;
      }
    }
  }

  private pos(): Position {
    return { line: this.line, col: this.i - this.lineStart + 1 };
  }

  private describe(): string {
    const c = this.text[this.i];
    return c === undefined ? 'end of input' : `'${c}'`;
  }

  private fail(message: string, at: Position = this.pos()): never {
    throw new PolicyError('PARSE', `${this.file}:${at.line}:${at.col}: ${message}`, { file: this.file, ...at });
  }
}
