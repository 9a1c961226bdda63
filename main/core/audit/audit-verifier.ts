/**
 * Continuous verification of the audit log in the running server. A full pass re-hashes every
 * record against its stored leaf hash, recomputes the tree at every stored checkpoint (against
 * the root its signed note states) and checks every stored subtree hash above the leaves — the
 * checks of `audit verify`, but in chunks that yield to the event loop between them, so the
 * decision path never waits for it, and collecting every finding rather than stopping at the
 * first (an acknowledged finding must not hide new damage behind it). A pass runs at start and
 * then every `audit.verifyEveryMs`; new findings raise the tamper alarm (tamper-alarm.ts).
 * The checkpointer covers the other half: each new checkpoint re-hashes the records it adds.
 */
import type { Db } from '../store/database.js';
import { completedBy, merkleHasher, storedCheckpointRoots, subtreeAt, type AuditLog } from './audit-log.js';
import type { TamperAlarm, TamperAlarmView, TamperFinding } from './tamper-alarm.js';
import { MerkleAccumulator } from '../../../shared/merkle.js';

export interface VerificationReport {
  startedAt: number;
  finishedAt: number;
  /** Entries checked (the log's size when the pass began). */
  entries: number;
  /** Every finding of this pass, known ones included (at most MAX_FINDINGS_PER_PASS). */
  findings: TamperFinding[];
  /** The alarm this pass raised, when it found something not reported before. */
  raised?: TamperAlarmView;
}

export interface AuditVerifierOptions {
  db: Db;
  log: AuditLog;
  alarm: TamperAlarm;
  /** Between full passes (the first runs at start). */
  everyMs: number;
  /** Rows hashed per chunk before yielding to the event loop. */
  chunkRows?: number;
  now: () => number;
  onError: (message: string) => void;
}

export const MAX_FINDINGS_PER_PASS = 1_000;
const DEFAULT_CHUNK_ROWS = 1_000;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class AuditVerifier {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<VerificationReport> | undefined;
  private queued: Promise<VerificationReport> | undefined;
  private stopped = false;
  private last: VerificationReport | undefined;
  private readonly chunkRows: number;
  private readonly rows;
  private readonly node;

  constructor(private readonly options: AuditVerifierOptions) {
    this.chunkRows = options.chunkRows ?? DEFAULT_CHUNK_ROWS;
    this.rows = options.db.prepare<[number, number, number], { seq: number; record: string; hash: Buffer | null; subtrees: Buffer | null }>(
      'SELECT seq, record, leaf AS hash, subtrees FROM audit_log WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?',
    );
    const row = options.db.prepare<[number], { hash: Buffer | null; subtrees: Buffer | null }>(
      'SELECT leaf AS hash, subtrees FROM audit_log WHERE seq = ?',
    );
    // A subtree's hash by where it ends and its level, from that entry's row (leaf: migration 21; subtrees: 22).
    this.node = (endLeaf: number, level: number): Uint8Array | undefined => {
      const stored = row.get(endLeaf);
      return (level === 0 ? stored?.hash : subtreeAt(stored?.subtrees, level)) ?? undefined;
    };
  }

  /** The last finished pass. */
  lastReport(): VerificationReport | undefined {
    return this.last;
  }

  /** Run a pass now (at start), then one every `everyMs`. */
  start(): void {
    this.stopped = false;
    const schedule = () => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        this.verifyNow()
          .catch(() => undefined)
          .finally(schedule);
      }, this.options.everyMs);
      this.timer.unref();
    };
    this.verifyNow()
      .catch(() => undefined)
      .finally(schedule);
  }

  /** Stop scheduling; a pass in progress ends at its next chunk. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.queued?.catch(() => undefined);
    await this.running?.catch(() => undefined);
  }

  /**
   * A full pass that starts after this call (after the one in progress, if any: that one may
   * have read the log before a change the caller wants checked); raises the alarm for new
   * findings. Calls made while a pass is queued share it. Passes never overlap.
   */
  verifyNow(): Promise<VerificationReport> {
    if (this.queued !== undefined) return this.queued;
    const launch = (): Promise<VerificationReport> => {
      const run = this.pass().finally(() => {
        if (this.running === run) this.running = undefined;
      });
      this.running = run;
      return run;
    };
    if (this.running === undefined) return launch();
    const queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return launch();
      });
    this.queued = queued;
    return queued;
  }

  private async pass(): Promise<VerificationReport> {
    const { alarm, now } = this.options;
    const startedAt = now();
    let findings: TamperFinding[];
    let entries: number;
    try {
      ({ findings, entries } = await this.scan());
    } catch (error) {
      // The scan itself failed (an I/O error, a locked database): report it, raise nothing.
      this.options.onError(`audit verification failed: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
    const report: VerificationReport = { startedAt, finishedAt: now(), entries, findings };
    if (findings.length > 0 && !this.stopped) {
      try {
        const raised = alarm.raise('verification', findings);
        if (raised) {
          report.raised = raised;
          this.options.onError(
            `TAMPER ALARM ${raised.id}: the audit log failed verification at entry ${raised.firstBadSeq}: ${raised.findings[0]!.reason}`,
          );
        }
      } catch (error) {
        this.options.onError(`the tamper alarm could not be stored: ${error instanceof Error ? error.message : String(error)}`);
        throw error;
      }
    }
    this.last = report;
    return report;
  }

  private async scan(): Promise<{ findings: TamperFinding[]; entries: number }> {
    const { db, log } = this.options;
    const size = log.size();
    const hashed = log.hashedSize();
    const findings: TamperFinding[] = [];
    const add = (f: TamperFinding) => {
      if (findings.length < MAX_FINDINGS_PER_PASS) findings.push(f);
    };
    const checkpoints = storedCheckpointRoots(db, size);

    // Leaves: each record against its stored leaf hash. The tree is accumulated from the stored
    // leaf hash where there is one, so one rewritten record is one finding, not a mismatch at
    // every later checkpoint; a rewrite that also re-hashed the leaf shows at the next checkpoint.
    const acc = new MerkleAccumulator(merkleHasher);
    let nextCheckpoint = 0;
    let lastGoodCheckpoint = 0;
    let treeUsable = true;
    let expected = 1;
    let after = 0;
    // The stored hash of the last subtree at each level seen so far (the stored tree's right edge):
    // a row's subtrees are checked against their stored children, the left one from here.
    let storedEdge: Array<Uint8Array | undefined> = [];
    while (after < size && !this.stopped) {
      const chunk = this.rows.all(after, size, this.chunkRows);
      if (chunk.length === 0) break;
      for (const row of chunk) {
        if (row.seq !== expected) {
          add({ kind: 'missing', seq: expected, reason: `entries ${expected}..${row.seq - 1} are missing` });
          treeUsable = false;
          expected = row.seq;
          storedEdge = [];
        }
        this.checkSubtrees(row, storedEdge, add);
        const leaf = merkleHasher.leaf(Buffer.from(row.record, 'utf8'));
        if (row.hash !== null && !row.hash.equals(leaf))
          add({ kind: 'record', seq: row.seq, reason: `entry ${row.seq} does not match its leaf hash: its record was rewritten` });
        if (row.hash === null && row.seq <= hashed) {
          add({ kind: 'missing', seq: row.seq, reason: `the leaf hash of entry ${row.seq} is missing` });
        }
        if (treeUsable) {
          acc.pushLeafHash(row.hash ?? leaf);
          while (nextCheckpoint < checkpoints.length && checkpoints[nextCheckpoint]!.size <= acc.size) {
            const cp = checkpoints[nextCheckpoint]!;
            nextCheckpoint++;
            if (cp.size !== acc.size) continue;
            if (cp.root === undefined) {
              add({
                kind: 'checkpoint',
                seq: cp.size,
                reason: `the stored checkpoint of ${cp.size} entries is malformed or disagrees with its signed note`,
              });
            } else if (!Buffer.from(acc.root()).equals(cp.root)) {
              add({
                kind: 'checkpoint',
                seq: lastGoodCheckpoint + 1,
                reason: `entries ${lastGoodCheckpoint + 1}..${cp.size} do not match the signed checkpoint of ${cp.size} entries: entries were rewritten and re-hashed`,
              });
              // Every later checkpoint would differ too: one finding says it.
              treeUsable = false;
              break;
            } else {
              lastGoodCheckpoint = cp.size;
            }
          }
        }
        expected = row.seq + 1;
      }
      after = chunk[chunk.length - 1]!.seq;
      await yieldToEventLoop();
    }
    if (!this.stopped && after < size) add({ kind: 'missing', seq: after + 1, reason: `entries ${after + 1}..${size} are missing` });
    return { findings, entries: size };
  }

  /**
   * Every stored subtree hash above the leaves in `row` (proofs and new checkpoints are served from
   * them) against its two stored children: the right one in the same row (its leaf, or the level
   * below), the left one from `storedEdge` (read from its row after a gap). Updates `storedEdge`.
   */
  private checkSubtrees(
    row: { seq: number; hash: Buffer | null; subtrees: Buffer | null },
    storedEdge: Array<Uint8Array | undefined>,
    add: (f: TamperFinding) => void,
  ): void {
    const levels = completedBy(row.seq - 1);
    const held = row.subtrees === null ? 0 : row.subtrees.length / 32;
    if (row.hash === null ? held > 0 : held > levels) {
      add({ kind: 'subtree', seq: row.seq, reason: `entry ${row.seq}'s row holds subtree hashes that the entries do not complete` });
    }
    if (row.hash === null) return;
    for (let level = 1; level <= levels; level++) {
      const half = 2 ** (level - 1);
      const left = storedEdge[level - 1] ?? this.node(row.seq - half, level - 1);
      const right = level === 1 ? row.hash : subtreeAt(row.subtrees, level - 1);
      const stored = subtreeAt(row.subtrees, level);
      if (!left || !right || !stored || !Buffer.from(merkleHasher.node(left, right)).equals(stored)) {
        const first = row.seq - 2 * half + 1;
        add({ kind: 'subtree', seq: first, reason: `the stored hash of entries ${first}..${row.seq} does not match the entries` });
      }
    }
    storedEdge[0] = row.hash;
    for (let level = 1; level <= levels; level++) storedEdge[level] = subtreeAt(row.subtrees, level);
  }
}
