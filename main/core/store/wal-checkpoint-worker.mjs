// @ts-check
/**
 * WAL checkpoints off the event loop (store/wal-checkpointer.ts, ADR 0003). A connection of its
 * own to the database checkpoints PASSIVE every `intervalMs`: it copies committed WAL frames
 * into the database file and syncs both, beside the writer, never blocking it (PASSIVE takes no
 * write lock and never waits). When commits arrived during a checkpoint it runs again, a few
 * rounds, so the WAL is wholly copied back as often as it can be (the writer then restarts it
 * from the top). When it still holds more than `maxWalFrames` frames, it asks the main thread,
 * the only writer, to checkpoint once between two transactions (no commit can slip in there).
 * Plain JavaScript so the worker starts the same way under tsx, vitest and the built server.
 * Messages out: {type:'behind', frames} and {type:'error', message}; in: {type:'stop'}.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * What wal-checkpointer.ts passes as workerData.
 * @param {unknown} data
 * @returns {{ file: string; intervalMs: number; maxWalFrames: number; rounds: number }}
 */
const settings = (data) => /** @type {{ file: string; intervalMs: number; maxWalFrames: number; rounds: number }} */ (data);
const { file, intervalMs, maxWalFrames, rounds } = settings(workerData);
const port = parentPort;
if (port === null) throw new Error('wal-checkpoint-worker runs as a worker thread');

/** @returns {Database.Database} */
function open() {
  try {
    const opened = new Database(file, { fileMustExist: true });
    // The checkpoint syncs the WAL before it copies frames and the database file before the WAL may be reused.
    opened.pragma('synchronous = FULL');
    // A checkpoint reads frames from the WAL and writes pages to the file: it needs no page cache of its own.
    opened.pragma('cache_size = 16');
    return opened;
  } catch (error) {
    port?.postMessage({ type: 'error', message: error instanceof Error ? error.message : String(error) });
    process.exit(1);
  }
}

const db = open();
/** @type {Database.Statement<[], { busy: number; log: number; checkpointed: number }>} */
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try {
    let result = checkpoint.get();
    for (let round = 1; round < rounds && result !== undefined && result.log > result.checkpointed; round++) result = checkpoint.get();
    if (result !== undefined && result.log > maxWalFrames && result.log > result.checkpointed)
      port.postMessage({ type: 'behind', frames: result.log });
  } catch (error) {
    port.postMessage({ type: 'error', message: error instanceof Error ? error.message : String(error) });
  }
}, intervalMs);
port.on('message', (/** @type {{ type?: string } | undefined} */ message) => {
  if (message?.type !== 'stop') return;
  clearInterval(timer);
  db.close();
  port.close();
});
