/**
 * The append-only audit log: an RFC 9162 Merkle log stored in SQLite. Entry `seq` (1-based) is
 * leaf `seq - 1`; its data is the entry's canonical (JCS) record. Each append writes the entry
 * inside the caller's transaction, so an audit record that cannot be written takes the decision
 * it belongs to down with it. The same append hashes the record it has just written into its
 * leaf and every subtree that leaf completes, and stores them in the entry's own row (`leaf`,
 * migration 21; `subtrees`, migration 22): one INSERT per append, in that transaction, so a
 * rolled-back append leaves nothing to undo, and the record is hashed from the text in hand
 * instead of being read back later. The left siblings those subtrees need are the tree's right
 * edge, which the appender keeps in memory while the log's last row is the one it wrote (checked
 * on every append; anything else, such as a rolled-back append, reads them from the table).
 * Only when the stored tree does not end exactly where the log did (entries written
 * before the Merkle log, or by a version that hashed later) does the append leave its hashes NULL
 * and hashing to `syncTree`, which hashes entries in order, in its own transaction, and is run
 * before any root, proof or checkpoint is read. What vouches for the log is the
 * signed checkpoint (checkpoints.ts), which re-hashes every record it covers from the record
 * itself; docs/audit.md is the format.
 */
import { createHash, hash as oneShot } from 'node:crypto';
import type { Db } from '../store/database.js';
import { canonicalizeWith, type JsonObject } from '../../../shared/canonical-json.js';
import { CanonicalTextWriter } from '../../../shared/canonical-text.js';
import { MerkleAccumulator, MerkleHasher, consistencyPath, inclusionPath, rangeHashOfSubtrees } from '../../../shared/merkle.js';
import { CountersignError } from '../../../shared/errors.js';
import { parseCheckpointText, parseSignedNote } from '../../../shared/checkpoint-note.js';
import { requestKey } from '../store/request-id.js';
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

/** Bytes of one hash in a row's `subtrees`. */
const HASH_BYTES = 32;

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

  /** Reused input of leafOfText and node (synchronous, so never two uses at once). */
  private scratch = Buffer.allocUnsafe(4096);

  /**
   * leaf() of a record's UTF-8 bytes, encoded straight into the reused input. Encoding the text
   * flattens it where it is (the canonical writer builds it piece by piece), so the INSERT that
   * binds it next finds it flat: hashing a '\0' + record string instead flattened a copy and
   * left the bind to flatten the record again.
   */
  leafOfText(record: string): Uint8Array {
    // At most 3 UTF-8 bytes per UTF-16 code unit (a surrogate pair: 4 bytes for 2).
    if (this.scratch.length < 1 + 3 * record.length) this.scratch = Buffer.allocUnsafe(2 * (1 + 3 * record.length));
    const input = this.scratch;
    input[0] = 0x00;
    const end = 1 + input.write(record, 1, 'utf8');
    return oneShot('sha256', input.subarray(0, end), 'buffer');
  }

  /**
   * leafOfText as 64 hex digits. The append's hashes go to SQLite as hex (the INSERT unhexes
   * them into the same 32-byte BLOBs) and stay hex on its right edge: a Buffer made for each
   * hash's output cost more than the hash (951 bytes: 1.4-1.6 µs to a Buffer, 0.87-0.93 µs to
   * hex, node 20 on this VM), and an append makes two on average (its leaf and one subtree).
   */
  leafHexOfText(record: string): string {
    if (this.scratch.length < 1 + 3 * record.length) this.scratch = Buffer.allocUnsafe(2 * (1 + 3 * record.length));
    const input = this.scratch;
    input[0] = 0x00;
    const end = 1 + input.write(record, 1, 'utf8');
    return oneShot('sha256', input.subarray(0, end), 'hex');
  }

  /** node() of two hashes given as hex, as hex (see leafHexOfText). */
  nodeHex(left: string, right: string): string {
    const input = this.scratch;
    input[0] = 0x01;
    input.write(left, 1, 'hex');
    input.write(right, 1 + HASH_BYTES, 'hex');
    return oneShot('sha256', input.subarray(0, 1 + 2 * HASH_BYTES), 'hex');
  }

  override node(left: Uint8Array, right: Uint8Array): Uint8Array {
    const input = this.scratch;
    const end = 1 + left.length + right.length;
    if (input.length < end) return oneShot('sha256', Buffer.concat([Buffer.of(0x01), left, right]), 'buffer');
    input[0] = 0x01;
    input.set(left, 1);
    input.set(right, 1 + left.length);
    return oneShot('sha256', input.subarray(0, end), 'buffer');
  }
}

const nodeHasher = new NodeMerkleHasher(sha256);

export const merkleHasher: MerkleHasher = nodeHasher;

const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');

/**
 * Where subtree `idx` at `level` ends: the entry (seq) whose leaf completes it, whose row holds
 * its hash (`subtrees`, level 1 at offset 0; a leaf's is the row's `leaf`).
 */
export const endLeafOf = (level: number, idx: number): number => (idx + 1) * 2 ** level;

/** How many subtrees leaf `index` completes: its trailing one bits. */
export function completedBy(index: number): number {
  let n = 0;
  for (let i = index; i % 2 === 1; i = (i - 1) / 2) n++;
  return n;
}

/** Level `level` (>= 1) of a row's `subtrees`, or undefined when the row holds fewer. */
export function subtreeAt(subtrees: Uint8Array | null | undefined, level: number): Uint8Array | undefined {
  const at = (level - 1) * HASH_BYTES;
  if (subtrees === null || subtrees === undefined || subtrees.length < at + HASH_BYTES) return undefined;
  return subtrees.subarray(at, at + HASH_BYTES);
}

/**
 * The appender's copy of the tree's right edge: `levels[k]` is the hash (hex) of the complete
 * subtree at level k that ends where the log ends (undefined: not known, read from the table when
 * needed). Valid only while the log's last entry is `size` with leaf `tailLeaf` (hex).
 */
interface RightEdge {
  size: number;
  tailLeaf: string;
  levels: Array<string | undefined>;
  /** The connection's PRAGMA data_version when the tail was last read: it moves when another connection commits. */
  dataVersion: number;
}

/**
 * The right edge of each connection's log, shared by every AuditLog on it (any of them appending
 * moves it). A WeakMap: it goes with the connection.
 */
const rightEdges = new WeakMap<Db, RightEdge>();

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
  private readonly lastSeq;
  private readonly dataVersion;
  private readonly setHashes;
  private readonly getSubtrees;
  private readonly getLeaf;
  private readonly treeTop;
  private readonly leafTop;
  private readonly pendingRows;
  private readonly withLeaves;
  private readonly observers: AuditObserver[] = [];
  /** Reused by every append: it keeps the sorted member order of the record shapes it has written. */
  private readonly recordWriter = new CanonicalTextWriter();

  constructor(private readonly db: Db) {
    // The hashes come as hex (see leafHexOfText) and are stored as the same BLOBs; unhex(NULL) is NULL.
    this.insert = db.prepare(
      'INSERT INTO audit_log (seq, at, kind, record, request_key, leaf, subtrees) VALUES (?, ?, ?, ?, ?, unhex(?), unhex(?))',
    );
    this.last = db.prepare<[], { seq: number }>('SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1');
    // [seq, leaf] of the last entry, read when the kept right edge cannot be trusted.
    this.tail = db.prepare<[], [number, Buffer | null]>('SELECT seq, leaf FROM audit_log ORDER BY seq DESC LIMIT 1').raw();
    // The last entry's seq alone: a fifth of the cost of reading its leaf too (a Buffer per read).
    this.lastSeq = db.prepare<[], number>('SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1').pluck();
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    // Leaf and subtrees are set once, together (the audit_log_leaf_once trigger refuses a second write).
    this.setHashes = db.prepare('UPDATE audit_log SET leaf = ?, subtrees = ? WHERE seq = ? AND leaf IS NULL');
    this.getSubtrees = db.prepare<[number], { subtrees: Buffer | null }>('SELECT subtrees FROM audit_log WHERE seq = ?');
    this.getLeaf = db.prepare<[number], { leaf: Buffer | null }>('SELECT leaf FROM audit_log WHERE seq = ?');
    // audit_tree holds no hash since migration 22: any row there is planted (or was, for entries
    // that did not exist at the upgrade), and the start-up check refuses one past the log's end.
    this.treeTop = db.prepare<[], { top: number | null }>('SELECT MAX(end_leaf) AS top FROM audit_tree');
    // The last hashed entry: the log's last row, unless entries wait for syncTree.
    this.leafTop = db.prepare<[], { seq: number }>('SELECT seq FROM audit_log WHERE leaf IS NOT NULL ORDER BY seq DESC LIMIT 1');
    this.pendingRows = db.prepare<[number, number], { seq: number; record: string; subtrees: Buffer | null }>(
      'SELECT seq, record, subtrees FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?',
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
    // Where the log ends, and the hashed tree's right edge there (undefined when the tree lags behind the log).
    const size = this.lastSeq.get() ?? 0;
    const edge = this.edgeAt(size);
    const seq = size + 1;
    const fields = event as JsonObject;
    const extra = { kind, at, seq };
    // The record's canonical text. Should the fast writer give up, canonicalizeWith throws the
    // error it found (or writes the same text, slower).
    const record = this.recordWriter.writeWith(fields, extra) ?? canonicalizeWith(fields, extra);
    // The hashes are stored only where the hashed tree ends right before the entry; otherwise syncTree hashes in order.
    let leaf: string | null = null;
    let subtrees: string | null = null;
    let top: string | undefined;
    if (edge !== undefined) {
      leaf = nodeHasher.leafHexOfText(record);
      // Each subtree leaf `size` completes: its left sibling is the right edge's subtree at that level.
      const levels = completedBy(size);
      top = leaf;
      for (let level = 0; level < levels; level++) {
        top = nodeHasher.nodeHex(edge.levels[level] ?? this.nodeHexAt(level, Math.floor(size / 2 ** level) - 1), top);
        subtrees = subtrees === null ? top : subtrees + top;
      }
    }
    const requestId = fields.requestId;
    this.insert.run(seq, at, kind, record, typeof requestId === 'string' ? requestKey(requestId) : null, leaf, subtrees);
    if (edge !== undefined) {
      // Written: the right edge now ends at this entry (levels below the new subtree were merged into it).
      const levels = completedBy(size);
      for (let level = 0; level < levels; level++) edge.levels[level] = undefined;
      edge.levels[levels] = top;
      edge.size = seq;
      edge.tailLeaf = leaf!;
    }
    for (const observer of this.observers) observer(kind, at, event);
    return { seq, at, kind, record };
  }

  /**
   * The right edge of the hashed tree of `size` entries, or undefined when the log's last entry is
   * not hashed (the tree lags behind the log). The edge kept since the last append on this
   * connection is used as it is while the log still ends where that append left it and no other
   * connection has committed since (PRAGMA data_version): a rolled-back append leaves the log
   * shorter than the edge, and every writer on this connection moves the same edge. Otherwise the
   * last entry's leaf is read: the kept edge still holds if it is the same leaf; if not, a new
   * edge starts whose levels are read from the table when an append needs them.
   */
  private edgeAt(size: number): RightEdge | undefined {
    const kept = rightEdges.get(this.db);
    const dataVersion = this.dataVersion.get()!;
    if (kept !== undefined && kept.size === size && kept.dataVersion === dataVersion) return kept;
    const tail = this.tail.get();
    if (tail !== undefined && tail[1] === null) {
      rightEdges.delete(this.db);
      return undefined;
    }
    const tailLeaf = tail?.[1]?.toString('hex');
    if (kept !== undefined && kept.size === size && tailLeaf !== undefined && tailLeaf === kept.tailLeaf) {
      kept.dataVersion = dataVersion;
      return kept;
    }
    const levels: Array<string | undefined> = [];
    if (tailLeaf !== undefined && size % 2 === 1) levels[0] = tailLeaf;
    const edge: RightEdge = { size, tailLeaf: tailLeaf ?? '', levels, dataVersion };
    rightEdges.set(this.db, edge);
    return edge;
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
   * Hash leaf `index` and every subtree it completes into `out` (its row's leaf and subtrees). `written`
   * holds the subtrees hashed in this batch (`level/index`), so a completed subtree's left sibling, almost always hashed moments before, comes from memory;
   * only at the start of a batch is it read from the table, where an earlier batch stored it.
   */
  private addLeaf(
    index: number,
    leafHash: Uint8Array,
    written: Map<string, Uint8Array>,
    out: Array<[Uint8Array, Buffer | null, number]>,
  ): void {
    written.set(`0/${index}`, leafHash);
    const levels = completedBy(index);
    const subtrees = levels > 0 ? Buffer.allocUnsafe(levels * HASH_BYTES) : null;
    let hash = leafHash;
    let i = index;
    for (let level = 0; level < levels; level++) {
      hash = merkleHasher.node(written.get(`${level}/${i - 1}`) ?? this.node(level, i - 1), hash);
      i = (i - 1) / 2;
      subtrees!.set(hash, level * HASH_BYTES);
      written.set(`${level + 1}/${i}`, hash);
    }
    out.push([leafHash, subtrees, index + 1]);
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
        // Subtrees past the last leaf hash (only a planted audit_tree row can be there now).
        throw new CountersignError(
          'audit_corrupt',
          `the audit tree's subtrees reach entry ${top} but the leaf hash of entry ${hashed + 1} is missing`,
        );
      }
      const rows = this.pendingRows.all(hashed, 10_000);
      if (rows.length === 0) return top;
      if (rows[0]!.seq !== hashed + 1) throw new CountersignError('audit_corrupt', `the audit log is missing entry ${hashed + 1}`);
      // A leaf and the subtrees it completes are set together: subtrees without their leaf mean the
      // leaf was removed. Hashing again would overwrite the stored subtrees with new ones.
      const orphan = rows.find((row) => row.subtrees !== null);
      if (orphan !== undefined) {
        throw new CountersignError(
          'audit_corrupt',
          `the audit tree's subtrees reach entry ${orphan.seq} but the leaf hash of entry ${hashed + 1} is missing`,
        );
      }
      const from = hashed;
      hashed = this.db
        .transaction(() => {
          // Re-read inside the transaction: another writer may have hashed them meanwhile.
          if ((this.getLeaf.get(from + 1)?.leaf ?? null) !== null) return this.hashedLeaves();
          const written = new Map<string, Uint8Array>();
          const hashes: Array<[Uint8Array, Buffer | null, number]> = [];
          rows.forEach((row, i) => {
            if (row.seq !== from + 1 + i) throw new CountersignError('audit_corrupt', `the audit log is missing entry ${from + 1 + i}`);
            this.addLeaf(row.seq - 1, nodeHasher.leafOfText(row.record), written, hashes);
          });
          for (const row of hashes) this.setHashes.run(...row);
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

  /** The stored hash of subtree `idx` at `level` (in the row of the entry that completes it), or undefined. */
  private storedHash(level: number, idx: number): Uint8Array | undefined {
    if (level === 0) return this.getLeaf.get(idx + 1)?.leaf ?? undefined;
    return subtreeAt(this.getSubtrees.get(endLeafOf(level, idx))?.subtrees, level);
  }

  /** node() as hex, for the append's right edge when it is not in memory. */
  private nodeHexAt(level: number, idx: number): string {
    return Buffer.from(this.node(level, idx)).toString('hex');
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
    const rows = this.db.prepare<[], { seq: number; record: string; hash: Buffer | null; subtrees: Buffer | null }>(
      'SELECT seq, record, leaf AS hash, subtrees FROM audit_log ORDER BY seq',
    );
    // The subtrees recomputed from the records so far, by level (the right edge), to check each row's stored ones.
    const edge: Uint8Array[] = [];
    for (const row of rows.iterate()) {
      if (row.seq !== expectedSeq) return { ok: false, badSeq: expectedSeq, reason: 'entry missing' };
      const leaf = merkleHasher.leaf(utf8(row.record));
      // Entries after the hashed prefix have no stored leaf yet; their hash is what syncTree will store.
      if (row.hash === null ? row.seq <= hashed : !Buffer.from(leaf).equals(row.hash)) {
        return { ok: false, badSeq: row.seq, reason: 'the entry does not match its leaf hash' };
      }
      // Every subtree this leaf completes, against the row's stored hashes (proofs and new checkpoints are served from them).
      const levels = completedBy(row.seq - 1);
      let hash = leaf;
      for (let level = 0; level < levels; level++) {
        hash = merkleHasher.node(edge[level]!, hash);
        const stored = row.hash === null ? null : subtreeAt(row.subtrees, level + 1);
        if (stored !== null && (stored === undefined || !Buffer.from(hash).equals(stored))) {
          const first = row.seq - 2 ** (level + 1) + 1;
          return { ok: false, badSeq: first, reason: `the stored hash of entries ${first}..${row.seq} does not match the entries` };
        }
      }
      edge[levels] = hash;
      // Hashes beyond the subtrees it completes, or any on an entry not hashed yet: planted.
      if ((row.subtrees?.length ?? 0) > (row.hash === null ? 0 : levels * HASH_BYTES)) {
        return { ok: false, badSeq: row.seq, reason: "the entry's row holds subtree hashes that the entries do not complete" };
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
    return { ok: true, entries: acc.size, root: Buffer.from(acc.root()).toString('base64') };
  }

  entries(fromSeq = 1, limit = 1000): AuditEntry[] {
    return this.db
      .prepare<[number, number], AuditEntry>('SELECT seq, at, kind, record FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?')
      .all(fromSeq, limit);
  }

  /** The entries about one request, in order (the integer key narrows; the record's own requestId decides). */
  entriesFor(requestId: string): AuditEntry[] {
    return this.db
      .prepare<[number, string], AuditEntry>(
        "SELECT seq, at, kind, record FROM audit_log WHERE request_key = ? AND json_extract(record, '$.requestId') = ? ORDER BY seq",
      )
      .all(requestKey(requestId), requestId);
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
