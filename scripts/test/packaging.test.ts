// The npm packages as a user gets them: every workspace packed, the tarballs installed into an empty
// directory by scripts/pack-install.sh (the Dockerfile's build stage runs the same script) with no Go
// on PATH, then the installed krkns (started through the image's entrypoint, its key from a secret
// file) and krknc join a real local tailnet, publish and receive an event.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTailnet, tiedToParent, type Tailnet } from '@krkn/testnet';
import { LocalApp, Proc, childEnv, stopAll, tempDir, until } from '../../apps/krknc/test/helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const install = tempDir('krkn-packaging-');
const bin = (name: string) => join(install.dir, 'node_modules/.bin', name);

/** PATH without any directory that holds a `go` executable: the install must not need Go. */
const pathWithoutGo = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((dir) => !isExecutable(join(dir, 'go')))
  .join(delimiter);

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Runs an installed program to its end with PATH free of Go (for commands that need no peer). */
function runInstalled(name: string, args: string[], env: Record<string, string> = {}) {
  const options = { env: childEnv({ PATH: pathWithoutGo, ...env }), encoding: 'utf8', timeout: 60_000 } as const;
  return spawnSync(bin(name), args, options);
}

/** Starts a program (an installed one by name, or a path) with the install's bin dir first on PATH. */
function startInstalled(name: string, args: string[], env: Record<string, string>): Proc {
  const program = name.includes('/') ? name : bin(name);
  const PATH = [join(install.dir, 'node_modules/.bin'), pathWithoutGo].join(delimiter);
  return new Proc(name, spawn(...tiedToParent(program, args), { env: childEnv({ PATH, ...env }) }));
}

let tailnet: Tailnet | undefined;
const app = new LocalApp();

beforeAll(() => {
  expect(pathWithoutGo.split(delimiter).some((dir) => isExecutable(join(dir, 'go')))).toBe(false);
  const packed = spawnSync('bash', [join(root, 'scripts/pack-install.sh'), install.dir], {
    env: { ...process.env, PATH: pathWithoutGo },
    encoding: 'utf8',
    timeout: 1_140_000, // compiling the SQLite binding takes minutes on a busy machine
  });
  expect(packed.status, `${packed.stdout}\n${packed.stderr}`).toBe(0);
}, 1_200_000);

afterAll(async () => {
  await stopAll();
  await app.stop();
  await tailnet?.stop();
  install.remove();
});

describe('the packed npm packages, installed without Go', () => {
  it('carry the prebuilt wasm node and Go glue inside @krkn/tailnet-wasm', () => {
    const wasmDir = join(install.dir, 'node_modules/@krkn/tailnet-wasm/build');
    expect(existsSync(join(wasmDir, 'tailnet.wasm'))).toBe(true);
    expect(existsSync(join(wasmDir, 'wasm_exec.cjs'))).toBe(true);
    expect(existsSync(join(install.dir, 'node_modules/@krkn/testnet'))).toBe(false);
  });

  it('krkns --help and krknc --help list their commands', () => {
    for (const name of ['krkns', 'krknc']) {
      const help = runInstalled(name, ['--help']);
      expect(help.status, help.stderr).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`^Usage: ${name} <command> \\[flags\\]`));
      expect(help.stdout).toContain('completion');
    }
  });

  it('joins the local tailnet (krkns through docker/entrypoint.sh), sends with krknc send, receives with listen', async () => {
    tailnet = await startTailnet();
    const user = await tailnet.createUser('pkg');
    const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
    await app.start();
    const node = (name: string) => {
      return ['--hostname', name, '--state-dir', join(install.dir, `state-${name}`), '--control-url', tailnet!.url];
    };

    const keyFile = join(install.dir, 'ts_authkey');
    writeFileSync(keyFile, `${authKey}\n`, { mode: 0o600 });
    const entrypoint = join(root, 'docker/entrypoint.sh');
    const hub = startInstalled(entrypoint, ['run', ...node('hub'), '--log-format', 'json'], {
      TS_AUTHKEY_FILE: keyFile,
    });
    await hub.waitFor(/krkns ready: node \S+ \(100\.[\d.]+/, 90_000);
    const forwardTo = `${app.url}/in`;
    const listenArgs = ['listen', ...node('laptop'), '--server', 'hub', '--topic', 'pkg/**', '--forward-to', forwardTo];
    const listen = startInstalled('krknc', listenArgs, { TS_AUTHKEY: authKey });
    await listen.waitFor(/forwarding pkg\/\*\* from http:\/\/hub to /, 60_000);

    const body = `{"from":"the packed krknc","at":${Date.now()}}`;
    // Not spawnSync: the local app below lives on this process's event loop.
    const sendArgs = ['send', ...node('ci'), '--server', 'hub', '--topic', 'pkg/event', '--data', body];
    const send = startInstalled('krknc', sendArgs, { TS_AUTHKEY: authKey });
    expect(await send.exited, send.output()).toBe(0);
    const id = send.stdout.trim();
    expect(id).toMatch(/^evt_\w+$/);
    const arrived = () => (app.withEvent(id).length ? app.withEvent(id) : undefined);
    const [got] = await until(arrived, `event ${id} at the local app`, 60_000);
    expect(got!.url).toBe('/in');
    expect(got!.body.toString()).toBe(body);
  }, 240_000);
});
