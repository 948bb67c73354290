import { spawn } from 'node:child_process';
import { TestnetError } from './errors.js';

/** What a finished CLI command printed and how it exited. */
export interface CliResult {
  /** Exit code; `null` when the command was killed (e.g. by its timeout). */
  code: number | null;
  /** Everything written to stdout, as UTF-8. */
  stdout: string;
  /** Everything written to stderr, as UTF-8. */
  stderr: string;
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  /** Kill the command after this long and throw a `TIMEOUT` error. */
  timeoutMs: number;
  /** Run as this user instead of ours (needs root); see {@link RunAs}. */
  runAs?: RunAs | undefined;
}

/** An unprivileged identity for a child (PostgreSQL refuses to run as root). */
export interface RunAs {
  uid: number;
  gid: number;
}

/**
 * Runs a short-lived command to completion and returns its output, whatever the exit code.
 * Throws only when it cannot be spawned or runs past `timeoutMs`.
 */
export function runCommand(command: string[], options: RunOptions): Promise<CliResult> {
  const [file, ...args] = command;
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'], ...options.runAs });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new TestnetError('CLI_FAILED', `could not run ${file}: ${err.message}`, { command }, { cause: err }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const result = {
        code,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      };
      if (timedOut) {
        reject(
          new TestnetError('TIMEOUT', `${command.join(' ')} took longer than ${options.timeoutMs} ms`, {
            command,
            output: result.stderr || result.stdout,
          }),
        );
      } else {
        resolve(result);
      }
    });
  });
}
