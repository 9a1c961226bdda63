/**
 * WAL checkpoints in a worker thread (store/wal-checkpointer.ts, ADR 0003), over real SQLite
 * files: the main connection stops checkpointing inside its COMMITs, the worker copies committed
 * frames into the database file beside it, the main thread checkpoints once when the WAL grows
 * past its bound, and the main connection checkpoints by itself again when the worker stops or
 * fails (a database file the worker cannot open: a real fault, no mock).
 */
import { mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../main/core/store/database.js';
import { WalCheckpointer } from '../../main/core/store/wal-checkpointer.js';

let dir: string;
let db: Db;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-ckpt-'));
  file = join(dir, 'c.db');
  db = openStore(file);
  db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)');
});
afterEach(() => {
  if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** 200 commits of 8 KiB each: ~1.6 MiB of pages, all in the WAL until something checkpoints. */
function writeCommits(from: number): void {
  const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
  for (let i = from; i < from + 200; i++) insert.run(i, Buffer.alloc(8192, i % 251));
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('WAL checkpoints off the event loop', () => {
  it('turns the main connection’s own checkpoints off and copies committed frames into the database file from the worker', async () => {
    const checkpointer = WalCheckpointer.start(db, { intervalMs: 20 })!;
    try {
      expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
      writeCommits(0);
      // Nothing on this thread copies frames back now: the database file grows only by the worker's checkpoints.
      await until(() => statSync(file).size > 1_600_000, 'the worker copied the frames into the database file');
      expect(checkpointer.mainThreadCheckpoints).toBe(0);
    } finally {
      await checkpointer.stop();
    }
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 200 });
  });

  it('checkpoints once on the main thread when the WAL holds more frames than its bound and the worker could not copy them all', async () => {
    // A bound of one frame and a single round: any commit between the worker's checkpoints leaves it behind.
    const checkpointer = WalCheckpointer.start(db, { intervalMs: 5, maxWalFrames: 1, rounds: 1 })!;
    try {
      let next = 0;
      await until(() => {
        writeCommits(next);
        next += 200;
        return checkpointer.mainThreadCheckpoints > 0;
      }, 'the main thread checkpointed');
    } finally {
      await checkpointer.stop();
    }
  });

  it('gives checkpoints back to the main connection when the worker fails', async () => {
    const errors: string[] = [];
    // The worker opens the database by its name; moved away, the open fails (fileMustExist).
    renameSync(file, join(dir, 'moved.db'));
    const checkpointer = WalCheckpointer.start(db, { onError: (message) => errors.push(message) })!;
    await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === 1000, 'the main connection checkpoints again');
    expect(errors.join('\n')).toMatch(/checkpoint worker/);
    await checkpointer.stop();
  });

  it('leaves a database in memory as it is', () => {
    const memory = openStore(':memory:');
    try {
      expect(WalCheckpointer.start(memory)).toBeUndefined();
    } finally {
      memory.close();
    }
  });
});
