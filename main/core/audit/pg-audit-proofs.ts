/**
 * Audit proofs out of the team audit log (ADR 0012), for any hub: a request's entries with their
 * inclusion proofs against the latest team checkpoint, in the shape the embedded log gives them
 * (audit-proofs.ts `forRequest`, shared/protocol.ts `AuditProofResult`), so the desk's History
 * and an agent's `audit.proof` on a hub are checked by the same verifier (shared/audit-verify.ts).
 * The proof is built by the shared RFC 9162 code (shared/merkle.ts `inclusionPath` over
 * `rangeHashOfSubtrees`) from the subtrees the leader stores (audit_nodes, PG migration 9) and the
 * leaves in audit_log: every subtree the proofs need is named first, then read in one statement,
 * so a proof costs O(log n) rows whatever the log's size. Only the leader signs checkpoints; a
 * request whose entries are not all under the latest one yet has no proof to show
 * (`audit_proof_unavailable`) until the leader's next checkpoint (`team.checkpointEveryMs`).
 */
import type pg from 'pg';
import { toBase64 } from '../../../shared/checkpoint-note.js';
import { CountersignError } from '../../../shared/errors.js';
import { HASH_BYTES, inclusionPath, rangeHashOfSubtrees } from '../../../shared/merkle.js';
import type { NoteVerificationKey } from '../../../shared/audit-verify.js';
import type { AuditProofResult } from '../../../shared/protocol.js';
import { merkleHasher } from './audit-log.js';
import { storeError } from '../store/pg/pg-errors.js';
import { parseStoredJson } from '../store/stored-json.js';

/** Most entries of one request a proof carries (the desk's schema allows 1,000). */
const MAX_ENTRIES = 1_000;

const unknownRequest = () => new CountersignError('audit_proof_unavailable', 'no audit entries exist for that request of this agent');

export class PgAuditProofs {
  constructor(private readonly pool: pg.Pool) {}

  private async query<R extends pg.QueryResultRow>(doing: string, sql: string, values: unknown[] = []): Promise<R[]> {
    try {
      return (await this.pool.query<R>(sql, values)).rows;
    } catch (error) {
      throw storeError(error, doing);
    }
  }

  /** The team log's entries about one of `agentId`'s requests, each with its inclusion proof against the latest checkpoint. */
  async forRequest(agentId: string, requestId: string): Promise<AuditProofResult> {
    // One statement, one snapshot: the request's agent, the latest checkpoint, and whether any of
    // the request's entries still waits for the leader (submitted, or sequenced past the checkpoint).
    const [head] = await this.query<{ agent_id: string | null; tree_size: string | null; note: string | null; waiting: boolean }>(
      'reading the audit proof',
      `WITH cp AS (SELECT tree_size, note FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1)
       SELECT (SELECT agent_id FROM requests WHERE id = $1) AS agent_id, cp.tree_size, cp.note,
         EXISTS (SELECT 1 FROM audit_submissions WHERE request_id = $1)
           OR EXISTS (SELECT 1 FROM audit_log WHERE request_id = $1 AND seq > coalesce(cp.tree_size, 0)) AS waiting
       FROM (SELECT 1) AS one LEFT JOIN cp ON true`,
      [requestId],
    );
    // Another agent's request looks exactly like one that does not exist.
    if (head === undefined || head.agent_id !== agentId) throw unknownRequest();
    if (head.waiting || head.tree_size === null || head.note === null)
      throw new CountersignError(
        'audit_proof_unavailable',
        'no signed team checkpoint covers that request yet: the audit leader signs the next one shortly',
      );
    const treeSize = Number(head.tree_size);
    const entries = await this.query<{ seq: string; record: string; leaf: Buffer }>(
      'reading the audit proof',
      'SELECT seq, record, leaf FROM audit_log WHERE request_id = $1 AND seq <= $2 ORDER BY seq LIMIT $3',
      [requestId, treeSize, MAX_ENTRIES],
    );
    if (entries.length === 0) throw unknownRequest();

    // Name every subtree the proofs need (a first pass over the shared proof code), read them at once, then build.
    const wanted = new Map<string, { level: number; idx: number }>();
    const placeholder = new Uint8Array(HASH_BYTES);
    const naming = (start: number, end: number) =>
      rangeHashOfSubtrees(merkleHasher, start, end, (level, idx) => {
        wanted.set(`${level}/${idx}`, { level, idx });
        return placeholder;
      });
    for (const e of entries) inclusionPath(Number(e.seq) - 1, treeSize, naming);
    const subtrees = await this.subtrees([...wanted.values()]);
    const reading = (start: number, end: number) =>
      rangeHashOfSubtrees(merkleHasher, start, end, (level, idx) => {
        const hash = subtrees.get(`${level}/${idx}`);
        if (hash === undefined)
          throw new CountersignError('audit_proof_unavailable', `the team audit tree is missing the hash of subtree ${level}/${idx}`);
        return hash;
      });
    return {
      requestId,
      treeSize,
      checkpoint: head.note,
      entries: entries.map((e) => ({
        seq: Number(e.seq),
        record: e.record,
        leafHash: e.leaf.toString('base64'),
        proof: inclusionPath(Number(e.seq) - 1, treeSize, reading).map(toBase64),
      })),
    };
  }

  /** The named subtrees: leaves from audit_log, the rest from audit_nodes; by `level/idx`. */
  private async subtrees(wanted: ReadonlyArray<{ level: number; idx: number }>): Promise<Map<string, Uint8Array>> {
    const leaves = wanted.filter((w) => w.level === 0).map((w) => w.idx + 1);
    const nodes = wanted.filter((w) => w.level > 0);
    const rows = await this.query<{ level: number; idx: string; hash: Buffer }>(
      'reading the audit proof',
      `SELECT 0 AS level, seq - 1 AS idx, leaf AS hash FROM audit_log WHERE seq = ANY($1::bigint[])
       UNION ALL
       SELECT n.level, n.idx, n.hash FROM audit_nodes n JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx)
         ON n.level = w.level AND n.idx = w.idx`,
      [leaves, nodes.map((n) => n.level), nodes.map((n) => n.idx)],
    );
    return new Map(rows.map((r) => [`${r.level}/${Number(r.idx)}`, new Uint8Array(r.hash)]));
  }

  /** Every key that signed a team checkpoint (public JWKs), to check the team's checkpoints with. */
  async noteKeys(): Promise<NoteVerificationKey[]> {
    const rows = await this.query<{ public_jwk: string }>(
      'reading the audit signing keys',
      'SELECT public_jwk FROM audit_checkpoint_keys ORDER BY first_at, kid LIMIT 1000',
    );
    return rows.map((row) => {
      const jwk = parseStoredJson(row.public_jwk) as Record<string, unknown>;
      const key: NoteVerificationKey = { kty: String(jwk.kty) };
      for (const member of ['crv', 'x', 'y'] as const) if (typeof jwk[member] === 'string') key[member] = jwk[member];
      return key;
    });
  }
}
