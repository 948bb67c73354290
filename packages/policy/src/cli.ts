#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkPath } from './check.js';
import type { CheckResult } from './check.js';
import { PolicyError } from './errors.js';
import { loadPolicy } from './io.js';
import { lint } from './lint.js';
import type { Finding } from './lint.js';
import { tagError } from './tag.js';

/** Something text can be written to: `process.stdout`, or a test's collector. */
export interface Writer {
  write(chunk: string): unknown;
}

/** Where {@link main} writes: results to `stdout`, usage and file errors to `stderr`. */
export interface CliIo {
  readonly stdout: Writer;
  readonly stderr: Writer;
}

/** Exit status of {@link main}: 0 clean or allowed, 1 lint errors or path denied, 2 usage or unreadable file. */
export type ExitCode = 0 | 1 | 2;

const USAGE = `Usage:
  krkn-policy lint <policy.hujson> [--json] [--tag tag:krkn ...] [--capability NAME]
  krkn-policy check <policy.hujson> --from X --to Y --port N [--proto tcp|udp] [--json]
  krkn-policy --help

lint    reports policy mistakes that hide or break krkn nodes, one per line as
        "file:line: severity rule: message" followed by "  fix: ...".
        --tag         a tag krkn's nodes advertise (repeatable); it must be owned and used
        --capability  the app-capability name krkns reads (default krkn.dev/cap/webhooks)
check   says whether X can open a connection to Y on port N, which rule allows it, or why not.
        X and Y are tag:name, a user (alice@example.com) or group:name.

Exit status: 0 clean / path allowed, 1 lint errors / path denied,
             2 usage error or unreadable or invalid policy file.
`;

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  tag: { type: 'string', multiple: true },
  capability: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  port: { type: 'string' },
  proto: { type: 'string' },
} as const;

const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  lint: ['help', 'json', 'tag', 'capability'],
  check: ['help', 'json', 'from', 'to', 'port', 'proto'],
};

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/**
 * The `krkn-policy` command, callable in-process (tests, `krkns policy ...`): `argv` excludes the node
 * binary and script, e.g. `['lint', 'policy.hujson', '--json']`. It never exits the process: usage, file
 * and policy errors are written to `stderr` and returned as exit code 2; only an internal bug rejects.
 */
export async function main(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  try {
    const { command, file, values } = parseCommandLine(argv);
    if (command === 'help') {
      io.stdout.write(USAGE);
      return 0;
    }
    const policy = await loadPolicy(file);
    return command === 'lint' ? runLint(policy, values, io) : runCheck(policy, values, io);
  } catch (err) {
    if (err instanceof PolicyError) {
      io.stderr.write(`krkn-policy: ${err.message}\n`);
      if (err.code === 'USAGE') io.stderr.write(`Run "krkn-policy --help" for usage.\n`);
      return 2;
    }
    throw err;
  }
}

function parseCommandLine(argv: readonly string[]): {
  command: 'lint' | 'check' | 'help';
  file: string;
  values: Values;
} {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, file, ...extra] = positionals;
  if (values.help || command === 'help') return { command: 'help', file: '', values };
  if (command === undefined) throw usage('missing command (lint or check)');
  const allowed = COMMAND_OPTIONS[command];
  if (allowed === undefined) throw usage(`unknown command "${command}"`);
  const stray = Object.keys(values).find((k) => !allowed.includes(k));
  if (stray !== undefined) throw usage(`--${stray} is not an option of ${command}`);
  if (file === undefined) throw usage(`${command} needs a policy file`);
  if (extra.length > 0) throw usage(`unexpected argument "${extra[0]}"`);
  return { command: command as 'lint' | 'check', file, values };
}

function runLint(policy: Parameters<typeof lint>[0], values: Values, io: CliIo): ExitCode {
  const tags = values.tag ?? [];
  const badTag = tags.find((t) => tagError(t) !== undefined);
  if (badTag !== undefined) throw usage(`--tag must look like tag:name, got "${badTag}"`);
  const findings = lint(policy, {
    krknTags: tags,
    ...(values.capability ? { capabilityName: values.capability } : {}),
  });
  if (values.json)
    io.stdout.write(JSON.stringify({ file: policy.file, findings, summary: summarize(findings) }, null, 2) + '\n');
  else io.stdout.write(formatFindings(policy.file, findings));
  return findings.some((f) => f.severity === 'error') ? 1 : 0;
}

function runCheck(policy: Parameters<typeof checkPath>[0], values: Values, io: CliIo): ExitCode {
  const { from, to, port: portText, proto } = values;
  if (from === undefined || to === undefined || portText === undefined)
    throw usage('check needs --from, --to and --port');
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535)
    throw usage(`--port must be a number 0-65535, got "${portText}"`);
  if (proto !== undefined && proto !== 'tcp' && proto !== 'udp')
    throw usage(`--proto must be tcp or udp, got "${proto}"`);
  const port = Number(portText);
  const result = checkPath(policy, { from, to, port, ...(proto ? { proto } : {}) });
  if (values.json) io.stdout.write(JSON.stringify({ file: policy.file, from, to, port, ...result }, null, 2) + '\n');
  else io.stdout.write(formatCheck(policy.file, from, to, port, result));
  return result.allowed ? 0 : 1;
}

/** Human lint output: `file:line: severity rule: message`, then `  fix: ...`, then a count. */
function formatFindings(file: string, findings: readonly Finding[]): string {
  if (findings.length === 0) return `${file}: no findings\n`;
  const lines = findings.map((f) => `${f.file}:${f.line}: ${f.severity} ${f.rule}: ${f.message}\n  fix: ${f.fix}\n`);
  const s = summarize(findings);
  return lines.join('') + `${file}: ${s.error} error(s), ${s.warn} warning(s), ${s.info} info\n`;
}

function formatCheck(file: string, from: string, to: string, port: number, result: CheckResult): string {
  const via = result.rule ? ` (${result.rule.kind} at ${file}:${result.rule.line})` : '';
  const head = `${result.allowed ? 'allowed' : 'denied'}: ${from} -> ${to} port ${port}${via}\n`;
  return head + result.reasons.map((r) => `  - ${r}\n`).join('');
}

function summarize(findings: readonly Finding[]): Record<Finding['severity'], number> {
  const count = (s: Finding['severity']): number => findings.filter((f) => f.severity === s).length;
  return { error: count('error'), warn: count('warn'), info: count('info') };
}

function usage(message: string): PolicyError {
  return new PolicyError('USAGE', message);
}

/** True when this file is the process entry point (also through npm's bin symlink). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(
        `krkn-policy: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 2;
    },
  );
}
