import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parsePolicy } from '@krkn/policy';
import type { Policy } from '@krkn/policy';

/** Absolute path of a fixture file. */
export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** A fixture parsed as a policy, with its bare name as the file name in messages. */
export function fixture(name: string): Policy {
  return parsePolicy(readFileSync(fixturePath(name), 'utf8'), name);
}

/** A policy from inline HuJSON text. */
export function policy(text: string): Policy {
  return parsePolicy(text, 'inline.hujson');
}
