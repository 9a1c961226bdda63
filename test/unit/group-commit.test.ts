/**
 * Group commit over a real SQLite file: units share one transaction, a failing unit is rolled
 * back alone, and a unit's promise settles only after its rows are committed (visible from a
 * second connection).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../main/core/store/database.js';
import { GroupCommitter } from '../../main/core/store/group-commit.js';

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
});
