/**
 * Messages between a TailnetNode (the app's thread) and the engine host that runs the wasm node
 * (a worker thread, or the same thread through a MessageChannel). Connection bytes travel as
 * transferred ArrayBuffers, so crossing the thread boundary costs no copy.
 */
import type { MessagePort } from 'node:worker_threads';
import type { EngineApi, EngineEvent } from '@krkn/tailnet-wasm';

/** The engine methods the node calls by message; each gets one reply. */
export type EngineMethod = Exclude<keyof EngineApi, 'resume'>;

/** Sent once, first: where the state lives and what the Go side sees in its environment. */
export interface InitMessage {
  op: 'init';
  stateDir: string;
  env: Record<string, string>;
  module: WebAssembly.Module;
}

export type ToEngine =
  | InitMessage
  | { op: 'call'; seq: number; method: EngineMethod; args: unknown[] }
  /**
   * Bytes for a connection, with no reply: the writer asks for one (a `write` call) only when its
   * window fills. A connection's writes and its closeWrite reach Go in the order sent.
   */
  | { op: 'write'; id: number; bytes: Uint8Array }
  /** Stop delivering data for a connection until resume (the app's buffer is full). */
  | { op: 'pause'; id: number }
  | { op: 'resume'; id: number };

export type FromEngine =
  | { op: 'ready' }
  | { op: 'reply'; seq: number; ok: true; value: unknown }
  | { op: 'reply'; seq: number; ok: false; code: string; message: string }
  | { op: 'event'; event: EngineEvent }
  | { op: 'log'; line: string }
  | { op: 'accepted'; port: number; id: number; remote: string; local: string }
  /** The bytes one connection read during one engine task, in order. */
  | { op: 'data'; id: number; chunks: Uint8Array[] }
  | { op: 'closed'; id: number; error: string }
  /** A `write` message failed (a `write` call's failure is its reply). */
  | { op: 'writeFailed'; id: number; message: string }
  | { op: 'exit'; code: number; reason: string };

/** The subset of MessagePort (and worker_threads' parentPort) both ends use. */
export type Port = Pick<MessagePort, 'postMessage' | 'on'>;
