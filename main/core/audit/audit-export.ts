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
 * against the checkpoint of size N. docs/audit.md specifies it for third-party verifiers.
 */
import { closeSync, createReadStream, openSync, writeSync } from 'node:fs';
import type { Db } from '../store/database.js';
import type { PublicJwk } from '../custody/signer.js';
import { merkleHasher, type AuditLog } from './audit-log.js';
import { latestCheckpoint, verifyCheckpointNote } from './checkpoints.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { fromBase64, toBase64, type Checkpoint } from '../../../shared/checkpoint-note.js';
import { MerkleAccumulator, verifyConsistency, verifyInclusion } from '../../../shared/merkle.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';

export const EXPORT_FORMAT = 'countersign-audit-export/v1';

const ENTRY_LINE = /^\{"type":"entry","seq":(\d{1,16}),"leafHash":"([A-Za-z0-9+/]{43}=)"(?:,"inclusion":(\[[A-Za-z0-9+/=",]*\]))?,"record":/;

export type ExportSelection =
  | { kind: 'all' }
  | { kind: 'time'; since: number; until: number }
  | { kind: 'request'; requestId: string };

export interface ExportResult { file: string; treeSize: number; entries: number; checkpoints: number }

export function exportAudit(options: { db: Db; log: AuditLog; origin: string; file: string; selection: ExportSelection }): ExportResult {
  const { db, log, origin, file, selection } = options;
  const latest = latestCheckpoint(db);
  if (!latest) throw new CountersignError('audit_proof_unavailable', 'the audit log has no signed checkpoint yet: start Countersign once (it signs one at least every minute and at shutdown)');
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
    const checkpoints = db.prepare<[number], { tree_size: number; note: string }>('SELECT tree_size, note FROM audit_checkpoints WHERE tree_size <= ? ORDER BY tree_size').all(n);
    let previous: number | undefined;
    for (const cp of checkpoints) {
      line({ type: 'checkpoint', note: cp.note });
      if (previous !== undefined && previous > 0) {
        line({ type: 'consistency', from: previous, to: cp.tree_size, proof: log.consistencyProof(previous, cp.tree_size).map(toBase64) });
      }
      previous = cp.tree_size;
    }
    // Each entry with its stored leaf hash, in one query (the tree was hashed above).
    const withLeaf = 'SELECT l.seq, l.record, n.hash AS leaf FROM audit_log l JOIN audit_nodes n ON n.level = 0 AND n.idx = l.seq - 1 WHERE l.seq <= ?';
    type Row = { seq: number; record: string; leaf: Buffer };
    const rows = selection.kind === 'all'
      ? db.prepare<[number], Row>(`${withLeaf} ORDER BY l.seq`).iterate(n)
      : selection.kind === 'time'
        ? db.prepare<[number, number, number], Row>(`${withLeaf} AND l.at >= ? AND l.at <= ? ORDER BY l.seq`).iterate(n, selection.since, selection.until)
        : db.prepare<[number, string], Row>(`${withLeaf} AND l.request_id = ? ORDER BY l.seq`).iterate(n, selection.requestId);
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

function parseSelection(value: unknown): ExportSelection | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v.kind === 'all') return { kind: 'all' };
  if (v.kind === 'time' && typeof v.since === 'number' && typeof v.until === 'number') return { kind: 'time', since: v.since, until: v.until };
  if (v.kind === 'request' && typeof v.requestId === 'string') return { kind: 'request', requestId: v.requestId };
  return undefined;
}

/** The file's lines as byte buffers (without the newline). */
async function* lines(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let rest: Buffer | undefined;
  for await (const chunk of stream) {
    const data = rest ? Buffer.concat([rest, chunk]) : chunk;
    let start = 0;
    for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
      yield data.subarray(start, nl);
      start = nl + 1;
    }
    rest = start < data.length ? data.subarray(start) : undefined;
  }
  if (rest && rest.length > 0) yield rest;
}

export type ExportVerification =
  | {
    ok: true; origin: string; treeSize: number; entries: number; checkpoints: number; root: string;
    /** What the export claims to hold; `complete` only for a full export (a partial one cannot prove nothing was left out). */
    selection: ExportSelection; complete: boolean;
  }
  | { ok: false; firstBadSeq?: number; line: number; reason: string };

const b64list = (value: unknown): Uint8Array[] | undefined =>
  Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.map((v) => fromBase64(v)) : undefined;

/**
 * Verify an export offline with the log's public key(s): every checkpoint's signature, the
 * consistency between checkpoints, and every entry (recomputed into the whole tree for a full
 * export; by its inclusion proof for a partial one). Names the first bad entry it can pin down.
 */
export async function verifyExport(file: string, keys: ReadonlyArray<Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>>): Promise<ExportVerification> {
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  let lineNo = 0;
  let header: { origin: string; treeSize: number; full: boolean; selection: ExportSelection } | undefined;
  const order: number[] = [];
  const consistent = new Set<string>();
  const checkpoints = new Map<number, Checkpoint>();
  let lastCheckpoint: Checkpoint | undefined;
  const acc = new MerkleAccumulator(merkleHasher);
  let entries = 0;
  let lastSeq = 0;
  /** The last checkpoint size the recomputed tree matched (full exports). */
  let lastGood = 0;
  const fail = (reason: string, firstBadSeq?: number): ExportVerification => {
    stream.destroy();
    return firstBadSeq === undefined ? { ok: false, line: lineNo, reason } : { ok: false, firstBadSeq, line: lineNo, reason };
  };
  try {
    for await (const bytes of lines(stream)) {
      lineNo++;
      if (bytes.length === 0) continue;
      // Entry lines are matched and hashed as bytes: the record is hashed exactly as stored.
      const entryLine = bytes[0] === 0x7b && bytes[2] === 0x74 ? ENTRY_LINE.exec(bytes.toString('latin1', 0, Math.min(bytes.length, 4096))) : null;
      if (entryLine && header) {
        const seq = Number(entryLine[1]);
        const top = checkpoints.get(header.treeSize);
        if (!top) return fail(`no signed checkpoint of the export's tree size ${header.treeSize} precedes the entries`);
        if (!Number.isSafeInteger(seq) || bytes[bytes.length - 1] !== 0x7d) return fail('an entry line is malformed');
        if (header.full && seq !== lastSeq + 1) return fail(seq > lastSeq + 1 ? `entry ${lastSeq + 1} is missing` : `entry ${seq} is out of order`, lastSeq + 1);
        if (!header.full && seq <= lastSeq) return fail(`entry ${seq} is out of order`, seq);
        if (seq > header.treeSize || seq < 1) return fail(`entry ${seq} is outside the export's tree size`, seq);
        lastSeq = seq;
        // The leaf binds the record's exact bytes; its position is bound by the tree (full
        // export) or the inclusion proof (partial), so the record need not be parsed here.
        const leaf = merkleHasher.leaf(bytes.subarray(entryLine[0].length, bytes.length - 1));
        if (Buffer.from(leaf.buffer, leaf.byteOffset, leaf.byteLength).toString('base64') !== entryLine[2]) return fail(`entry ${seq}: the record does not match its leaf hash`, seq);
        entries++;
        if (header.full) {
          acc.pushLeafHash(leaf);
          const cp = checkpoints.get(acc.size);
          if (cp) {
            if (Buffer.from(acc.root()).toString('base64') !== cp.rootHash) {
              return fail(`the entries after ${lastGood} up to ${acc.size} do not match the signed checkpoint of ${acc.size} entries: one of entries ${lastGood + 1}..${acc.size} was changed`, lastGood + 1);
            }
            lastGood = acc.size;
          }
        } else {
          // A partial export must hold only what its selection names.
          // Strictly parsed: the selection is read from exactly the bytes that were hashed (no
          // duplicate member or __proto__ can make the reader see other values than were logged).
          let record: { at?: unknown; requestId?: unknown };
          try {
            record = parseStrictJson(bytes.subarray(entryLine[0].length, bytes.length - 1).toString('utf8')) as { at?: unknown; requestId?: unknown };
          } catch (error) {
            return fail(`entry ${seq}: the record is not strict JSON (${error instanceof Error ? error.message : String(error)})`, seq);
          }
          const sel = header.selection;
          const inSelection = sel.kind === 'request' ? record.requestId === sel.requestId
            : sel.kind === 'time' ? typeof record.at === 'number' && record.at >= sel.since && record.at <= sel.until : true;
          if (!inSelection) return fail(`entry ${seq} is outside the export's selection`, seq);
          let proof: Uint8Array[] | undefined;
          try {
            proof = entryLine[3] === undefined ? undefined : b64list(parseStrictJson(entryLine[3]));
          } catch {
            proof = undefined;
          }
          if (!proof || !verifyInclusion(merkleHasher, seq - 1, top.size, leaf, proof, fromBase64(top.rootHash))) {
            return fail(`entry ${seq} is not included in the signed checkpoint of ${top.size} entries`, seq);
          }
        }
        continue;
      }
      // Header, checkpoint and proof lines (few: entries are matched above) are parsed strictly,
      // so a duplicate or __proto__ member cannot show the verifier another value than the file holds.
      let value: Record<string, unknown>;
      try {
        const parsed: unknown = parseStrictJson(bytes.toString('utf8'));
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail('the line is not a JSON object');
        value = parsed as Record<string, unknown>;
      } catch (error) {
        return fail(`the line is not valid strict JSON (${error instanceof Error ? error.message : String(error)})`);
      }
      if (!header) {
        if (value.type !== 'header' || value.format !== EXPORT_FORMAT || typeof value.origin !== 'string' || typeof value.treeSize !== 'number') return fail('the export does not start with a countersign-audit-export/v1 header');
        const selection = parseSelection(value.selection);
        if (!selection) return fail('the export header has no valid selection');
        header = { origin: value.origin, treeSize: value.treeSize, full: selection.kind === 'all', selection };
        continue;
      }
      if (value.type === 'checkpoint') {
        if (typeof value.note !== 'string') return fail('a checkpoint line has no note');
        let cp: Checkpoint;
        try {
          cp = verifyCheckpointNote(value.note, header.origin, keys);
        } catch (error) {
          return fail(`checkpoint: ${error instanceof Error ? error.message : String(error)}`);
        }
        if (lastCheckpoint && cp.size <= lastCheckpoint.size) return fail(`checkpoints must grow: ${cp.size} after ${lastCheckpoint.size}`);
        checkpoints.set(cp.size, cp);
        order.push(cp.size);
        lastCheckpoint = cp;
        continue;
      }
      if (value.type === 'consistency') {
        const a = checkpoints.get(value.from as number);
        const b = checkpoints.get(value.to as number);
        const proof = b64list(value.proof);
        if (!a || !b || !proof) return fail('a consistency proof names checkpoints the export does not hold before it');
        if (!verifyConsistency(merkleHasher, a.size, b.size, proof, fromBase64(a.rootHash), fromBase64(b.rootHash))) {
          return fail(`the checkpoint of ${b.size} entries is not consistent with the one of ${a.size}: the log forked between them`, a.size + 1);
        }
        consistent.add(`${a.size}>${b.size}`);
        continue;
      }
      if (value.type !== 'entry') return fail(`unknown line type ${quote(typeof value.type === 'string' ? value.type : JSON.stringify(value.type ?? null))}`);
      return fail('an entry line is malformed (the record must be the last member, after seq, leafHash and inclusion)');
    }
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  if (!header) return { ok: false, line: lineNo, reason: 'the export is empty' };
  if (!lastCheckpoint || lastCheckpoint.size !== header.treeSize) return { ok: false, line: lineNo, reason: `the export has no checkpoint of its tree size ${header.treeSize}` };
  if (header.full && acc.size !== header.treeSize) return { ok: false, firstBadSeq: acc.size + 1, line: lineNo, reason: `the export ends at entry ${acc.size} but its checkpoint covers ${header.treeSize}: the tail is missing` };
  for (let i = 1; i < order.length; i++) {
    if (!consistent.has(`${order[i - 1]!}>${order[i]!}`)) return { ok: false, line: lineNo, reason: `the export lacks the consistency proof between its checkpoints of ${order[i - 1]!} and ${order[i]!} entries` };
  }
  return { ok: true, origin: header.origin, treeSize: header.treeSize, entries, checkpoints: checkpoints.size, root: lastCheckpoint.rootHash, selection: header.selection, complete: header.full };
}
