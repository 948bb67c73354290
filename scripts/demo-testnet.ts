// Demo of @krkn/testnet: a private tailnet on loopback (headscale + two native tailscaled peers)
// and an HTTP exchange across it. Run: npx tsx scripts/demo-testnet.ts   (needs `bash scripts/tools.sh` once)
// Everything is stopped on finish or Ctrl-C; nothing leaves 127.0.0.1.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startNativeNode, startTailnet, type NativeNode, type Tailnet } from '../packages/testnet/src/index.js';

const started = Date.now();
const say = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}`);

let tailnet: Tailnet | undefined;
let shuttingDown: Promise<never> | undefined;

/** Stops the tailnet (and with it both nodes) once, then exits with `code`. */
function shutdown(code: number): Promise<never> {
  shuttingDown ??= (async () => {
    say('stopping everything…');
    await tailnet?.stop();
    say('stopped: no headscale or tailscaled left behind, temp dir removed');
    process.exit(code);
  })();
  return shuttingDown;
}
// Ctrl-C reaches the children too (same process group); stop() then just collects them.
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));

/** One `tailscale status`-like line per peer the node can see. */
async function printStatus(node: NativeNode): Promise<void> {
  const status = await node.status();
  say(`${node.hostname}: ${status.BackendState}, ${status.Self.TailscaleIPs.join(' ')} (${status.Self.DNSName})`);
  for (const peer of Object.values(status.Peer)) {
    say(
      `  sees ${peer.HostName.padEnd(8)} ${peer.TailscaleIPs[0]?.padEnd(12)} ${peer.DNSName}  ${peer.Online ? 'online' : 'offline'} via ${peer.Relay || '-'}`,
    );
  }
}

async function main(): Promise<void> {
  tailnet = await startTailnet({ log: say });
  const user = await tailnet.createUser('demo');
  const authKey = await tailnet.createPreAuthKey({ user: user.id, reusable: true });
  say(`user "demo" and a reusable pre-auth key created`);

  const [laptop, server] = await Promise.all([
    startNativeNode(tailnet, { hostname: 'laptop', authKey }),
    startNativeNode(tailnet, { hostname: 'server', authKey }),
  ]);
  say(`joined: laptop ${laptop.ip()}, server ${server.ip()}`);
  await laptop.waitForPeer('server');
  await server.waitForPeer('laptop');
  await printStatus(laptop);
  await printStatus(server);

  const pong = await laptop.ping(server.ip());
  say(`ping laptop -> server: pong from ${pong.nodeName} via ${pong.via} in ${pong.latencyMs} ms`);

  // The server node forwards tailnet connections to this host's 127.0.0.1 (userspace networking),
  // so a plain loopback HTTP server is what "server" serves on the tailnet.
  const app = createServer((req, res) => res.end(`hello from server: you asked for ${req.method} ${req.url}\n`));
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const port = (app.address() as AddressInfo).port;
  const url = `http://server.${tailnet.domain}:${port}/webhooks/demo`;
  say(`laptop -> GET ${url} (through laptop's HTTP proxy, over WireGuard)`);
  const res = await laptop.fetch(url);
  say(`server <- ${res.status}: ${res.text().trim()}`);
  app.close();

  const nodes = await tailnet.listNodes();
  say(
    `headscale lists: ${nodes.map((n) => `${n.givenName} ${n.ipAddresses[0]} ${n.online ? 'online' : 'offline'}`).join(', ')}`,
  );
}

main().then(
  () => shutdown(0),
  (err: unknown) => {
    if (!shuttingDown) console.error(err); // after Ctrl-C, failures are just the interruption
    return shutdown(1);
  },
);
