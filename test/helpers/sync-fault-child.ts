/**
 * Test-only child process: a group committer over a real SQLite file, started by
 * test/integration/group-commit-sync-fault.test.ts with test/helpers/slow-wal-sync.c preloaded
 * (a preload must be there when the process starts, which is why this runs apart from the test).
 * It commits one lone unit with syncs working, then creates the FAIL_SYNC_FLAG file (every sync of
 * the write-ahead log fails with EIO from then on) and commits more lone units, each alone so that
 * the committer syncs it in the event loop's own thread. It prints one JSON line: how each unit,
 * durable() and a unit after the flag is gone settled, and whether each unit's work ran.
 *
 *   node sync-fault-child.mjs <database file>
 */
import { rmSync, writeFileSync } from 'node:fs';
import { openStore } from '../../main/core/store/database.js';
import { GroupCommitter } from '../../main/core/store/group-commit.js';

type Settled = { ok: true; sameTurn: boolean } | { ok: false; code: string; message: string; sameTurn: boolean };

const [file] = process.argv.slice(2);
const flag = process.env.FAIL_SYNC_FLAG!;
const db = openStore(file!);
db.exec('CREATE TABLE t (k TEXT PRIMARY KEY)');
const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
const committer = new GroupCommitter(db);
const ran: string[] = [];

/** How `promise` settled, and whether before the turn after the flush (the inline path's mark). */
async function settled(promise: Promise<unknown>): Promise<Settled> {
  let done = false;
  const outcome = promise.then(
    () => ({ ok: true as const }),
    (error: unknown) => ({
      ok: false as const,
      code: String((error as { code?: unknown }).code),
      message: String((error as Error).message),
    }),
  );
  void outcome.then(() => (done = true));
  // Queued after the flush's setImmediate: runs after the flush and the microtasks it settled.
  const sameTurn = await new Promise<boolean>((resolve) => setImmediate(() => resolve(done)));
  return { ...(await outcome), sameTurn };
}

const unit = (k: string) =>
  settled(
    committer.run(() => {
      ran.push(k);
      return insert.run(k).changes;
    }),
  );

const before = await unit('before');
writeFileSync(flag, '');
const failed = await unit('failed');
const after = await unit('after');
const durable = await settled(committer.durable());
rmSync(flag);
const diskBack = await unit('disk-back');
await committer.close();
db.close();
process.stdout.write(`${JSON.stringify({ before, failed, after, durable, diskBack, ran })}\n`);
