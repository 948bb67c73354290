import { tagError } from '@krkn/policy';
import { TailnetError } from './errors.js';

/** Tailscale's own control server, used when no control URL is configured. */
export const defaultControlUrl = 'https://controlplane.tailscale.com';

/**
 * A boolean as krkn reads it from the environment or a flag: 1/true/yes/on or 0/false/no/off
 * (any case, surrounding space ignored); undefined for anything else.
 */
export function parseBoolean(text: string): boolean | undefined {
  const t = text.trim();
  if (/^(1|true|yes|on)$/i.test(t)) return true;
  if (/^(0|false|no|off)$/i.test(t)) return false;
  return undefined;
}

export function validateHostname(hostname: string): string {
  if (typeof hostname !== 'string' || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(hostname)) {
    const why = `hostname ${JSON.stringify(hostname)} is not a DNS label (letters, digits, '-', at most 63)`;
    throw new TailnetError('BAD_ARGUMENT', why);
  }
  return hostname;
}

export function validateControlUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TailnetError('BAD_ARGUMENT', `control URL ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TailnetError('BAD_ARGUMENT', `control URL ${url} must be http:// or https://`);
  }
  return url.replace(/\/+$/, '');
}

export function validateTags(tags: string[]): string[] {
  const problem = tags.map(tagError).find(Boolean);
  if (problem) throw new TailnetError('BAD_ARGUMENT', problem);
  return tags;
}

export function validatePort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TailnetError('BAD_ARGUMENT', `port ${port} is not between 1 and 65535`);
  }
}
