import type { CheckResult } from './checks.js';

const marks = { ok: ['ok  ', '32'], warn: ['warn', '33'], fail: ['FAIL', '31'] } as const;

/** The report as text: one line per check, its fix indented under it. */
export function formatReport(results: CheckResult[], color = false): string {
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const lines = results.flatMap((r) => {
    const [mark, code] = marks[r.status];
    const head = `${paint(code, mark)}  ${r.id.padEnd(15)} ${r.cause}`;
    return r.fix ? [head, `      ${' '.repeat(15)} fix: ${r.fix}`] : [head];
  });
  const failed = results.filter((r) => r.status !== 'ok').length;
  lines.push('', failed === 0 ? 'all checks passed' : `${failed} of ${results.length} checks need attention`);
  return `${lines.join('\n')}\n`;
}

/** 0 only when every check is ok; 6 (CHECK_FAILED) otherwise. */
export function reportExitCode(results: CheckResult[]): 0 | 6 {
  return results.every((r) => r.status === 'ok') ? 0 : 6;
}
