// @ts-check
/**
 * Checks a policy directory's entities against its schema (Cedar's checkParseEntities) in a
 * short-lived worker thread. The check builds the whole entity set inside Cedar's WebAssembly
 * memory, which never shrinks: done on the main thread, 100,000 lookup entities left ~180 MB
 * resident for the life of the process. Here that memory goes away with the worker. Plain
 * JavaScript, like cedar-worker.mjs, so it starts the same way under tsx, vitest and a build.
 * Protocol: workerData {entities, schema} -> one message, Cedar's CheckParseAnswer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';

if (parentPort === null) throw new Error('entity-check-worker.mjs must run as a worker thread');
/** @type {unknown} */
const data = workerData;
const { entities, schema } = /** @type {{ entities: cedar.EntityJson[], schema: string }} */ (data);
parentPort.postMessage(cedar.checkParseEntities({ entities, schema }));
