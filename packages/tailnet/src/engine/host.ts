import {
  startEngine,
  type EngineApi,
  type EngineEvent,
  type EngineHost,
  type WebSocketTraffic,
} from '@krkn/tailnet-wasm';
import { FileStateStore } from '../state.js';
import type { FromEngine, InitMessage, Port, ToEngine } from './protocol.js';

/**
 * Runs the wasm node behind a message port: the engine side of protocol.ts. It owns the state
 * store (its writes are synchronous, as the Go side requires) and turns the node's callbacks
 * into messages. Runs in a worker thread, or in the app's thread for the in-thread mode.
 */
export function serveEngine(port: Port): void {
  let api: EngineApi | undefined;
  let engineTraffic: (() => WebSocketTraffic) | undefined;
  const paused = new Set<number>();
  // Connection bytes wait for the end of the current task, then cross in one message per
  // connection: Go hands over about one TCP segment per data call, and a message per segment
  // made the bridge, not the engine, the busiest part of a bulk transfer.
  let pendingData = new Map<number, Uint8Array[]>();
  const flushData = (): void => {
    if (pendingData.size === 0) return;
    const batches = pendingData;
    pendingData = new Map();
    for (const [id, chunks] of batches) {
      // Go made these arrays for us alone: hand their buffers over instead of copying them.
      port.postMessage(
        { op: 'data', id, chunks } satisfies FromEngine,
        chunks.map((c) => c.buffer as ArrayBuffer),
      );
    }
  };
  const queueData = (id: number, bytes: Uint8Array): void => {
    if (pendingData.size === 0) queueMicrotask(flushData);
    const chunks = pendingData.get(id);
    if (chunks) chunks.push(bytes);
    else pendingData.set(id, [bytes]);
  };
  // A connection's writes run one at a time, in order (Go starts a goroutine per call, so calls
  // in flight together could land out of order); writes queued meanwhile go to Go as one call.
  // closeWrite waits its turn behind them.
  type Queued = { bytes: Uint8Array; seq?: number } | { closeWrite: true; seq: number };
  const writes = new Map<number, Queued[]>();
  const enqueue = (id: number, item: Queued): void => {
    const queue = writes.get(id);
    if (queue) queue.push(item);
    else {
      writes.set(id, [item]);
      void drainWrites(id);
    }
  };
  const drainWrites = async (id: number): Promise<void> => {
    const queue = writes.get(id)!;
    while (queue.length > 0) {
      const first = queue[0]!;
      if (!('bytes' in first)) {
        queue.shift();
        await reply(first.seq, () => api!.closeWrite(id));
        continue;
      }
      let n = 1;
      while (n < queue.length && 'bytes' in queue[n]!) n++;
      const batch = queue.splice(0, n) as { bytes: Uint8Array; seq?: number }[];
      const bytes = batch.length === 1 ? batch[0]!.bytes : concat(batch.map((b) => b.bytes));
      try {
        await api!.write(id, bytes);
        for (const b of batch) if (b.seq !== undefined) send({ op: 'reply', seq: b.seq, ok: true, value: undefined });
      } catch (err) {
        const e = failure(err);
        for (const b of batch) if (b.seq !== undefined) send({ op: 'reply', seq: b.seq, ...e });
        if (batch.some((b) => b.seq === undefined)) send({ op: 'writeFailed', id, message: e.message });
      }
    }
    writes.delete(id);
  };
  const reply = async (seq: number, fn: () => unknown): Promise<void> => {
    try {
      send({ op: 'reply', seq, ok: true, value: await fn() });
    } catch (err) {
      send({ op: 'reply', seq, ...failure(err) });
    }
  };

  // Every other message keeps its place after the bytes before it.
  const send = (message: FromEngine): void => {
    flushData();
    port.postMessage(message);
  };

  const init = async (msg: InitMessage): Promise<void> => {
    const store = FileStateStore.open(msg.stateDir);
    const host: EngineHost = {
      log: (line) => send({ op: 'log', line }),
      notify: (json) => send({ op: 'event', event: JSON.parse(json) as EngineEvent }),
      stateGet: (key) => store.get(key),
      stateSet: (key, value) => store.set(key, value),
      accepted: (p, id, remote, local) => send({ op: 'accepted', port: p, id, remote, local }),
      data: (id, bytes) => {
        queueData(id, bytes);
        return !paused.has(id);
      },
      closed: (id, error) => {
        paused.delete(id);
        send({ op: 'closed', id, error });
      },
    };
    const engine = await startEngine(host, msg.env, msg.module);
    api = engine.api;
    engineTraffic = engine.webSocketTraffic;
    void engine.exited.then((code) => send({ op: 'exit', code, reason: `engine exited with code ${code}` }));
    send({ op: 'ready' });
  };

  const call = (seq: number, method: keyof EngineApi, args: unknown[]): void => {
    if (api && method === 'write') enqueue(args[0] as number, { bytes: args[1] as Uint8Array, seq });
    else if (api && method === 'closeWrite') enqueue(args[0] as number, { closeWrite: true, seq });
    else
      void reply(seq, async () => {
        if (!api) throw Object.assign(new Error('engine not started'), { code: 'NOT_RUNNING' });
        if (method === 'close') paused.delete(args[0] as number);
        const fn = api[method].bind(api) as (...a: unknown[]) => unknown;
        const value = await fn(...args);
        // The WebSocket count lives in this thread, beside the engine, not in Go.
        return method === 'metrics' ? { ...(value as object), webSocket: engineTraffic?.() } : value;
      });
  };

  port.on('message', (msg: ToEngine) => {
    switch (msg.op) {
      case 'init':
        init(msg).catch((err: unknown) => {
          const e = err as Error & { code?: string };
          send({ op: 'exit', code: -1, reason: `${e.code ? `${e.code}: ` : ''}${e.message}` });
        });
        break;
      case 'call':
        call(msg.seq, msg.method, msg.args);
        break;
      case 'write':
        if (api) enqueue(msg.id, { bytes: msg.bytes });
        else send({ op: 'writeFailed', id: msg.id, message: 'engine not started' });
        break;
      case 'pause':
        paused.add(msg.id);
        break;
      case 'resume':
        paused.delete(msg.id);
        api?.resume(msg.id);
        break;
    }
  });
}

function failure(err: unknown): { ok: false; code: string; message: string } {
  const e = err as { code?: string; message?: string };
  return { ok: false, code: e.code ?? 'ENGINE', message: e.message ?? String(err) };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
