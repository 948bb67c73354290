import type { Logger } from 'pino';
import { CliError, ExitCode } from '@krkn/cli-kit';
import { suppressionCauses } from '@krkn/doctor';
import { ReportedWait } from '@krkn/tailnet';

/** How long krknc looks for --server among its peers before exit 4. */
export const serverWaitMs = 10_000;

// Before this, a missing server may just be a peer list still filling in; after it, policy is the likely cause.
const policyHintAfterMs = 3_000;

/**
 * The wait for krkns to appear in this node's peer list, reported: announced at once, then every
 * few seconds with the likely cause (the policy hiding it, the Krkn guide's "invisible node") and
 * the doctor command that tells. `server` is --server as given.
 */
export class ServerWait {
  private readonly wait: ReportedWait;

  /** Announces the wait; call done() when the server appears, or notFound() at the bound. */
  constructor(
    log: Logger,
    private readonly server: string,
  ) {
    const announcement = `waiting for krkns (${server}) to appear in this node's peer list`;
    this.wait = new ReportedWait(log, announcement, (waited) => this.progress(waited));
  }

  private progress(waited: string): string {
    if (this.wait.waitedMs < policyHintAfterMs) return `${this.server} is not in this node's peer list yet (${waited})`;
    return (
      `${this.server} is still not in this node's peer list after ${waited}: krkns is not running or not registered, ` +
      `or the policy hides it from this node. Run: ${this.doctorCommand()}`
    );
  }

  done(): void {
    this.wait.done();
  }

  /** The exit-4 error once the bound is reached. */
  notFound(): CliError {
    this.done();
    return new CliError(
      `no peer named ${this.server} on this tailnet after ${Math.round(this.wait.waitedMs / 1000)}s. ` +
        'Either krkns is not running (or not registered on this control server), or the policy hides it: ' +
        'the control server sends a node only the peers the policy gives it a path to ' +
        `(likely: ${suppressionCauses}). Run: ${this.doctorCommand()}`,
      ExitCode.UNREACHABLE,
    );
  }

  private doctorCommand(): string {
    return `krknc doctor --server ${this.server} (with the same --hostname/--state-dir/--control-url)`;
  }
}
