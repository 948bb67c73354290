import type { FlagSpecs } from './flags.js';

/** The shells `<app> completion <shell>` writes a script for. */
export const completionShells = ['bash', 'zsh', 'fish'] as const;
export type CompletionShell = (typeof completionShells)[number];

/** What completion needs of a command: its one-line summary and the flag table its --help prints. */
export interface CompletableCommand {
  summary: string;
  flags?: FlagSpecs;
}

/** One flag as every shell sees it: long name, optional short letter, whether it takes a value. */
interface FlagWord {
  long: string;
  short: string | undefined;
  takesValue: boolean;
  describe: string;
}

function flagWords(flags: FlagSpecs | undefined): FlagWord[] {
  const words = Object.entries(flags ?? {}).map(([name, spec]) => ({
    long: name,
    short: spec.short,
    takesValue: spec.type !== 'bool',
    describe: spec.describe,
  }));
  const help: FlagWord = { long: 'help', short: 'h', takesValue: false, describe: 'show this help' };
  if (!words.some((w) => w.long === 'help')) words.push(help);
  return words;
}

/**
 * The completion script for `app` in `shell`, from the same command and flag tables the help text
 * is printed from, so completion never offers a flag --help does not list.
 */
export function completionScript(
  shell: CompletionShell,
  app: string,
  commands: Record<string, CompletableCommand>,
): string {
  const table = Object.entries(commands).map(([name, c]) => ({ name, summary: c.summary, flags: flagWords(c.flags) }));
  switch (shell) {
    case 'bash':
      return bashScript(app, table);
    case 'zsh':
      return zshScript(app, table);
    case 'fish':
      return fishScript(app, table);
  }
}

type Table = { name: string; summary: string; flags: FlagWord[] }[];

/** A shell-safe identifier for the app's completion function. */
const fnName = (app: string): string => `_${app.replace(/[^A-Za-z0-9_]/g, '_')}`;

/** --long and, if it has one, -s. */
const spellings = (f: FlagWord): string[] => [`--${f.long}`, ...(f.short ? [`-${f.short}`] : [])];

function bashScript(app: string, table: Table): string {
  const cases = table
    .map(({ name, flags }) => {
      const words = flags.flatMap(spellings).join(' ');
      const valued = flags.filter((f) => f.takesValue).flatMap(spellings);
      // After a flag that takes a value, offer file names (the value is often a path).
      const valueCase = valued.length
        ? `      case "$prev" in ${valued.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;; esac\n`
        : '';
      return `    ${name})\n${valueCase}      COMPREPLY=($(compgen -W "${words}" -- "$cur")) ;;`;
    })
    .join('\n');
  return `# bash completion for ${app}: eval "$(${app} completion bash)"
${fnName(app)}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${table.map((c) => c.name).join(' ')} --help" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
}
complete -o default -F ${fnName(app)} ${app}
`;
}

/** Text safe inside a single-quoted zsh/fish string, with zsh's _arguments brackets and colons escaped. */
const quoted = (s: string): string => s.replace(/'/g, `'\\''`);
const zshDescribe = (s: string): string => quoted(s).replace(/([[\]:])/g, '\\$1');

function zshScript(app: string, table: Table): string {
  const commandList = table.map((c) => `    '${c.name}:${zshDescribe(c.summary)}'`).join('\n');
  const cases = table
    .map(({ name, flags }) => {
      const specs = flags.map((f) => {
        const value = f.takesValue ? `:${f.long}: ` : ''; // a value, with no candidates to offer
        const names = f.short ? `'(-${f.short} --${f.long})'{-${f.short},--${f.long}}` : `--${f.long}`;
        return `        ${names}'[${zshDescribe(f.describe)}]${value}'`;
      });
      return `      ${name})\n        _arguments \\\n${specs.join(' \\\n')} && return ;;`;
    })
    .join('\n');
  return `#compdef ${app}
# zsh completion for ${app}: ${app} completion zsh > "\${fpath[1]}/_${app}", or eval "$(${app} completion zsh)"
${fnName(app)}() {
  local -a commands
  commands=(
${commandList}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands '${app} command' commands
    return
  fi
  local command=$words[2]
  shift words; (( CURRENT-- ))
  case $command in
${cases}
  esac
}
compdef ${fnName(app)} ${app}
`;
}

function fishScript(app: string, table: Table): string {
  const lines = [`# fish completion for ${app}: ${app} completion fish > ~/.config/fish/completions/${app}.fish`];
  lines.push(`complete -c ${app} -f`);
  const noCommandYet = `not __fish_seen_subcommand_from ${table.map((c) => c.name).join(' ')}`;
  for (const c of table) lines.push(`complete -c ${app} -n '${noCommandYet}' -a ${c.name} -d '${quoted(c.summary)}'`);
  for (const c of table) {
    for (const f of c.flags) {
      const short = f.short ? ` -s ${f.short}` : '';
      const value = f.takesValue ? ' -r -F' : '';
      const after = `__fish_seen_subcommand_from ${c.name}`;
      lines.push(`complete -c ${app} -n '${after}' -l ${f.long}${short}${value} -d '${quoted(f.describe)}'`);
    }
  }
  return `${lines.join('\n')}\n`;
}
