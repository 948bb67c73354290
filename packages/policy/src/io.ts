import { readFile } from 'node:fs/promises';
import { PolicyError } from './errors.js';
import { parsePolicy } from './model.js';
import type { Policy } from './model.js';

/**
 * Reads and parses a policy file. The file name in error messages and findings is `path` as given.
 *
 * @throws {@link PolicyError} `IO` when the file cannot be read, `PARSE` or `SCHEMA` as {@link parsePolicy}.
 */
export async function loadPolicy(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new PolicyError('IO', `${path}: cannot read policy file (${reason})`, undefined, { cause: err });
  }
  return parsePolicy(text, path);
}
