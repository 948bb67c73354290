/** How a stored body is shown. */
export type BodyMode = 'json' | 'text' | 'hex';

export const bodyModes: readonly BodyMode[] = ['json', 'text', 'hex'];

/** Bodies larger than this are shown cut (the raw bytes stay available from the API). */
export const shownBodyBytes = 256 * 1024;

/** The mode that fits a body: formatted JSON if it parses, text if it is UTF-8, else hex. */
export function defaultMode(body: Buffer): BodyMode {
  const text = utf8(body);
  if (text === undefined) return 'hex';
  return parsesAsJson(text) ? 'json' : 'text';
}

/** The body rendered as text in `mode` (plain text: the caller escapes it). */
export function renderBody(body: Buffer, mode: BodyMode): string {
  const shown = body.subarray(0, shownBodyBytes);
  if (mode === 'hex') return hexDump(shown);
  const text = utf8(shown) ?? shown.toString('latin1');
  if (mode === 'json' && parsesAsJson(text)) return JSON.stringify(JSON.parse(text), null, 2);
  return text;
}

function utf8(body: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return undefined;
  }
}

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** 16 bytes a line: offset, hex, and the printable ASCII. */
function hexDump(bytes: Buffer): string {
  const lines: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, at + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${at.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}
