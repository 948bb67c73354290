import { EventEmitter } from 'node:events';
import type { TailnetSocket } from './socket.js';

interface TailnetServerEvents {
  connection: [TailnetSocket];
  close: [];
}

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
  private closed = false;
  private readonly sockets = new Set<TailnetSocket>();

  constructor(
    readonly port: number,
    private readonly addressOf: () => string,
    private readonly onClose: () => void,
  ) {
    super();
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
    this.sockets.add(socket);
    socket.once('tailnet-close', () => this.sockets.delete(socket));
    this.emit('connection', socket);
  }

  /** Open connections accepted by this server. */
  get connections(): number {
    return this.sockets.size;
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
