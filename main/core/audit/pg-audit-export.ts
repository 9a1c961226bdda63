/**
 * Audit export from the team database, in the same countersign-audit-export/v1 format as the
 * embedded log (audit/audit-export.ts, docs/audit.md), so `countersign audit verify` checks it
 * offline with the hubs' public keys. A full export up to the latest signed checkpoint: every
 * checkpoint, the consistency proof between consecutive ones, every entry with its leaf hash.
 * The leaf hashes are held in memory while the proofs are computed (32 bytes per entry).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type pg from 'pg';
import { toBase64 } from '../../../shared/checkpoint-note.js';
import { CountersignError } from '../../../shared/errors.js';
import { consistencyPath, splitPoint } from '../../../shared/merkle.js';
import { EXPORT_FORMAT } from '../../../shared/audit-verify.js';
import { merkleHasher } from './audit-log.js';
import { storeError } from '../store/pg/pg-errors.js';

export async function exportPgAudit(
  pool: pg.Pool,
  origin: string,
  file: string,
): Promise<{ treeSize: number; entries: number; checkpoints: number }> {
  let checkpoints: Array<{ size: number; note: string }>;
  let rows: Array<{ seq: string; record: string; leaf: Buffer }>;
  try {
    const cps = await pool.query<{ tree_size: string; note: string }>('SELECT tree_size, note FROM audit_checkpoints ORDER BY tree_size');
    checkpoints = cps.rows.map((r) => ({ size: Number(r.tree_size), note: r.note }));
    const n = checkpoints.at(-1)?.size ?? 0;
    rows = (
      await pool.query<{ seq: string; record: string; leaf: Buffer }>(
        'SELECT seq, record, leaf FROM audit_log WHERE seq <= $1 ORDER BY seq',
        [n],
      )
    ).rows;
  } catch (error) {
    throw storeError(error, 'exporting the audit log');
  }
  const n = checkpoints.at(-1)?.size;
  if (n === undefined) throw new CountersignError('audit_proof_unavailable', 'the team audit log has no signed checkpoint yet');
  const leaves = rows.map((r) => new Uint8Array(r.leaf));
  const rangeHash = (start: number, end: number): Uint8Array => {
    if (end - start === 1) return leaves[start]!;
    const k = splitPoint(end - start);
    return merkleHasher.node(rangeHash(start, start + k), rangeHash(start + k, end));
  };
  const fd = openSync(file, 'w', 0o600);
  try {
    let out = `${JSON.stringify({ type: 'header', format: EXPORT_FORMAT, origin, treeSize: n, selection: { kind: 'all' } })}\n`;
    let previous: number | undefined;
    for (const cp of checkpoints) {
      out += `${JSON.stringify({ type: 'checkpoint', note: cp.note })}\n`;
      if (previous !== undefined && previous > 0)
        out += `${JSON.stringify({ type: 'consistency', from: previous, to: cp.size, proof: consistencyPath(previous, cp.size, rangeHash).map(toBase64) })}\n`;
      previous = cp.size;
    }
    writeSync(fd, out);
    out = '';
    for (const row of rows) {
      // The record verbatim as the last member: the verifier hashes exactly these bytes.
      out += `{"type":"entry","seq":${Number(row.seq)},"leafHash":"${row.leaf.toString('base64')}","record":${row.record}}\n`;
      if (out.length > 1 << 20) {
        writeSync(fd, out);
        out = '';
      }
    }
    writeSync(fd, out);
  } finally {
    closeSync(fd);
  }
  return { treeSize: n, entries: rows.length, checkpoints: checkpoints.length };
}
