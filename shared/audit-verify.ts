/**
 * The portable audit verifier: checkpoint (signed note) signatures, inclusion and consistency
 * proofs, audit exports (the format main/core/audit/audit-export.ts writes) and the proofs an
 * agent gets from `audit.proof`. Pure TypeScript over WebCrypto (globalThis.crypto.subtle) and
 * shared/merkle.ts: no node:, no Buffer, so the CLI's offline verifier, the agent SDK, a tool
 * server and a browser all run this same code. docs/audit.md specifies the formats.
 *
 * Merkle hashing is synchronous (shared/sha256.ts by default); a Node caller may pass a hasher
 * over node:crypto for speed, with the same results (test/integration/audit-verify.test.ts).
 */
import { webCryptoBytes, type WebCryptoKey } from './webcrypto.js';
import { CountersignError, quote } from './errors.js';
import { parseStrictJson } from './canonical-json.js';
import { fromBase64url, utf8 } from './encoding.js';
import { fromBase64, parseCheckpointText, parseSignedNote, toBase64, type Checkpoint, type NoteSignature } from './checkpoint-note.js';
import { MerkleAccumulator, MerkleHasher, verifyConsistency, verifyInclusion, type Sha256 } from './merkle.js';
import { sha256Sync } from './sha256.js';
import type { AuditProofResult } from './protocol.js';

/** A log signing key as the JWKS publishes it (Ed25519 or P-256). */
export interface NoteVerificationKey {
  kty: string;
  crv?: string | undefined;
  x?: string | undefined;
  y?: string | undefined;
}

export const EXPORT_FORMAT = 'countersign-audit-export/v1';

/** The RFC 9162 hasher over a synchronous SHA-256 (the portable one unless told otherwise). */
export function portableMerkleHasher(sha256: Sha256 = sha256Sync): MerkleHasher {
  return new MerkleHasher(sha256);
}

const subtle = (): typeof globalThis.crypto.subtle => {
  const s = globalThis.crypto?.subtle;
  if (s === undefined)
    throw new CountersignError('internal_error', 'WebCrypto (globalThis.crypto.subtle) is not available in this runtime');
  return s;
};

const digest = async (bytes: Uint8Array): Promise<Uint8Array> => new Uint8Array(await subtle().digest('SHA-256', webCryptoBytes(bytes)));

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

// ---- checkpoints (c2sp.org/signed-note; the key ids and signature types of note-keys.ts) ----

async function importNoteKey(jwk: NoteVerificationKey): Promise<{ key: WebCryptoKey; ed25519: boolean }> {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && typeof jwk.x === 'string') {
    return {
      key: await subtle().importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, { name: 'Ed25519' }, true, ['verify']),
      ed25519: true,
    };
  }
  if (jwk.kty === 'EC' && jwk.crv === 'P-256' && typeof jwk.x === 'string' && typeof jwk.y === 'string') {
    return {
      key: await subtle().importKey('jwk', { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, { name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'verify',
      ]),
      ed25519: false,
    };
  }
  throw new Error('unsupported key');
}

/**
 * The note key id: Ed25519 SHA-256(name || 0x0A || 0x01 || key)[:4]; ECDSA (type 0x02, as
 * transparency-dev/witness) SHA-256(DER SubjectPublicKeyInfo)[:4].
 */
export async function noteKeyIdOf(keyName: string, jwk: NoteVerificationKey): Promise<Uint8Array> {
  if (jwk.kty === 'OKP') {
    const name = utf8(keyName);
    const raw = fromBase64url(jwk.x ?? '') ?? new Uint8Array(0);
    const data = new Uint8Array(name.length + 2 + raw.length);
    data.set(name, 0);
    data.set([0x0a, 0x01], name.length);
    data.set(raw, name.length + 2);
    return (await digest(data)).slice(0, 4);
  }
  const { key } = await importNoteKey(jwk);
  return (await digest(new Uint8Array(await subtle().exportKey('spki', key)))).slice(0, 4);
}

/**
 * A strict ASN.1 DER ECDSA-Sig-Value → the 64-byte r || s WebCrypto verifies. Undefined for
 * anything but two minimal, positive INTEGERs of at most 32 significant bytes.
 */
function rawFromDer(der: Uint8Array): Uint8Array | undefined {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2) return undefined;
  const out = new Uint8Array(64);
  let at = 2;
  for (let part = 0; part < 2; part++) {
    if (der[at] !== 0x02) return undefined;
    const len = der[at + 1]!;
    const start = at + 2;
    if (len < 1 || len > 33 || start + len > der.length) return undefined;
    const value = der.subarray(start, start + len);
    if (value[0]! & 0x80) return undefined; // negative
    if (len > 1 && value[0] === 0 && !(value[1]! & 0x80)) return undefined; // not minimal
    const significant = value[0] === 0 ? value.subarray(1) : value;
    if (significant.length > 32) return undefined;
    out.set(significant, part * 32 + 32 - significant.length);
    at = start + len;
  }
  return at === der.length ? out : undefined;
}

/** Whether one note signature is by `jwk` under `keyName` and verifies over `text`. Never throws. */
export async function verifyNoteSignatureWith(
  jwk: NoteVerificationKey,
  keyName: string,
  text: string,
  sig: NoteSignature,
): Promise<boolean> {
  try {
    if (sig.keyName !== keyName || !equalBytes(await noteKeyIdOf(keyName, jwk), sig.keyId)) return false;
    const { key, ed25519 } = await importNoteKey(jwk);
    const data = utf8(text);
    if (ed25519) return await subtle().verify({ name: 'Ed25519' }, key, webCryptoBytes(sig.signature), webCryptoBytes(data));
    const raw = rawFromDer(sig.signature);
    return raw !== undefined && (await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key, webCryptoBytes(raw), webCryptoBytes(data)));
  } catch {
    return false;
  }
}

/**
 * Parse a signed checkpoint and check it is for `origin` and signed by one of `keys`. Throws
 * audit_checkpoint_invalid (the same findings as the core's verifyCheckpointNote).
 */
export async function verifyCheckpoint(note: string, origin: string, keys: readonly NoteVerificationKey[]): Promise<Checkpoint> {
  const parsed = parseSignedNote(note);
  const checkpoint = parseCheckpointText(parsed.text);
  if (checkpoint.origin !== origin)
    throw new CountersignError(
      'audit_checkpoint_invalid',
      `the checkpoint is for the log ${quote(checkpoint.origin)}, not ${quote(origin)}`,
    );
  for (const sig of parsed.signatures) {
    for (const key of keys) if (await verifyNoteSignatureWith(key, origin, parsed.text, sig)) return checkpoint;
  }
  throw new CountersignError('audit_checkpoint_invalid', 'the checkpoint is not signed by a pinned signing key of this log');
}

// ---- proofs, in the shape the API and CLI print them (base64 hashes) ----

const decodeAll = (list: readonly string[]): Uint8Array[] | undefined => {
  try {
    return list.map((h) => fromBase64(h));
  } catch {
    return undefined;
  }
};

/** RFC 9162 inclusion of the entry `seq` (1-based) whose record is `record`, in the tree of `treeSize` entries with root `root`. */
export function verifyRecordInclusion(
  input: { seq: number; record: string; treeSize: number; proof: readonly string[]; root: string },
  hasher: MerkleHasher = portableMerkleHasher(),
): boolean {
  const proof = decodeAll(input.proof);
  const root = decodeAll([input.root]);
  if (!proof || !root || !Number.isSafeInteger(input.seq)) return false;
  return verifyInclusion(hasher, input.seq - 1, input.treeSize, hasher.leaf(utf8(input.record)), proof, root[0]!);
}

/** RFC 9162 consistency between the trees of `from` and `to` entries (the CLI's `audit proof consistency` output). */
export function verifyConsistencyView(
  input: { from: number; to: number; proof: readonly string[]; fromRoot: string; toRoot: string },
  hasher: MerkleHasher = portableMerkleHasher(),
): boolean {
  const hashes = decodeAll([input.fromRoot, input.toRoot, ...input.proof]);
  if (!hashes) return false;
  const [fromRoot, toRoot, ...proof] = hashes;
  return verifyConsistency(hasher, input.from, input.to, proof, fromRoot!, toRoot!);
}

export interface VerifiedAuditProof {
  requestId: string;
  origin: string;
  treeSize: number;
  /** The signed root (base64) every entry was proven against. */
  rootHash: string;
  /** When the checkpoint was signed (ms since the epoch), if it says. */
  checkpointTime?: number | undefined;
  /** The entries' records, strictly parsed (each one about `requestId`). */
  entries: Array<{ seq: number; record: Record<string, unknown> }>;
}

const proofInvalid = (message: string): never => {
  throw new CountersignError('audit_proof_invalid', message);
};

/**
 * Verify what `audit.proof` returns (AgentClient.auditProof) against the log's signing keys:
 * the checkpoint's signature (audit_checkpoint_invalid), then for every entry that its record
 * hashes to its leaf hash, is about the request, and is included in the signed tree
 * (audit_proof_invalid). `origin` pins the log (`countersign/<serverId>`); without it, the
 * checkpoint's own origin is used (its signature must still verify with one of `keys`).
 */
export async function verifyAuditProof(
  proof: AuditProofResult,
  options: { keys: readonly NoteVerificationKey[]; origin?: string; requestId?: string },
): Promise<VerifiedAuditProof> {
  if (typeof proof !== 'object' || proof === null || typeof proof.checkpoint !== 'string' || !Array.isArray(proof.entries))
    proofInvalid('the audit proof is not an object with a checkpoint and entries');
  if (options.requestId !== undefined && proof.requestId !== options.requestId)
    proofInvalid(`the audit proof is for the request ${quote(String(proof.requestId))}, not ${quote(options.requestId)}`);
  const origin = options.origin ?? parseCheckpointText(parseSignedNote(proof.checkpoint).text).origin;
  const checkpoint = await verifyCheckpoint(proof.checkpoint, origin, options.keys);
  if (proof.treeSize !== checkpoint.size)
    proofInvalid(`the audit proof claims a tree of ${String(proof.treeSize)} entries but its checkpoint covers ${checkpoint.size}`);
  if (proof.entries.length === 0) proofInvalid('the audit proof holds no entries');
  const hasher = portableMerkleHasher();
  const root = fromBase64(checkpoint.rootHash);
  const entries: VerifiedAuditProof['entries'] = [];
  for (const entry of proof.entries) {
    const seq = entry.seq;
    if (!Number.isSafeInteger(seq) || typeof entry.record !== 'string' || typeof entry.leafHash !== 'string' || !Array.isArray(entry.proof))
      proofInvalid('an audit proof entry is malformed');
    const leaf = hasher.leaf(utf8(entry.record));
    if (toBase64(leaf) !== entry.leafHash) proofInvalid(`entry ${seq}: the record does not match its leaf hash`);
    const path = decodeAll(entry.proof);
    if (!path || !verifyInclusion(hasher, seq - 1, checkpoint.size, leaf, path, root))
      proofInvalid(`entry ${seq} is not included in the signed checkpoint of ${checkpoint.size} entries`);
    let record: unknown;
    try {
      record = parseStrictJson(entry.record);
    } catch (error) {
      proofInvalid(`entry ${seq}: the record is not strict JSON (${error instanceof Error ? error.message : String(error)})`);
    }
    const r = record as Record<string, unknown>;
    if (typeof record !== 'object' || record === null || Array.isArray(record) || r.seq !== seq)
      proofInvalid(`entry ${seq}: the record does not carry its own number`);
    if (r.requestId !== proof.requestId) proofInvalid(`entry ${seq} is not about the request ${quote(String(proof.requestId))}`);
    entries.push({ seq, record: r });
  }
  return {
    requestId: proof.requestId,
    origin,
    treeSize: checkpoint.size,
    rootHash: checkpoint.rootHash,
    checkpointTime: checkpoint.time,
    entries,
  };
}

// ---- audit exports ----

export type ExportSelection = { kind: 'all' } | { kind: 'time'; since: number; until: number } | { kind: 'request'; requestId: string };

export type ExportVerification =
  | {
      ok: true;
      origin: string;
      treeSize: number;
      entries: number;
      checkpoints: number;
      root: string;
      /** What the export claims to hold; `complete` only for a full export (a partial one cannot prove nothing was left out). */
      selection: ExportSelection;
      complete: boolean;
    }
  | { ok: false; firstBadSeq?: number; line: number; reason: string };

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

/**
 * Lines of a byte stream, without their newline, a chunk's worth at a time (one await per chunk,
 * not per line); a last line without one is kept if not empty. Lines are views into the chunk
 * they lie in; only a line that straddles chunks is copied. (Copying every chunk onto the last
 * one's tail, as before, also made each chunk a plain Uint8Array, whose indexOf scans a byte at
 * a time where a Node Buffer's is native: a quarter of a full export's verification, issue #12.)
 */
async function* lineBatches(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Uint8Array[]> {
  let rest: Uint8Array | undefined;
  for await (const chunk of chunks) {
    let start = 0;
    const batch: Uint8Array[] = [];
    if (rest) {
      const nl = chunk.indexOf(0x0a);
      if (nl < 0) {
        rest = concatBytes(rest, chunk);
        continue;
      }
      batch.push(concatBytes(rest, chunk.subarray(0, nl)));
      rest = undefined;
      start = nl + 1;
    }
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      batch.push(chunk.subarray(start, nl));
      start = nl + 1;
    }
    if (batch.length > 0) yield batch;
    // A copy: the source may reuse its chunk once the next one is asked for.
    rest = start < chunk.length ? concatBytes(chunk.subarray(start), new Uint8Array(0)) : undefined;
  }
  if (rest && rest.length > 0) yield [rest];
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

const BASE64_CODES = Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', (c) => c.charCodeAt(0));

/**
 * Whether `text` is toBase64(bytes) (standard alphabet, padded), compared a character at a time:
 * an entry's leaf hash is checked against its line without building a string per entry.
 */
function isBase64Of(bytes: Uint8Array, text: string): boolean {
  if (text.length !== 4 * Math.ceil(bytes.length / 3)) return false;
  let at = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const left = bytes.length - i;
    const n = (bytes[i]! << 16) | ((left > 1 ? bytes[i + 1]! : 0) << 8) | (left > 2 ? bytes[i + 2]! : 0);
    if (text.charCodeAt(at++) !== BASE64_CODES[(n >> 18) & 63] || text.charCodeAt(at++) !== BASE64_CODES[(n >> 12) & 63]) return false;
    if (text.charCodeAt(at++) !== (left > 1 ? BASE64_CODES[(n >> 6) & 63] : 0x3d)) return false;
    if (text.charCodeAt(at++) !== (left > 2 ? BASE64_CODES[n & 63] : 0x3d)) return false;
  }
  return true;
}

/** An entry line's prefix is matched within its first ENTRY_PREFIX_LIMIT bytes. */
const ENTRY_PREFIX_LIMIT = 4096;
const RECORD_MEMBER = Array.from('"record":', (c) => c.charCodeAt(0));

/**
 * The first ENTRY_PREFIX_LIMIT bytes of a line, cut just after its first `"record":` (or all of
 * them when there is none): ENTRY_LINE ends with that member name and nothing it matches before
 * it can hold a colon, so it matches this prefix exactly when it matches the whole line's first
 * ENTRY_PREFIX_LIMIT bytes, and the record after it is never turned into text (issue #12: making
 * text of each ~1 KB record took most of a full export's verification time). A prefix it matches
 * is ASCII, so it is read as UTF-8 (natively); a byte above 0x7f fails the match either way, and
 * the match's length is the prefix's length in bytes.
 */
function entryPrefix(bytes: Uint8Array): Uint8Array {
  const limit = Math.min(bytes.length, ENTRY_PREFIX_LIMIT);
  for (let at = bytes.indexOf(0x22); at >= 0 && at + RECORD_MEMBER.length <= limit; at = bytes.indexOf(0x22, at + 1)) {
    let i = 1;
    while (i < RECORD_MEMBER.length && bytes[at + i] === RECORD_MEMBER[i]) i++;
    if (i === RECORD_MEMBER.length) return bytes.subarray(0, at + i);
  }
  return bytes.subarray(0, limit);
}

const lenientUtf8 = new TextDecoder('utf-8');

const b64list = (value: unknown): Uint8Array[] | undefined =>
  Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.map((v) => fromBase64(v)) : undefined;

/**
 * Verify an export offline with the log's public key(s): every checkpoint's signature, the
 * consistency between checkpoints, and every entry (recomputed into the whole tree for a full
 * export; by its inclusion proof for a partial one). Names the first bad entry it can pin down.
 * `source` is the export's bytes in chunks (a file stream, a fetch body, one Uint8Array in a list).
 */
export async function verifyAuditExport(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  keys: readonly NoteVerificationKey[],
  options: { sha256?: Sha256; hasher?: MerkleHasher } = {},
): Promise<ExportVerification> {
  const hasher = options.hasher ?? portableMerkleHasher(options.sha256);
  let lineNo = 0;
  let header: { origin: string; treeSize: number; full: boolean; selection: ExportSelection } | undefined;
  const order: number[] = [];
  const consistent = new Set<string>();
  const checkpoints = new Map<number, Checkpoint>();
  let lastCheckpoint: Checkpoint | undefined;
  const acc = new MerkleAccumulator(hasher);
  let entries = 0;
  let lastSeq = 0;
  /** The last checkpoint size the recomputed tree matched (full exports). */
  let lastGood = 0;
  const fail = (reason: string, firstBadSeq?: number): ExportVerification =>
    firstBadSeq === undefined ? { ok: false, line: lineNo, reason } : { ok: false, firstBadSeq, line: lineNo, reason };
  try {
    for await (const batch of lineBatches(source))
      for (const bytes of batch) {
        lineNo++;
        if (bytes.length === 0) continue;
        // Entry lines are matched and hashed as bytes: the record is hashed exactly as stored.
        const entryLine = bytes[0] === 0x7b && bytes[2] === 0x74 ? ENTRY_LINE.exec(lenientUtf8.decode(entryPrefix(bytes))) : null;
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
          // The byte before the record (the colon of `"record":`) is where the leaf's prefix goes.
          const leaf = hasher.leafInPlace(bytes, entryLine[0].length - 1, bytes.length - 1);
          const recordBytes = bytes.subarray(entryLine[0].length, bytes.length - 1);
          if (!isBase64Of(leaf, entryLine[2]!)) return fail(`entry ${seq}: the record does not match its leaf hash`, seq);
          entries++;
          if (header.full) {
            acc.pushLeafHash(leaf);
            const cp = checkpoints.get(acc.size);
            if (cp) {
              if (toBase64(acc.root()) !== cp.rootHash) {
                return fail(
                  `the entries after ${lastGood} up to ${acc.size} do not match the signed checkpoint of ${acc.size} entries: one of entries ${lastGood + 1}..${acc.size} was changed`,
                  lastGood + 1,
                );
              }
              lastGood = acc.size;
            }
          } else {
            // A partial export must hold only what its selection names. Strictly parsed: the
            // selection is read from exactly the bytes that were hashed (no duplicate member or
            // __proto__ can make the reader see other values than were logged).
            let record: { at?: unknown; requestId?: unknown };
            try {
              record = parseStrictJson(lenientUtf8.decode(recordBytes)) as { at?: unknown; requestId?: unknown };
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
              proof = entryLine[3] === undefined ? undefined : b64list(parseStrictJson(entryLine[3]));
            } catch {
              proof = undefined;
            }
            if (!proof || !verifyInclusion(hasher, seq - 1, top.size, leaf, proof, fromBase64(top.rootHash))) {
              return fail(`entry ${seq} is not included in the signed checkpoint of ${top.size} entries`, seq);
            }
          }
          continue;
        }
        // Header, checkpoint and proof lines (few: entries are matched above) are parsed strictly,
        // so a duplicate or __proto__ member cannot show the verifier another value than the file holds.
        let value: Record<string, unknown>;
        try {
          const parsed: unknown = parseStrictJson(lenientUtf8.decode(bytes));
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
            cp = await verifyCheckpoint(value.note, header.origin, keys);
          } catch (error) {
            return fail(`checkpoint: ${error instanceof Error ? error.message : String(error)}`);
          }
          if (lastCheckpoint && cp.size <= lastCheckpoint.size)
            return fail(`checkpoints must grow: ${cp.size} after ${lastCheckpoint.size}`);
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
          if (!verifyConsistency(hasher, a.size, b.size, proof, fromBase64(a.rootHash), fromBase64(b.rootHash))) {
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
