import QRCode from 'qrcode';
import type { NodeStatus, TailnetNode } from '@krkn/tailnet';

/**
 * Adds what a person at a terminal needs while a node waits for login: the URL in a box and as a
 * QR code (scan it with a phone). The library already logs the URL at info level and repeats it
 * with the time waited, so a headless run or a log file sees it too.
 */
export function showLoginOnTerminal(node: TailnetNode, out: NodeJS.WritableStream & { isTTY?: boolean }): void {
  if (!out.isTTY) return;
  node.on('loginUrl', (url) => {
    QRCode.toString(url, { type: 'terminal', small: true })
      .then((qr) => out.write(`\n  To authenticate ${node.hostname}, open:\n\n    ${url}\n\n${qr}\n`))
      .catch(() => out.write(`\n  To authenticate ${node.hostname}, open:\n\n    ${url}\n\n`));
  });
}

/** The one-line summary printed when a daemon is ready. */
export function readyLine(app: string, st: NodeStatus, listenerUrl: string): string {
  return `${app} ready: node ${st.self.dnsName || st.self.hostname} (${st.self.addresses.join(', ')}), listening on ${listenerUrl}`;
}
