// The engine's worker runs our built JavaScript only: an app's module hooks (a TypeScript loader such as
// tsx, an --import or --require preload) must not load into it, where they cost every engine start 80-100 ms,
// and an inherited --input-type stops it from starting.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { withoutAppCodeOptions } from '../src/engine/client.js';
import { tempDir } from './helpers.js';

it('drops module hooks and preloads, with their values, and keeps every other option', () => {
  const tsx = ['--require', '/x/preflight.cjs', '--import', 'file:///x/loader.mjs'];
  expect(withoutAppCodeOptions([...tsx, '--cpu-prof', '--enable-source-maps'])).toEqual([
    '--cpu-prof',
    '--enable-source-maps',
  ]);
  expect(
    withoutAppCodeOptions(['-r', 'a', '--loader=b', '--experimental-loader', 'c', '--import=d', '--trace-gc']),
  ).toEqual(['--trace-gc']);
});

it('a real engine worker does not run the app process’s --import preload', () => {
  const dir = tempDir();
  const marks = join(dir.dir, 'marks');
  const preload = join(dir.dir, 'mark.mjs');
  writeFileSync(marks, '');
  // Notes the thread of every start it runs in: the app's main thread (0), and any worker it reaches.
  writeFileSync(
    preload,
    `import { appendFileSync } from 'node:fs'; import { threadId } from 'node:worker_threads';
     appendFileSync(${JSON.stringify(marks)}, threadId + '\\n');`,
  );
  const client = fileURLToPath(new URL('../dist/engine/client.js', import.meta.url));
  const app = `const { EngineClient } = await import(${JSON.stringify(client)});
    const engine = await EngineClient.start({ isolation: 'worker', stateDir: ${JSON.stringify(dir.dir)}, env: {} });
    await engine.terminate();`;
  const run = spawnSync(process.execPath, ['--import', preload, '--input-type=module', '-e', app], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  // Without withoutAppCodeOptions the worker inherits --import and marks its own thread too: "0\n1\n".
  expect(readFileSync(marks, 'utf8')).toBe('0\n');
  dir.remove();
});
