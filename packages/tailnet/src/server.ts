import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { TailnetSocket } from './socket.js';

interface TailnetServerEvents {
  connection: [TailnetSocket];
  /** A connection past {@link TailnetServer.maxConnections} or the per-peer cap, closed at once. */
  drop: [DroppedConnection];
  close: [];
}

/** What a 'drop' event says about the connection it closed. */
export interface DroppedConnection {
  remoteAddress: string;
  reason: 'max-connections' | 'max-connections-per-peer';
}

// A peer at a cap is logged once per this period, not once per connection (a flood would flood the log).
const dropLogIntervalMs = 60_000;

/** The address a {@link TailnetServer} listens on, shaped like net.AddressInfo. */
export interface TailnetAddress {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

/**
 * A listener on one port of the node's tailnet addresses, shaped like net.Server: it emits
 * 'connection' with a {@link TailnetSocket}. Nothing listens on a host interface.
 */
export class TailnetServer extends EventEmitter<TailnetServerEvents> {
  /** Like net.Server#maxConnections: open connections past this are closed as soon as accepted. */
  maxConnections = Infinity;
  /** The same cap per peer address, so one peer cannot use up {@link maxConnections} for all. */
  maxConnectionsPerPeer = Infinity;
  /** Connections closed at accept because of a cap, since the server started. */
  dropped = 0;
  private closed = false;
  private readonly sockets = new Set<TailnetSocket>();
  private readonly perPeer = new Map<string, number>();
  private readonly dropLoggedAt = new Map<string, number>();

  constructor(
    readonly port: number,
    private readonly addressOf: () => string,
    private readonly onClose: () => void,
    private readonly log: Logger,
    /**
     * Settles once the engine takes connections on the port (rejects if the node stopped first). The
     * engine resets a peer's connection that comes before: await it before telling anyone the port is open.
     */
    readonly accepting: Promise<void>,
  ) {
    super();
    accepting.catch(() => undefined); // whoever awaits it sees the rejection; nobody else has to
  }

  /** False once closed. */
  get listening(): boolean {
    return !this.closed;
  }

  /** The node's tailnet IPv4 address and this port. */
  address(): TailnetAddress {
    const address = this.addressOf();
    return { address, family: address.includes(':') ? 'IPv6' : 'IPv4', port: this.port };
  }

  /** Called by the node for each accepted connection. */
  accept(socket: TailnetSocket): void {
    const peer = socket.remoteAddress;
    const fromPeer = this.perPeer.get(peer) ?? 0;
    const over =
      this.sockets.size >= this.maxConnections
        ? 'max-connections'
        : fromPeer >= this.maxConnectionsPerPeer
          ? 'max-connections-per-peer'
          : undefined;
    if (over) {
      this.dropped++;
      socket.destroy();
      this.logDrop(peer, over);
      this.emit('drop', { remoteAddress: peer, reason: over });
      return;
    }
    this.sockets.add(socket);
    this.perPeer.set(peer, fromPeer + 1);
    socket.once('tailnet-close', () => {
      this.sockets.delete(socket);
      const left = (this.perPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.perPeer.set(peer, left);
      else this.perPeer.delete(peer);
    });
    this.emit('connection', socket);
  }

  /** Open connections accepted by this server. */
  get connections(): number {
    return this.sockets.size;
  }

  private logDrop(peer: string, reason: DroppedConnection['reason']): void {
    const now = Date.now();
    if (now - (this.dropLoggedAt.get(peer) ?? -Infinity) < dropLogIntervalMs) return;
    for (const [p, at] of this.dropLoggedAt) if (now - at >= dropLogIntervalMs) this.dropLoggedAt.delete(p);
    this.dropLoggedAt.set(peer, now);
    this.log.warn({ peer, reason, dropped: this.dropped }, 'connection cap reached: closing new connections');
  }

  /** Open connections from one peer address. */
  connectionsFrom(address: string): number {
    return this.perPeer.get(address) ?? 0;
  }

  /**
   * Stops accepting (new connections are reset). Open connections are left to finish; pass
   * `destroy: true` to cut them.
   */
  close(opts: { destroy?: boolean } = {}): void {
    if (opts.destroy) for (const s of this.sockets) s.destroy();
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    this.emit('close');
  }
}
