/**
 * Append-only, hash-chained audit table. Each entry's hash is SHA-256 over the previous hash
 * and the entry's canonical (JCS) record, so an edited, removed or reordered row breaks every
 * later hash. Appends run inside the caller's transaction: if the audit row cannot be written,
 * the decision it belongs to is not committed either. (The audit issue replaces this chain
 * with an RFC 9162 Merkle log; the append API stays.)
 */
import { createHash } from 'node:crypto';
import type { Db } from '../store/database.js';
import { canonicalize, type JsonObject } from '../../../shared/canonical-json.js';

export const GENESIS_HASH = '0'.repeat(64);

export type AuditKind =
  | 'call.rejected'
  | 'decision.allow'
  | 'decision.deny'
  | 'decision.pending'
  | 'decision.expired'
  | 'token.issued'
  | 'agent.enrolled'
  | 'agent.revoked'
  | 'agent.key_rotated'
  | 'approver.added'
  | 'approver.registration_code_issued'
  | 'approver.disabled'
  | 'approver.groups_changed'
  | 'approver.credential_registered'
  | 'approver.credential_removed'
  | 'approver.credential_suspect'
  | 'admin.action'
  | 'approval.given'
  | 'approval.denied'
  | 'decision.approved'
  | 'signing_key.activated'
  | 'signing_key.rotated'
  | 'signing_key.retired'
  | 'policy.loaded'
  | 'policy.reload_failed'
  | 'server.started'
  | 'server.stopped';

export interface AuditEntry {
  seq: number;
  at: number;
  kind: AuditKind;
  record: string;
  prevHash: string;
  hash: string;
}

export function chainHash(prevHash: string, record: string): string {
  return createHash('sha256').update(Buffer.from(prevHash, 'hex')).update(record, 'utf8').digest('hex');
}

export class AuditChain {
  private readonly insert;
  private readonly last;

  constructor(private readonly db: Db) {
    this.insert = db.prepare('INSERT INTO audit_log (seq, at, kind, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)');
    this.last = db.prepare<[], { seq: number; hash: string }>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
  }

  /**
   * Append one event. Call inside a transaction together with the state change it records;
   * the head is read inside that transaction, so concurrent writers cannot fork the chain.
   */
  append(kind: AuditKind, at: number, event: JsonObject): AuditEntry {
    const head = this.last.get();
    const seq = (head?.seq ?? 0) + 1;
    const prevHash = head?.hash ?? GENESIS_HASH;
    const record = canonicalize({ ...event, kind, at, seq });
    const hash = chainHash(prevHash, record);
    this.insert.run(seq, at, kind, record, prevHash, hash);
    return { seq, at, kind, record, prevHash, hash };
  }

  /** Recompute the chain; returns the first broken sequence number, or undefined if intact. */
  verify(): { ok: true; entries: number; head: string } | { ok: false; badSeq: number; reason: string } {
    let prev = GENESIS_HASH;
    let expectedSeq = 1;
    let count = 0;
    for (const row of this.db.prepare<[], { seq: number; record: string; prev_hash: string; hash: string }>('SELECT seq, record, prev_hash, hash FROM audit_log ORDER BY seq').iterate()) {
      if (row.seq !== expectedSeq) return { ok: false, badSeq: expectedSeq, reason: 'entry missing' };
      if (row.prev_hash !== prev) return { ok: false, badSeq: row.seq, reason: 'previous hash does not match' };
      if (chainHash(prev, row.record) !== row.hash) return { ok: false, badSeq: row.seq, reason: 'entry hash does not match its record' };
      prev = row.hash;
      expectedSeq++;
      count++;
    }
    return { ok: true, entries: count, head: prev };
  }

  entries(fromSeq = 1, limit = 1000): AuditEntry[] {
    return this.db
      .prepare<[number, number], { seq: number; at: number; kind: AuditKind; record: string; prev_hash: string; hash: string }>('SELECT * FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?')
      .all(fromSeq, limit)
      .map((r) => ({ seq: r.seq, at: r.at, kind: r.kind, record: r.record, prevHash: r.prev_hash, hash: r.hash }));
  }
}
