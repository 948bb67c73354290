// What the benchmark scripts share: the machine line under each table, and writing a table into
// its marked section of README.md.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

/** "Measured 2026-11-22 on 2 × AMD EPYC, 24 GiB, Node v20.20.2" */
export function measuredOn(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'cpu';
  return `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

/** Replaces what stands between `<!-- name:start -->` and `<!-- name:end -->` in README.md. */
export function writeReadmeSection(name: string, table: string): void {
  const path = new URL('../README.md', import.meta.url);
  const text = readFileSync(path, 'utf8');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < 0) throw new Error(`README.md has no ${start} … ${end} section`);
  writeFileSync(path, `${text.slice(0, i + start.length)}\n${table}${text.slice(j)}`);
  console.error(`README.md: ${name} updated`);
}
