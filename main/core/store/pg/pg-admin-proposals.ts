/**
 * Admin quorum proposals of a team in the team database (PG migration 11, `admin_proposals`), so
 * an action one admin proposed on hub A is listed on every hub and confirmed or rejected by a
 * second admin on any hub (docs/team-mode.md "One origin, any hub"). The rules stay in
 * approvals/admin-actions.ts (distinct people, expiry, the confirmation signed over the action
 * proposed); this store only keeps the rows:
 *  - a proposal is written with its `admin.action_proposed` team audit record and the proposer's
 *    tap (the key's team counter, PgDirectory.checkTap) in one transaction;
 *  - it leaves 'pending' exactly once for the team: `close` locks the row (FOR UPDATE), hands it
 *    to the caller's check, then `UPDATE .. WHERE state = 'pending'`, with the closing records and
 *    tap in the same transaction; a second confirmation on another hub waits for the first and
 *    then finds it closed.
 * Each write is a unit of the hub's group commit (PgDecisionStore.run); losing the database fails
 * closed (store_unavailable), nothing written.
 *
 * Every hub's desks hear of a proposal: a trigger writes its push event (`adminProposal`) in the
 * transaction of each write, and every hub reads and pushes it once (pg-desk-events.ts, PG
 * migration 16), also after its listener was reconnecting.
 */
import type pg from 'pg';
import { CountersignError, quote } from '../../../../shared/errors.js';
import { assertAuditEvent } from '../../../../shared/audit-events.js';
import type { AuditSubmission } from '../store-seam.js';
import type { PgDecisionStore } from './pg-decision-store.js';
import { PgDirectory, type TeamTap } from './pg-directory.js';
import { storeError } from './pg-errors.js';

/** A proposal row (the embedded admin_proposals columns; times as numbers). */
export interface TeamProposalRow {
  id: string;
  /** JCS of the action. */
  action: string;
  proposed_by: string;
  proposer_credential: string;
  /** JCS of the proposer's assertion evidence. */
  proposer_evidence: string;
  state: 'pending' | 'executed' | 'rejected';
  created_at: number;
  expires_at: number;
}

/** What admin-actions.ts needs of a team's proposals. */
export interface TeamProposals {
  propose(row: TeamProposalRow, record: AuditSubmission, tap: TeamTap): Promise<void>;
  get(id: string): Promise<TeamProposalRow | undefined>;
  pending(now: number, limit: number): Promise<TeamProposalRow[]>;
  /**
   * Close `id` once for the team: `check` runs on the row locked, in the closing transaction (it
   * throws to refuse, nothing written; it may read the team directory on `client`), then the state moves from pending to `state` with `records` and `tap` committed in
   * the same transaction. Resolves with the row as it was (pending).
   */
  close(
    id: string,
    state: 'executed' | 'rejected',
    decidedBy: string,
    now: number,
    check: (row: TeamProposalRow, client: pg.ClientBase) => void | Promise<void>,
    records: readonly AuditSubmission[],
    tap?: TeamTap,
  ): Promise<TeamProposalRow>;
  /** `close`'s lock, check and state move on a transaction the caller holds (TeamTap.closesProposal); no records. */
  closeWithin(
    client: pg.PoolClient,
    id: string,
    state: 'executed' | 'rejected',
    decidedBy: string,
    now: number,
    check: (row: TeamProposalRow, client: pg.ClientBase) => void | Promise<void>,
  ): Promise<TeamProposalRow>;
}

interface PgRow extends Omit<TeamProposalRow, 'created_at' | 'expires_at'> {
  created_at: string;
  expires_at: string;
}

const COLUMNS = 'id, action, proposed_by, proposer_credential, proposer_evidence, state, created_at, expires_at';
const toRow = (row: PgRow): TeamProposalRow => ({ ...row, created_at: Number(row.created_at), expires_at: Number(row.expires_at) });

export class PgAdminProposals implements TeamProposals {
  constructor(private readonly store: PgDecisionStore) {}

  propose(row: TeamProposalRow, record: AuditSubmission, tap: TeamTap): Promise<void> {
    assertAuditEvent(record.kind, record.event);
    return this.store.run(async (client) => {
      await PgDirectory.checkTap(client, tap);
      await client.query(
        `INSERT INTO admin_proposals (id, action, proposed_by, proposer_credential, proposer_evidence, state, created_at, expires_at, proposed_on_hub)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)`,
        [
          row.id,
          row.action,
          row.proposed_by,
          row.proposer_credential,
          row.proposer_evidence,
          row.created_at,
          row.expires_at,
          this.store.hub,
        ],
      );
      await this.store.submitAudit(client, record);
    });
  }

  async get(id: string): Promise<TeamProposalRow | undefined> {
    try {
      const { rows } = await this.store.pool.query<PgRow>(`SELECT ${COLUMNS} FROM admin_proposals WHERE id = $1`, [id]);
      return rows[0] === undefined ? undefined : toRow(rows[0]);
    } catch (error) {
      throw storeError(error, 'reading an admin proposal');
    }
  }

  async pending(now: number, limit: number): Promise<TeamProposalRow[]> {
    try {
      const { rows } = await this.store.pool.query<PgRow>(
        `SELECT ${COLUMNS} FROM admin_proposals WHERE state = 'pending' AND expires_at > $1 ORDER BY created_at, id COLLATE "C" LIMIT $2`,
        [now, limit],
      );
      return rows.map(toRow);
    } catch (error) {
      throw storeError(error, 'reading the admin proposals');
    }
  }

  close(
    id: string,
    state: 'executed' | 'rejected',
    decidedBy: string,
    now: number,
    check: (row: TeamProposalRow, client: pg.ClientBase) => void | Promise<void>,
    records: readonly AuditSubmission[],
    tap?: TeamTap,
  ): Promise<TeamProposalRow> {
    for (const record of records) assertAuditEvent(record.kind, record.event);
    return this.store.run(async (client) => {
      const row = await this.closeWithin(client, id, state, decidedBy, now, check);
      if (tap !== undefined) await PgDirectory.checkTap(client, tap);
      for (const record of records) await this.store.submitAudit(client, record);
      return row;
    });
  }

  async closeWithin(
    client: pg.PoolClient,
    id: string,
    state: 'executed' | 'rejected',
    decidedBy: string,
    now: number,
    check: (row: TeamProposalRow, client: pg.ClientBase) => void | Promise<void>,
  ): Promise<TeamProposalRow> {
    const { rows } = await client.query<PgRow>(`SELECT ${COLUMNS} FROM admin_proposals WHERE id = $1 FOR UPDATE`, [id]);
    const row = rows[0] === undefined ? undefined : toRow(rows[0]);
    if (row === undefined) throw new CountersignError('admin_proposal_unknown', `no proposed admin action is named ${quote(id)}`);
    await check(row, client);
    const moved = await client.query(
      "UPDATE admin_proposals SET state = $2, decided_by = $3, decided_at = $4, decided_on_hub = $5 WHERE id = $1 AND state = 'pending'",
      [id, state, decidedBy, now, this.store.hub],
    );
    if (moved.rowCount !== 1)
      throw new CountersignError('admin_proposal_closed', `the proposed admin action ${quote(id)} is no longer pending`);
    return row;
  }
}
