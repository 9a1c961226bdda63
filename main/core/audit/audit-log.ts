/**
 * The append-only audit log: an RFC 9162 Merkle log stored in SQLite. Entry `seq` (1-based) is
 * leaf `seq - 1`; its data is the entry's canonical (JCS) record. Each append writes the entry
 * inside the caller's transaction, so an audit record that cannot be written takes the decision
 * it belongs to down with it. The same append hashes the record it has just written into its
 * leaf, stored in the entry's own row (migration 21), and every subtree that leaf completes
 * (audit_tree, one small row on average), in that transaction too: a rolled-back append leaves
 * nothing to undo, and the record is hashed from the bytes in hand instead of being read back
 * later. Only when the stored tree does not end exactly where the log did (entries written
 * before the Merkle log, or by a version that hashed later) does the append leave its leaf NULL
 * and hashing to `syncTree`, which hashes entries in order, in its own transaction, and is run
 * before any root, proof or checkpoint is read. What vouches for the log is the
 * signed checkpoint (checkpoints.ts), which re-hashes every record it covers from the record
 * itself; docs/audit.md is the format.
 */
import { createHash, hash as oneShot } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Db } from '../store/database.js';
import { canonicalizeWith, type JsonObject } from '../../../shared/canonical-json.js';
import { CanonicalUtf8Writer } from '../../../shared/canonical-utf8.js';
import { MerkleAccumulator, MerkleHasher, consistencyPath, inclusionPath, rangeHashOfSubtrees } from '../../../shared/merkle.js';
import { CountersignError } from '../../../shared/errors.js';
import { parseCheckpointText, parseSignedNote } from '../../../shared/checkpoint-note.js';
import { assertAuditEvent, type AuditEventFields, type AuditKind } from '../../../shared/audit-events.js';

/** The closed set of kinds and each one's fields live in shared/audit-events.ts. */
export type { AuditKind, AuditEventFields } from '../../../shared/audit-events.js';

export interface AuditEntry {
  seq: number;
  at: number;
  kind: AuditKind;
  record: string;
}

export const sha256 = (data: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(data).digest());

/**
 * The same RFC 9162 hashes with node:crypto's one-shot hash over one buffer (prefix and input
 * written side by side): about half the cost of a createHash object per hash, which the audit
 * append pays twice per entry (its leaf and, on average, one completed subtree).
 */
class NodeMerkleHasher extends MerkleHasher {
  override leaf(entry: Uint8Array): Uint8Array {
    const input = Buffer.allocUnsafe(entry.length + 1);
    input[0] = 0x00;
    input.set(entry, 1);
    return oneShot('sha256', input, 'buffer');
  }

  /** leaf() of bytes already laid out as its input: the 0x00 prefix is written here at [0], the entry is [1, end). */
  leafOfPrefixed(input: Uint8Array, end: number): Uint8Array {
    input[0] = 0x00;
    return oneShot('sha256', input.subarray(0, end), 'buffer');
  }

  /** The prefix is written over bytes[at] for the hash and put back: no copy of the entry (export verification). */
  override leafInPlace(bytes: Uint8Array, at: number, end: number): Uint8Array {
    const saved = bytes[at]!;
    bytes[at] = 0x00;
    try {
      return oneShot('sha256', bytes.subarray(at, end), 'buffer');
    } finally {
      bytes[at] = saved;
    }
  }

  /** leaf() of a record's UTF-8 bytes, encoded straight into the hash input. */
  leafOfText(record: string): Uint8Array {
    const input = Buffer.allocUnsafe(Buffer.byteLength(record, 'utf8') + 1);
    input[0] = 0x00;
    input.write(record, 1, 'utf8');
    return oneShot('sha256', input, 'buffer');
  }

  override node(left: Uint8Array, right: Uint8Array): Uint8Array {
    const input = Buffer.allocUnsafe(1 + left.length + right.length);
    input[0] = 0x01;
    input.set(left, 1);
    input.set(right, 1 + left.length);
    return oneShot('sha256', input, 'buffer');
  }
}

const nodeHasher = new NodeMerkleHasher(sha256);

export const merkleHasher: MerkleHasher = nodeHasher;

/** Node rows written by one INSERT statement in syncTree (3 parameters each, well under SQLite's limit). */
const NODES_PER_INSERT = 64;

const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');

/**
 * audit_tree's key of subtree `idx` at `level`: where its leaves end. An append's leaf and every
 * subtree it completes end at the same leaf, so one commit's rows sit together (migration 20).
 */
export const endLeafOf = (level: number, idx: number): number => (idx + 1) * 2 ** level;

/** log2 of a power of two, exactly. */
function levelOf(n: number): number {
  let level = 0;
  for (let k = 1; k < n; k *= 2) level++;
  return level;
}

/**
 * Hears every append inside the appending transaction (after the row is written): a throw rolls
 * the append and the state change back with it. The webhook outbox (notify/) fills itself here,
 * so a notification is queued exactly when the state it announces commits.
 */
export type AuditObserver = <K extends AuditKind>(kind: K, at: number, event: AuditEventFields<K>) => void;

export type AuditVerification = { ok: true; entries: number; root: string } | { ok: false; badSeq: number; reason: string };

export class AuditLog {
  private readonly insert;
  private readonly last;
  private readonly tail;
  private readonly setLeaf;
  private readonly insertNodesOf: Database.Statement[] = [];
  private readonly insertNode;
  private readonly insertNodes;
  private readonly getNode;
  private readonly getLeaf;
  private readonly treeTop;
  private readonly leafTop;
  private readonly pendingRows;
  private readonly withLeaves;
  private readonly observers: AuditObserver[] = [];
  /** Reused by every append: the record's bytes, with room for the leaf prefix before them. */
  private readonly recordWriter = new CanonicalUtf8Writer();

  constructor(private readonly db: Db) {
    this.insert = db.prepare('INSERT INTO audit_log (seq, at, kind, record, request_id, leaf) VALUES (?, ?, ?, ?, ?, ?)');
    this.last = db.prepare<[], { seq: number }>('SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1');
    this.tail = db.prepare<[], { seq: number; leaf: Buffer | null }>('SELECT seq, leaf FROM audit_log ORDER BY seq DESC LIMIT 1');
    // A leaf is set once (the audit_log_leaf_once trigger refuses a second write).
    this.setLeaf = db.prepare('UPDATE audit_log SET leaf = ? WHERE seq = ? AND leaf IS NULL');
    // A row already stored under an append's key was planted: verify and the start-up check name it.
    this.insertNode = db.prepare('INSERT INTO audit_tree (end_leaf, level, hash) VALUES (?, ?, ?)');
    this.insertNodes = db.prepare(
      `INSERT INTO audit_tree (end_leaf, level, hash) VALUES ${Array.from({ length: NODES_PER_INSERT }, () => '(?, ?, ?)').join(', ')}`,
    );
    this.getNode = db.prepare<[number, number], { hash: Buffer }>('SELECT hash FROM audit_tree WHERE end_leaf = ? AND level = ?');
    this.getLeaf = db.prepare<[number], { leaf: Buffer | null }>('SELECT leaf FROM audit_log WHERE seq = ?');
    // Where the stored subtrees end (above the leaves, or a level-0 row only an intruder writes now).
    this.treeTop = db.prepare<[], { top: number | null }>('SELECT MAX(end_leaf) AS top FROM audit_tree');
    // The last hashed entry: the log's last row, unless entries wait for syncTree.
    this.leafTop = db.prepare<[], { seq: number }>('SELECT seq FROM audit_log WHERE leaf IS NOT NULL ORDER BY seq DESC LIMIT 1');
    this.pendingRows = db.prepare<[number, number], { seq: number; record: string }>(
      'SELECT seq, record FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?',
    );
    this.withLeaves = db.prepare<[number, number], { seq: number; record: string; leaf: Buffer | null }>(
      'SELECT seq, record, leaf FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq',
    );
  }

  /**
   * Append one event. Call inside a transaction together with the state change it records: the
   * size is read inside that transaction, so concurrent writers cannot fork the tree. The event
   * must match its kind's schema (shared/audit-events.ts); one that does not is a programming
   * error and throws audit_event_invalid before anything is written.
   */
  append<K extends AuditKind>(kind: K, at: number, event: AuditEventFields<K>): AuditEntry {
    assertAuditEvent(kind, event);
    // The last entry and its leaf hash (null when the tree lags behind the log) in one read.
    const tail = this.tail.get();
    const seq = (tail?.seq ?? 0) + 1;
    const fields = event as JsonObject;
    const extra = { kind, at, seq };
    // The record's canonical bytes go straight after the leaf's 0x00 prefix, so the leaf hash
    // reads them where they were written. Should the fast writer give up, canonicalizeWith
    // throws the error it found (or writes the same text, slower).
    const end = this.recordWriter.writeWith(fields, extra, 1);
    let record: string;
    let leaf: Uint8Array | undefined;
    if (end !== undefined) {
      const bytes = this.recordWriter.bytes;
      record = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8', 1, end);
      leaf = nodeHasher.leafOfPrefixed(bytes, end);
    } else {
      record = canonicalizeWith(fields, extra);
    }
    // The leaf is stored only where the hashed tree ends right before it; otherwise syncTree hashes in order.
    const hashed = tail === undefined || tail.leaf !== null;
    if (hashed) leaf ??= nodeHasher.leafOfText(record);
    this.insert.run(seq, at, kind, record, typeof fields.requestId === 'string' ? fields.requestId : null, hashed ? leaf : null);
    if (hashed) this.hashAppended(seq - 1, leaf!, tail?.leaf ?? undefined);
    for (const observer of this.observers) observer(kind, at, event);
    return { seq, at, kind, record };
  }

  /**
   * Store every subtree leaf `index` completes (its own hash is in its row), called when the
   * stored tree ends exactly before it, so every left sibling is stored: the one at level 0 is
   * `previousLeaf`, read with the tail.
   */
  private hashAppended(index: number, leaf: Uint8Array, previousLeaf: Uint8Array | undefined): void {
    const rows: Array<number | Uint8Array> = [];
    let hash = leaf;
    let level = 0;
    for (let i = index; i % 2 === 1; i = (i - 1) / 2) {
      hash = merkleHasher.node(level === 0 && previousLeaf !== undefined ? previousLeaf : this.node(level, i - 1), hash);
      level++;
      rows.push(index + 1, level, hash);
    }
    if (rows.length > 0) this.nodesInsert(rows.length / 3).run(rows);
  }

  /** INSERT of `n` node rows in one statement (prepared once per n; n is at most the tree's height). */
  private nodesInsert(n: number): Database.Statement {
    let statement = this.insertNodesOf[n];
    if (statement === undefined) {
      // A row already stored under this key was planted: keep it for verify to name (the append goes on).
      statement = this.db.prepare(
        `INSERT INTO audit_tree (end_leaf, level, hash) VALUES ${Array.from({ length: n }, () => '(?, ?, ?)').join(', ')} ON CONFLICT DO NOTHING`,
      );
      this.insertNodesOf[n] = statement;
    }
    return statement;
  }

  /** Hear every append in its transaction (see AuditObserver); returns the way to stop. */
  observe(observer: AuditObserver): () => void {
    this.observers.push(observer);
    return () => {
      const at = this.observers.indexOf(observer);
      if (at !== -1) this.observers.splice(at, 1);
    };
  }

  /**
   * Hash leaf `index` and every subtree it completes into `leaves` (its row's hash) and `out` (audit_tree rows: end_leaf, level, hash). `written`
   * holds the subtrees hashed in this batch (`level/index`), so a completed subtree's left sibling, almost always hashed moments before, comes from memory;
   * only at the start of a batch is it read from the table, where an earlier batch stored it.
   */
  private addLeaf(
    index: number,
    leafHash: Uint8Array,
    written: Map<string, Uint8Array>,
    leaves: Array<[number, Uint8Array]>,
    out: Array<[number, number, Uint8Array]>,
  ): void {
    leaves.push([index + 1, leafHash]);
    written.set(`0/${index}`, leafHash);
    let hash = leafHash;
    let level = 0;
    let i = index;
    while (i % 2 === 1) {
      hash = merkleHasher.node(written.get(`${level}/${i - 1}`) ?? this.node(level, i - 1), hash);
      level++;
      i = (i - 1) / 2;
      out.push([index + 1, level, hash]);
      written.set(`${level}/${i}`, hash);
    }
  }

  /** Stores node rows, NODES_PER_INSERT to a statement (one statement per row cost more than the hashing). */
  private storeNodes(rows: ReadonlyArray<[number, number, Uint8Array]>): void {
    let at = 0;
    for (; at + NODES_PER_INSERT <= rows.length; at += NODES_PER_INSERT) this.insertNodes.run(rows.slice(at, at + NODES_PER_INSERT).flat());
    for (; at < rows.length; at++) this.insertNode.run(...rows[at]!);
  }

  /** Entries hashed so far: the last entry with a leaf hash (the hashed entries are a prefix of the log). */
  private hashedLeaves(): number {
    return this.leafTop.get()?.seq ?? 0;
  }

  /**
   * The tree's own size: how far its stored hashes reach, leaves or subtrees. Above the log's
   * size only when hashes were planted for entries that do not exist (syncTree and the start-up
   * check refuse those).
   */
  hashedSize(): number {
    return Math.max(this.hashedLeaves(), this.treeTop.get()?.top ?? 0);
  }

  /**
   * Hash every entry not hashed yet (and the subtrees it completes), in order, in batches of
   * their own transactions. Entries written before the Merkle log (migration 8) get theirs the
   * same way. Returns the tree size now hashed.
   */
  syncTree(): number {
    let hashed = this.hashedLeaves();
    for (;;) {
      const top = Math.max(hashed, this.treeTop.get()?.top ?? 0);
      if (top > this.size()) {
        // Hashes for entries that do not exist: planted, to be paired with records written later.
        throw new CountersignError('audit_corrupt', `the audit tree holds hashes for ${top} entries but the log has ${this.size()}`);
      }
      if (top > hashed) {
        // A leaf and the subtrees it completes are written in one transaction: subtrees past the
        // last leaf hash mean a leaf was removed. Hashing it again would collide with those rows.
        throw new CountersignError(
          'audit_corrupt',
          `the audit tree's subtrees reach entry ${top} but the leaf hash of entry ${hashed + 1} is missing`,
        );
      }
      const rows = this.pendingRows.all(hashed, 10_000);
      if (rows.length === 0) return top;
      if (rows[0]!.seq !== hashed + 1) throw new CountersignError('audit_corrupt', `the audit log is missing entry ${hashed + 1}`);
      const from = hashed;
      hashed = this.db
        .transaction(() => {
          // Re-read inside the transaction: another writer may have hashed them meanwhile.
          if ((this.getLeaf.get(from + 1)?.leaf ?? null) !== null) return this.hashedLeaves();
          const written = new Map<string, Uint8Array>();
          const leaves: Array<[number, Uint8Array]> = [];
          const nodes: Array<[number, number, Uint8Array]> = [];
          rows.forEach((row, i) => {
            if (row.seq !== from + 1 + i) throw new CountersignError('audit_corrupt', `the audit log is missing entry ${from + 1 + i}`);
            this.addLeaf(row.seq - 1, nodeHasher.leafOfText(row.record), written, leaves, nodes);
          });
          for (const [seq, leaf] of leaves) this.setLeaf.run(leaf, seq);
          this.storeNodes(nodes);
          return from + rows.length;
        })
        .immediate();
    }
  }

  size(): number {
    return this.last.get()?.seq ?? 0;
  }

  /** A quick start-up check: no entry missing between 1 and the last one (a full check is `verify`). */
  assertContiguous(): void {
    const { n, top } = this.db
      .prepare<[], { n: number; top: number | null }>('SELECT COUNT(*) AS n, MAX(seq) AS top FROM audit_log')
      .get()!;
    if (n !== (top ?? 0))
      throw new CountersignError(
        'audit_corrupt',
        `the audit log is missing ${(top ?? 0) - n} of its ${top ?? 0} entries; run countersign audit verify to find the first`,
      );
  }

  /** The stored hash of subtree `idx` at `level` (a leaf's is in its entry's row), or undefined. */
  private storedHash(level: number, idx: number): Uint8Array | undefined {
    if (level === 0) return this.getLeaf.get(idx + 1)?.leaf ?? undefined;
    return this.getNode.get(endLeafOf(level, idx), level)?.hash;
  }

  private node(level: number, idx: number): Uint8Array {
    const row = this.storedHash(level, idx);
    if (!row) throw new CountersignError('audit_corrupt', `the audit tree is missing the hash of subtree ${level}/${idx}`);
    return row;
  }

  /** The stored complete-subtree hashes that make up a tree of `size` leaves, largest first. */
  frontier(size: number): Uint8Array[] {
    const roots: Uint8Array[] = [];
    let start = 0;
    while (start < size) {
      let k = 1;
      while (k * 2 <= size - start) k *= 2;
      roots.push(this.node(levelOf(k), start / k));
      start += k;
    }
    return roots;
  }

  /** Entries (from, to] with their stored leaf hashes (null where not hashed yet), in order. */
  entriesWithLeaves(from: number, to: number): IterableIterator<{ seq: number; record: string; leaf: Buffer | null }> {
    return this.withLeaves.iterate(from, to);
  }

  /** MTH of leaves [start, end), from stored complete subtrees. */
  rangeHash(start: number, end: number): Uint8Array {
    return rangeHashOfSubtrees(merkleHasher, start, end, (level, idx) => this.node(level, idx));
  }

  /** Make sure the tree covers `size` entries before reading it. */
  private hashedUpTo(size: number): void {
    if (size > this.hashedSize()) this.syncTree();
  }

  root(size = this.size()): Uint8Array {
    this.hashedUpTo(size);
    return this.rangeHash(0, size);
  }

  leafHash(index: number): Uint8Array {
    this.hashedUpTo(index + 1);
    return this.node(0, index);
  }

  inclusionProof(index: number, size: number): Uint8Array[] {
    this.checkRange(index + 1, size);
    if (index < 0) throw new CountersignError('audit_proof_unavailable', 'an entry index is never negative');
    this.hashedUpTo(size);
    return inclusionPath(index, size, (a, b) => this.rangeHash(a, b));
  }

  consistencyProof(size1: number, size2: number): Uint8Array[] {
    this.checkRange(size1, size2);
    this.hashedUpTo(size2);
    return consistencyPath(size1, size2, (a, b) => this.rangeHash(a, b));
  }

  private checkRange(low: number, high: number): void {
    const size = this.size();
    if (!Number.isSafeInteger(low) || !Number.isSafeInteger(high) || low < 0 || low > high) {
      throw new CountersignError('audit_proof_unavailable', `no proof exists from ${low} to tree size ${high}`);
    }
    if (high > size) throw new CountersignError('audit_proof_unavailable', `the audit log has ${size} entries, not ${high}`);
  }

  /**
   * Recompute the log from its records: every record's leaf hash against the stored one, every
   * sequence number present, every checkpoint's root. Names the first bad entry.
   */
  verify(): AuditVerification {
    const acc = new MerkleAccumulator(merkleHasher);
    // Each checkpoint's root as its signed note states it (the column beside it is only a copy).
    const checkpoints = storedCheckpointRoots(this.db, Number.MAX_SAFE_INTEGER).map((c) => ({ tree_size: c.size, root_hash: c.root }));
    let next = 0;
    let expectedSeq = 1;
    const hashed = this.hashedSize();
    const rows = this.db.prepare<[], { seq: number; record: string; hash: Buffer | null }>(
      'SELECT seq, record, leaf AS hash FROM audit_log ORDER BY seq',
    );
    for (const row of rows.iterate()) {
      if (row.seq !== expectedSeq) return { ok: false, badSeq: expectedSeq, reason: 'entry missing' };
      const leaf = merkleHasher.leaf(utf8(row.record));
      // Entries after the hashed prefix have no stored leaf yet; their hash is what syncTree will store.
      if (row.hash === null ? row.seq <= hashed : !Buffer.from(leaf).equals(row.hash)) {
        return { ok: false, badSeq: row.seq, reason: 'the entry does not match its leaf hash' };
      }
      acc.pushLeafHash(leaf);
      while (next < checkpoints.length && checkpoints[next]!.tree_size === acc.size) {
        const noted = checkpoints[next]!.root_hash;
        if (noted === undefined)
          return {
            ok: false,
            badSeq: row.seq,
            reason: `the stored checkpoint of ${acc.size} entries is malformed or disagrees with its note`,
          };
        if (!Buffer.from(acc.root()).equals(noted)) {
          return { ok: false, badSeq: row.seq, reason: `the tree of ${acc.size} entries does not match its checkpoint` };
        }
        next++;
      }
      expectedSeq++;
    }
    if (next < checkpoints.length) {
      return {
        ok: false,
        badSeq: expectedSeq,
        reason: `a checkpoint covers ${checkpoints[next]!.tree_size} entries but the log ends at ${acc.size}`,
      };
    }
    // Every stored subtree hash above the leaves (proofs and new checkpoints are served from them).
    const parents = this.db.prepare<[], { end_leaf: number; level: number; hash: Buffer }>(
      'SELECT end_leaf, level, hash FROM audit_tree WHERE level > 0 ORDER BY end_leaf, level',
    );
    for (const p of parents.iterate()) {
      const half = 2 ** (p.level - 1);
      const right = (p.end_leaf - half) / half; // the right child's index at level - 1
      const leftHash = this.storedHash(p.level - 1, right - 1);
      const rightHash = this.storedHash(p.level - 1, right);
      if (!leftHash || !rightHash || !Buffer.from(merkleHasher.node(leftHash, rightHash)).equals(p.hash)) {
        const first = p.end_leaf - 2 * half + 1;
        return {
          ok: false,
          badSeq: first,
          reason: `the stored hash of entries ${first}..${p.end_leaf} does not match the entries`,
        };
      }
    }
    return { ok: true, entries: acc.size, root: Buffer.from(acc.root()).toString('base64') };
  }

  entries(fromSeq = 1, limit = 1000): AuditEntry[] {
    return this.db
      .prepare<[number, number], AuditEntry>('SELECT seq, at, kind, record FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?')
      .all(fromSeq, limit);
  }

  /** The entries about one request, in order. */
  entriesFor(requestId: string): AuditEntry[] {
    return this.db
      .prepare<[string], AuditEntry>('SELECT seq, at, kind, record FROM audit_log WHERE request_id = ? ORDER BY seq')
      .all(requestId);
  }
}

/**
 * Each stored checkpoint up to `maxSize` with its root as its signed note states it, or undefined
 * when the note is unreadable, names another size, or disagrees with the column beside it (which
 * is only a copy). Shared by `AuditLog.verify` and the background verifier.
 */
export function storedCheckpointRoots(db: Db, maxSize: number): Array<{ size: number; root: Buffer | undefined }> {
  return db
    .prepare<[number], { tree_size: number; root_hash: Buffer; note: string }>(
      'SELECT tree_size, root_hash, note FROM audit_checkpoints WHERE tree_size <= ? ORDER BY tree_size',
    )
    .all(maxSize)
    .map((row) => {
      let noted: Buffer | undefined;
      try {
        const parsed = parseCheckpointText(parseSignedNote(row.note).text);
        if (parsed.size === row.tree_size) noted = Buffer.from(parsed.rootHash, 'base64');
      } catch {
        noted = undefined;
      }
      return { size: row.tree_size, root: noted !== undefined && noted.equals(row.root_hash) ? noted : undefined };
    });
}
