/**
 * Proofs out of the audit log for the people and programs who need them: an agent host asks
 * for the inclusion proof of its own request's entries (WebSocket `audit.proof`), the local API
 * and CLI for any inclusion or consistency proof. Every proof is against a signed checkpoint;
 * if none covers the entries yet, one is signed now.
 */
import type { Db } from '../store/database.js';
import { RequestRepository } from '../store/request-repository.js';
import type { AuditLog } from './audit-log.js';
import type { Checkpointer } from './checkpoints.js';
import { CountersignError } from '../../../shared/errors.js';
import { toBase64 } from '../../../shared/checkpoint-note.js';
import type { AuditProofResult } from '../../../shared/protocol.js';

/** Entry `seq`'s inclusion proof in the tree of `treeSize` entries, as the API and CLI print it. */
export function inclusionView(log: AuditLog, seq: number, treeSize: number, checkpoint: string | null): Record<string, unknown> {
  if (!Number.isSafeInteger(seq) || seq < 1 || seq > log.size())
    throw new CountersignError('audit_proof_unavailable', `the audit log has no entry ${seq}`);
  const record = log.entries(seq, 1)[0]!;
  return {
    seq,
    record: record.record,
    treeSize,
    leafHash: toBase64(log.leafHash(seq - 1)),
    proof: log.inclusionProof(seq - 1, treeSize).map(toBase64),
    root: toBase64(log.root(treeSize)),
    checkpoint,
  };
}

/** The consistency proof between two tree sizes, with both roots. */
export function consistencyView(log: AuditLog, from: number, to: number): Record<string, unknown> {
  return {
    from,
    to,
    proof: log.consistencyProof(from, to).map(toBase64),
    fromRoot: toBase64(log.root(from)),
    toRoot: toBase64(log.root(to)),
  };
}

export class AuditProofs {
  private readonly requests: RequestRepository;

  constructor(
    private readonly db: Db,
    private readonly log: AuditLog,
    private readonly checkpoints: Checkpointer,
  ) {
    this.requests = new RequestRepository(db);
  }

  /** The entries about one of `agentId`'s requests, each with its inclusion proof. */
  async forRequest(agentId: string, requestId: string): Promise<AuditProofResult> {
    // Another agent's request looks exactly like one that does not exist.
    if (this.requests.agentOf(requestId) !== agentId)
      throw new CountersignError('audit_proof_unavailable', 'no audit entries exist for that request of this agent');
    const entries = this.log.entriesFor(requestId);
    if (entries.length === 0)
      throw new CountersignError('audit_proof_unavailable', 'no audit entries exist for that request of this agent');
    const checkpoint = await this.checkpoints.covering(entries[entries.length - 1]!.seq);
    return {
      requestId,
      treeSize: checkpoint.size,
      checkpoint: checkpoint.note,
      entries: entries.map((e) => ({
        seq: e.seq,
        record: e.record,
        leafHash: toBase64(this.log.leafHash(e.seq - 1)),
        proof: this.log.inclusionProof(e.seq - 1, checkpoint.size).map(toBase64),
      })),
    };
  }

  async inclusion(seq: number, size?: number): Promise<Record<string, unknown>> {
    if (size !== undefined) return inclusionView(this.log, seq, size, null);
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > this.log.size())
      throw new CountersignError('audit_proof_unavailable', `the audit log has no entry ${seq}`);
    const checkpoint = await this.checkpoints.covering(seq);
    return inclusionView(this.log, seq, checkpoint.size, checkpoint.note);
  }

  consistency(from: number, to: number): Record<string, unknown> {
    return consistencyView(this.log, from, to);
  }

  latest(): Record<string, unknown> {
    const cp = this.checkpoints.latest();
    if (!cp) throw new CountersignError('audit_proof_unavailable', 'the audit log has no signed checkpoint yet');
    return { treeSize: cp.size, rootHash: cp.rootHash, at: cp.at, note: cp.note };
  }
}
