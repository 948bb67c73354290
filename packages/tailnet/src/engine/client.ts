import { EventEmitter } from 'node:events';
import { MessageChannel, Worker } from 'node:worker_threads';
import { compileEngine, type EngineEvent } from '@krkn/tailnet-wasm';
import { TailnetError, fromEngineError } from '../errors.js';
import { serveEngine } from './host.js';
import type { EngineMethod, FromEngine, ToEngine } from './protocol.js';

/** Where a node's wasm engine runs. */
export type Isolation = 'worker' | 'thread';

// src/ and dist/ are siblings, so this resolves to the built worker from either.
const workerUrl = new URL('../../dist/engine/worker.js', import.meta.url);

/**
 * Node options about the app's own code: preloads and module hooks, and how its `-e` input is read (a worker
 * that inherits `--input-type` fails to start).
 */
const APP_CODE_OPTIONS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader', '--input-type']);

/**
 * The app's Node options for the engine's worker, less those in APP_CODE_OPTIONS (each with its value). The
 * worker runs our built JavaScript only; a TypeScript loader (tsx) inherited by default cost every engine
 * start 80-100 ms. Other options, `--cpu-prof` among them, still reach the worker.
 */
export function withoutAppCodeOptions(execArgv: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (APP_CODE_OPTIONS.has(arg))
      i++; // and its value, the next argument
    else if (!APP_CODE_OPTIONS.has(arg.split('=')[0]!)) kept.push(arg);
  }
  return kept;
}

interface EngineClientEvents {
  event: [EngineEvent];
  log: [string];
  accepted: [port: number, id: number, remote: string, local: string];
  data: [id: number, bytes: Uint8Array];
  closed: [id: number, error: string];
  writeFailed: [id: number, message: string];
  exit: [reason: string];
}

/**
 * The app-thread end of protocol.ts: calls engine methods by message and re-emits what the
 * engine reports. One per node.
 */
export class EngineClient extends EventEmitter<EngineClientEvents> {
  private seq = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private exitReason: string | undefined;
  /** Messages across the thread boundary (or the in-thread MessageChannel), each way. */
  readonly bridgeMessages = { toEngine: 0, fromEngine: 0 };
  private readonly postRaw: (message: ToEngine, transfer?: ArrayBuffer[]) => void;

  private constructor(
    postRaw: (message: ToEngine, transfer?: ArrayBuffer[]) => void,
    private readonly dispose: () => Promise<void>,
  ) {
    super();
    this.postRaw = postRaw;
  }

  private post(message: ToEngine, transfer?: ArrayBuffer[]): void {
    this.bridgeMessages.toEngine++;
    this.postRaw(message, transfer);
  }

  /** Starts an engine host and loads the node into it. */
  static async start(opts: {
    isolation: Isolation;
    stateDir: string;
    env: Record<string, string>;
  }): Promise<EngineClient> {
    // The worker boots while the module compiles (off this thread): the two overlap on a restart.
    const compiling = compileEngine();
    let client: EngineClient;
    if (opts.isolation === 'worker') {
      const worker = new Worker(workerUrl, { execArgv: withoutAppCodeOptions(process.execArgv) });
      client = new EngineClient(
        (m, t) => worker.postMessage(m, t),
        async () => {
          await worker.terminate();
        },
      );
      worker.on('message', (m: FromEngine) => client.receive(m));
      worker.on('error', (err) => client.exited(`engine worker crashed: ${err.message}`));
      worker.on('exit', (code) => client.exited(`engine worker exited with code ${code}`));
    } else {
      const { port1, port2 } = new MessageChannel();
      serveEngine(port2);
      client = new EngineClient(
        (m, t) => port1.postMessage(m, t),
        async () => {
          port1.close();
          port2.close();
        },
      );
      port1.on('message', (m: FromEngine) => client.receive(m));
    }
    let module: WebAssembly.Module;
    try {
      module = await compiling;
    } catch (err) {
      await client.terminate(); // else the idle worker keeps the process alive
      throw err;
    }
    await client.init(opts.stateDir, opts.env, module);
    return client;
  }

  private init(stateDir: string, env: Record<string, string>, module: WebAssembly.Module): Promise<void> {
    return new Promise((resolve, reject) => {
      const onExit = (reason: string): void => reject(new TailnetError('ENGINE', `engine failed to start: ${reason}`));
      this.once('exit', onExit);
      this.readyCallback = () => {
        this.off('exit', onExit);
        resolve();
      };
      this.post({ op: 'init', stateDir, env, module });
    });
  }

  private readyCallback: (() => void) | undefined;

  /** Calls an engine method; rejects with a TailnetError. */
  call<T = unknown>(method: EngineMethod, args: unknown[] = [], transfer?: ArrayBuffer[]): Promise<T> {
    if (this.exitReason !== undefined) {
      return Promise.reject(new TailnetError('NOT_RUNNING', `node is not running (${this.exitReason})`));
    }
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(seq, { resolve: resolve, reject });
      this.post({ op: 'call', seq, method, args }, transfer);
    });
  }

  /** Sends bytes with no reply (a failure comes as 'writeFailed'); the buffer is transferred. */
  write(id: number, bytes: Uint8Array): void {
    if (this.exitReason === undefined) this.post({ op: 'write', id, bytes }, [bytes.buffer as ArrayBuffer]);
  }

  pause(id: number): void {
    if (this.exitReason === undefined) this.post({ op: 'pause', id });
  }

  resume(id: number): void {
    if (this.exitReason === undefined) this.post({ op: 'resume', id });
  }

  /** Stops the engine host (the engine should have been shut down first). */
  async terminate(): Promise<void> {
    this.exited('closed');
    await this.dispose();
  }

  private receive(m: FromEngine): void {
    this.bridgeMessages.fromEngine++;
    switch (m.op) {
      case 'ready':
        this.readyCallback?.();
        break;
      case 'reply': {
        const p = this.pending.get(m.seq);
        this.pending.delete(m.seq);
        if (m.ok) p?.resolve(m.value);
        else p?.reject(fromEngineError({ code: m.code, message: m.message }));
        break;
      }
      case 'event':
        this.emit('event', m.event);
        break;
      case 'log':
        this.emit('log', m.line);
        break;
      case 'accepted':
        this.emit('accepted', m.port, m.id, m.remote, m.local);
        break;
      case 'data':
        for (const bytes of m.chunks) this.emit('data', m.id, bytes);
        break;
      case 'closed':
        this.emit('closed', m.id, m.error);
        break;
      case 'writeFailed':
        this.emit('writeFailed', m.id, m.message);
        break;
      case 'exit':
        this.exited(m.reason);
        break;
    }
  }

  private exited(reason: string): void {
    if (this.exitReason !== undefined) return;
    this.exitReason = reason;
    for (const p of this.pending.values()) p.reject(new TailnetError('NOT_RUNNING', `node is not running (${reason})`));
    this.pending.clear();
    this.emit('exit', reason);
  }
}
