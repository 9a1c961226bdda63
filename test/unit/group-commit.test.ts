/**
 * Group commit over a real SQLite file: units share one transaction, a failing unit is rolled
 * back alone, and a unit's promise settles only after its rows are committed (visible from a
 * second connection) and the write-ahead log holding them has been synced. The sync is the real
 * fdatasync except where a test must hold one back or make one fail (a disk cannot be made to do
 * either on demand): those tests pass their own `syncFile` and say so. The real sync holds one
 * descriptor of the WAL file per concurrent sync for the committer's life (counted in /proc/self/fd).
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../main/core/store/database.js';
import { GroupCommitter, type FileSync } from '../../main/core/store/group-commit.js';

let dir: string;
let db: Db;
let reader: Database.Database;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-group-'));
  db = openStore(join(dir, 'c.db'));
  db.exec('CREATE TABLE t (k TEXT PRIMARY KEY)');
  reader = new Database(join(dir, 'c.db'), { readonly: true });
});
afterEach(() => {
  reader.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const count = () => (reader.prepare('SELECT COUNT(*) AS n FROM t').get() as { n: number }).n;

describe('group commit', () => {
  it('commits units of one turn together and settles each only once durable', async () => {
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const seenAtSettle: number[] = [];
    const units = ['a', 'b', 'c'].map((k) =>
      committer
        .run(() => insert.run(k).changes)
        .then((v) => {
          seenAtSettle.push(count());
          return v;
        }),
    );
    expect(count()).toBe(0); // nothing runs before the flush
    expect(await Promise.all(units)).toEqual([1, 1, 1]);
    expect(seenAtSettle).toEqual([3, 3, 3]);
  });

  it('rolls back a failing unit alone (its savepoint) and keeps the others', async () => {
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const ok1 = committer.run(() => insert.run('x'));
    const bad = committer.run(() => {
      insert.run('half-written');
      throw new Error('unit failed after a write');
    });
    const dup = committer.run(() => insert.run('x')); // UNIQUE violation
    const ok2 = committer.run(() => insert.run('y'));
    await expect(bad).rejects.toThrow('unit failed after a write');
    await expect(dup).rejects.toThrow(/UNIQUE/);
    await ok1;
    await ok2;
    expect(reader.prepare('SELECT k FROM t ORDER BY k').all()).toEqual([{ k: 'x' }, { k: 'y' }]);
  });

  it('splits a long queue into bounded batches and settles every unit', async () => {
    const committer = new GroupCommitter(db, { maxBatch: 4 });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => committer.run(() => insert.run(`k${i}`).changes)));
    expect(results).toHaveLength(10);
    expect(count()).toBe(10);
  });

  it('fails every unit of a batch whose transaction cannot start, and writes nothing', async () => {
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    // Another connection holds the write lock past the busy timeout: a real lock, not a mock.
    const other = new Database(join(dir, 'c.db'));
    other.pragma('busy_timeout = 0');
    db.pragma('busy_timeout = 50');
    other.exec('BEGIN IMMEDIATE');
    try {
      const a = committer.run(() => insert.run('locked-a'));
      const b = committer.run(() => insert.run('locked-b'));
      await expect(a).rejects.toThrow(/locked|busy/i);
      await expect(b).rejects.toThrow(/locked|busy/i);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(count()).toBe(0);
  });

  it('leaves the connection at synchronous=FULL outside its groups, so every other writer still syncs at COMMIT', async () => {
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    await Promise.all([committer.run(() => insert.run('a')), committer.run(() => insert.run('b'))]);
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
  });

  it('settles a group only once the sync of its write-ahead log has returned', async () => {
    // A sync held back by the test (a real disk cannot be paused): the rows are committed, yet nobody is answered.
    const held = heldSyncs();
    const committer = new GroupCommitter(db, { syncFile: held.sync });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const settled: string[] = [];
    const units = ['a', 'b'].map((k) => committer.run(() => insert.run(k)).then(() => settled.push(k)));
    await held.started(1);
    expect(held.paths).toEqual([join(dir, 'c.db-wal')]);
    expect(count()).toBe(2);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toEqual([]);
    held.release(0);
    await Promise.all(units);
    expect(settled).toEqual(['a', 'b']);
  });

  it('with one sync at a time, syncs once for every group committed while a sync was running, and settles groups in commit order', async () => {
    const held = heldSyncs(); // held back by the test, as above
    const committer = new GroupCommitter(db, { syncFile: held.sync, maxSyncsInFlight: 1 });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const settled: string[] = [];
    const unit = (k: string) => committer.run(() => insert.run(k)).then(() => settled.push(k));
    const first = unit('g1');
    await held.started(1);
    const second = unit('g2'); // committed while the first sync runs
    await new Promise((r) => setImmediate(r));
    const third = unit('g3'); // another group, same wait
    await new Promise((r) => setTimeout(r, 20));
    expect(count()).toBe(3);
    expect(held.paths).toHaveLength(1);
    held.release(0);
    await first;
    await held.started(2);
    expect(settled).toEqual(['g1']);
    held.release(1);
    await Promise.all([second, third]);
    expect(settled).toEqual(['g1', 'g2', 'g3']);
    expect(held.paths).toHaveLength(2);
  });

  it('starts a sync at once for a group committed while another sync runs, and the first to return settles every group before it, in commit order', async () => {
    const held = heldSyncs(); // held back by the test, as above
    const committer = new GroupCommitter(db, { syncFile: held.sync, maxSyncsInFlight: 2 });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const settled: string[] = [];
    const unit = (k: string) => committer.run(() => insert.run(k)).then(() => settled.push(k));
    const first = unit('g1');
    await held.started(1);
    const second = unit('g2'); // committed while the first sync runs: its own sync starts now
    await held.started(2);
    const third = unit('g3'); // both slots busy: waits for one
    await new Promise((r) => setTimeout(r, 20));
    expect(count()).toBe(3);
    expect(held.paths).toHaveLength(2);
    held.release(1); // the second sync began after g1's COMMIT too: it covers g1 and g2
    await Promise.all([first, second]);
    expect(settled).toEqual(['g1', 'g2']);
    await held.started(3); // the freed slot takes g3
    held.release(0); // the first sync returning late settles nothing more
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toEqual(['g1', 'g2']);
    held.release(2);
    await third;
    expect(settled).toEqual(['g1', 'g2', 'g3']);
    await committer.durable();
  });

  it('fails every unsettled group when one of two concurrent syncs fails, whatever the other answers', async () => {
    // A failing fdatasync (EIO) cannot be produced by a healthy disk on demand: injected here.
    const held = heldSyncs();
    const committer = new GroupCommitter(db, { syncFile: held.sync, maxSyncsInFlight: 2 });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const first = committer.run(() => insert.run('g1'));
    await held.started(1);
    const second = committer.run(() => insert.run('g2'));
    await held.started(2);
    const firstFails = expect(first).rejects.toMatchObject({ code: 'store_failed' });
    const secondFails = expect(second).rejects.toMatchObject({ code: 'store_failed' });
    held.fail(0, Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await firstFails;
    await secondFails;
    held.release(1); // returns after the failure: releases nothing
    await expect(committer.durable()).rejects.toMatchObject({ code: 'store_failed' });
    await expect(committer.run(() => insert.run('g3'))).rejects.toMatchObject({ code: 'store_failed' });
  });

  it('durable() waits for the sync that covers every group committed so far, and resolves at once when none is outstanding', async () => {
    const held = heldSyncs(); // held back by the test, as above
    const committer = new GroupCommitter(db, { syncFile: held.sync });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    await committer.durable(); // nothing committed yet
    const order: string[] = [];
    const first = committer.run(() => insert.run('g1')).then(() => order.push('unit g1'));
    await held.started(1);
    // Committed and visible, but its sync is running: a reader that would act outward waits.
    expect(count()).toBe(1);
    const afterFirst = committer.durable().then(() => order.push('durable after g1'));
    const second = committer.run(() => insert.run('g2')).then(() => order.push('unit g2'));
    await new Promise((r) => setImmediate(r)); // g2 commits while the first sync runs
    const afterSecond = committer.durable().then(() => order.push('durable after g2'));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual([]);
    held.release(0);
    await Promise.all([first, afterFirst]);
    expect(order).toEqual(['unit g1', 'durable after g1']); // the first sync does not cover g2
    await held.started(2);
    held.release(1);
    await Promise.all([second, afterSecond]);
    expect(order).toEqual(['unit g1', 'durable after g1', 'unit g2', 'durable after g2']);
    await committer.durable();
    expect(held.paths).toHaveLength(2);
  });

  it('durable() rejects with store_failed once a sync has failed', async () => {
    // A failing fdatasync cannot be produced by a healthy disk on demand: injected here.
    const failing: FileSync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const committer = new GroupCommitter(db, { syncFile: failing });
    const unit = expect(committer.run(() => db.prepare('INSERT INTO t (k) VALUES (?)').run('a'))).rejects.toMatchObject({
      code: 'store_failed',
    });
    const barrier = committer.durable();
    await new Promise((r) => setImmediate(r));
    const during = expect(committer.durable()).rejects.toMatchObject({ code: 'store_failed' });
    await unit;
    await during;
    await barrier; // asked before anything was committed: nothing to wait for
    await expect(committer.durable()).rejects.toMatchObject({ code: 'store_failed' });
  });

  it('fails every unit whose sync failed, and every later unit, with store_failed', async () => {
    // A failing fdatasync (EIO) cannot be produced by a healthy disk on demand: injected here.
    const failing: FileSync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const committer = new GroupCommitter(db, { syncFile: failing });
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    const units = [committer.run(() => insert.run('a')), committer.run(() => insert.run('b'))];
    for (const unit of units) await expect(unit).rejects.toMatchObject({ code: 'store_failed' });
    let ran = false;
    await expect(
      committer.run(() => {
        ran = true;
      }),
    ).rejects.toMatchObject({ code: 'store_failed', message: expect.stringContaining('restarts') as unknown });
    expect(ran).toBe(false);
  });

  it('syncs the write-ahead log through descriptors held across groups (one for lone groups, one per concurrent sync), released by close()', async () => {
    const wal = `${join(dir, 'c.db')}-wal`;
    // Descriptors of this process open on the WAL file (SQLite's own connections hold some).
    const walDescriptors = () => readdirSync('/proc/self/fd').filter((fd) => readlinkOr(`/proc/self/fd/${fd}`) === wal).length;
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    await committer.run(() => insert.run('first')); // alone: the inline descriptor
    await Promise.all([committer.run(() => insert.run('second')), committer.run(() => insert.run('third'))]); // a slot's
    expect(count()).toBe(3); // the reader's connection has opened the WAL too
    const held = walDescriptors();
    for (let group = 0; group < 5; group++) {
      await Promise.all([committer.run(() => insert.run(`g${group}a`)), committer.run(() => insert.run(`g${group}b`))]);
      await committer.run(() => insert.run(`g${group}c`));
    }
    expect(walDescriptors()).toBe(held);
    expect(count()).toBe(18);
    await committer.close();
    expect(walDescriptors()).toBe(held - 2);
  });

  it('syncs a lone group in the event loop’s own thread: settled, durable, before the next turn', async () => {
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    let settled = false;
    const unit = committer.run(() => insert.run('alone')).then(() => (settled = true));
    // Queued after the flush's setImmediate: runs after the flush and the microtasks it settled.
    const seenNextTurn = await new Promise<boolean>((resolve) => setImmediate(() => resolve(settled)));
    expect(seenNextTurn).toBe(true);
    await unit;
    expect(count()).toBe(1);
  });

  it('sends a group of two units, and a lone group when told not to inline, to the thread pool (settled in a later turn)', async () => {
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    for (const [committer, units] of [
      [new GroupCommitter(db), ['p1', 'p2']],
      [new GroupCommitter(db, { syncLoneGroupInline: false }), ['q1']],
    ] as const) {
      let settled = 0;
      const all = Promise.all(units.map((k) => committer.run(() => insert.run(k)).then(() => settled++)));
      const seenNextTurn = await new Promise<number>((resolve) => setImmediate(() => resolve(settled)));
      expect(seenNextTurn).toBe(0);
      await all;
      expect(settled).toBe(units.length);
      await committer.close();
    }
    expect(count()).toBe(3);
  });

  it('settles a lone group committed while an earlier group waits for its sync after that group (commit order)', async () => {
    const committer = new GroupCommitter(db);
    const insert = db.prepare('INSERT INTO t (k) VALUES (?)');
    // Each unit's own settlement is recorded (one reaction each): a Promise.all over the pair would
    // add reaction steps and report the pair after a lone unit settled in the same turn after it
    // (a second sync slot may cover both groups and settle them together, in order).
    const order: string[] = [];
    const unit = (k: string) => committer.run(() => insert.run(k)).then(() => order.push(k));
    const pair = [unit('a1'), unit('a2')];
    // The pair's group is committed and its sync runs on the pool: this lone unit must not overtake it.
    await new Promise((resolve) => setImmediate(resolve));
    const lone = unit('b');
    await Promise.all([...pair, lone]);
    expect(order).toEqual(['a1', 'a2', 'b']);
    expect(count()).toBe(3);
  });

  it('on a database in memory, settles after the COMMIT with no file to sync', async () => {
    const memory = openStore(':memory:');
    try {
      memory.exec('CREATE TABLE t (k TEXT PRIMARY KEY)');
      const syncs: string[] = [];
      const committer = new GroupCommitter(memory, { syncFile: (path) => (syncs.push(path), Promise.resolve()) });
      await committer.run(() => memory.prepare('INSERT INTO t (k) VALUES (?)').run('a'));
      expect(syncs).toEqual([]);
      expect(memory.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 1 });
    } finally {
      memory.close();
    }
  });
});

/** A FileSync whose calls wait until the test releases (or fails) them (calls are numbered from 0). */
function heldSyncs(): {
  sync: FileSync;
  paths: string[];
  started: (n: number) => Promise<void>;
  release: (i: number) => void;
  fail: (i: number, error: Error) => void;
} {
  const paths: string[] = [];
  const calls: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  return {
    paths,
    sync: (path) =>
      new Promise<void>((resolve, reject) => {
        paths.push(path);
        calls.push({ resolve, reject });
      }),
    async started(n) {
      while (paths.length < n) await new Promise((r) => setTimeout(r, 2));
    },
    release: (i) => calls[i]!.resolve(),
    fail: (i, error) => calls[i]!.reject(error),
  };
}

/** Where a /proc fd link points, or '' when it closed meanwhile. */
function readlinkOr(link: string): string {
  try {
    return readlinkSync(link);
  } catch {
    return '';
  }
}
