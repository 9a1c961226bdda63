/**
 * The audit tree's storage form: each entry's leaf hash (migration 21) and the hashes of every
 * subtree its leaf completes (migration 22, `subtrees`) in its own audit_log row, so one append
 * writes one row; the by-request index keyed by an integer (migration 22). Logs written under the
 * earlier forms, `audit_nodes(level, idx, hash)` (before 20), audit_tree with its level-0 rows
 * (20) and audit_tree above the leaves with a text request_id (21), are carried over: they verify
 * after the upgrade with the same root and proofs, entries the old version had not hashed yet are
 * hashed after it, look-ups by request still find their entries, and appends continue them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, schemaVersion } from '../../main/core/store/database.js';
import { MIGRATIONS } from '../../main/core/store/migrations.js';
import { AuditLog } from '../../main/core/audit/audit-log.js';
import { exportAudit, verifyExport } from '../../main/core/audit/audit-export.js';
import { newRequestId, requestKey } from '../../main/core/store/request-id.js';
import { SoftwareSigner } from '../../main/core/custody/software-signer.js';
import { signNote } from '../../main/core/audit/note-keys.js';
import { checkpointText, formatSignedNote, toBase64 } from '../../shared/checkpoint-note.js';
import { MerkleHasher, rootOfLeafHashes, verifyConsistency, verifyInclusion } from '../../shared/merkle.js';
import { tempDir } from '../helpers/harness.js';

const reference = new MerkleHasher((data) => new Uint8Array(createHash('sha256').update(data).digest()));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** The schema version just before the tree moved to audit_tree. */
const BEFORE_TREE_KEY = 19;
/** The schema version just before leaf hashes moved into audit_log. */
const BEFORE_LEAF_IN_ROW = 20;
/** The schema version just before subtree hashes moved into audit_log and request ids became integer keys. */
const BEFORE_SUBTREES_IN_ROW = 21;

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function freshFile(): string {
  const dir = tempDir('countersign-audit-tree-');
  dirs.push(dir);
  return join(dir, 'countersign.db');
}

const ORIGIN = 'countersign/audit-tree-storage';

/** Stores a checkpoint of `size` entries and `root`, signed as the checkpointer signs one. */
function db0Checkpoint(db: Database.Database) {
  return async (size: number, root: Uint8Array): Promise<void> => {
    const signer = await SoftwareSigner.openOrCreate(join(db.name, '..'), { log: () => undefined, algorithm: 'EdDSA' });
    const text = checkpointText({ origin: ORIGIN, size, rootHash: toBase64(root), time: 1_790_000_000_000 + size });
    const note = formatSignedNote(text, [await signNote(signer, ORIGIN, text)]);
    db.prepare('INSERT INTO audit_checkpoints (tree_size, root_hash, at, note) VALUES (?, ?, ?, ?)').run(
      size,
      root,
      1_790_000_000_000 + size,
      note,
    );
  };
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
      // Every complete subtree of 37 leaves, carried over into the rows: 2n - popcount(n) hashes, 37 of them leaves.
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_tree').get()).toEqual({ n: 0 });
      expect(db.prepare('SELECT SUM(length(subtrees)) AS n FROM audit_log').get()).toEqual({ n: (2 * 37 - 3 - 37) * 32 });
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

  it('an append stores its leaf and every subtree it completes in its own row, nothing in audit_tree', () => {
    const db = openStore(freshFile());
    try {
      const log = new AuditLog(db);
      const row = db.prepare<[number], { record: string; leaf: Buffer | null; subtrees: Buffer | null }>(
        'SELECT record, leaf, subtrees FROM audit_log WHERE seq = ?',
      );
      const leaves: Uint8Array[] = [];
      for (let seq = 1; seq <= 16; seq++) {
        db.transaction(() => log.append('server.stopped', seq, { serverId: `s${seq}` }))();
        const { record, leaf, subtrees } = row.get(seq)!;
        leaves.push(reference.leaf(Buffer.from(record, 'utf8')));
        expect(hex(leaf!)).toBe(hex(leaves[seq - 1]!));
        // Entry seq completes one subtree per trailing 1 bit of its index (seq - 1): levels 1..that count, lowest first.
        const expected: string[] = [];
        for (let level = 1, i = seq - 1; i % 2 === 1; level++, i = (i - 1) / 2) {
          expected.push(hex(rootOfLeafHashes(reference, leaves.slice(seq - 2 ** level, seq))));
        }
        expect(subtrees === null ? '' : hex(subtrees)).toBe(expected.join(''));
      }
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_tree').get()).toEqual({ n: 0 });
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
  it('a log written before migration 22 (subtrees in audit_tree, text request ids) verifies after the upgrade with the same proofs, finds its requests, exports and keeps appending', async () => {
    const file = freshFile();
    const total = 45;
    const old = new Database(file);
    for (const step of MIGRATIONS.slice(0, BEFORE_SUBTREES_IN_ROW)) old.exec(step);
    old.pragma(`user_version = ${BEFORE_SUBTREES_IN_ROW}`);
    // Three requests, each with entries spread over the log, and entries about no request.
    const ids = [newRequestId(1_790_000_000_000), newRequestId(1_790_000_000_000), newRequestId(1_790_000_000_001)];
    const requestOf = (seq: number) => (seq % 4 === 0 ? undefined : ids[seq % 3]!);
    const recordAt = (seq: number) =>
      JSON.stringify({
        at: seq,
        kind: 'server.started',
        note: `entry ${seq} é€`,
        ...(requestOf(seq) ? { requestId: requestOf(seq) } : {}),
        seq,
      });
    const entry = old.prepare('INSERT INTO audit_log (seq, at, kind, record, request_id, leaf) VALUES (?, ?, ?, ?, ?, ?)');
    const node = old.prepare('INSERT INTO audit_tree (end_leaf, level, hash) VALUES (?, ?, ?)');
    const leaves = Array.from({ length: total }, (_, i) => reference.leaf(Buffer.from(recordAt(i + 1), 'utf8')));
    old.transaction(() => {
      for (let seq = 1; seq <= total; seq++) entry.run(seq, seq, 'server.started', recordAt(seq), requestOf(seq) ?? null, leaves[seq - 1]);
      let level = 1;
      for (let row = leaves; row.length > 1; level++) {
        const up: Uint8Array[] = [];
        for (let i = 0; i + 1 < row.length; i += 2) up.push(reference.node(row[i]!, row[i + 1]!));
        up.forEach((hash, idx) => node.run((idx + 1) * 2 ** level, level, hash));
        row = up;
      }
    })();
    const oldRoot = rootOfLeafHashes(reference, leaves);
    // A checkpoint signed by the old version, so the export proves the migrated log consistent with it.
    const signer = await SoftwareSigner.openOrCreate(join(file, '..'), { log: () => undefined, algorithm: 'EdDSA' });
    const checkpoint = db0Checkpoint(old);
    await checkpoint(total, oldRoot);
    old.close();

    const db = openStore(file);
    try {
      expect(schemaVersion(db)).toBe(MIGRATIONS.length);
      // Every subtree moved into the row of the entry that completes it; the text column and its index are gone.
      expect(db.prepare('SELECT COUNT(*) AS n FROM audit_tree').get()).toEqual({ n: 0 });
      expect(db.prepare('SELECT SUM(length(subtrees)) AS n FROM audit_log').get()).toEqual({ n: (total - 4) * 32 }); // n - popcount(45)
      const columns = db
        .prepare<[], { name: string }>("SELECT name FROM pragma_table_info('audit_log')")
        .all()
        .map((c) => c.name);
      expect(columns).not.toContain('request_id');
      expect(
        db.prepare<[number], { n: number }>('SELECT COUNT(*) AS n FROM audit_log WHERE request_key = ?').get(requestKey(ids[1]!))!.n,
      ).toBe(Array.from({ length: total }, (_, i) => requestOf(i + 1)).filter((id) => id === ids[1]).length);
      const log = new AuditLog(db);
      expect(log.hashedSize()).toBe(total);
      expect(log.verify()).toEqual({ ok: true, entries: total, root: Buffer.from(oldRoot).toString('base64') });
      expect(hex(log.root())).toBe(hex(oldRoot));
      for (const index of [0, 15, 31, 32, 44]) {
        expect(verifyInclusion(reference, index, total, leaves[index]!, log.inclusionProof(index, total), oldRoot)).toBe(true);
      }
      const root16 = rootOfLeafHashes(reference, leaves.slice(0, 16));
      expect(verifyConsistency(reference, 16, total, log.consistencyProof(16, total), root16, oldRoot)).toBe(true);
      // Look-ups by request: ids[0] and ids[1] share a millisecond (their keys may even collide); each finds exactly its own.
      for (const id of ids) {
        const expected = Array.from({ length: total }, (_, i) => i + 1).filter((seq) => requestOf(seq) === id);
        expect(log.entriesFor(id).map((e) => e.seq)).toEqual(expected);
      }

      // Appends continue the migrated log, with the same hashes a fresh log would store.
      for (let seq = total + 1; seq <= total + 20; seq++) {
        db.transaction(() => log.append('decision.expired', seq, { requestId: ids[2]!, agentId: 'a', reasons: [`after ${seq}`] }))();
        leaves.push(reference.leaf(Buffer.from(log.entries(seq, 1)[0]!.record, 'utf8')));
      }
      const root = rootOfLeafHashes(reference, leaves);
      expect(log.verify()).toEqual({ ok: true, entries: total + 20, root: Buffer.from(root).toString('base64') });
      expect(verifyConsistency(reference, total, total + 20, log.consistencyProof(total, total + 20), oldRoot, root)).toBe(true);
      expect(log.entriesFor(ids[2]!).length).toBe(
        Array.from({ length: total }, (_, i) => requestOf(i + 1)).filter((id) => id === ids[2]).length + 20,
      );

      // Hashes are still set once: leaf and subtrees of a hashed entry never change.
      expect(() => db.prepare('UPDATE audit_log SET subtrees = ? WHERE seq = 2').run(Buffer.alloc(32, 1))).toThrow(
        'audit log is append-only',
      );
      expect(() => db.prepare('UPDATE audit_log SET request_key = 1 WHERE seq = 3').run()).toThrow('audit log is append-only');

      // The export and the offline verifier, unchanged: the whole log, and one request's entries with their proofs.
      await db0Checkpoint(db)(total + 20, root);
      for (const selection of [{ kind: 'all' as const }, { kind: 'request' as const, requestId: ids[0]! }]) {
        const out = join(file, '..', `export-${selection.kind}.jsonl`);
        exportAudit({ db, log, origin: ORIGIN, file: out, selection });
        expect(await verifyExport(out, [signer.publicJwk])).toMatchObject({
          ok: true,
          treeSize: total + 20,
          checkpoints: 2,
          root: Buffer.from(root).toString('base64'),
          entries: selection.kind === 'all' ? total + 20 : log.entriesFor(ids[0]!).length,
        });
      }
    } finally {
      db.close();
    }
  });

  it('appends rolled back, in a savepoint or whole, and appends from another connection leave the stored tree exact', () => {
    const file = freshFile();
    const db = openStore(file);
    const other = openStore(file);
    try {
      const log = new AuditLog(db);
      const otherLog = new AuditLog(other);
      const append = (l: AuditLog, seq: number) => l.append('server.stopped', seq, { serverId: `s${seq}` });
      for (let seq = 1; seq <= 40; seq++) {
        // A whole transaction of one to three appends rolled back: the appender's kept right edge is now ahead of the log.
        // Before another connection's append, exactly one: the log then ends where that edge does, on another entry,
        // and the next append (none rolled back before it) must not take the edge for the log's.
        const rolledBack = seq % 5 === 0 ? 1 : seq % 5 === 1 ? 0 : 1 + (seq % 3);
        if (rolledBack > 0) {
          expect(() =>
            db.transaction(() => {
              for (let k = 0; k < rolledBack; k++) append(log, 1000 + k);
              throw new Error('rolled back');
            })(),
          ).toThrow('rolled back');
        }
        if (seq % 5 === 0) {
          // Another connection appends (PRAGMA data_version moves for this one).
          other.transaction(() => append(otherLog, seq))();
        } else if (seq % 2 === 0 && seq % 5 !== 1) {
          // A savepoint's append rolled back inside a transaction that then appends and commits.
          db.transaction(() => {
            expect(() =>
              db.transaction(() => {
                append(log, 2000);
                throw new Error('savepoint');
              })(),
            ).toThrow('savepoint');
            append(log, seq);
          })();
        } else {
          db.transaction(() => append(log, seq))();
        }
      }
      const records = log.entries(1, 100).map((e) => e.record);
      expect(records.map((r) => (JSON.parse(r) as { at: number }).at)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      const leaves = records.map((r) => reference.leaf(Buffer.from(r, 'utf8')));
      expect(log.verify()).toEqual({ ok: true, entries: 40, root: Buffer.from(rootOfLeafHashes(reference, leaves)).toString('base64') });
      expect(otherLog.verify()).toMatchObject({ ok: true, entries: 40 });
    } finally {
      other.close();
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
