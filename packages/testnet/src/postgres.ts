// A throwaway PostgreSQL server for tests: Debian's postgresql package, initdb in a temp dir, a free
// port on 127.0.0.1, the unix socket in the temp dir. Several can run at once; none outlives the test.

import { randomBytes } from 'node:crypto';
import { chown, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childEnv, forgetTempDir, removeOnExit, startProcess, type ManagedProcess } from './children.js';
import { TestnetError } from './errors.js';
import { freeTcpPort } from './ports.js';
import { runCommand, type RunAs } from './run.js';
import { waitFor } from './wait.js';

const PG_ROOT = '/usr/lib/postgresql';
const MAX_START_ATTEMPTS = 3;
const CLI_TIMEOUT_MS = 60_000;
/** The superuser initdb creates; tests connect as it with {@link Postgres.password}. */
const SUPERUSER = 'krkn';

export interface StartPostgresOptions {
  /** Directory holding initdb, postgres and createdb (default: newest /usr/lib/postgresql/N/bin, or $KRKN_PG_BIN). */
  binDir?: string;
  /** Give up when the server is not ready after this long (default 30 s). */
  startTimeoutMs?: number;
  /** fsync on commit (default true: store benchmarks must pay for durability like production does). */
  fsync?: boolean;
  /** Keep the temp dir after stop() (default: $KRKN_TESTNET_KEEP === '1'). */
  keepDir?: boolean;
}

/**
 * Starts a PostgreSQL server of its own: `initdb` (superuser `krkn`, a random password, scram over TCP,
 * trust only on its private unix socket), then `postgres` on a free 127.0.0.1 port. Resolves once it
 * accepts connections. Running as root, the server runs as the `postgres` user (PostgreSQL refuses root).
 * Call {@link Postgres.stop} when done; if the process exits first, the server dies with it anyway.
 */
export function startPostgres(options: StartPostgresOptions = {}): Promise<Postgres> {
  return Postgres.start(options);
}

interface PostgresInit {
  binDir: string;
  dir: string;
  password: string;
  passwordFile: string;
  runAs: RunAs | undefined;
  keepDir: boolean;
  fsync: boolean;
}

/** A running test PostgreSQL server; see {@link startPostgres}. */
export class Postgres {
  readonly host = '127.0.0.1';
  readonly user = SUPERUSER;
  /** The superuser's password (random per server). */
  readonly password: string;
  /** A 0600 file holding {@link password}, as a deployment would pass it. */
  readonly passwordFile: string;
  /** The temp dir: data/, the unix socket, postgres.log. */
  readonly dir: string;
  #port = 0;
  #proc: ManagedProcess | undefined;
  #databases = 0;
  readonly #init: PostgresInit;

  /** See {@link startPostgres}. */
  static async start(options: StartPostgresOptions = {}): Promise<Postgres> {
    const binDir = options.binDir ?? process.env.KRKN_PG_BIN ?? (await newestPgBin());
    const keepDir = options.keepDir ?? process.env.KRKN_TESTNET_KEEP === '1';
    const dir = await mkdtemp(join(tmpdir(), 'krkn-pg-'));
    if (!keepDir) removeOnExit(dir);
    try {
      const runAs = unprivilegedUser();
      if (runAs) await chown(dir, runAs.uid, runAs.gid);
      const password = randomBytes(18).toString('base64url');
      const passwordFile = join(dir, 'password');
      await writeFile(passwordFile, password, { mode: 0o600 });
      if (runAs) await chown(passwordFile, runAs.uid, runAs.gid);
      const pg = new Postgres({ binDir, dir, password, passwordFile, runAs, keepDir, fsync: options.fsync ?? true });
      await pg.#initdb();
      for (let attempt = 1; ; attempt++) {
        try {
          await pg.#launch(await freeTcpPort(), options.startTimeoutMs ?? 30_000);
          return pg;
        } catch (err) {
          // Another process can take the port between our probe and the server's bind: pick a new one.
          const clash = err instanceof TestnetError && /already in use/.test(err.details.output ?? '');
          if (!clash || attempt >= MAX_START_ATTEMPTS) throw err;
        }
      }
    } catch (err) {
      if (!keepDir) await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private constructor(init: PostgresInit) {
    this.#init = init;
    this.dir = init.dir;
    this.password = init.password;
    this.passwordFile = init.passwordFile;
  }

  get port(): number {
    return this.#port;
  }

  /** A `postgres://` URL for `database`, without the password (pass that apart, as production must). */
  url(database = 'postgres'): string {
    return `postgres://${this.user}@${this.host}:${this.#port}/${database}`;
  }

  /** Creates a fresh, empty database (one per test keeps tests apart) and returns its name. */
  async createDatabase(name = `t${++this.#databases}_${randomBytes(3).toString('hex')}`): Promise<string> {
    await this.#cli('createdb', ['-h', this.dir, '-p', String(this.#port), '-U', SUPERUSER, name]);
    return name;
  }

  /** True while the server process runs. */
  get running(): boolean {
    return this.#proc?.running ?? false;
  }

  /** Stops the server but keeps its data, e.g. to test a store through a database outage. */
  async stopServer(): Promise<void> {
    await this.#proc?.stop(10_000);
  }

  /** Kills the server at once (SIGKILL of the postmaster): a crash, not a shutdown. */
  async killServer(): Promise<void> {
    this.#proc?.signal('SIGKILL');
    await this.#proc?.exited;
  }

  /** Starts the server again on the same port with the same data, after {@link stopServer} or {@link killServer}. */
  async startServer(timeoutMs = 30_000): Promise<void> {
    if (this.running) return;
    await this.#launch(this.#port, timeoutMs);
  }

  /** Stops the server and removes its temp dir. */
  async stop(): Promise<void> {
    await this.stopServer();
    if (!this.#init.keepDir) {
      await rm(this.dir, { recursive: true, force: true });
      forgetTempDir(this.dir);
    }
  }

  async #initdb(): Promise<void> {
    await this.#cli('initdb', [
      '-D',
      join(this.dir, 'data'),
      '-U',
      SUPERUSER,
      `--pwfile=${this.passwordFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
      '--no-instructions',
    ]);
  }

  async #launch(port: number, timeoutMs: number): Promise<void> {
    this.#port = port;
    const data = join(this.dir, 'data');
    await rm(join(data, 'postmaster.pid'), { force: true }); // left by killServer(); ours, and dead
    const proc = startProcess({
      command: join(this.#init.binDir, 'postgres'),
      args: [
        '-D',
        data,
        '-h',
        this.host,
        '-p',
        String(port),
        '-k',
        this.dir,
        // Small: several servers run at once on a shared test machine.
        '-c',
        'shared_buffers=16MB',
        '-c',
        'max_connections=60',
        '-c',
        `fsync=${this.#init.fsync ? 'on' : 'off'}`,
      ],
      env: childEnv(this.dir),
      cwd: this.dir,
      logFile: join(this.dir, 'postgres.log'),
      runAs: this.#init.runAs,
    });
    this.#proc = proc;
    const failure = (why: string) =>
      new TestnetError('POSTGRES_START_FAILED', `postgres ${why}`, {
        command: proc.command,
        exitCode: proc.exitInfo?.code,
        output: proc.tail(),
      });
    try {
      await waitFor(async () => ((await postmasterStatus(data)) === 'ready' ? true : undefined), {
        timeoutMs,
        intervalMs: 50,
        what: 'postgres to accept connections',
        giveUpIf: () => (proc.running ? undefined : failure('exited while starting')),
      });
    } catch (err) {
      await proc.stop(2_000);
      throw err instanceof TestnetError && err.code === 'TIMEOUT'
        ? failure(`was not ready after ${timeoutMs} ms`)
        : err;
    }
  }

  async #cli(tool: string, args: string[]): Promise<void> {
    const command = [join(this.#init.binDir, tool), ...args];
    const result = await runCommand(command, {
      env: childEnv(this.dir),
      timeoutMs: CLI_TIMEOUT_MS,
      runAs: this.#init.runAs,
    });
    if (result.code !== 0) {
      throw new TestnetError('POSTGRES_START_FAILED', `${tool} failed`, {
        command,
        exitCode: result.code,
        output: result.stderr || result.stdout,
      });
    }
  }
}

/** The status word on line 8 of postmaster.pid ("starting", "ready", "stopping"), or undefined. */
async function postmasterStatus(data: string): Promise<string | undefined> {
  try {
    return (await readFile(join(data, 'postmaster.pid'), 'utf8')).split('\n')[7]?.trim();
  } catch {
    return undefined;
  }
}

async function newestPgBin(): Promise<string> {
  const versions = existsSync(PG_ROOT) ? (await readdir(PG_ROOT)).filter((v) => /^\d+$/.test(v)) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) {
    throw new TestnetError(
      'POSTGRES_START_FAILED',
      `PostgreSQL is not installed (no ${PG_ROOT}/N/bin): apt-get install postgresql`,
    );
  }
  return join(PG_ROOT, newest, 'bin');
}

/** As root, the `postgres` system user (or nobody): PostgreSQL will not run as root. Otherwise ourselves. */
function unprivilegedUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'));
  const entry = passwd.find((f) => f[0] === 'postgres') ?? passwd.find((f) => f[0] === 'nobody');
  if (!entry)
    throw new TestnetError(
      'POSTGRES_START_FAILED',
      'running as root and found no postgres or nobody user to run PostgreSQL as',
    );
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}
