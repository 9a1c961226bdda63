/**
 * The audit tree's storage form: each entry's leaf hash in its own audit_log row (migration 21),
 * every subtree above the leaves in audit_tree keyed by where its leaves end, then level
 * (migration 20), so one append writes its row and the subtrees it completes side by side. Logs
 * written under the earlier forms, `audit_nodes(level, idx, hash)` (before 20) and audit_tree
 * with its level-0 rows (20), are carried over: they verify after the upgrade with the same root
 * and proofs, entries the old version had not hashed yet are hashed after it, and appends
 * continue them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, schemaVersion } from '../../main/core/store/database.js';
import { MIGRATIONS } from '../../main/core/store/migrations.js';
import { AuditLog } from '../../main/core/audit/audit-log.js';
import { MerkleHasher, rootOfLeafHashes, verifyConsistency, verifyInclusion } from '../../shared/merkle.js';
import { tempDir } from '../helpers/harness.js';

const reference = new MerkleHasher((data) => new Uint8Array(createHash('sha256').update(data).digest()));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** The schema version just before the tree moved to audit_tree. */
const BEFORE_TREE_KEY = 19;
/** The schema version just before leaf hashes moved into audit_log. */
const BEFORE_LEAF_IN_ROW = 20;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function freshFile(): string {
  const dir = tempDir('countersign-audit-tree-');
  dirs.push(dir);
  return join(dir, 'countersign.db');
}

const recordOf = (seq: number) => JSON.stringify({ at: seq, kind: 'server.started', note: `entry ${seq} é€`, seq });

/** A log of `n` entries as the version before migration 20 stored it: every complete subtree in audit_nodes(level, idx). */
function writeOldLog(file: string, n: number): Uint8Array[] {
  const old = new Database(file);
  for (const step of MIGRATIONS.slice(0, BEFORE_TREE_KEY)) old.exec(step);
  old.pragma(`user_version = ${BEFORE_TREE_KEY}`);
  const entry = old.prepare('INSERT INTO audit_log (seq, at, kind, record, request_id) VALUES (?, ?, ?, ?, NULL)');
  const node = old.prepare('INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)');
  const leaves: Uint8Array[] = [];
  old.transaction(() => {
    for (let seq = 1; seq <= n; seq++) {
      entry.run(seq, seq, 'server.started', recordOf(seq));
      leaves.push(reference.leaf(Buffer.from(recordOf(seq), 'utf8')));
    }
    let level = 0;
    for (let row = leaves; row.length > 0; level++) {
      row.forEach((hash, idx) => node.run(level, idx, hash));
      const up: Uint8Array[] = [];
      for (let i = 0; i + 1 < row.length; i += 2) up.push(reference.node(row[i]!, row[i + 1]!));
      row = up;
    }
  })();
  old.close();
  return leaves;
}

describe('the audit tree storage', () => {
  it('a log written before migration 20 verifies after the upgrade, with the same root and proofs, and appends continue it', () => {
    const file = freshFile();
    const leaves = writeOldLog(file, 37);
    const db = openStore(file);
    try {
      expect(schemaVersion(db)).toBe(MIGRATIONS.length);
      expect(db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'audit_nodes'").get()).toEqual({ n: 0 });
      // Every complete subtree of 37 leaves, carried over: 2n - popcount(n) hashes, the 37 leaves in their rows.
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_tree').get()).toEqual({ n: 2 * 37 - 3 - 37 });
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_log WHERE leaf IS NOT NULL').get()).toEqual({ n: 37 });
      const log = new AuditLog(db);
      expect(log.hashedSize()).toBe(37);
      const root = rootOfLeafHashes(reference, leaves);
      expect(log.verify()).toEqual({ ok: true, entries: 37, root: Buffer.from(root).toString('base64') });
      expect(hex(log.root())).toBe(hex(root));
      for (const index of [0, 17, 31, 32, 36]) {
        expect(hex(log.leafHash(index))).toBe(hex(leaves[index]!));
        expect(verifyInclusion(reference, index, 37, leaves[index]!, log.inclusionProof(index, 37), root)).toBe(true);
      }
      const root16 = rootOfLeafHashes(reference, leaves.slice(0, 16));
      expect(verifyConsistency(reference, 16, 37, log.consistencyProof(16, 37), root16, root)).toBe(true);

      db.transaction(() => log.append('server.stopped', 38, { serverId: 'after-upgrade' }))();
      const next = log.entries(38, 1)[0]!;
      leaves.push(reference.leaf(Buffer.from(next.record, 'utf8')));
      expect(log.verify()).toMatchObject({
        ok: true,
        entries: 38,
        root: Buffer.from(rootOfLeafHashes(reference, leaves)).toString('base64'),
      });
      expect(verifyConsistency(reference, 37, 38, log.consistencyProof(37, 38), root, log.root())).toBe(true);
    } finally {
      db.close();
    }
  });

  it('an append stores its leaf in its own row and every subtree it completes under the key of its own entry', () => {
    const db = openStore(freshFile());
    try {
      const log = new AuditLog(db);
      const levelsAt = db.prepare<[number], { level: number }>('SELECT level FROM audit_tree WHERE end_leaf = ? ORDER BY level');
      const row = db.prepare<[number], { record: string; leaf: Buffer | null }>('SELECT record, leaf FROM audit_log WHERE seq = ?');
      for (let seq = 1; seq <= 16; seq++) {
        db.transaction(() => log.append('server.stopped', seq, { serverId: `s${seq}` }))();
        const { record, leaf } = row.get(seq)!;
        expect(hex(leaf!)).toBe(hex(reference.leaf(Buffer.from(record, 'utf8'))));
        // Entry seq completes one subtree per trailing 1 bit of its index (seq - 1): levels 1..that count.
        let completed = 0;
        for (let i = seq - 1; i % 2 === 1; i = (i - 1) / 2) completed++;
        expect(levelsAt.all(seq).map((r) => r.level)).toEqual(Array.from({ length: completed }, (_, level) => level + 1));
      }
      expect(log.verify()).toMatchObject({ ok: true, entries: 16 });
    } finally {
      db.close();
    }
  });

  it('a log written before migration 21 (leaves in audit_tree) verifies after the upgrade; its unhashed tail is hashed after it; appends continue it', () => {
    const file = freshFile();
    const total = 29;
    const hashedBefore = 21;
    const old = new Database(file);
    for (const step of MIGRATIONS.slice(0, BEFORE_LEAF_IN_ROW)) old.exec(step);
    old.pragma(`user_version = ${BEFORE_LEAF_IN_ROW}`);
    const entry = old.prepare('INSERT INTO audit_log (seq, at, kind, record, request_id) VALUES (?, ?, ?, ?, NULL)');
    const node = old.prepare('INSERT INTO audit_tree (end_leaf, level, hash) VALUES (?, ?, ?)');
    const leaves = Array.from({ length: total }, (_, i) => reference.leaf(Buffer.from(recordOf(i + 1), 'utf8')));
    old.transaction(() => {
      for (let seq = 1; seq <= total; seq++) entry.run(seq, seq, 'server.started', recordOf(seq));
      // The old version had hashed the first `hashedBefore` entries (the rest waited for its syncTree).
      let level = 0;
      for (let row = leaves.slice(0, hashedBefore); row.length > 0; level++) {
        row.forEach((hash, idx) => node.run((idx + 1) * 2 ** level, level, hash));
        const up: Uint8Array[] = [];
        for (let i = 0; i + 1 < row.length; i += 2) up.push(reference.node(row[i]!, row[i + 1]!));
        row = up;
      }
    })();
    old.close();

    const db = openStore(file);
    try {
      expect(schemaVersion(db)).toBe(MIGRATIONS.length);
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_tree WHERE level = 0').get()).toEqual({ n: 0 });
      const stored = db.prepare<[], { seq: number; leaf: Buffer | null }>('SELECT seq, leaf FROM audit_log ORDER BY seq').all();
      expect(stored.map((r) => (r.leaf === null ? null : hex(r.leaf)))).toEqual(
        leaves.map((leaf, i) => (i < hashedBefore ? hex(leaf) : null)),
      );
      const log = new AuditLog(db);
      expect(log.hashedSize()).toBe(hashedBefore);
      const root = rootOfLeafHashes(reference, leaves);
      expect(hex(log.root())).toBe(hex(root));
      expect(log.hashedSize()).toBe(total);
      expect(log.verify()).toEqual({ ok: true, entries: total, root: Buffer.from(root).toString('base64') });
      for (const index of [0, 15, 20, 21, 28]) {
        expect(hex(log.leafHash(index))).toBe(hex(leaves[index]!));
        expect(verifyInclusion(reference, index, total, leaves[index]!, log.inclusionProof(index, total), root)).toBe(true);
      }
      const root16 = rootOfLeafHashes(reference, leaves.slice(0, 16));
      expect(verifyConsistency(reference, 16, total, log.consistencyProof(16, total), root16, root)).toBe(true);

      db.transaction(() => log.append('server.stopped', total + 1, { serverId: 'after-upgrade' }))();
      leaves.push(reference.leaf(Buffer.from(log.entries(total + 1, 1)[0]!.record, 'utf8')));
      expect(log.verify()).toMatchObject({
        ok: true,
        entries: total + 1,
        root: Buffer.from(rootOfLeafHashes(reference, leaves)).toString('base64'),
      });
      expect(verifyConsistency(reference, total, total + 1, log.consistencyProof(total, total + 1), root, log.root())).toBe(true);

      // A leaf is written once; the entry's other columns never change.
      expect(() => db.prepare('UPDATE audit_log SET leaf = ? WHERE seq = 1').run(Buffer.alloc(32, 1))).toThrow('audit log is append-only');
      expect(() => db.prepare("UPDATE audit_log SET record = '{}' WHERE seq = 25").run()).toThrow('audit log is append-only');
    } finally {
      db.close();
    }
  });

  it('a leaf hash planted before migration 21 for an entry that does not exist is kept, and the log refuses it', () => {
    const file = freshFile();
    const old = new Database(file);
    for (const step of MIGRATIONS.slice(0, BEFORE_LEAF_IN_ROW)) old.exec(step);
    old.pragma(`user_version = ${BEFORE_LEAF_IN_ROW}`);
    old.prepare('INSERT INTO audit_log (seq, at, kind, record, request_id) VALUES (1, 1, ?, ?, NULL)').run('server.started', recordOf(1));
    const node = old.prepare('INSERT INTO audit_tree (end_leaf, level, hash) VALUES (?, 0, ?)');
    node.run(1, reference.leaf(Buffer.from(recordOf(1), 'utf8')));
    node.run(2, Buffer.alloc(32, 7));
    old.close();
    const db = openStore(file);
    try {
      expect(db.prepare('SELECT end_leaf FROM audit_tree WHERE level = 0').all()).toEqual([{ end_leaf: 2 }]);
      const log = new AuditLog(db);
      expect(() => log.syncTree()).toThrow('the audit tree holds hashes for 2 entries but the log has 1');
    } finally {
      db.close();
    }
  });
  it('a leaf hash cleared under the subtrees it completed is named as audit_corrupt, not hashed again', () => {
    const db = openStore(freshFile());
    try {
      const log = new AuditLog(db);
      for (let seq = 1; seq <= 8; seq++) db.transaction(() => log.append('server.stopped', seq, { serverId: `s${seq}` }))();
      expect(log.verify()).toMatchObject({ ok: true, entries: 8 });
      // Tampering: only the leaf of entry 8 goes (its row's trigger removed first); its subtrees stay.
      db.exec('DROP TRIGGER audit_log_leaf_once');
      db.prepare('UPDATE audit_log SET leaf = NULL WHERE seq = 8').run();
      expect(() => log.syncTree()).toThrow(
        expect.objectContaining({
          code: 'audit_corrupt',
          message: "the audit tree's subtrees reach entry 8 but the leaf hash of entry 8 is missing",
        }),
      );
      expect(db.prepare('SELECT leaf FROM audit_log WHERE seq = 8').get()).toEqual({ leaf: null });
    } finally {
      db.close();
    }
  });
});
