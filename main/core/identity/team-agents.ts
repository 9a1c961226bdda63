/**
 * Agents in the team directory (ADR 0013): enroll, rotate, revoke and set the owner of an agent
 * for every hub of a database at once. Each write checks what the embedded registry checks (the
 * active policy set's vocabulary, the owner a person of this hub's directory replica), then runs
 * in one PostgreSQL transaction with its team audit record (store/pg/pg-directory.ts); this hub's
 * replica applies the change before the call returns when it can, the others on the notification.
 * A write answers with what it committed (the row images), never with a re-read of the replica:
 * a replica whose catch-up failed this once (retried on its own) never turns a committed
 * enrollment into an error.
 *
 * A revocation also ends the agent's held calls in the team database (denied, "agent revoked:
 * <reason>", audited, each hub's waiting gateway woken), as the embedded revocation does.
 */
import type pg from 'pg';
import {
  agentFromRowImage,
  enrolledEvent,
  keyFromRowImage,
  type AgentKeyRecord,
  type AgentRecord,
  type AgentRegistry,
  type AgentScope,
} from './agent-registry.js';
import { storedRow, type PgDirectory, type ReplicaRow, type TeamTap } from '../store/pg/pg-directory.js';
import { OUTCOME_CHANNEL } from '../store/pg/pg-decision-store.js';
import type { AuditSubmission } from '../store/store-seam.js';
import type { EnrollmentPayload } from '../../../shared/enrollment.js';
import type { DecisionResult } from '../../../shared/protocol.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStoredJson } from '../store/stored-json.js';
import { storeError } from '../store/pg/pg-errors.js';

export class TeamAgents {
  constructor(
    private readonly registry: AgentRegistry,
    private readonly directory: PgDirectory,
    private readonly hub: string,
  ) {}

  /** `also`: more team audit records for the same transaction (the desk's `admin.action` with the admin's tap). */
  async enroll(
    payload: EnrollmentPayload,
    scope: AgentScope,
    now = Date.now(),
    also: AuditSubmission[] = [],
    tap?: TeamTap,
  ): Promise<AgentRecord> {
    const owner = this.registry.checkEnrollment(scope);
    const agentRow: ReplicaRow = {
      id: payload.agentId,
      display_name: payload.displayName,
      owner: owner.id,
      group_name: scope.group,
      allowed_tools: JSON.stringify(scope.allowedTools),
      data_classes: JSON.stringify(scope.dataClasses),
      jurisdictions: JSON.stringify(scope.jurisdictions),
      status: 'active',
      created_at: now,
      expires_at: scope.expiresAt ?? null,
      revoked_at: null,
      revoked_reason: null,
      model: scope.model ?? null,
      agent_version: scope.agentVersion ?? null,
      owner_state: 'resolved',
      owner_entered: scope.owner,
      review_reason: null,
    };
    const keyRow = newKeyRow(payload.agentId, payload.publicJwk, now);
    await this.directory.change(
      'agent.enrolled',
      now,
      async (client) => {
        // The database decides between two hubs enrolling one id (or one key) at once: the primary keys.
        const agent = await client.query('INSERT INTO directory_agents (id, status, row) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
          payload.agentId,
          'active',
          JSON.stringify(agentRow),
        ]);
        if (agent.rowCount !== 1)
          throw new CountersignError(
            'enrollment_conflict',
            `an agent named ${quote(payload.agentId)} is already enrolled; rotate its key instead`,
          );
        await insertKey(client, keyRow);
        const audit: AuditSubmission = { kind: 'agent.enrolled', at: now, event: enrolledEvent(payload, owner.id, scope) };
        return {
          ops: [
            { table: 'agents', row: agentRow },
            { table: 'agent_keys', row: keyRow },
          ],
          audit: [audit, ...also],
          result: undefined,
        };
      },
      tap,
    );
    return agentFromRowImage(agentRow);
  }

  /** New key becomes active; the agent's current keys keep working until `now + overlapMs`. */
  async rotate(
    agentId: string,
    payload: EnrollmentPayload,
    overlapMs: number,
    now = Date.now(),
    also: AuditSubmission[] = [],
    tap?: TeamTap,
  ): Promise<AgentKeyRecord> {
    if (payload.agentId !== agentId)
      throw new CountersignError('enrollment_invalid', `the enrollment request is for ${quote(payload.agentId)}, not ${quote(agentId)}`);
    const keyRow = newKeyRow(agentId, payload.publicJwk, now);
    const notAfter = now + Math.max(0, overlapMs);
    await this.directory.change(
      'agent.key_rotated',
      now,
      async (client) => {
        const agent = await lockAgent(client, agentId);
        if (agent.status !== 'active') throw new CountersignError('agent_revoked', `agent ${quote(agentId)} is revoked`);
        const retired = await updateKeys(client, agentId, "status = 'active'", (row) => ({
          ...row,
          status: 'retiring',
          not_after: notAfter,
        }));
        await insertKey(client, keyRow);
        return {
          ops: [...retired.map((row) => ({ table: 'agent_keys' as const, row })), { table: 'agent_keys', row: keyRow }],
          audit: [
            {
              kind: 'agent.key_rotated',
              at: now,
              event: { agentId, newKid: payload.publicJwk.kid, retiredKeys: retired.length, overlapEndsAt: notAfter },
            },
            ...also,
          ],
          result: undefined,
        };
      },
      tap,
    );
    return keyFromRowImage(keyRow);
  }

  /**
   * Revoke the agent and all its keys on every hub, and end its held calls in the team database,
   * in one transaction. Returns the ended requests as the agent is told of them; empty if it was
   * already revoked.
   */
  async revoke(agentId: string, reason: string, now = Date.now(), also: AuditSubmission[] = [], tap?: TeamTap): Promise<DecisionResult[]> {
    const reasons = [`agent revoked: ${reason}`];
    const ended = await this.directory.change(
      'agent.revoked',
      now,
      async (client) => {
        const agent = await lockAgent(client, agentId);
        if (agent.status === 'revoked') return { ops: [], audit: also, result: [] as DecisionResult[] };
        const agentRow = { ...agent.row, status: 'revoked', revoked_at: now, revoked_reason: reason };
        await client.query("UPDATE directory_agents SET status = 'revoked', row = $2 WHERE id = $1", [agentId, JSON.stringify(agentRow)]);
        const keys = await updateKeys(client, agentId, "status <> 'revoked'", (row) => ({ ...row, status: 'revoked', revoked_at: now }));
        const { rows } = await client.query<EndedRow>(
          `UPDATE requests SET state = 'denied', decided_at = $2, reasons = $3, decided_by_hub = $4
         WHERE agent_id = $1 AND state = 'pending'
         RETURNING id, tool, call_sha256, policy_hash, determining_policies`,
          [agentId, now, JSON.stringify(reasons), this.hub],
        );
        const waiting = rows.sort((x, y) => (x.id < y.id ? -1 : 1));
        const audit: AuditSubmission[] = [
          { kind: 'agent.revoked', at: now, event: { agentId, reason, endedRequests: waiting.map((r) => r.id) } },
        ];
        const results: DecisionResult[] = [];
        for (const row of waiting) {
          const determiningPolicies = parseStoredJson(row.determining_policies) as string[];
          audit.push({
            kind: 'decision.deny',
            at: now,
            event: {
              requestId: row.id,
              agentId,
              tool: row.tool,
              callSha256: row.call_sha256,
              policyHash: row.policy_hash,
              determiningPolicies,
              reasons,
              endedBy: 'agent.revoked',
            },
          });
          // Every hub following this held call re-reads it at COMMIT.
          await client.query('SELECT pg_notify($1, $2)', [OUTCOME_CHANNEL, row.id]);
          results.push({ requestId: row.id, decision: 'deny', state: 'denied', reasons, determiningPolicies, policyHash: row.policy_hash });
        }
        return {
          ops: [{ table: 'agents', row: agentRow }, ...keys.map((row) => ({ table: 'agent_keys' as const, row }))],
          audit: [...audit, ...also],
          result: results,
        };
      },
      tap,
    );
    if (ended.length > 0 || this.registry.getAgent(agentId)?.status === 'revoked') this.registry.announceRevocation(agentId, ended);
    return ended;
  }

  /**
   * The held calls the agent's revocation ended, as the agent is told of them, read in the team
   * database (the revocation may have been committed on another hub): the agent's requests
   * denied at its revocation's instant with its reason, as revoke() writes them. Empty when the
   * agent is not revoked.
   */
  async endedByRevocation(agentId: string): Promise<DecisionResult[]> {
    const pool = this.directory.pool;
    try {
      const { rows } = await pool.query<{ row: string }>("SELECT row FROM directory_agents WHERE id = $1 AND status = 'revoked'", [
        agentId,
      ]);
      const found = rows[0];
      if (found === undefined) return [];
      const agent = storedRow(found.row);
      const reasons = [`agent revoked: ${String(agent.revoked_reason ?? '')}`];
      const ended = await pool.query<EndedRow>(
        `SELECT id, tool, call_sha256, policy_hash, determining_policies FROM requests
         WHERE agent_id = $1 AND state = 'denied' AND decided_at = $2 AND reasons = $3 ORDER BY id COLLATE "C"`,
        [agentId, agent.revoked_at, JSON.stringify(reasons)],
      );
      return ended.rows.map((row) => ({
        requestId: row.id,
        decision: 'deny',
        state: 'denied',
        reasons,
        determiningPolicies: parseStoredJson(row.determining_policies) as string[],
        policyHash: row.policy_hash,
      }));
    } catch (error) {
      throw storeError(error, 'reading the calls a revocation ended');
    }
  }

  /** Give an agent a person as owner (any handle of theirs; the approver id is stored), on every hub. */
  async setOwner(agentId: string, handle: string, now = Date.now()): Promise<AgentRecord> {
    const person = this.registry.checkOwner(handle);
    const committed = await this.directory.change('agent.owner_changed', now, async (client) => {
      const agent = await lockAgent(client, agentId);
      const row = { ...agent.row, owner: person.id, owner_state: 'resolved', review_reason: null };
      await client.query('UPDATE directory_agents SET row = $2 WHERE id = $1', [agentId, JSON.stringify(row)]);
      return {
        ops: [{ table: 'agents', row }],
        audit: [
          {
            kind: 'agent.owner_changed',
            at: now,
            event: {
              agentId,
              from: String(agent.row.owner),
              to: person.id,
              entered: handle,
              releasedFromReview: agent.row.owner_state !== 'resolved',
            },
          },
        ],
        result: row,
      };
    });
    return agentFromRowImage(committed);
  }
}

interface EndedRow {
  id: string;
  tool: string;
  call_sha256: string;
  policy_hash: string;
  determining_policies: string;
}

function newKeyRow(agentId: string, jwk: EnrollmentPayload['publicJwk'], now: number): ReplicaRow {
  return {
    kid: jwk.kid,
    agent_id: agentId,
    alg: jwk.alg,
    public_jwk: JSON.stringify(jwk),
    status: 'active',
    created_at: now,
    not_after: null,
    revoked_at: null,
  };
}

async function insertKey(client: pg.ClientBase, row: ReplicaRow): Promise<void> {
  const inserted = await client.query(
    'INSERT INTO directory_agent_keys (kid, agent_id, status, not_after, row) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING',
    [row.kid, row.agent_id, row.status, row.not_after, JSON.stringify(row)],
  );
  if (inserted.rowCount !== 1) throw new CountersignError('enrollment_conflict', 'that key is already enrolled');
}

/** The agent's authoritative row, locked for this transaction (agent_unknown when the team directory has none). */
async function lockAgent(client: pg.ClientBase, agentId: string): Promise<{ status: string; row: ReplicaRow }> {
  const { rows } = await client.query<{ status: string; row: string }>(
    'SELECT status, row FROM directory_agents WHERE id = $1 FOR UPDATE',
    [agentId],
  );
  const found = rows[0];
  if (found === undefined) throw new CountersignError('agent_unknown', `no agent named ${quote(agentId)} is enrolled`);
  return { status: found.status, row: storedRow(found.row) };
}

/** Rewrite the agent's keys matching `where` (a fixed condition) with `change`; returns the new row images. */
async function updateKeys(
  client: pg.ClientBase,
  agentId: string,
  where: "status = 'active'" | "status <> 'revoked'",
  change: (row: ReplicaRow) => ReplicaRow,
): Promise<ReplicaRow[]> {
  const { rows } = await client.query<{ kid: string; row: string }>(
    `SELECT kid, row FROM directory_agent_keys WHERE agent_id = $1 AND ${where} ORDER BY kid FOR UPDATE`,
    [agentId],
  );
  const updated: ReplicaRow[] = [];
  for (const { kid, row } of rows) {
    const next = change(storedRow(row));
    await client.query('UPDATE directory_agent_keys SET status = $2, not_after = $3, row = $4 WHERE kid = $1', [
      kid,
      next.status,
      next.not_after,
      JSON.stringify(next),
    ]);
    updated.push(next);
  }
  return updated;
}
