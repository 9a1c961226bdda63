/**
 * The audit tree's storage form (migration 20): every subtree hash keyed by where its leaves end,
 * then level, so one append's leaf and the subtrees it completes are stored side by side. A log
 * written under the previous form, `audit_nodes(level, idx, hash)`, is carried over as it is: it
 * verifies after the upgrade with the same root and proofs, and appends continue it.
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
      // Every complete subtree of 37 leaves, carried over: 2n - popcount(n) hashes.
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_tree').get()).toEqual({ n: 2 * 37 - 3 });
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

  it('an append stores its leaf and every subtree it completes under the key of its own entry', () => {
    const db = openStore(freshFile());
    try {
      const log = new AuditLog(db);
      const levelsAt = db.prepare<[number], { level: number }>('SELECT level FROM audit_tree WHERE end_leaf = ? ORDER BY level');
      for (let seq = 1; seq <= 16; seq++) {
        db.transaction(() => log.append('server.stopped', seq, { serverId: `s${seq}` }))();
        // Entry seq completes one subtree per trailing 1 bit of its index (seq - 1): levels 0..that count.
        let completed = 0;
        for (let i = seq - 1; i % 2 === 1; i = (i - 1) / 2) completed++;
        expect(levelsAt.all(seq).map((r) => r.level)).toEqual(Array.from({ length: completed + 1 }, (_, level) => level));
      }
      expect(log.verify()).toMatchObject({ ok: true, entries: 16 });
    } finally {
      db.close();
    }
  });
});
