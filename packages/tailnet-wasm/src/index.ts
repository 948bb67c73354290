/**
 * Runs one Tailscale node, compiled from tailscale.com to WebAssembly (see ../go), inside the
 * current JavaScript thread, and gives it a typed API. This is the contract between the Go side
 * and TypeScript; `@krkn/tailnet` builds the public node API on top of it.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import './webassembly.js';
import {
  EngineWebSocket,
  attributeSockets,
  closeSockets,
  newSocketOwner,
  tailnetMtu,
  type WebSocketTraffic,
} from './websocket.js';

export { tailnetMtu } from './websocket.js';
export type { WebSocketTraffic } from './websocket.js';

const buildDir = fileURLToPath(new URL('../build/', import.meta.url));

/** Path of the compiled node (built by `npm run build` in this package). */
export const wasmPath = `${buildDir}tailnet.wasm`;

/** What build.sh recorded about the artifact. */
export interface BuildInfo {
  goVersion: string;
  tailscaleVersion: string;
  wasmBytes: number;
  sha256: string;
  tags: string;
}

/** Reads build/build-info.json. */
export function buildInfo(): BuildInfo {
  return JSON.parse(readFileSync(`${buildDir}build-info.json`, 'utf8')) as BuildInfo;
}

/** An HTTP request the node makes to its control server. */
export interface FetchRequest {
  method: string;
  url: string;
  headers: [string, string][];
  body: Uint8Array | null;
}

/** The answer to a {@link FetchRequest}. */
export interface FetchResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

/**
 * Callbacks the node calls. All are synchronous and must not call back into the engine.
 */
export interface EngineHost {
  /** One line of the node's own log. */
  log(line: string): void;
  /** A JSON-encoded {@link EngineEvent}. */
  notify(eventJson: string): void;
  /** Reads one key of the persisted state; null when absent. */
  stateGet(key: string): Uint8Array | null;
  /** Writes (or with null, deletes) one key; must be durable before it returns. */
  stateSet(key: string, value: Uint8Array | null): void;
  /** A new inbound connection on a listened port. Reading starts at {@link EngineApi.resume}. */
  accepted(port: number, id: number, remote: string, local: string): void;
  /** Bytes read from a connection. Return false to pause until {@link EngineApi.resume}. */
  data(id: number, bytes: Uint8Array): boolean;
  /** The connection's read side ended: "" for a clean EOF, otherwise the error. */
  closed(id: number, error: string): void;
}

/** A notification from the node. */
export type EngineEvent =
  | { type: 'state'; state: BackendState }
  | { type: 'loginUrl'; url: string }
  | { type: 'loginFinished' }
  | { type: 'self'; self: SelfInfo }
  | { type: 'peers' }
  // Go omits an empty list (omitempty): no warnings arrives as no `health` field.
  | { type: 'health'; health?: HealthWarning[] }
  | { type: 'error'; message: string };

/** The node's state machine, as ipn.State names it. */
export type BackendState =
  'NoState' | 'InUseOtherUser' | 'NeedsLogin' | 'NeedsMachineAuth' | 'Stopped' | 'Starting' | 'Running';

/** The node's own identity as the control server sees it. */
export interface SelfInfo {
  /** MagicDNS name, without the trailing dot. */
  name: string;
  addresses: string[];
  nodeKey: string;
  /** RFC 3339; absent when the key does not expire (tagged nodes). */
  keyExpiry?: string;
  tags: string[];
}

/** One active health warning. */
export interface HealthWarning {
  code: string;
  severity: string;
  title: string;
  text: string;
}

/** A connection opened by {@link EngineApi.dial}. */
export interface ConnInfo {
  id: number;
  remote: string;
  local: string;
}

/** Configuration for {@link EngineApi.start}. */
export interface EngineConfig {
  hostname: string;
  controlUrl: string;
  authKey: string;
  ephemeral: boolean;
  tags: string[];
  forceLogin: boolean;
}

/** What start did: the state after loading persisted state, and whether the auth key was used. */
export interface StartResult {
  state: BackendState;
  authKeyUsed: boolean;
}

/** The node's API. Rejections are Errors with a string `code` set by the Go side. */
export interface EngineApi {
  start(config: EngineConfig): Promise<StartResult>;
  listen(port: number): void;
  unlisten(port: number): void;
  dial(host: string, port: number, timeoutMs: number): Promise<ConnInfo>;
  write(id: number, bytes: Uint8Array): Promise<void>;
  resume(id: number): void;
  closeWrite(id: number): void;
  close(id: number): void;
  /** JSON of the Go side's whoisResult. */
  whois(addr: string): Promise<string>;
  /** JSON of ipnstate.PingResult. */
  ping(target: string, timeoutMs: number): Promise<string>;
  /** JSON of ipnstate.Status. */
  status(): Promise<string>;
  /** JSON list of the DERP map's regions with their nodes and last frame received (Go's relayRegion). */
  relays(): Promise<string>;
  logout(): Promise<void>;
  shutdown(): Promise<void>;
  /** The Go side's data-path counters. */
  metrics(): Promise<EngineMetrics>;
}

/**
 * Counters that tell packets lost from packets waiting, as the Go side counts them. Each wasm
 * node is its own Go program, so these are this node's alone.
 */
export interface EngineMetrics {
  /** magicsock's DERP send path: `dropped` and `errorQueue` are packets lost before the DERP server. */
  derp: Record<
    'queued' | 'dropped' | 'errorQueue' | 'errorChan' | 'errorClosed' | 'sendErrors' | 'sentData' | 'recvData',
    number
  >;
  /** The userspace TCP/IP stack: retransmits and timeouts mean loss was recovered, slowly. */
  tcp: Record<
    | 'segmentsSent'
    | 'segmentsReceived'
    | 'retransmits'
    | 'timeouts'
    | 'fastRecovery'
    | 'sackRecovery'
    | 'tlpRecovery'
    | 'droppedPackets',
    number
  >;
  /** Go↔JS calls carrying connection bytes: `data` Go → JS, `write` JS → Go. */
  crossings: Record<'dataCalls' | 'dataBytes' | 'writeCalls' | 'writeBytes', number>;
  /** Go's heap in use, and all the memory Go holds (the wasm memory it grew, which never shrinks), in bytes. */
  memory: Record<'heapInUse' | 'sys', number>;
}

/** A started engine. */
export interface RunningEngine {
  api: EngineApi;
  /** Settles with the Go program's exit code once it has exited (after shutdown, or a crash). */
  exited: Promise<number>;
  /** This node's WebSocket (control and DERP) traffic so far. */
  webSocketTraffic: () => WebSocketTraffic;
}

// What the Go side installs: EngineApi, with JSON strings where EngineApi has objects.
type GoApi = Omit<EngineApi, 'start' | 'dial' | 'metrics'> & {
  start(configJson: string): Promise<string>;
  metrics(): Promise<string>;
  dial(host: string, port: number, timeoutMs: number): Promise<Record<string, unknown>>;
};

interface GoRuntime {
  argv: string[];
  env: Record<string, string>;
  importObject: WebAssembly.Imports;
  exit: (code: number) => void;
  _scheduledTimeouts: Map<number, ReturnType<typeof setTimeout>>;
  run(instance: WebAssembly.Instance): Promise<void>;
}

interface Bridge {
  host: Record<string, unknown>;
  go?: GoApi;
}

// The argv+env block Go copies into linear memory is limited to about 8 KiB.
const maxEnvBytes = 4096;

let compiled: Promise<WebAssembly.Module> | undefined;
let bridges = 0;
const runtimeOutput = new Set<(text: string) => void>();

/** Compiles the module once per thread; a compiled module can also be posted to workers. */
export function compileEngine(): Promise<WebAssembly.Module> {
  return (compiled ??= WebAssembly.compile(readModule()));
}

// glibc's malloc raises its mmap threshold to the size of any mmap'd block freed (up to 32 MiB) and its
// trim threshold to twice that. Freeing a 26 MiB buffer of the module so let every thread's arena keep up
// to 52 MiB it no longer used, and V8 compiles on several threads: an idle `krkns run` held 227 MiB, 181–189
// with this. A block above 32 MiB is freed without moving the thresholds; its pages past the module are
// never touched, so never resident.
const mmapThresholdMax = 32 << 20;

function readModule(): Uint8Array {
  const fd = openSync(wasmPath, 'r');
  try {
    const size = fstatSync(fd).size;
    const bytes = Buffer.allocUnsafeSlow(Math.max(size, mmapThresholdMax + 1)).subarray(0, size);
    for (let at = 0; at < size;) {
      const n = readSync(fd, bytes, at, size - at, at);
      if (n === 0) throw new Error(`${wasmPath}: ended at byte ${at} of ${size}`);
      at += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts a node in this thread. `env` holds only the variables the node should see (TS_DEBUG_*
 * knobs, read at Go package init); never pass all of process.env. TS_DEBUG_MTU defaults to
 * {@link tailnetMtu}.
 */
export async function startEngine(
  host: EngineHost,
  env: Record<string, string> = {},
  module?: WebAssembly.Module,
): Promise<RunningEngine> {
  const Go = loadGoRuntime();
  const key = `__krknBridge${process.pid}_${++bridges}`;
  const goEnv = { TS_DEBUG_MTU: String(tailnetMtu), ...env, KRKN_BRIDGE: key };
  if (JSON.stringify(goEnv).length > maxEnvBytes) throw new Error('engine environment is too large');

  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  const bridge: Bridge = { host: { ...host, ready, fetch: hostFetch } };
  (globalThis as Record<string, unknown>)[key] = bridge;

  const go = new Go();
  go.argv = ['tailnet-wasm'];
  go.env = goEnv;
  let exitCode = 0;
  go.exit = (code) => (exitCode = code);
  const sockets = newSocketOwner();
  attributeSockets(go.importObject, sockets);
  const output = (text: string): void => host.log(text.trimEnd());
  runtimeOutput.add(output);
  const instance = await WebAssembly.instantiate(module ?? (await compileEngine()), go.importObject);
  const exited = go.run(instance).then(
    () => exitCode,
    () => exitCode || 1,
  );
  void exited.finally(() => {
    // Go's timers outlive the program; firing one after exit throws from a timer callback.
    for (const timer of go._scheduledTimeouts.values()) clearTimeout(timer);
    closeSockets(sockets);
    runtimeOutput.delete(output);
    Reflect.deleteProperty(globalThis, key);
  });
  const early = await Promise.race([isReady.then(() => undefined), exited]);
  if (early !== undefined) throw new Error(`engine exited during start with code ${early}`);
  return { api: wrap(bridge.go as GoApi), exited, webSocketTraffic: () => ({ ...sockets.traffic }) };
}

function wrap(go: GoApi): EngineApi {
  return {
    ...go,
    start: async (config) => JSON.parse(await go.start(JSON.stringify(config))) as StartResult,
    dial: async (host, port, timeoutMs) => (await go.dial(host, port, timeoutMs)) as unknown as ConnInfo,
    metrics: async () => JSON.parse(await go.metrics()) as EngineMetrics,
  };
}

/** The control client's plain HTTP requests (GET /key), made with Node's fetch. */
async function hostFetch(req: FetchRequest): Promise<FetchResponse> {
  let res: Response;
  try {
    res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    // Node's fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND) is in its cause.
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`${(err as Error).message}: ${cause?.code ?? cause?.message ?? 'unknown cause'}`, { cause: err });
  }
  const body = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, headers: [...res.headers], body };
}

type GoClass = new () => GoRuntime;

/**
 * Loads Go's wasm_exec glue into this thread once, with the two globals it expects from a
 * browser: WebSocket (the control and DERP connections use it) and an fs whose writes (the Go
 * runtime's own stderr: panics, fatal errors) reach each node's log.
 */
function loadGoRuntime(): GoClass {
  const g = globalThis as Record<string, unknown>;
  // Always ours, also where Node has a WebSocket of its own (22 and later): coder/websocket looks the
  // class up at each dial, and only ours merges messages, counts traffic, defers 'error' past the
  // close it waits for, and closes the sockets of an engine that exited.
  g.WebSocket = EngineWebSocket;
  if (!g.Go) {
    createRequire(import.meta.url)(`${buildDir}wasm_exec.cjs`);
    const decoder = new TextDecoder();
    const fs = g.fs as { writeSync(fd: number, buf: Uint8Array): number };
    fs.writeSync = (_fd, buf) => {
      const text = decoder.decode(buf);
      for (const emit of runtimeOutput) emit(text);
      return buf.length;
    };
  }
  return g.Go as GoClass;
}
