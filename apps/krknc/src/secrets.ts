import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { CliError, ExitCode } from '@krkn/cli-kit';

/** Secrets kept per subscription: the newest, and the one before it (still signed with during a rotation). */
const keptPerSubscription = 2;

type SecretFile = Record<string, string[]>;

/**
 * The Standard Webhooks secrets of this node's subscriptions, newest first, keyed by server and
 * listen port. Kept 0600 in the state directory: krknc verifies every delivery with them, and the
 * local app may read the newest to verify the headers krknc passes on.
 */
export class WebhookSecrets {
  private constructor(
    readonly path: string,
    private readonly all: SecretFile,
  ) {}

  /** Loads the file (absent: no secrets yet). */
  static open(path: string): WebhookSecrets {
    let text = '{}';
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new CliError(`cannot read ${path}: ${(err as Error).message}`, ExitCode.STATE);
    }
    try {
      return new WebhookSecrets(path, JSON.parse(text) as SecretFile);
    } catch {
      throw new CliError(
        `${path} is not valid JSON: delete it and run krknc listen again (a new secret is issued)`,
        ExitCode.STATE,
      );
    }
  }

  /** The secrets a delivery to this subscription may be signed with, newest first. */
  of(key: string): readonly string[] {
    return this.all[key] ?? [];
  }

  /** Keeps a newly issued secret in front of the previous one; written (0600) before it is used. */
  add(key: string, secret: string): void {
    this.all[key] = [secret, ...this.of(key).filter((s) => s !== secret)].slice(0, keptPerSubscription);
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.all, null, 2)}\n`, { mode: 0o600 });
    chmodSync(tmp, 0o600); // an older tmp file keeps its mode through writeFileSync
    renameSync(tmp, this.path);
  }
}

/**
 * The key of one subscription's secrets: the krkns it is on (its replicas' addresses) and the port
 * deliveries arrive at.
 */
export function secretKey(server: string, port: number): string {
  return `${server}|${port}`;
}
