// Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message; host,
// content-length and expect are set again by whoever sends the message on.
const connectionOnly = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
]);

/** The headers of a message as they arrived (name case and order kept), from Node's rawHeaders. */
export function pairsFromRaw(rawHeaders: string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) pairs.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  return pairs;
}

/**
 * The end-to-end headers of a message, which krkns stores and every hop forwards: hop-by-hop
 * ones and those named in Connection are dropped, everything else is kept as it came.
 */
export function endToEndHeaders(pairs: [string, string][]): [string, string][] {
  const named = new Set(
    pairs
      .filter(([k]) => k.toLowerCase() === 'connection')
      .flatMap(([, v]) => v.split(',').map((s) => s.trim().toLowerCase())),
  );
  return pairs.filter(([k]) => !connectionOnly.has(k.toLowerCase()) && !named.has(k.toLowerCase()));
}
