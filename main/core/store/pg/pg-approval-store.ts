/**
 * The approval store of a team hub (store/approval-store-seam.ts) on the shared PostgreSQL
 * database, so a desk on any hub sees and decides every held call, wherever its agent waits.
 * Same semantics as the SQLite store:
 *  - a commit is one unit of the decision store's group commit (its own SAVEPOINT, released to
 *    the caller only after the COMMIT); it locks the group's primary request FOR UPDATE first,
 *    so commits on one group are serialised across hubs, and the service's `decide` re-checks
 *    on the rows read after the lock: two approvers completing a quorum at once on two hubs make
 *    one token (the second finds the request approved: request_not_pending);
 *  - a request finishes with UPDATE .. WHERE state = 'pending' (a miss fails the whole commit),
 *    the forward-only trigger and `tokens.request_id UNIQUE` backing it;
 *  - audit events are submitted in the same transaction; pg_notify of each finished request
 *    is delivered at COMMIT to every hub, whose gateway pushes the result to the agent;
 *  - sealing a group takes the agent's held-calls lock, so no identical call joins a group on
 *    another hub after its followers were read for a challenge.
 * The agent's display name and owner come from this hub's directory (`agentOf`), as the SQLite
 * reader joins them from its agents table.
 */
import type pg from 'pg';
import { CountersignError, quote } from '../../../../shared/errors.js';
import { assertAuditEvent } from '../../../../shared/audit-events.js';
import { decodeRequest, encodeRequirement, type RequestRecord, type RequestRow, type StoredRequestColumns } from '../request-repository.js';
import type { ApprovalCommit, ApprovalRow, ApprovalSnapshot, ApprovalStore } from '../approval-store-seam.js';
import type { AuditSubmission } from '../store-seam.js';
import { HELD_CALLS_LOCK, OUTCOME_CHANNEL, type PgDecisionStore } from './pg-decision-store.js';
import { isDeadlockVictim, storeError } from './pg-errors.js';
import { PgDirectory } from './pg-directory.js';

/** What the request views show of the requesting agent (null when this hub does not know it). */
export interface AgentColumns {
  displayName: string | null;
  owner: string | null;
  ownerState: string | null;
}

export interface PgApprovalStoreOptions {
  /** The hub's decision store: its pool, group commit and audit submissions. */
  store: PgDecisionStore;
  agentOf: (agentId: string) => AgentColumns | undefined;
}

export const COLUMNS = `id, agent_id, kid, tool, call_json, call_sha256, state, policy_hash, determining_policies, reasons, obligation, risk,
  created_at, expires_at, decided_at, conflicted_approvers, group_id, sealed_at`;

/** A `requests` row from PostgreSQL, which returns the bigint time columns as strings. */
export type PgRequestRow = StoredRequestColumns<string>;

interface PgApprovalRow {
  request_id: string;
  approver_id: string;
  credential_id: string;
  verdict: 'approve' | 'deny';
  reason: string | null;
  assertion: string;
  at: string;
}

const big = (value: string | null): number | null => (value === null ? null : Number(value));
const byCodeUnits = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** The SQLite store's order of a request's approvals: (at, approver_id). */
const approvalOrder = (a: ApprovalRow, b: ApprovalRow): number => a.at - b.at || byCodeUnits(a.approver_id, b.approver_id);

function toApproval(row: PgApprovalRow): ApprovalRow {
  return { ...row, at: Number(row.at) };
}

/** A PostgreSQL `requests` row (COLUMNS) as the one request codec reads it, with the agent's columns from this hub's directory. */
export function decodePgRequest(row: PgRequestRow, agentOf: (agentId: string) => AgentColumns | undefined): RequestRecord {
  const agent = agentOf(row.agent_id);
  const stored: RequestRow = {
    ...row,
    created_at: Number(row.created_at),
    expires_at: big(row.expires_at),
    decided_at: big(row.decided_at),
    sealed_at: big(row.sealed_at),
    agent_display_name: agent?.displayName ?? null,
    agent_owner: agent?.owner ?? null,
    agent_owner_state: agent?.ownerState ?? null,
  };
  return decodeRequest(stored);
}

export class PgApprovalStore implements ApprovalStore {
  readonly kind = 'postgres' as const;
  private readonly store: PgDecisionStore;

  constructor(private readonly options: PgApprovalStoreOptions) {
    this.store = options.store;
  }

  private decode(row: PgRequestRow): RequestRecord {
    return decodePgRequest(row, this.options.agentOf);
  }

  private async query<R extends pg.QueryResultRow>(doing: string, sql: string, params: unknown[]): Promise<R[]> {
    try {
      return (await this.store.pool.query<R>(sql, params)).rows;
    } catch (error) {
      throw storeError(error, doing);
    }
  }

  // ---- reads ----

  async request(id: string): Promise<RequestRecord | undefined> {
    const [row] = await this.query<PgRequestRow>('reading a request', `SELECT ${COLUMNS} FROM requests WHERE id = $1`, [id]);
    return row && this.decode(row);
  }

  async followers(primaryId: string): Promise<RequestRecord[]> {
    return (await this.followersOfMany([primaryId])).get(primaryId) ?? [];
  }

  async followersOfMany(primaryIds: readonly string[]): Promise<Map<string, RequestRecord[]>> {
    const out = new Map<string, RequestRecord[]>(primaryIds.map((id) => [id, []]));
    if (primaryIds.length === 0) return out;
    const rows = await this.query<PgRequestRow>('reading a group', `SELECT ${COLUMNS} FROM requests WHERE group_id = ANY($1)`, [
      [...primaryIds],
    ]);
    for (const row of rows.map((r) => this.decode(r)).sort((a, b) => byCodeUnits(a.id, b.id)))
      if (row.groupId !== null) out.get(row.groupId)?.push(row);
    return out;
  }

  async approvals(requestId: string): Promise<ApprovalRow[]> {
    return (await this.approvalsOfMany([requestId])).get(requestId) ?? [];
  }

  async approvalsOfMany(requestIds: readonly string[]): Promise<Map<string, ApprovalRow[]>> {
    const out = new Map<string, ApprovalRow[]>(requestIds.map((id) => [id, []]));
    if (requestIds.length === 0) return out;
    const rows = await this.query<PgApprovalRow>(
      'reading approvals',
      'SELECT request_id, approver_id, credential_id, verdict, reason, assertion, at FROM approvals WHERE request_id = ANY($1)',
      [[...requestIds]],
    );
    for (const row of rows.map(toApproval).sort(approvalOrder)) out.get(row.request_id)?.push(row);
    return out;
  }

  async pendingPage(order: 'age' | 'expiry', now: number, limit: number, offset: number): Promise<RequestRecord[]> {
    const by = order === 'age' ? 'created_at' : 'expires_at';
    const rows = await this.query<PgRequestRow>(
      'reading the queue',
      `SELECT ${COLUMNS} FROM requests WHERE state = 'pending' AND group_id IS NULL AND expires_at > $1
       ORDER BY ${by}, id COLLATE "C" LIMIT $2 OFFSET $3`,
      [now, limit, offset],
    );
    return rows.map((r) => this.decode(r));
  }

  async countPending(now: number): Promise<number> {
    const [row] = await this.query<{ n: string }>(
      'counting the queue',
      "SELECT count(*) AS n FROM requests WHERE state = 'pending' AND group_id IS NULL AND expires_at > $1",
      [now],
    );
    return Number(row?.n ?? 0);
  }

  async history(limit: number): Promise<RequestRecord[]> {
    const rows = await this.query<PgRequestRow>(
      'reading the approval history',
      `SELECT ${COLUMNS} FROM requests WHERE obligation IS NOT NULL AND state <> 'pending' AND group_id IS NULL
       ORDER BY decided_at DESC, id COLLATE "C" LIMIT $1`,
      [limit],
    );
    return rows.map((r) => this.decode(r));
  }

  // ---- writes (units of the decision store's group commit) ----

  seal(primaryId: string, now: number): Promise<string[]> {
    return this.store.run(async (client) => {
      const { rows } = await client.query<{ agent_id: string }>('SELECT agent_id FROM requests WHERE id = $1', [primaryId]);
      const agentId = rows[0]?.agent_id;
      if (agentId === undefined) throw new CountersignError('request_unknown', `no request ${quote(primaryId)} exists`);
      // The lock recordDecision writes an agent's held calls under: a follower joining on another
      // hub either committed before (and is read below) or sees the seal (and opens its own group).
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [HELD_CALLS_LOCK, agentId]);
      await client.query('UPDATE requests SET sealed_at = $1 WHERE id = $2 AND sealed_at IS NULL', [now, primaryId]);
      const followers = await client.query<{ id: string }>("SELECT id FROM requests WHERE group_id = $1 AND state = 'pending'", [
        primaryId,
      ]);
      return followers.rows.map((r) => r.id).sort(byCodeUnits);
    });
  }

  record(audit: AuditSubmission, local: () => void): Promise<void> {
    assertAuditEvent(audit.kind, audit.event);
    return this.store.run(async (client) => {
      local();
      await this.store.submitAudit(client, audit);
    });
  }

  /**
   * A deadlock victim (40P01) runs again, up to team.database.deadlockAttempts in all, then
   * store_failed. The cycle is real: this commit is one unit of a group transaction that holds
   * other units' locks while another hub's directory write holds a row this commit then wants
   * (docs/team-mode.md "Deadlocks"). The unit's savepoint rolled back, so nothing of it was
   * written; but `decide` has done its local work (challenge spent, key counter, risk learning),
   * so it is not asked again: the retry locks the same rows, and writes the same decision (the
   * same approval row and token, once) only if they are unchanged; if they changed it refuses.
   */
  async commit<T>(primaryId: string, decide: (snapshot: ApprovalSnapshot) => { commit: ApprovalCommit; result: T }): Promise<T> {
    let decided: Decided<T> | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.store.run(async (client) => {
          const locked = await this.lockSnapshot(client, primaryId);
          if (decided === undefined) {
            const { commit, result } = decide(locked.snapshot);
            // Taken right after the hook that queued them, kept for a retry of this same decision.
            decided = { rows: locked.rows, commit, result, riskEvents: this.store.riskLog?.take() ?? [] };
          } else if (decided.rows !== locked.rows)
            throw new CountersignError(
              'store_failed',
              `request ${quote(primaryId)} changed while its approval was tried again after a deadlock, so nothing was recorded`,
            );
          await this.write(client, primaryId, decided);
          return decided.result;
        });
      } catch (error) {
        if (!isDeadlockVictim(error)) throw error;
        if (attempt >= this.store.config.deadlockAttempts)
          throw new CountersignError(
            'store_failed',
            `the approval was ended as a deadlock victim ${attempt} times, so nothing was recorded`,
            { cause: error },
          );
      }
    }
  }

  /** The group's rows, the primary locked first (every commit on this group, on any hub, waits here for the one before it). */
  private async lockSnapshot(client: pg.PoolClient, primaryId: string): Promise<{ snapshot: ApprovalSnapshot; rows: string }> {
    const primaryRows = await client.query<PgRequestRow>(`SELECT ${COLUMNS} FROM requests WHERE id = $1 FOR UPDATE`, [primaryId]);
    const primaryRow = primaryRows.rows[0];
    if (primaryRow === undefined) throw new CountersignError('request_unknown', `no request ${quote(primaryId)} exists`);
    const followerRows = await client.query<PgRequestRow>(
      `SELECT ${COLUMNS} FROM requests WHERE group_id = $1 AND state = 'pending' ORDER BY id COLLATE "C" FOR UPDATE`,
      [primaryId],
    );
    const approvalRows = await client.query<PgApprovalRow>(
      'SELECT request_id, approver_id, credential_id, verdict, reason, assertion, at FROM approvals WHERE request_id = $1 ORDER BY at, approver_id COLLATE "C"',
      [primaryId],
    );
    return {
      snapshot: {
        primary: this.decode(primaryRow),
        followers: followerRows.rows.map((r) => this.decode(r)).sort((a, b) => byCodeUnits(a.id, b.id)),
        approvals: approvalRows.rows.map(toApproval).sort(approvalOrder),
      },
      // What the decision was made on, to compare on a retry.
      rows: JSON.stringify([primaryRow, followerRows.rows, approvalRows.rows]),
    };
  }

  /** The writes of one decided commit, inside its unit. */
  private async write<T>(client: pg.PoolClient, primaryId: string, { commit, riskEvents }: Decided<T>): Promise<void> {
    if (riskEvents.length > 0) await this.store.riskLog!.write(client, riskEvents);
    for (const audit of commit.audit) assertAuditEvent(audit.kind, audit.event);
    const a = commit.approval;
    // The approver and key as the team directory has them now, and the key's counter advanced
    // past the team's: a removal on another hub holds here even before this hub's replica has it.
    if (commit.tap !== undefined)
      await PgDirectory.checkTap(client, {
        approverId: a.approver_id,
        credentialId: a.credential_id,
        counter: commit.tap.counter,
        at: a.at,
      });
    await client.query(
      'INSERT INTO approvals (request_id, approver_id, credential_id, verdict, reason, assertion, at, hub) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [a.request_id, a.approver_id, a.credential_id, a.verdict, a.reason, a.assertion, a.at, this.store.hub],
    );
    if (commit.requirement !== undefined)
      await client.query('UPDATE requests SET obligation = $1 WHERE id = $2', [encodeRequirement(commit.requirement), primaryId]);
    if (commit.conflicted !== undefined)
      await client.query('UPDATE requests SET conflicted_approvers = $1 WHERE id = $2', [JSON.stringify(commit.conflicted), primaryId]);
    for (const finish of commit.finishes) {
      const moved = await client.query(
        "UPDATE requests SET state = $1, decided_at = $2, reasons = $3, decided_by_hub = $4 WHERE id = $5 AND state = 'pending'",
        [finish.state, a.at, JSON.stringify(finish.reasons), this.store.hub, finish.requestId],
      );
      if (moved.rowCount !== 1)
        throw new CountersignError('request_not_pending', `request ${quote(finish.requestId)} is no longer pending`);
      const token = finish.token;
      if (token !== undefined) {
        await client.query('INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)', [
          token.jti,
          finish.requestId,
          token.kid,
          token.token,
          token.issuedAt,
          token.expiresAt,
        ]);
      }
      // Delivered to every hub's listener when this transaction commits: the agent's hub pushes it.
      await client.query('SELECT pg_notify($1, $2)', [OUTCOME_CHANNEL, finish.requestId]);
    }
    for (const audit of commit.audit) await this.store.submitAudit(client, audit);
  }
}

/** A commit's decision, kept for its retries: the rows it was made on, its writes, its result, its risk events. */
interface Decided<T> {
  rows: string;
  commit: ApprovalCommit;
  result: T;
  riskEvents: ReturnType<NonNullable<PgDecisionStore['riskLog']>['take']>;
}
