/**
 * Audit exports (JSONL) and their offline verification. An export covers the log up to its
 * latest signed checkpoint:
 *
 *   {"type":"header","format":"countersign-audit-export/v1","origin":…,"treeSize":N,"selection":{…}}
 *   {"type":"checkpoint","note":"<signed note>"}                       every checkpoint up to N
 *   {"type":"consistency","from":A,"to":B,"proof":["<base64>",…]}      between consecutive checkpoints
 *   {"type":"entry","seq":S,"leafHash":"<base64>"[,"inclusion":["<base64>",…]],"record":<the JCS record, verbatim>}
 *
 * The record is embedded verbatim as the last member, so a verifier hashes the exact bytes
 * between `"record":` and the line's final `}` without re-encoding anything (and jq still reads
 * the line as an object).
 *
 * A full export (`selection.kind` "all") holds every entry 1..N, and the verifier recomputes
 * the whole tree; a partial one (by time range or request) carries an inclusion proof per entry
 * against the checkpoint of size N. docs/audit.md specifies it for third-party verifiers; the
 * verifier is shared/audit-verify.ts (portable: the CLI, the SDK and browsers run the same code).
 */
import { closeSync, createReadStream, openSync, writeSync } from 'node:fs';
import type { Db } from '../store/database.js';
import type { PublicJwk } from '../custody/signer.js';
import { merkleHasher, type AuditLog } from './audit-log.js';
import { requestKey } from '../store/request-id.js';
import { latestCheckpoint } from './checkpoints.js';
import { CountersignError } from '../../../shared/errors.js';
import { toBase64 } from '../../../shared/checkpoint-note.js';
import { EXPORT_FORMAT, verifyAuditExport, type ExportSelection, type ExportVerification } from '../../../shared/audit-verify.js';

export { EXPORT_FORMAT, type ExportSelection, type ExportVerification };

export interface ExportResult {
  file: string;
  treeSize: number;
  entries: number;
  checkpoints: number;
}

export function exportAudit(options: { db: Db; log: AuditLog; origin: string; file: string; selection: ExportSelection }): ExportResult {
  const { db, log, origin, file, selection } = options;
  const latest = latestCheckpoint(db);
  if (!latest)
    throw new CountersignError(
      'audit_proof_unavailable',
      'the audit log has no signed checkpoint yet: start Countersign once (it signs one at least every minute and at shutdown)',
    );
  const n = latest.size;
  // Hash everything first: the entries are then streamed while only reading.
  log.syncTree();
  const fd = openSync(file, 'w', 0o600);
  let buffer = '';
  const line = (value: unknown) => {
    buffer += `${JSON.stringify(value)}\n`;
    if (buffer.length > 1 << 20) {
      writeSync(fd, buffer);
      buffer = '';
    }
  };
  let entries = 0;
  try {
    line({ type: 'header', format: EXPORT_FORMAT, origin, treeSize: n, selection });
    const checkpoints = db
      .prepare<[number], { tree_size: number; note: string }>(
        'SELECT tree_size, note FROM audit_checkpoints WHERE tree_size <= ? ORDER BY tree_size',
      )
      .all(n);
    let previous: number | undefined;
    for (const cp of checkpoints) {
      line({ type: 'checkpoint', note: cp.note });
      if (previous !== undefined && previous > 0) {
        line({ type: 'consistency', from: previous, to: cp.tree_size, proof: log.consistencyProof(previous, cp.tree_size).map(toBase64) });
      }
      previous = cp.tree_size;
    }
    // Each entry with its stored leaf hash, in one query (the tree was hashed above).
    const withLeaf = 'SELECT l.seq, l.record, l.leaf FROM audit_log l WHERE l.leaf IS NOT NULL AND l.seq <= ?';
    type Row = { seq: number; record: string; leaf: Buffer };
    const rows =
      selection.kind === 'all'
        ? db.prepare<[number], Row>(`${withLeaf} ORDER BY l.seq`).iterate(n)
        : selection.kind === 'time'
          ? db
              .prepare<[number, number, number], Row>(`${withLeaf} AND l.at >= ? AND l.at <= ? ORDER BY l.seq`)
              .iterate(n, selection.since, selection.until)
          : db
              .prepare<[number, number, string], Row>(
                `${withLeaf} AND l.request_key = ? AND json_extract(l.record, '$.requestId') = ? ORDER BY l.seq`,
              )
              .iterate(n, requestKey(selection.requestId), selection.requestId);
    // A damaged log is exported as it is: naming what is wrong is the verifier's job.
    for (const row of rows) {
      const inclusion = selection.kind === 'all' ? '' : `,"inclusion":${JSON.stringify(log.inclusionProof(row.seq - 1, n).map(toBase64))}`;
      buffer += `{"type":"entry","seq":${row.seq},"leafHash":"${row.leaf.toString('base64')}"${inclusion},"record":${row.record}}\n`;
      if (buffer.length > 1 << 20) {
        writeSync(fd, buffer);
        buffer = '';
      }
      entries++;
    }
    writeSync(fd, buffer);
    return { file, treeSize: n, entries, checkpoints: checkpoints.length };
  } finally {
    closeSync(fd);
  }
}

/**
 * Verify an export file offline with the log's public key(s): the portable verifier
 * (shared/audit-verify.ts, the one the SDK and browsers run) over the file's bytes, hashing with
 * node:crypto. Names the first bad entry it can pin down.
 */
export async function verifyExport(
  file: string,
  keys: ReadonlyArray<Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>>,
): Promise<ExportVerification> {
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  try {
    return await verifyAuditExport(stream as AsyncIterable<Uint8Array>, keys, { hasher: merkleHasher });
  } finally {
    stream.destroy();
  }
}
