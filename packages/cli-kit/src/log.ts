import { Writable } from 'node:stream';
import { pino, type Logger, type Level } from 'pino';

/** Log output: JSON lines (for journald and log shippers) or one readable line per entry. */
export type LogFormat = 'json' | 'pretty';

export const logLevels: Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

/** A pino logger writing to stderr (stdout is for the command's own output). */
export function createLogger(opts: {
  level: string;
  format: LogFormat;
  stream?: NodeJS.WritableStream;
  color?: boolean;
}): Logger {
  const stream = opts.stream ?? process.stderr;
  const dest =
    opts.format === 'json'
      ? stream
      : prettyStream(stream, opts.color ?? Boolean((stream as { isTTY?: boolean }).isTTY));
  return pino({ level: opts.level, base: undefined }, dest);
}

const levelNames: Record<number, [string, string]> = {
  10: ['TRACE', '90'],
  20: ['DEBUG', '36'],
  30: ['INFO ', '32'],
  40: ['WARN ', '33'],
  50: ['ERROR', '31'],
  60: ['FATAL', '35'],
};

// Fields every line has, or that the message already says.
const hidden = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** Formats pino's JSON lines as "12:00:01 INFO  message key=value". */
function prettyStream(out: NodeJS.WritableStream, color: boolean): Writable {
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          out.write(`${line}\n`);
          continue;
        }
        const [name, code] = levelNames[entry.level as number] ?? ['LOG  ', '0'];
        const time = new Date(entry.time as number).toTimeString().slice(0, 8);
        const extras = Object.entries(entry)
          .filter(([k]) => !hidden.has(k))
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        const msg = entry.msg ?? '';
        const text = typeof msg === 'string' ? msg : JSON.stringify(msg);
        out.write(`${paint('90', time)} ${paint(code, name)} ${text}${extras ? ` ${paint('90', extras)}` : ''}\n`);
      }
      done();
    },
  });
}
