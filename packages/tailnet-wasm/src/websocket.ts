/**
 * The global WebSocket class the Go side dials its control and DERP connections with
 * (coder/websocket looks up `globalThis.WebSocket`; Node 20 has none), built on `ws`.
 */
import { WebSocket as NodeWebSocket, type ClientOptions } from 'ws';

/** One node's WebSocket traffic: wire messages, and the Go↔JS crossings that carried them. */
export interface WebSocketTraffic {
  /** Messages received on the wire. */
  messagesIn: number;
  bytesIn: number;
  /** 'message' events delivered to Go (each a Go↔JS crossing) for those messages. */
  eventsToGo: number;
  /** send() calls from Go (each a Go↔JS crossing). */
  sendsFromGo: number;
  /** Messages sent on the wire for those calls. */
  messagesOut: number;
  bytesOut: number;
}

/** The node whose Go program created a socket: its counts, and whether it has exited. */
export interface SocketOwner {
  readonly traffic: WebSocketTraffic;
  readonly sockets: Set<EngineWebSocket>;
  exited: boolean;
}

/**
 * coder/websocket's default per-message read limit (`ws_js.go` on our side, and the DERP servers
 * that speak coder/websocket too: headscale's and derper never raise it): a merged message never
 * exceeds it, and one DERP frame must fit in it (see {@link tailnetMtu}).
 */
const maxMergedBytes = 32 << 10;

/** A DERP frame's bytes around a WireGuard message: type, length, peer key. */
const derpFrameOverhead = 1 + 4 + 32;
/** A WireGuard data message's bytes around an IP packet: header and tag, plus up to 15 of padding. */
const wireguardOverhead = 16 + 16 + 15;

/**
 * The tailnet MTU of our nodes (Tailscale's TS_DEBUG_MTU; tailscaled uses 1280): the largest IP
 * packet whose DERP frame still fits one WebSocket message. The engine's work is per packet, so
 * fewer, larger packets move more bytes. Peers at 1280 still work: TCP takes the smaller MSS of
 * the two ends.
 */
export const tailnetMtu = maxMergedBytes - derpFrameOverhead - wireguardOverhead;

let constructingFor: SocketOwner | undefined;

/** A new owner, with its sockets attributed by {@link attributeSockets}. */
export function newSocketOwner(): SocketOwner {
  const traffic = { messagesIn: 0, bytesIn: 0, eventsToGo: 0, sendsFromGo: 0, messagesOut: 0, bytesOut: 0 };
  return { traffic, sockets: new Set(), exited: false };
}

/**
 * Attributes the sockets one Go program creates to `owner`: its `new` calls (syscall/js.valueNew,
 * one import per instance) mark the owner for the constructor. Several nodes may share a thread.
 */
export function attributeSockets(imports: WebAssembly.Imports, owner: SocketOwner): void {
  const gojs = imports.gojs as Record<string, (sp: number) => void>;
  const valueNew = gojs['syscall/js.valueNew']!;
  gojs['syscall/js.valueNew'] = (sp) => {
    constructingFor = owner;
    try {
      valueNew(sp);
    } finally {
      constructingFor = undefined;
    }
  };
}

/** Closes the sockets of an exited Go program: their events would otherwise call into it. */
export function closeSockets(owner: SocketOwner): void {
  owner.exited = true;
  for (const socket of owner.sockets) socket.terminate();
  owner.sockets.clear();
}

type Listener = (event: unknown) => void;

/**
 * `ws` with three changes for the Go side:
 *
 * - Control (ts2021) and DERP both carry byte streams over the socket (Go's wsconn), so message
 *   boundaries carry no meaning. DERP sends one message per packet, and each costs a Go↔JS call
 *   and a syscall; so the sends of one JS task go out as one message, and the messages parsed
 *   from one socket read reach Go as one 'message' event (each up to {@link maxMergedBytes}).
 * - 'error' listeners run one task later. coder/websocket answers an error by closing the socket
 *   and waiting, inside the error handler, for 'close'; `ws` emits 'close' right after 'error'
 *   returns, so that wait never ended: the Go program spun at 100% CPU whenever the control
 *   server went away. Deferred, the handler runs after 'close' (or not at all, if 'close'
 *   removed it).
 * - No event reaches a Go program that has exited (its callbacks would throw).
 * - No permessage-deflate (`ws` offers it by default): the bytes are WireGuard ciphertext and
 *   Noise frames, which do not compress, and deflating each message cost CPU on both ends.
 */
export class EngineWebSocket extends NodeWebSocket {
  private readonly owner: SocketOwner = constructingFor ?? newSocketOwner();
  private readonly wrapped = new Map<string, Map<Listener, Listener>>();
  private readonly goMessageListeners = new Set<Listener>();
  private pendingIn: ArrayBuffer[] = [];
  private pendingOut: Buffer[] = [];
  private pendingOutBytes = 0;

  constructor(address: string | URL, protocols?: string | string[], options?: ClientOptions) {
    super(address, protocols ?? [], { ...options, perMessageDeflate: false });
    this.owner.sockets.add(this);
    this.on('close', () => this.owner.sockets.delete(this));
    super.addEventListener('message', (event) => this.received(event.data));
  }

  override send(data: unknown, ...rest: unknown[]): void {
    this.owner.traffic.sendsFromGo++;
    if (!(data instanceof Uint8Array) || rest.length > 0) {
      this.flushOut();
      this.sendNow(data, ...rest);
      return;
    }
    if (this.pendingOutBytes + data.byteLength > maxMergedBytes) this.flushOut();
    if (this.pendingOut.length === 0) queueMicrotask(() => this.flushOut());
    this.pendingOut.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.pendingOutBytes += data.byteLength;
  }

  override close(code?: number, reason?: string | Buffer): void {
    this.flushOut();
    super.close(code, reason);
  }

  override addEventListener(type: string, listener: Listener, options?: object): void {
    if (type === 'message') {
      this.goMessageListeners.add(listener);
      return;
    }
    const wrapper: Listener =
      type === 'error'
        ? (event) =>
            setImmediate(() => this.wrapped.get(type)?.get(listener) === wrapper && this.dispatch(listener, event))
        : (event) => this.dispatch(listener, event);
    let byListener = this.wrapped.get(type);
    if (!byListener) this.wrapped.set(type, (byListener = new Map<Listener, Listener>()));
    byListener.set(listener, wrapper);
    super.addEventListener(type as 'open', wrapper, options);
  }

  override removeEventListener(type: string, listener: Listener): void {
    if (type === 'message') {
      this.goMessageListeners.delete(listener);
      return;
    }
    const wrapper = this.wrapped.get(type)?.get(listener);
    this.wrapped.get(type)?.delete(listener);
    if (wrapper) super.removeEventListener(type as 'open', wrapper);
  }

  private sendNow(data: unknown, ...rest: unknown[]): void {
    this.owner.traffic.messagesOut++;
    this.owner.traffic.bytesOut += typeof data === 'string' ? Buffer.byteLength(data) : byteLength(data);
    (super.send as (...a: unknown[]) => void)(data, ...rest);
  }

  private flushOut(): void {
    if (this.pendingOut.length === 0) return;
    const merged =
      this.pendingOut.length === 1 ? this.pendingOut[0]! : Buffer.concat(this.pendingOut, this.pendingOutBytes);
    this.pendingOut = [];
    this.pendingOutBytes = 0;
    if (this.readyState === NodeWebSocket.OPEN) this.sendNow(merged);
  }

  private received(data: unknown): void {
    this.owner.traffic.messagesIn++;
    if (!(data instanceof ArrayBuffer)) {
      this.owner.traffic.bytesIn += typeof data === 'string' ? Buffer.byteLength(data) : byteLength(data);
      this.flushIn();
      this.deliver(data);
      return;
    }
    this.owner.traffic.bytesIn += data.byteLength;
    if (this.pendingIn.length === 0) queueMicrotask(() => this.flushIn());
    this.pendingIn.push(data);
  }

  private flushIn(): void {
    if (this.pendingIn.length === 0) return;
    const chunks = this.pendingIn;
    this.pendingIn = [];
    // A lone message goes to Go as it came (`ws` made its ArrayBuffer for this event alone);
    // several are copied once into one ArrayBuffer of exactly their bytes, which is what Go reads.
    let batch: ArrayBuffer[] = [];
    let size = 0;
    const deliverBatch = (): void => {
      if (batch.length === 1) this.deliver(batch[0]);
      else {
        const merged = new Uint8Array(size);
        let at = 0;
        for (const chunk of batch) {
          merged.set(new Uint8Array(chunk), at);
          at += chunk.byteLength;
        }
        this.deliver(merged.buffer);
      }
      batch = [];
      size = 0;
    };
    for (const chunk of chunks) {
      if (size > 0 && size + chunk.byteLength > maxMergedBytes) deliverBatch();
      batch.push(chunk);
      size += chunk.byteLength;
    }
    deliverBatch();
  }

  private deliver(data: unknown): void {
    for (const listener of this.goMessageListeners) {
      this.owner.traffic.eventsToGo++;
      this.dispatch(listener, { type: 'message', data, target: this });
    }
  }

  /** Calls a Go listener, unless its program has exited; 'close' and 'error' come after the data. */
  private dispatch(listener: Listener, event: unknown): void {
    if (this.owner.exited) return;
    if ((event as { type?: string }).type !== 'message') this.flushIn();
    listener.call(this, event);
  }
}

function byteLength(data: unknown): number {
  return (data as { byteLength?: number; length?: number }).byteLength ?? 0;
}
