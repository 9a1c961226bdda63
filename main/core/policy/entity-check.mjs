// @ts-check
/**
 * Checks a policy directory's entities against its schema (Cedar's checkParseEntities) in a
 * short-lived child process. The check builds the whole entity set inside Cedar's WebAssembly
 * memory, which never shrinks: done on the main thread, 100,000 lookup entities left ~180 MB
 * resident for the life of the process. A worker thread gave the wasm memory back when it ended,
 * but not what compiling Cedar and decoding the entities had taken from the C allocator (about
 * 40 MB for ten entities, 85 MB for 100,000, kept by the thread's malloc arena after it exited);
 * a process gives every byte back when it exits. Plain JavaScript, like cedar-worker.mjs, so it
 * starts the same way under tsx, vitest and a packaged build (Electron forks itself as Node).
 * Protocol over the IPC channel (advanced serialization): one message {entities, schema} in, one
 * message out (Cedar's CheckParseAnswer), then the process exits.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

if (process.send === undefined) throw new Error('entity-check-child.mjs must run as a child process with an IPC channel');
const send = process.send.bind(process);

process.once('message', (/** @type {unknown} */ message) => {
  const { entities, schema } = /** @type {{ entities: cedar.EntityJson[], schema: string }} */ (message);
  send(cedar.checkParseEntities({ entities, schema }), () => process.exit(0));
});
