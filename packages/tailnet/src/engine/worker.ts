// Entry point of a node's worker thread: one wasm node per worker, so a busy or crashed node
// never blocks or takes down the app's own event loop.
import { parentPort } from 'node:worker_threads';
import { serveEngine } from './host.js';

if (!parentPort) throw new Error('engine/worker.js must run in a worker thread');
serveEngine(parentPort);
