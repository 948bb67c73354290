import { ExitCode, runMain, usageError } from './exit.js';

/** One subcommand of an app. */
export interface Command {
  run: (argv: string[]) => Promise<number>;
  /** One line for the app's --help. */
  summary: string;
}

/** The exit codes, as every app's --help lists them. */
const exitCodesHelp = `Exit codes: 0 ok, 1 failure, 2 bad usage, 3 auth key (or its tags) refused or expired,
4 control server or peer unreachable, 5 state dir locked or corrupt, 6 check failed, 130 interrupted.`;

/**
 * The main of a multi-command program: `<app> <command> [flags]`, `<app> --help`. `intro` is the
 * text above the command list.
 */
export function runCommands(app: string, intro: string, commands: Record<string, Command>): Promise<never> {
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
