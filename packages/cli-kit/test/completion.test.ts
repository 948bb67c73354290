// Shell completion, checked in the real shells: the scripts parse, and bash completes commands and
// flags from the same tables --help prints.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { completionScript, completionShells, helpText, type CompletableCommand } from '@krkn/cli-kit';

const commands: Record<string, CompletableCommand> = {
  run: {
    summary: "run it (the hub's [main] command: foreground)",
    flags: {
      'state-dir': { type: 'string', describe: "where it's kept" },
      verbose: { type: 'bool', short: 'v', describe: 'say more' },
    },
  },
  policy: { summary: 'parses its own arguments' },
};

const dir = mkdtempSync(join(tmpdir(), 'krkn-completion-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function scriptFile(shell: (typeof completionShells)[number]): string {
  const file = join(dir, `demo.${shell}`);
  writeFileSync(file, completionScript(shell, 'demo-app', commands));
  return file;
}

/** What bash's completion function offers for the words typed so far (the last one is being typed). */
function bashComplete(words: string[]): string[] {
  const typed = words.map((w) => `'${w}'`).join(' ');
  const script = `source ${scriptFile('bash')}; COMP_WORDS=(${typed}); COMP_CWORD=${words.length - 1}
    _demo_app; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const res = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  expect(res.status, res.stderr).toBe(0);
  return res.stdout.split('\n').filter(Boolean);
}

describe('completion scripts', () => {
  it.each(['bash', 'zsh', 'fish'] as const)('%s parses the script without errors', (shell) => {
    const res = spawnSync(shell, ['-n', scriptFile(shell)], { encoding: 'utf8' });
    expect(res.error).toBeUndefined();
    expect(res.status, res.stderr).toBe(0);
  });

  it('bash completes command names, then that command’s flags from its table', () => {
    expect(bashComplete(['demo-app', ''])).toEqual(['run', 'policy', '--help']);
    expect(bashComplete(['demo-app', 'ru'])).toEqual(['run']);
    expect(bashComplete(['demo-app', 'run', '--'])).toEqual(['--state-dir', '--verbose', '--help']);
    expect(bashComplete(['demo-app', 'policy', '-'])).toEqual(['--help', '-h']);
  });

  it('every flag --help lists is offered in every shell', () => {
    const help = helpText('demo-app run', 'Runs.', commands.run!.flags!);
    const listed = [...help.matchAll(/--([a-z-]+)/g)].map((m) => m[1]!);
    expect(listed).toEqual(['state-dir', 'verbose']);
    for (const shell of completionShells) {
      const script = completionScript(shell, 'demo-app', commands);
      for (const flag of listed) expect(script, `${shell} --${flag}`).toMatch(new RegExp(`(--|-l )${flag}\\b`));
    }
  });
});
