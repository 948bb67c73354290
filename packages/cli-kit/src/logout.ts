import { inspectStateDir, type TailnetNode } from '@krkn/tailnet';

/** How long a logout waits for the control server to answer the stored identity. */
const logoutControlTimeoutMs = 15_000;

/**
 * Logs out the identity stored in a state directory no daemon is running on, with a node of the
 * command's own (built by `openNode` only when there is an identity), and says what happened.
 */
export async function logOutStoredIdentity(stateDir: string, openNode: () => TailnetNode): Promise<string> {
  if (!inspectStateDir(stateDir).identity) return `nothing to log out: no identity in ${stateDir}`;
  const node = openNode();
  // A node the control server no longer knows asks for a new login: then there is nothing to log out.
  const forgotten = new AbortController();
  node.once('loginUrl', () => forgotten.abort());
  try {
    await node.up({ controlTimeoutMs: logoutControlTimeoutMs, signal: forgotten.signal });
    await node.logout();
  } catch (err) {
    if (!forgotten.signal.aborted) throw err;
    return 'nothing to log out: the control server no longer knows this node (it asked for a new login)';
  } finally {
    await node.close();
  }
  return 'logged out';
}
