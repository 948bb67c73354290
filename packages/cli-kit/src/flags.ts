import { parseBoolean } from '@krkn/tailnet';
import { usageError } from './exit.js';
import { formatDurationMs, formatSize, parseDuration, parseSize } from './units.js';

/** The kinds of value a flag takes. */
export type FlagType = 'string' | 'int' | 'bool' | 'duration' | 'size' | 'list' | 'durations';

interface ValueOf {
  string: string;
  int: number;
  bool: boolean;
  duration: number;
  size: number;
  list: string[];
  durations: number[];
}

/** One flag: its name, the environment variable that sets it when absent, its default. */
export interface FlagSpec<T extends FlagType = FlagType> {
  type: T;
  /** Environment variable read when the flag is not given. */
  env?: string;
  /** Default when neither is given; a function for defaults that depend on other values. */
  default?: ValueOf[T] | (() => ValueOf[T]);
  /** One line for --help. */
  describe: string;
  /** Placeholder in --help (default from type). */
  placeholder?: string;
  /** Extra check: return an error message to reject the value. */
  check?: (value: ValueOf[T]) => string | undefined;
  /** Single-letter alias, e.g. "H" for -H. */
  short?: string;
  /** The flag may be given several times (list flags only). */
  repeatable?: boolean;
}

/** Any one flag spec, discriminated by its type. */
export type AnyFlagSpec = { [T in FlagType]: FlagSpec<T> }[FlagType];

export type FlagSpecs = Record<string, AnyFlagSpec>;

/** The parsed values: each flag's value; a flag without a default may be undefined. */
export type Flags<S extends FlagSpecs> = {
  [K in keyof S]: S[K] extends FlagSpec<infer T>
    ? S[K] extends { default: unknown }
      ? ValueOf[T]
      : ValueOf[T] | undefined
    : never;
};

/**
 * Parses `argv` against the specs: `--name value`, `--name=value`, `-x value`, `--bool`,
 * `--no-bool`. Unknown flags and invalid values fail with a message naming the flag (exit 2).
 * Returns the flag values and the positional arguments.
 */
export function parseFlags<S extends FlagSpecs>(
  specs: S,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { flags: Flags<S>; args: string[] } {
  const raw = new Map<string, string[]>();
  const args: string[] = [];
  const byShort = new Map(Object.entries(specs).flatMap(([n, s]) => (s.short ? [[s.short, n] as const] : [])));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      args.push(a);
      continue;
    }
    const long = a.startsWith('--');
    const [written, inline] = splitOnce(a.slice(long ? 2 : 1), '=');
    let name = long ? written : (byShort.get(written) ?? `-${written}`);
    let negated = false;
    if (!(name in specs) && name.startsWith('no-') && specs[name.slice(3)]?.type === 'bool') {
      name = name.slice(3);
      negated = true;
    }
    const spec = specs[name];
    if (!spec) throw usageError(`unknown flag ${a} (see --help)`);
    let value: string;
    if (spec.type === 'bool') value = negated ? 'false' : (inline ?? 'true');
    else if (inline !== undefined) value = inline;
    else if (i + 1 < argv.length) value = argv[++i]!;
    else throw usageError(`flag --${name} needs a value`);
    raw.set(name, [...(raw.get(name) ?? []), value]);
  }
  const flags: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const given = raw.get(name);
    const fromEnv = spec.env !== undefined ? env[spec.env] : undefined;
    const source = given !== undefined ? `--${name}` : `${spec.env} (for --${name})`;
    if (given !== undefined && given.length > 1 && !spec.repeatable)
      throw usageError(`flag --${name} is given more than once`);
    const text =
      given !== undefined
        ? spec.repeatable
          ? given.join(',')
          : given[0]!
        : fromEnv !== undefined && fromEnv !== ''
          ? fromEnv
          : undefined;
    if (text === undefined) {
      flags[name] = typeof spec.default === 'function' ? (spec.default as () => unknown)() : spec.default;
      continue;
    }
    const value = convert(spec.type, text, source);
    const problem = (spec.check as ((v: unknown) => string | undefined) | undefined)?.(value);
    if (problem) throw usageError(`${source}: ${problem}`);
    flags[name] = value;
  }
  return { flags: flags as Flags<S>, args };
}

function convert(type: FlagType, text: string, source: string): unknown {
  const bad = (what: string) => usageError(`${source}: ${JSON.stringify(text)} is not ${what}`);
  switch (type) {
    case 'string':
      return text;
    case 'int': {
      if (!/^-?\d+$/.test(text.trim())) throw bad('a whole number');
      return Number(text);
    }
    case 'bool': {
      const b = parseBoolean(text);
      if (b === undefined) throw bad('true or false');
      return b;
    }
    case 'duration': {
      const ms = parseDuration(text);
      if (ms === undefined) throw bad('a duration such as 30s, 5m, 2h or 7d');
      return ms;
    }
    case 'size': {
      const n = parseSize(text);
      if (n === undefined) throw bad('a size such as 10MiB, 25MB or 1048576');
      return n;
    }
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    case 'durations': {
      const parts = text.split(',').map((s) => s.trim());
      const ms = parts.map(parseDuration);
      if (parts.length === 0 || ms.some((x) => x === undefined))
        throw bad('a comma-separated list of durations such as 0,5s,5m,30m');
      return ms;
    }
  }
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

/** The --help text for a command: usage line, description, then each flag with env var and default. */
export function helpText(usage: string, description: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map(([name, s]) => {
    const ph = s.type === 'bool' ? '' : ` <${s.placeholder ?? placeholderOf(s.type)}>`;
    const left = `${s.short ? `-${s.short}, ` : '    '}--${name}${ph}`;
    const extras = [s.env ? `env ${s.env}` : '', defaultText(s)].filter(Boolean).join('; ');
    return [left, `${s.describe}${extras ? ` (${extras})` : ''}`] as const;
  });
  const width = Math.min(34, Math.max(...rows.map(([l]) => l.length)) + 2);
  const lines = rows.map(([l, r]) => `  ${l.padEnd(width)}${r}`);
  return `Usage: ${usage}\n\n${description}\n\nFlags:\n${lines.join('\n')}\n`;
}

function placeholderOf(type: FlagType): string {
  return {
    string: 'value',
    int: 'n',
    bool: '',
    duration: 'duration',
    size: 'size',
    list: 'a,b',
    durations: 'd1,d2,...',
  }[type];
}

function defaultText(s: AnyFlagSpec): string {
  if (s.default === undefined || typeof s.default === 'function') return '';
  const d = s.default as unknown;
  if (s.type === 'duration') return `default ${formatDurationMs(d as number)}`;
  if (s.type === 'durations') return `default ${(d as number[]).map(formatDurationMs).join(',')}`;
  if (s.type === 'size') return `default ${formatSize(d as number)}`;
  if (s.type === 'list') return (d as string[]).length ? `default ${(d as string[]).join(',')}` : '';
  if (s.type === 'bool') return d ? 'default on' : '';
  return `default ${String(d)}`;
}
