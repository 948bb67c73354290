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

  const call = async (seq: number, method: keyof EngineApi, args: unknown[]): Promise<void> => {
    try {
      if (!api) throw Object.assign(new Error('engine not started'), { code: 'NOT_RUNNING' });
      if (method === 'close') paused.delete(args[0] as number);
      const fn = api[method].bind(api) as (...a: unknown[]) => unknown;
      let value = await fn(...args);
      // The WebSocket count lives in this thread, beside the engine, not in Go.
      if (method === 'metrics') value = { ...(value as object), webSocket: engineTraffic?.() };
      send({ op: 'reply', seq, ok: true, value });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      send({ op: 'reply', seq, ok: false, code: e.code ?? 'ENGINE', message: e.message ?? String(err) });
    }
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
        void call(msg.seq, msg.method, msg.args);
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
