import type { ErrorBody, HubErrorCode } from '@krkn/hub-api';

/** An error krkns answers with: an HTTP status and a stable code. */
export class HubError extends Error {
  override readonly name = 'HubError';
  constructor(
    readonly status: number,
    readonly code: HubErrorCode,
    message: string,
  ) {
    super(message);
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

export const notFound = (code: HubErrorCode, what: string): HubError => new HubError(404, code, `${what} not found`);
export const badRequest = (message: string, code: HubErrorCode = 'BAD_REQUEST'): HubError => new HubError(400, code, message);
