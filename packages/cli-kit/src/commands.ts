import { completionScript, completionShells, type CompletionShell } from './completion.js';
import { ExitCode, runMain, usageError } from './exit.js';
import type { FlagSpecs } from './flags.js';

/** One subcommand of an app. */
export interface Command {
  run: (argv: string[]) => Promise<number>;
  /** One line for the app's --help. */
  summary: string;
  /** The flag table its --help prints, for shell completion; absent when it parses its own (policy). */
  flags?: FlagSpecs;
}

/** The exit codes, as every app's --help lists them. */
const exitCodesHelp = `Exit codes: 0 ok, 1 failure, 2 bad usage, 3 auth key (or its tags) refused or expired,
4 control server or peer unreachable, 5 state dir locked or corrupt, 6 check failed, 130 interrupted.`;

/**
 * The main of a multi-command program: `<app> <command> [flags]`, `<app> --help`. `intro` is the
 * text above the command list.
 */
export function runCommands(app: string, intro: string, appCommands: Record<string, Command>): Promise<never> {
  const commands: Record<string, Command> = { ...appCommands };
  commands.completion = completionCommand(app, commands);
  const usage = `Usage: ${app} <command> [flags]

${intro}

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

Run '${app} <command> --help' for its flags. ${exitCodesHelp}
`;
  return runMain(async () => {
    const [name, ...rest] = process.argv.slice(2);
    if (!name || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(usage);
      return name ? ExitCode.OK : ExitCode.USAGE;
    }
    const command = commands[name];
    if (!command) throw usageError(`unknown command ${name} (see ${app} --help)`);
    return command.run(rest);
  });
}

/** `<app> completion bash|zsh|fish`: prints the shell's completion script for every command. */
function completionCommand(app: string, commands: Record<string, Command>): Command {
  const usage = `Usage: ${app} completion ${completionShells.join('|')}

Prints a completion script for the shell, from the same flag tables as --help:
  bash  eval "$(${app} completion bash)"   (in ~/.bashrc)
  zsh   eval "$(${app} completion zsh)"    (in ~/.zshrc, after compinit)
  fish  ${app} completion fish > ~/.config/fish/completions/${app}.fish
`;
  return {
    summary: `print a shell completion script (${completionShells.join(', ')})`,
    run: async (argv) => {
      const [shell, ...extra] = argv;
      if (shell === '--help' || shell === '-h') {
        process.stdout.write(usage);
        return ExitCode.OK;
      }
      if (!isShell(shell) || extra.length > 0) {
        throw usageError(`${app} completion needs one of ${completionShells.join(', ')}`);
      }
      process.stdout.write(completionScript(shell, app, commands));
      return ExitCode.OK;
    },
  };
}

function isShell(name: string | undefined): name is CompletionShell {
  return (completionShells as readonly string[]).includes(name ?? '');
}
