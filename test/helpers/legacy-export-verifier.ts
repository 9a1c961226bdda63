/**
 * The Node-only offline export verifier exactly as it was before the portable one
 * (main/core/audit/audit-export.ts at 4179ec6, verifyExport), kept as a reference oracle: the
 * tests check that the shared verifier (shared/audit-verify.ts) returns the same findings on
 * real exports, good and tampered. Not used by the product.
 */
import { createReadStream } from 'node:fs';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { merkleHasher } from '../../main/core/audit/audit-log.js';
import { verifyCheckpointNote } from '../../main/core/audit/checkpoints.js';
import { quote } from '../../shared/errors.js';
import { fromBase64, type Checkpoint } from '../../shared/checkpoint-note.js';
import { MerkleAccumulator, verifyConsistency, verifyInclusion } from '../../shared/merkle.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import { EXPORT_FORMAT, type ExportSelection, type ExportVerification } from '../../shared/audit-verify.js';

const ENTRY_LINE =
  /^\{"type":"entry","seq":(\d{1,16}),"leafHash":"([A-Za-z0-9+/]{43}=)"(?:,"inclusion":(\[[A-Za-z0-9+/=",]*\]))?,"record":/;

function parseSelection(value: unknown): ExportSelection | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v.kind === 'all') return { kind: 'all' };
  if (v.kind === 'time' && typeof v.since === 'number' && typeof v.until === 'number')
    return { kind: 'time', since: v.since, until: v.until };
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

const b64list = (value: unknown): Uint8Array[] | undefined =>
  Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.map((v) => fromBase64(v)) : undefined;

/**
 * Verify an export offline with the log's public key(s): every checkpoint's signature, the
 * consistency between checkpoints, and every entry (recomputed into the whole tree for a full
 * export; by its inclusion proof for a partial one). Names the first bad entry it can pin down.
 */
export async function legacyVerifyExport(
  file: string,
  keys: ReadonlyArray<Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>>,
): Promise<ExportVerification> {
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
      const entryLine =
        bytes[0] === 0x7b && bytes[2] === 0x74 ? ENTRY_LINE.exec(bytes.toString('latin1', 0, Math.min(bytes.length, 4096))) : null;
      if (entryLine && header) {
        const seq = Number(entryLine[1]);
        const top = checkpoints.get(header.treeSize);
        if (!top) return fail(`no signed checkpoint of the export's tree size ${header.treeSize} precedes the entries`);
        if (!Number.isSafeInteger(seq) || bytes[bytes.length - 1] !== 0x7d) return fail('an entry line is malformed');
        if (header.full && seq !== lastSeq + 1)
          return fail(seq > lastSeq + 1 ? `entry ${lastSeq + 1} is missing` : `entry ${seq} is out of order`, lastSeq + 1);
        if (!header.full && seq <= lastSeq) return fail(`entry ${seq} is out of order`, seq);
        if (seq > header.treeSize || seq < 1) return fail(`entry ${seq} is outside the export's tree size`, seq);
        lastSeq = seq;
        // The leaf binds the record's exact bytes; its position is bound by the tree (full
        // export) or the inclusion proof (partial), so the record need not be parsed here.
        const leaf = merkleHasher.leaf(bytes.subarray(entryLine[0].length, bytes.length - 1));
        if (Buffer.from(leaf.buffer, leaf.byteOffset, leaf.byteLength).toString('base64') !== entryLine[2])
          return fail(`entry ${seq}: the record does not match its leaf hash`, seq);
        entries++;
        if (header.full) {
          acc.pushLeafHash(leaf);
          const cp = checkpoints.get(acc.size);
          if (cp) {
            if (Buffer.from(acc.root()).toString('base64') !== cp.rootHash) {
              return fail(
                `the entries after ${lastGood} up to ${acc.size} do not match the signed checkpoint of ${acc.size} entries: one of entries ${lastGood + 1}..${acc.size} was changed`,
                lastGood + 1,
              );
            }
            lastGood = acc.size;
          }
        } else {
          // A partial export must hold only what its selection names.
          // Strictly parsed: the selection is read from exactly the bytes that were hashed (no
          // duplicate member or __proto__ can make the reader see other values than were logged).
          let record: { at?: unknown; requestId?: unknown };
          try {
            record = parseStrictJson(bytes.subarray(entryLine[0].length, bytes.length - 1).toString('utf8')) as {
              at?: unknown;
              requestId?: unknown;
            };
          } catch (error) {
            return fail(`entry ${seq}: the record is not strict JSON (${error instanceof Error ? error.message : String(error)})`, seq);
          }
          const sel = header.selection;
          const inSelection =
            sel.kind === 'request'
              ? record.requestId === sel.requestId
              : sel.kind === 'time'
                ? typeof record.at === 'number' && record.at >= sel.since && record.at <= sel.until
                : true;
          if (!inSelection) return fail(`entry ${seq} is outside the export's selection`, seq);
          let proof: Uint8Array[] | undefined;
          try {
            proof = entryLine[3] === undefined ? undefined : b64list(JSON.parse(entryLine[3]));
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
        if (
          value.type !== 'header' ||
          value.format !== EXPORT_FORMAT ||
          typeof value.origin !== 'string' ||
          typeof value.treeSize !== 'number'
        )
          return fail('the export does not start with a countersign-audit-export/v1 header');
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
          return fail(
            `the checkpoint of ${b.size} entries is not consistent with the one of ${a.size}: the log forked between them`,
            a.size + 1,
          );
        }
        consistent.add(`${a.size}>${b.size}`);
        continue;
      }
      if (value.type !== 'entry')
        return fail(`unknown line type ${quote(typeof value.type === 'string' ? value.type : JSON.stringify(value.type ?? null))}`);
      return fail('an entry line is malformed (the record must be the last member, after seq, leafHash and inclusion)');
    }
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
  if (!header) return { ok: false, line: lineNo, reason: 'the export is empty' };
  if (!lastCheckpoint || lastCheckpoint.size !== header.treeSize)
    return { ok: false, line: lineNo, reason: `the export has no checkpoint of its tree size ${header.treeSize}` };
  if (header.full && acc.size !== header.treeSize)
    return {
      ok: false,
      firstBadSeq: acc.size + 1,
      line: lineNo,
      reason: `the export ends at entry ${acc.size} but its checkpoint covers ${header.treeSize}: the tail is missing`,
    };
  for (let i = 1; i < order.length; i++) {
    if (!consistent.has(`${order[i - 1]!}>${order[i]!}`))
      return {
        ok: false,
        line: lineNo,
        reason: `the export lacks the consistency proof between its checkpoints of ${order[i - 1]!} and ${order[i]!} entries`,
      };
  }
  return {
    ok: true,
    origin: header.origin,
    treeSize: header.treeSize,
    entries,
    checkpoints: checkpoints.size,
    root: lastCheckpoint.rootHash,
    selection: header.selection,
    complete: header.full,
  };
}
