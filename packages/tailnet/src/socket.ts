import { Duplex } from 'node:stream';
import type { EngineClient } from './engine/client.js';

/** Splits "ip:port" or "[v6]:port". */
function splitHostPort(addr: string): { address: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { address: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}

/**
 * Bytes a connection may have sent to the engine unacknowledged. Up to it a write completes at
 * once; the write that fills it waits for the engine's reply. A reply per write made the
 * bridge, not the engine, pace a transfer: one write in flight, a thread crossing each way per
 * segment.
 */
const writeWindowBytes = 1 << 20;
/**
 * Writes are cut into pieces of at most this size, each copied and sent in turn: a 16 MiB write
 * copied in one go held the app's event loop for tens of milliseconds, and crossed in one piece
 * the engine could not start on it before the copy was done.
 */
const writePieceBytes = 256 << 10;

/**
 * One TCP connection over the tailnet, as a Node Duplex with the net.Socket fields HTTP servers
 * and clients read (remoteAddress, remotePort, localAddress, setTimeout, ...).
 */
export class TailnetSocket extends Duplex {
  /** The peer's tailnet IP. Authorise with WhoIs on it, never on a claim inside the request. */
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly remoteFamily: 'IPv4' | 'IPv6';
  /** This node's tailnet IP the connection arrived on or left from. */
  readonly localAddress: string;
  readonly localPort: number;
  readonly connecting = false;
  private reading = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleMs = 0;
  /** Bytes sent since the last write that waited for the engine's reply. */
  private unacked = 0;

  constructor(
    private readonly engine: EngineClient,
    readonly connId: number,
    remote: string,
    local: string,
  ) {
    super({ allowHalfOpen: true });
    ({ address: this.remoteAddress, port: this.remotePort } = splitHostPort(remote));
    ({ address: this.localAddress, port: this.localPort } = splitHostPort(local));
    this.remoteFamily = this.remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
  }

  /** Called by the node with bytes from the engine. */
  receive(bytes: Uint8Array): void {
    this.touch();
    if (!this.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
      this.reading = false;
      this.engine.pause(this.connId);
    }
  }

  /** Called by the node when a write the engine did not reply to failed. */
  writeFailed(message: string): void {
    // As in send: a write cut short because this side destroyed the socket is not an error.
    if (!this.destroyed) this.destroy(Object.assign(new Error(`tailnet connection: ${message}`), { code: 'EPIPE' }));
  }

  /** Called by the node when the peer closed its side ("" ) or the connection failed. */
  receiveEnd(error: string): void {
    if (error) this.destroy(Object.assign(new Error(`tailnet connection: ${error}`), { code: 'ECONNRESET' }));
    else this.push(null);
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.engine.resume(this.connId);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.send([chunk], done);
  }

  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    this.send(
      chunks.map((c) => c.chunk),
      done,
    );
  }

  private send(chunks: Buffer[], done: (err?: Error | null) => void): void {
    this.touch();
    this.sendFrom({ chunks, index: 0, offset: 0 }, done);
  }

  /**
   * Copies the next pieces of `at` (each a copy we own, so its buffer can be transferred to the
   * engine thread) and sends them. The chunks are copied once, piece by piece, never concatenated
   * first: an HTTP request's headers and 16 MiB body come as one writev.
   */
  private sendFrom(at: { chunks: Buffer[]; index: number; offset: number }, done: (err?: Error | null) => void): void {
    while (at.index < at.chunks.length) {
      const bytes = nextPiece(at);
      if (bytes.byteLength === 0) continue;
      this.unacked += bytes.byteLength;
      if (this.unacked < writeWindowBytes) {
        this.engine.write(this.connId, bytes);
        continue;
      }
      this.unacked = 0;
      this.engine.call('write', [this.connId, bytes], [bytes.buffer]).then(
        () => (this.destroyed ? done() : this.sendFrom(at, done)),
        (err: unknown) => {
          // A write cut short because this side destroyed the socket is not an error (an HTTP
          // client that got its answer before it finished sending the body does that).
          if (this.destroyed) done();
          else done(Object.assign(new Error(`tailnet connection: ${(err as Error).message}`), { code: 'EPIPE' }));
        },
      );
      return;
    }
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.engine.call('closeWrite', [this.connId]).then(() => done(), done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.idleTimer);
    this.emit('tailnet-close');
    this.engine.call('close', [this.connId]).catch(() => undefined);
    done(err);
  }

  /** Like net.Socket#setTimeout: emits 'timeout' after ms without traffic (0 disables). */
  setTimeout(ms: number, callback?: () => void): this {
    this.idleMs = ms;
    // As net.Socket does: a callback is added as a one-shot listener, and removed again with 0.
    if (callback) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    this.touch();
    return this;
  }

  private touch(): void {
    clearTimeout(this.idleTimer);
    if (this.idleMs > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => this.emit('timeout'), this.idleMs);
      this.idleTimer.unref();
    }
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  address(): { address: string; port: number; family: string } {
    return { address: this.localAddress, port: this.localPort, family: this.remoteFamily };
  }
}

/** Copies up to {@link writePieceBytes} from `at` onward into a new array, and moves `at` past them. */
function nextPiece(at: { chunks: Buffer[]; index: number; offset: number }): Uint8Array<ArrayBuffer> {
  while (at.index < at.chunks.length && at.offset === at.chunks[at.index]!.length) {
    at.index++; // an empty chunk, or the end of one
    at.offset = 0;
  }
  let size = 0;
  for (let i = at.index, o = at.offset; i < at.chunks.length && size < writePieceBytes; i++, o = 0) {
    size += Math.min(at.chunks[i]!.length - o, writePieceBytes - size);
  }
  const piece = new Uint8Array(size);
  let filled = 0;
  while (filled < size) {
    const chunk = at.chunks[at.index]!;
    const n = Math.min(chunk.length - at.offset, size - filled);
    piece.set(chunk.subarray(at.offset, at.offset + n), filled);
    filled += n;
    at.offset += n;
    if (at.offset === chunk.length) {
      at.index++;
      at.offset = 0;
    }
  }
  return piece;
}
