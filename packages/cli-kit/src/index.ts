/**
 * @krkn/cli-kit — what krkns and krknc share as programs: flags backed by environment variables,
 * logging, the login experience on a terminal, the local admin socket, and exit codes.
 */
export { ExitCode, CliError, usageError, exitCodeFor, runMain } from './exit.js';
export type { ExitCodeValue } from './exit.js';
export { parseFlags, helpText } from './flags.js';
export type { AnyFlagSpec, FlagSpec, FlagSpecs, FlagType, Flags } from './flags.js';
export { parseDuration, parseSize, formatDurationMs, formatSize } from './units.js';
export { createLogger, prettyStream, logLevels } from './log.js';
export type { LogFormat } from './log.js';
export { showLoginOnTerminal, readyLine } from './login.js';
export { listenAdminSocket, adminFetch, socketAnswers } from './admin.js';
export type { AdminFetch } from './admin.js';
export { nodeAdminRoutes, pingCommand, whoisCommand, doctorCommand, diagnosticCommands, tailnetErrorHeader } from './node-commands.js';
export { runCommands, exitCodesHelp } from './commands.js';
export { completionScript, completionShells } from './completion.js';
export type { CompletableCommand, CompletionShell } from './completion.js';
export type { Command } from './commands.js';
export type { DiagnosticSpec, NodeAdminOptions, NodeCommandContext } from './node-commands.js';
export { bringUp, aborted } from './own-node.js';
export type { OwnNode } from './own-node.js';
export { helpFlag, loggingFlags, osHostLabel } from './common-flags.js';
