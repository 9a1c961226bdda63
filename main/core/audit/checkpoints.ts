/**
 * Signed checkpoints of the audit log: made every N entries or T seconds (when the log grew),
 * on demand (a proof that needs one) and at shutdown; signed by the custody key (PKCS#11 where
 * configured); stored in the database and written atomically to a file beside it (and to a
 * mirror directory when configured). At start, `checkExternalCheckpoint` compares that file
 * with the database: a tree that got smaller is a rollback (truncation, an older backup), the
 * same size with another root is a fork. Either way Countersign refuses to start.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir, open, rename, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Db } from '../store/database.js';
import { signerForOneSignature, type PublicJwk, type Signer } from '../custody/signer.js';
import type { AuditLog } from './audit-log.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import {
  checkpointText,
  formatSignedNote,
  fromBase64,
  parseCheckpointText,
  parseSignedNote,
  toBase64,
  type Checkpoint,
} from '../../../shared/checkpoint-note.js';
import { signNote, verifyNoteSignature } from './note-keys.js';
import { pinningEntries, verifyCheckpointWithHistory, type HistoricKey } from './key-history.js';
import { merkleHasher } from './audit-log.js';
import { MerkleAccumulator } from '../../../shared/merkle.js';

export const CHECKPOINT_FILE = 'audit-checkpoint.note';

export interface StoredCheckpoint {
  size: number;
  rootHash: string;
  at: number;
  note: string;
}

/**
 * The log's origin (and key name): `countersign/<serverId>`. One log per data directory, whichever
 * key domain it runs in (`start` and `headless` share it; each signs with its own pinned key).
 */
export function auditOrigin(serverId: string): string {
  return `countersign/${serverId}`;
}

/** The largest stored checkpoint, of at most `atMost` entries (all of them without it). */
export function latestCheckpoint(db: Db, atMost = Number.MAX_SAFE_INTEGER): StoredCheckpoint | undefined {
  const row = db
    .prepare<[number], { tree_size: number; root_hash: Buffer; at: number; note: string }>(
      'SELECT * FROM audit_checkpoints WHERE tree_size <= ? ORDER BY tree_size DESC LIMIT 1',
    )
    .get(atMost);
  return row ? { size: row.tree_size, rootHash: toBase64(row.root_hash), at: row.at, note: row.note } : undefined;
}

/** The smallest stored checkpoint of at least `size` entries and at most `atMost`. */
export function checkpointAtOrAfter(db: Db, size: number, atMost = Number.MAX_SAFE_INTEGER): StoredCheckpoint | undefined {
  const row = db
    .prepare<[number, number], { tree_size: number; root_hash: Buffer; at: number; note: string }>(
      'SELECT * FROM audit_checkpoints WHERE tree_size >= ? AND tree_size <= ? ORDER BY tree_size LIMIT 1',
    )
    .get(size, atMost);
  return row ? { size: row.tree_size, rootHash: toBase64(row.root_hash), at: row.at, note: row.note } : undefined;
}

/**
 * One step of an atomic file write; `handle` is what the `open` step before it returned (a file
 * descriptor in the synchronous runner, a FileHandle in the asynchronous one).
 */
export type AtomicWriteStep =
  | { op: 'mkdir'; path: string }
  | { op: 'open'; path: string; flags: 'w' | 'r'; mode?: number }
  | { op: 'write'; handle: unknown; data: string }
  | { op: 'fsync'; handle: unknown }
  | { op: 'close'; handle: unknown }
  | { op: 'rename'; from: string; to: string };

/**
 * The crash-safety order of writing `data` to `file`, in one place for both runners below: the
 * whole new content goes to a temporary file and is fsynced before the rename, so a crash leaves
 * the old file or the new one, never a torn one; the directory is fsynced after the rename, so the
 * rename itself survives a power cut. A runner performs each step and resumes the list with its
 * result, or throws the step's error into it (the `finally` steps still run, as plain code would).
 */
function* atomicWriteSteps(file: string, data: string): Generator<AtomicWriteStep, void, unknown> {
  const dir = dirname(file);
  yield { op: 'mkdir', path: dir };
  const tmp = `${file}.tmp-${process.pid}`;
  const handle: unknown = yield { op: 'open', path: tmp, flags: 'w', mode: 0o600 };
  try {
    yield { op: 'write', handle, data };
    yield { op: 'fsync', handle };
  } finally {
    yield { op: 'close', handle };
  }
  yield { op: 'rename', from: tmp, to: file };
  const dirHandle: unknown = yield { op: 'open', path: dir, flags: 'r' };
  try {
    yield { op: 'fsync', handle: dirHandle };
  } finally {
    yield { op: 'close', handle: dirHandle };
  }
}

/** Performs one step on the calling thread. Tests wrap it to record the order or inject a fault. */
export type AtomicWriteFs = (step: AtomicWriteStep) => unknown;
/** Performs one step on libuv's thread pool. */
export type AtomicWriteFsAsync = (step: AtomicWriteStep) => Promise<unknown>;

export const atomicWriteFs: AtomicWriteFs = (step) => {
  switch (step.op) {
    case 'mkdir':
      return mkdirSync(step.path, { recursive: true, mode: 0o700 });
    case 'open':
      return openSync(step.path, step.flags, step.mode);
    case 'write':
      // writeFileSync on a descriptor writes until every byte is out (writeSync may write part).
      return writeFileSync(step.handle as number, step.data);
    case 'fsync':
      return fsyncSync(step.handle as number);
    case 'close':
      return closeSync(step.handle as number);
    case 'rename':
      return renameSync(step.from, step.to);
  }
};

export const atomicWriteFsAsync: AtomicWriteFsAsync = async (step) => {
  switch (step.op) {
    case 'mkdir':
      return mkdir(step.path, { recursive: true, mode: 0o700 });
    case 'open':
      return open(step.path, step.flags, step.mode);
    case 'write':
      return (step.handle as FileHandle).writeFile(step.data);
    case 'fsync':
      return (step.handle as FileHandle).sync();
    case 'close':
      return (step.handle as FileHandle).close();
    case 'rename':
      return rename(step.from, step.to);
  }
};

/** Write `data` to `file` so that a crash leaves either the old file or the new one (atomicWriteSteps). */
export function writeFileAtomic(file: string, data: string, fs: AtomicWriteFs = atomicWriteFs): void {
  const steps = atomicWriteSteps(file, data);
  let next = steps.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = fs(next.value);
    } catch (error) {
      next = steps.throw(error);
      continue;
    }
    next = steps.next(result);
  }
}

/**
 * writeFileAtomic off the event loop, the same steps in the same order (libuv's thread pool does
 * the writes and both fsyncs): the running checkpointer's copy, so its disk flushes never stall
 * the decisions in flight (issue #12).
 */
export async function writeFileAtomicAsync(file: string, data: string, fs: AtomicWriteFsAsync = atomicWriteFsAsync): Promise<void> {
  const steps = atomicWriteSteps(file, data);
  let next = steps.next();
  while (!next.done) {
    let result: unknown;
    try {
      result = await fs(next.value);
    } catch (error) {
      next = steps.throw(error);
      continue;
    }
    next = steps.next(result);
  }
}

/** Parse a signed checkpoint and check it is for `origin` and signed by one of `keys`. */
export function verifyCheckpointNote(
  note: string,
  origin: string,
  keys: ReadonlyArray<Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>>,
): Checkpoint {
  const parsed = parseSignedNote(note);
  const checkpoint = parseCheckpointText(parsed.text);
  if (checkpoint.origin !== origin)
    throw new CountersignError(
      'audit_checkpoint_invalid',
      `the checkpoint is for the log ${quote(checkpoint.origin)}, not ${quote(origin)}`,
    );
  const signedBy = parsed.signatures.some((sig) => keys.some((k) => verifyNoteSignature(k, origin, parsed.text, sig)));
  if (!signedBy) throw new CountersignError('audit_checkpoint_invalid', 'the checkpoint is not signed by a pinned signing key of this log');
  return checkpoint;
}

export interface CheckpointerOptions {
  db: Db;
  log: AuditLog;
  /** The tree the start-up check vouched for (the external checkpoint's size and root). */
  trusted: { size: number; root: Uint8Array };
  signer: Signer;
  origin: string;
  /** The file beside the database, then any mirror copies. */
  files: string[];
  everyEntries: number;
  everyMs: number;
  now: () => number;
  onError: (message: string) => void;
  /**
   * Called when making a checkpoint (or hashing the tree) finds the log damaged (audit_corrupt):
   * the records it re-hashes or the stored hashes no longer match. Raises the tamper alarm.
   */
  onTamper?: (error: CountersignError) => void;
  /**
   * Resolves once every write committed so far is on stable storage (the app passes the group
   * commit's durable(), whose fsync runs on the thread pool). Awaited before the row's own durable
   * COMMIT, so that COMMIT's fsync, on the event loop, has only the row itself left to flush.
   */
  durable?: () => Promise<void>;
  /** The event loop's time in each checkpoint row's durable COMMIT (benchmarks, `--stage-timings`). */
  onCommitTiming?: (ms: number) => void;
}

/** The finding an audit_corrupt error carries (details `findingKind`, `findingSeq`), if any. */
export function findingOf(error: CountersignError): { kind: 'record' | 'subtree' | 'checkpoint' | 'missing'; seq: number; reason: string } {
  const kind = error.details?.findingKind;
  const seq = error.details?.findingSeq;
  return {
    kind: kind === 'record' || kind === 'subtree' || kind === 'checkpoint' || kind === 'missing' ? kind : 'subtree',
    seq: typeof seq === 'number' ? seq : 0,
    reason: error.message,
  };
}

const corrupt = (kind: 'record' | 'subtree' | 'checkpoint' | 'missing', seq: number, message: string) =>
  new CountersignError('audit_corrupt', message, { details: { findingKind: kind, findingSeq: seq } });

export class Checkpointer {
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private readonly insert;
  /**
   * The last tree this process knows to be right: the one the start-up check vouched for, then
   * each one it signed. New checkpoints are computed from it and the records, never from
   * database rows alone (which anyone with the file could have planted).
   */
  private trusted: { size: number; root: Uint8Array; at: number };

  constructor(private readonly options: CheckpointerOptions) {
    this.insert = options.db.prepare('INSERT OR IGNORE INTO audit_checkpoints (tree_size, root_hash, at, note) VALUES (?, ?, ?, ?)');
    this.trusted = { ...options.trusted, at: options.now() };
  }

  /**
   * The latest checkpoint this process may hand out: never one beyond the trusted tree, which
   * moves only once the row's own durable COMMIT has returned (make()). A row is not readable
   * before then anyway (it commits at synchronous=FULL); the bound also keeps out any row this
   * process did not sign, beyond what the start-up check vouched for.
   */
  latest(): StoredCheckpoint | undefined {
    return latestCheckpoint(this.options.db, this.trusted.size);
  }

  /** Sign a checkpoint of the log as it is now (if it grew since the last one). Serialized. */
  checkpoint(): Promise<StoredCheckpoint | undefined> {
    const run = this.chain
      .then(() => this.make())
      .catch((error: unknown) => {
        if (error instanceof CountersignError && error.code === 'audit_corrupt') this.tamper(error);
        throw error;
      });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A checkpoint covering at least `size` entries: the existing one, or a new one. */
  async covering(size: number): Promise<StoredCheckpoint> {
    // Within the trusted tree, as latest(): a larger one is made (or waited for) below.
    const existing = checkpointAtOrAfter(this.options.db, size, this.trusted.size);
    if (existing) return existing;
    await this.checkpoint();
    const made = checkpointAtOrAfter(this.options.db, size, this.trusted.size);
    if (!made) throw new CountersignError('audit_proof_unavailable', `no checkpoint covers ${size} entries yet`);
    return made;
  }

  start(): void {
    const tick = Math.max(50, Math.min(1_000, Math.floor(this.options.everyMs / 2)));
    this.timer = setInterval(() => {
      try {
        // Appends hash their own entries; this catches up any the tree lags behind (audit-log.ts).
        this.options.log.syncTree();
      } catch (error) {
        this.options.onError(`audit tree hashing failed: ${error instanceof Error ? error.message : String(error)}`);
        if (error instanceof CountersignError && error.code === 'audit_corrupt') this.tamper(error);
        return;
      }
      const size = this.options.log.size();
      const grown = size - this.trusted.size;
      if (grown >= this.options.everyEntries || (grown > 0 && this.options.now() - this.trusted.at >= this.options.everyMs)) {
        this.checkpoint().catch((error: unknown) =>
          this.options.onError(`audit checkpoint failed: ${error instanceof Error ? error.message : String(error)}`),
        );
      }
    }, tick);
    this.timer.unref();
  }

  private tamper(error: CountersignError): void {
    try {
      this.options.onTamper?.(error);
    } catch (fault) {
      this.options.onError(`the tamper alarm could not be raised: ${fault instanceof Error ? fault.message : String(fault)}`);
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.chain;
  }

  private async make(): Promise<StoredCheckpoint | undefined> {
    const { log, origin } = this.options;
    // The key is fixed before anything is computed (a rotation may be adopted while this runs).
    const signer = await signerForOneSignature(this.options.signer);
    // The size is fixed first; appends made while the records are re-hashed (in slices, between
    // which the event loop runs) add entries after it and change nothing the root covers.
    log.syncTree();
    const size = log.size();
    if (size <= this.trusted.size) return this.latest();
    const root = await recomputeRoot(log, this.trusted, size);
    const at = this.options.now();
    const text = checkpointText({ origin, size, rootHash: toBase64(root), time: at });
    const signature = await signNote(signer, origin, text);
    const note = formatSignedNote(text, [signature]);
    if (!verifyNoteSignature(signer.publicJwk, origin, text, signature)) {
      throw new CountersignError('signer_failed', 'the checkpoint signature did not verify with the signing key');
    }
    // The row commits in a transaction of its own at synchronous=FULL (the connection's setting
    // outside the group commit's own COMMIT, group-commit.ts): SQLite fsyncs the write-ahead log
    // and only then publishes the commit to readers, so no connection — this process's or another
    // one's, such as `countersign audit export` — can read a checkpoint before it and every entry
    // it covers (earlier frames of the same file) are on disk. In the decisions' group commit it
    // was visible from its COMMIT, before its sync (review6 F7): a note read then and lost to a
    // power cut would be a signed fork of the log that comes back. The group commit's pending
    // syncs are waited for first, on the thread pool, so the fsync this COMMIT runs on the event
    // loop flushes little more than the row (docs/audit.md has the measured cost).
    await this.options.durable?.();
    const began = performance.now();
    this.insert.run(size, root, at, note);
    this.options.onCommitTiming?.(performance.now() - began);
    this.trusted = { size, root, at };
    for (const file of this.options.files) {
      try {
        await writeFileAtomicAsync(file, note);
      } catch (error) {
        this.options.onError(`could not write the checkpoint to ${file}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return { size, rootHash: toBase64(root), at, note };
  }
}

/**
 * Entries re-hashed per event-loop turn by recomputeRoot. A checkpoint re-hashes every entry since
 * the last one (1,000 by default): in one turn that held the event loop 40-70 ms on the loaded
 * 2-core VM, every few seconds at 250 decisions/s, and every decision arriving meanwhile waited
 * (issue #12, the open loop's p99). A slice of 100 is a few milliseconds at most.
 */
export const RECOMPUTE_SLICE = 100;

/**
 * Checkpointer helper: the root of `size` entries computed from the trusted tree and the records
 * themselves, and required to match the stored hashes (which proofs are served from). Re-hashes
 * RECOMPUTE_SLICE entries per turn; each slice's read is finished within its turn (an open
 * iterator would keep the connection busy for every other statement).
 */
async function recomputeRoot(log: AuditLog, trusted: { size: number; root: Uint8Array }, size: number): Promise<Uint8Array> {
  const acc = MerkleAccumulator.resume(merkleHasher, trusted.size, log.frontier(trusted.size));
  if (!Buffer.from(acc.root()).equals(trusted.root)) {
    throw corrupt('subtree', 1, `the stored hashes of the first ${trusted.size} entries changed since they were checkpointed`);
  }
  for (let from = trusted.size; from < size; from += RECOMPUTE_SLICE) {
    if (from > trusted.size) await new Promise<void>((resolve) => setImmediate(resolve));
    for (const row of log.entriesWithLeaves(from, Math.min(size, from + RECOMPUTE_SLICE))) {
      if (row.seq !== acc.size + 1) throw corrupt('missing', acc.size + 1, `the audit log is missing entry ${acc.size + 1}`);
      const leaf = merkleHasher.leaf(Buffer.from(row.record, 'utf8'));
      if (row.leaf === null || !row.leaf.equals(leaf))
        throw corrupt(row.leaf === null ? 'missing' : 'record', row.seq, `entry ${row.seq} does not match its stored leaf hash`);
      acc.pushLeafHash(leaf);
    }
  }
  const root = acc.root();
  if (acc.size !== size || !Buffer.from(root).equals(log.root(size))) {
    throw corrupt('subtree', trusted.size + 1, `the stored subtree hashes do not match the records of the first ${size} entries`);
  }
  return root;
}

export interface ExternalCheckResult {
  /** The tree size the external checkpoint vouches for (0 when there is none yet). */
  size: number;
  /** Its root (the empty tree's when there is none): where new checkpoints are computed from. */
  root: Uint8Array;
  source?: string;
  /** Problems worth a warning: a corrupt copy while another is good, a checkpoint signed by a pinned key that is not the current one. */
  warnings: string[];
}

/** Hashes stored for entries that do not exist would be signed over once records are written to match. */
function assertNoPlantedHashes(log: AuditLog, size: number): void {
  if (log.hashedSize() > size)
    throw new CountersignError('audit_corrupt', `the audit tree holds hashes for ${log.hashedSize()} entries but the log has ${size}`);
}

/**
 * Compare the checkpoints kept outside the database (the file beside it and the mirror copy)
 * with the database. Each copy must be signed by a key of the log's key history, inside that
 * key's window, and cover the entry that pinned it (key-history.ts); every valid copy must be
 * consistent with the database; the largest becomes the trusted tree new checkpoints are
 * computed from. A copy signed by an earlier key than the current one is expected after a
 * migration or rotation and noted as a warning (docs/audit.md).
 * Throws audit_corrupt, audit_rollback, audit_fork, audit_checkpoint_missing or
 * audit_checkpoint_invalid.
 */
export function checkExternalCheckpoint(options: {
  db: Db;
  log: AuditLog;
  origin: string;
  files: string[];
  currentKid?: string;
  history: readonly HistoricKey[];
}): ExternalCheckResult {
  const { db, log } = options;
  log.assertContiguous();
  const size = log.size();
  const stored = latestCheckpoint(db);
  if (stored && stored.size > size) {
    throw new CountersignError(
      'audit_rollback',
      `the audit log holds ${size} entries but the database has a checkpoint of ${stored.size}: it was truncated`,
    );
  }
  const warnings: string[] = [];
  const valid: Array<{ checkpoint: Checkpoint; file: string }> = [];
  let firstProblem: CountersignError | undefined;
  const pinnings = pinningEntries(db);
  for (const file of options.files) {
    if (!existsSync(file)) continue;
    const note = readFileSync(file, 'utf8');
    try {
      const checked = verifyCheckpointWithHistory(note, options.origin, options.history, log, pinnings);
      if (options.currentKid !== undefined && checked.kid !== options.currentKid) {
        warnings.push(
          `${file}: signed by the earlier key ${checked.kid}, not the current signing key (expected after a key migration or rotation)`,
        );
      }
      valid.push({ checkpoint: checked.checkpoint, file });
    } catch (error) {
      const problem =
        error instanceof CountersignError
          ? error
          : new CountersignError('audit_checkpoint_invalid', 'the checkpoint file could not be read', { cause: error });
      firstProblem ??= new CountersignError(problem.code, `${file}: ${problem.message}`, { cause: problem });
      warnings.push(`${file}: ${problem.message}`);
    }
  }
  if (valid.length === 0) {
    if (firstProblem) throw firstProblem;
    if (stored) {
      throw new CountersignError(
        'audit_checkpoint_missing',
        `the audit checkpoint file ${quote(options.files[0] ?? '')} is missing, but the database holds checkpoints up to ${stored.size} entries`,
      );
    }
    assertNoPlantedHashes(log, size);
    return { size: 0, root: merkleHasher.emptyRoot(), warnings };
  }
  // Every valid copy must agree with the database, not only the newest.
  for (const { checkpoint, file } of valid) {
    if (checkpoint.size > size) {
      throw new CountersignError(
        'audit_rollback',
        `the audit log holds ${size} entries but its checkpoint in ${file} covers ${checkpoint.size}: the database was truncated or restored from an older copy`,
      );
    }
    if (toBase64(log.root(checkpoint.size)) !== checkpoint.rootHash) {
      throw new CountersignError(
        'audit_fork',
        `the audit log's first ${checkpoint.size} entries do not match the checkpoint in ${file}: entries were rewritten`,
      );
    }
  }
  assertNoPlantedHashes(log, size);
  const best = valid.reduce((a, b) => (b.checkpoint.size > a.checkpoint.size ? b : a));
  return { size: best.checkpoint.size, root: fromBase64(best.checkpoint.rootHash), source: best.file, warnings };
}

export function checkpointFiles(dataDir: string, mirrorDir: string | undefined): string[] {
  return [join(dataDir, CHECKPOINT_FILE), ...(mirrorDir === undefined ? [] : [join(mirrorDir, CHECKPOINT_FILE)])];
}
