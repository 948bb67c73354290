/**
 * @krkn/cli-kit — what krkns and krknc share as programs: flags backed by environment variables,
 * logging, the login experience on a terminal, the local admin socket, and exit codes.
 */
export { ExitCode, CliError, usageError } from './exit.js';
export type { ExitCodeValue } from './exit.js';
export { parseFlags, helpText } from './flags.js';
export type { AnyFlagSpec, FlagSpec, FlagSpecs, FlagType, Flags } from './flags.js';
export { formatDurationMs, formatSize, parseDuration } from './units.js';
export { createLogger } from './log.js';
export type { LogFormat } from './log.js';
export { readyLine } from './login.js';
export { AdminClient, adminRoutes, listenAdminSocket } from './admin.js';
export type { AdminRoutesOptions } from './admin.js';
export { diagnosticCommands } from './node-commands.js';
export type { DiagnosticSpec } from './node-commands.js';
export { runCommands } from './commands.js';
export { completionScript, completionShells } from './completion.js';
export type { CompletableCommand, CompletionShell } from './completion.js';
export type { Command } from './commands.js';
export { logOutStoredIdentity } from './logout.js';
export { bringUp, aborted } from './own-node.js';
export type { OwnNode } from './own-node.js';
export {
  controlUrlFlag,
  helpFlag,
  loggerFromFlags,
  loggingFlags,
  nodeNameFlags,
  osHostLabel,
  positive,
  stateDirFor,
  tagsFlag,
  tcpPort,
} from './common-flags.js';
export type { NodeNameOptions } from './common-flags.js';
export { listenerFlags, listenerLimitsOf } from './listener-flags.js';
