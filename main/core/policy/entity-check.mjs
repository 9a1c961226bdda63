// @ts-check
/**
 * Checks a policy directory's entities against its schema (Cedar's checkParseEntities) apart
 * from the process that keeps the set. The check builds the whole entity set inside Cedar's
 * WebAssembly memory, which never shrinks: done on the main thread, 100,000 lookup entities left
 * ~180 MB resident for the life of the process. In a worker thread the wasm memory goes when the
 * thread ends, but not what compiling Cedar and decoding the entities took from the C allocator
 * (about 85 MB at 100,000 entities, kept by the thread's malloc arena after it exited); a child
 * process gives every byte back when it exits. policy-set.ts runs small directories in a worker
 * thread (quick to start) and large ones in a child process. Plain JavaScript, like
 * cedar-worker.mjs, so it starts the same way under tsx, vitest and a packaged build (Electron
 * forks itself as Node). Protocol:
 *   worker thread: workerData {entities, schema} -> one message, Cedar's CheckParseAnswer;
 *   child process: one IPC message {entities, schema} (advanced serialization) -> one message
 *   back, then the process exits.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

/** @typedef {{ entities: cedar.EntityJson[], schema: string }} CheckRequest */

if (parentPort !== null) {
  const port = parentPort;
  /** @type {unknown} */
  const data = workerData;
  port.postMessage(cedar.checkParseEntities(/** @type {CheckRequest} */ (data)));
} else if (process.send !== undefined) {
  const send = process.send.bind(process);
  process.once('message', (/** @type {unknown} */ message) => {
    send(cedar.checkParseEntities(/** @type {CheckRequest} */ (message)), () => process.exit(0));
  });
} else {
  throw new Error('entity-check.mjs must run as a worker thread or as a child process with an IPC channel');
}
