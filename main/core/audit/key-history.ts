/**
 * The log's signing-key history, and checking a checkpoint against it. Every key ever pinned for
 * this data directory (any domain, any status) may have signed a checkpoint, but only within the
 * window it was in force: after its pinning (the `signing_key.activated` / `signing_key.rotated`
 * entry must be one of the entries that checkpoint covers, proven by an inclusion proof against
 * the checkpoint's signed root) and no later than the end of its overlap window. So moving from the software key to a PKCS#11 key, or rotating, never makes the log
 * unverifiable, while a key pinned by editing the database (no entry in the signed log) is
 * refused. docs/audit.md, "Signing keys over time".
 */
import type { AuditLog } from './audit-log.js';
import { merkleHasher } from './audit-log.js';
import type { Db } from '../store/database.js';
import type { PublicJwk } from '../custody/signer.js';
import { verifyNoteSignature } from './note-keys.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { fromBase64, toBase64, parseCheckpointText, parseSignedNote, type Checkpoint } from '../../../shared/checkpoint-note.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { verifyInclusion } from '../../../shared/merkle.js';

/** A signing key's window of force, as the registry (keys/signing-keys.ts `historicKey`) reports it. */
export interface HistoricKey {
  kid: string;
  publicJwk: PublicJwk;
  /** When it was pinned (activated). */
  activeFrom: number;
  /** The end of its overlap window; undefined while it is a domain's active key. */
  activeUntil?: number;
}

/** Where the log recorded each key's pinning: kid -> the first entry (seq) that pinned it. */
export function pinningEntries(db: Db): Map<string, { seq: number; record: string }> {
  const rows = db
    .prepare<[], { seq: number; record: string }>(
      "SELECT seq, record FROM audit_log WHERE kind IN ('signing_key.activated', 'signing_key.rotated') ORDER BY seq",
    )
    .all();
  const bySeq = new Map<string, { seq: number; record: string }>();
  for (const row of rows) {
    let kid: unknown;
    try {
      kid = (parseStrictJson(row.record) as { kid?: unknown }).kid;
    } catch {
      continue; // a record that is not JSON pins nothing (audit verify reports it)
    }
    if (typeof kid === 'string' && !bySeq.has(kid)) bySeq.set(kid, row);
  }
  return bySeq;
}

export interface HistoryCheck {
  checkpoint: Checkpoint;
  /** The key that signed it. */
  kid: string;
}

/**
 * Parse a signed checkpoint of `origin` and check it against the key history: signed by a key of
 * `history`, at a time inside that key's window, and covering the log entry that pinned the key
 * (when the checkpoint covers more entries than the log holds, the pinning cannot be proven here
 * and the caller's rollback check refuses it anyway). Throws audit_checkpoint_invalid.
 */
export function verifyCheckpointWithHistory(
  note: string,
  origin: string,
  history: readonly HistoricKey[],
  log: AuditLog,
  pinnings: Map<string, { seq: number; record: string }>,
): HistoryCheck {
  const parsed = parseSignedNote(note);
  const checkpoint = parseCheckpointText(parsed.text);
  if (checkpoint.origin !== origin)
    throw new CountersignError(
      'audit_checkpoint_invalid',
      `the checkpoint is for the log ${quote(checkpoint.origin)}, not ${quote(origin)}`,
    );
  const signers = history.filter((k) => parsed.signatures.some((sig) => verifyNoteSignature(k.publicJwk, origin, parsed.text, sig)));
  if (signers.length === 0)
    throw new CountersignError('audit_checkpoint_invalid', 'the checkpoint is not signed by a pinned signing key of this log');
  let problem: CountersignError | undefined;
  for (const key of signers) {
    // A tree that no longer matches the checkpoint is a fork, which the caller names as such.
    if (checkpoint.size <= log.size() && treeMatches(log, checkpoint) && !pinnedWithin(log, checkpoint, pinnings.get(key.kid))) {
      problem ??= new CountersignError(
        'audit_checkpoint_invalid',
        `the checkpoint is not signed by a pinned signing key of this log: the pinning of ${quote(key.kid)} is not among the ${checkpoint.size} entries it covers`,
      );
      continue;
    }
    // The window's start needs no clock: the pinning entry is inside the signed tree, so the
    // checkpoint came after it (a clock set back after a rotation cannot brick start). Its end
    // is a time: after its overlap window a key signs nothing (SigningKeyRegistry.maySign).
    const time = checkpoint.time;
    if (key.activeUntil !== undefined && (time === undefined || time > key.activeUntil)) {
      problem ??= new CountersignError(
        'audit_checkpoint_invalid',
        `the checkpoint${time === undefined ? ' has no time and' : ` of ${new Date(time).toISOString()}`} is signed by the key ${quote(key.kid)}, which was in force only from ${new Date(key.activeFrom).toISOString()} to ${new Date(key.activeUntil).toISOString()}`,
      );
      continue;
    }
    return { checkpoint, kid: key.kid };
  }
  throw problem ?? new CountersignError('audit_checkpoint_invalid', 'the checkpoint is not signed by a pinned signing key of this log');
}

function treeMatches(log: AuditLog, checkpoint: Checkpoint): boolean {
  return toBase64(log.root(checkpoint.size)) === checkpoint.rootHash;
}

/** Whether the entry that pinned the key is inside the checkpoint's tree, by its signed root. */
function pinnedWithin(log: AuditLog, checkpoint: Checkpoint, pinning: { seq: number; record: string } | undefined): boolean {
  if (pinning === undefined || pinning.seq > checkpoint.size) return false;
  try {
    const leaf = merkleHasher.leaf(Buffer.from(pinning.record, 'utf8'));
    return verifyInclusion(
      merkleHasher,
      pinning.seq - 1,
      checkpoint.size,
      leaf,
      log.inclusionProof(pinning.seq - 1, checkpoint.size),
      fromBase64(checkpoint.rootHash),
    );
  } catch {
    return false;
  }
}
