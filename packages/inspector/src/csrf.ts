import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Caller } from '@krkn/hub';

/**
 * Tokens for state-changing forms: an HMAC of the caller's identity under a key that lives as
 * long as the process. A page from another site cannot read the token, so it cannot forge the
 * post; and no session state is kept, since the caller is named by the tailnet on every request.
 */
export class CsrfTokens {
  private readonly key = randomBytes(32);

  tokenFor(caller: Caller): string {
    return createHmac('sha256', this.key).update(identityOf(caller)).digest('base64url');
  }

  valid(caller: Caller, token: unknown): boolean {
    if (typeof token !== 'string') return false;
    const expected = Buffer.from(this.tokenFor(caller));
    const given = Buffer.from(token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

function identityOf(caller: Caller): string {
  return caller.kind === 'admin' ? 'admin' : `peer:${caller.nodeId}`;
}
