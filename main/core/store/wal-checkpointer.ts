/**
 * WAL checkpoints off the event loop (issue #12, ADR 0003). SQLite checkpoints automatically
 * inside the COMMIT that takes the WAL past 1,000 frames, on the thread that committed: copying
 * the frames into the database file and syncing the WAL and the database file, several
 * milliseconds on a busy disk, during which no agent is answered. At 250 lone decisions a second
 * (~23 frames each) that was a stall every ~170 ms, the open loop's p99. Here the main
 * connection never checkpoints by itself (wal_autocheckpoint=0); a worker thread with its own
 * connection checkpoints PASSIVE beside it (wal-checkpoint-worker.mjs).
 *
 * Under a steady stream of commits the worker may never find the WAL wholly copied back at the
 * moment a transaction starts, and the WAL is only restarted from the top then. So when it still
 * holds more than `maxWalFrames` frames after the worker's rounds, the main thread (the only
 * writer) checkpoints once itself, between two transactions: one short stall per tens of MiB of
 * WAL instead of one per 4 MiB. Durability is unchanged: a checkpoint from either connection
 * syncs the WAL before it copies a frame (so nothing not yet synced by the group committer is
 * copied unsynced) and the database file before the WAL may be reused. If the worker fails, the
 * main connection checkpoints automatically again, as before.
 */
import { Worker } from 'node:worker_threads';
import { resolve as resolvePath } from 'node:path';
import type { Db } from './database.js';

export interface WalCheckpointerOptions {
  /** How often the worker checkpoints, in milliseconds (default 200). */
  intervalMs?: number;
  /** WAL frames past which the main thread checkpoints once (default 8,192: 32 MiB of 4 KiB pages). */
  maxWalFrames?: number;
  /**
   * Checkpoints in a row while commits keep arriving during them (default 1). Each one syncs the
   * WAL and the database file: more rounds restart the WAL more often but add syncs that compete
   * with the decisions' own on the disk, and CPU beside the event loop.
   */
  rounds?: number;
  /** Told when the worker fails (the main connection then checkpoints by itself again). */
  onError?: (message: string) => void;
}

const WORKER_URL = new URL('./wal-checkpoint-worker.mjs', import.meta.url);

export class WalCheckpointer {
  private readonly worker: Worker;
  /** Resolves when the worker thread has ended (stopped, or failed on its own). */
  private readonly exited: Promise<void>;
  private stopping = false;
  private readonly autocheckpoint: number;
  /** Times the main thread checkpointed because the worker could not catch up (tests, health). */
  mainThreadCheckpoints = 0;

  /** Moves `db`'s checkpoints to a worker; undefined (nothing changed) unless `db` is a WAL file. */
  static start(db: Db, options: WalCheckpointerOptions = {}): WalCheckpointer | undefined {
    if (db.memory || String(db.pragma('journal_mode', { simple: true })).toLowerCase() !== 'wal') return undefined;
    return new WalCheckpointer(db, options);
  }

  private constructor(
    private readonly db: Db,
    private readonly options: WalCheckpointerOptions,
  ) {
    this.autocheckpoint = Number(db.pragma('wal_autocheckpoint', { simple: true }));
    db.pragma('wal_autocheckpoint = 0');
    this.worker = new Worker(WORKER_URL, {
      workerData: {
        file: resolvePath(db.name),
        intervalMs: Math.max(1, options.intervalMs ?? 200),
        maxWalFrames: Math.max(1, options.maxWalFrames ?? 8_192),
        rounds: Math.max(1, options.rounds ?? 1),
      },
      // A checkpoint keeps almost nothing on the JavaScript heap: a small one bounds what the thread adds to the process.
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
    });
    this.worker.unref();
    this.exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('message', (message: { type: string; frames?: number; message?: string }) => {
      if (message.type === 'behind') this.checkpointHere();
      else if (message.type === 'error') this.options.onError?.(`WAL checkpoint worker: ${message.message ?? ''}`);
    });
    this.worker.on('error', (error) => this.options.onError?.(`WAL checkpoint worker failed: ${error.message}`));
    this.worker.on('exit', () => {
      if (this.stopping) return;
      this.restoreAutocheckpoint();
      this.options.onError?.('the WAL checkpoint worker stopped; the database checkpoints on the main thread again');
    });
  }

  /** Stops the worker (after its checkpoint in progress) and gives checkpoints back to the main connection. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Held referenced while it stops: an unreferenced worker and timer would let a process with
    // nothing else to do exit in the middle of this wait.
    this.worker.ref();
    let timer: ReturnType<typeof setTimeout> | undefined;
    this.worker.postMessage({ type: 'stop' });
    await Promise.race([this.exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000)))]);
    clearTimeout(timer);
    await this.worker.terminate();
    this.restoreAutocheckpoint();
  }

  /** Between two transactions (a message is handled between event-loop tasks): no commit can land meanwhile. */
  private checkpointHere(): void {
    if (this.stopping || !this.db.open || this.db.inTransaction) return;
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
      this.mainThreadCheckpoints++;
    } catch (error) {
      this.options.onError?.(`WAL checkpoint failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private restoreAutocheckpoint(): void {
    if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${this.autocheckpoint}`);
  }
}
