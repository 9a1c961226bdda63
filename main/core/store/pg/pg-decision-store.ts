/**
 * The team-mode store on PostgreSQL (ADR 0012). Same semantics as the SQLite store:
 *  - Group commit: allowed and denied decisions queued in the same moment are written by one
 *    statement that is its own transaction (one round trip, COMMIT included; RECORD_DECISIONS_SQL);
 *    other units of work (held calls, finishes, expiries) share one transaction, each in its own
 *    SAVEPOINT (a failing unit rolls back alone), one COMMIT. Two groups run at once per hub
 *    (GROUPS_IN_FLIGHT), each on its own pooled connection. Nobody is answered before the COMMIT holding their rows returned; if the
 *    COMMIT fails every unit in it fails (store_unavailable when the database is gone).
 *  - A nonce is claimed with INSERT .. ON CONFLICT DO NOTHING: a concurrent claim of the same
 *    nonce on any hub waits for the first transaction and then finds the row (envelope_replayed).
 *  - A request finishes with UPDATE .. WHERE state = 'pending' (and a trigger refuses any other
 *    move), so of two hubs racing to approve it exactly one writes a token.
 *  - Audit events go to audit_submissions in the same transaction; the audit leader
 *    (audit/pg-audit-leader.ts) sequences them. pg_notify inside that transaction tells every hub's
 *    listener at COMMIT (PostgreSQL delivers notifications only on commit), which wakes the
 *    agent's held call wherever it is connected; no polling.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { canonicalize, type JsonObject } from '../../../../shared/canonical-json.js';
import { assertAuditEvent } from '../../../../shared/audit-events.js';
import { CountersignError } from '../../../../shared/errors.js';
import { z } from 'zod';
import type {
  AuditSubmission,
  DecisionStore,
  DecisionWrite,
  ExpiringRequest,
  FinishWrite,
  RequestOutcome,
  StoredRequestView,
  StoredState,
  TokenRow,
  WrittenDecision,
} from '../store-seam.js';
import { auditOf, isFinal, pendingQueueFull, replayed } from '../store-seam.js';
import { encodeRequirement, storedRequirementSchema } from '../request-repository.js';
import { parseStoredJson } from '../stored-json.js';
import { resolveDatabaseConfig, type ResolvedDatabaseConfig, type TeamDatabaseConfig } from './pg-config.js';
import { checkOut, isConnectionLoss, storeError } from './pg-errors.js';
import { PgListener } from './pg-listener.js';
import { PG_LOCKS } from './pg-locks.js';
import { PG_MIGRATIONS } from './pg-migrations.js';
import { agentRowSql, type TeamAgentRow } from './pg-directory.js';

export const OUTCOME_CHANNEL = 'countersign_outcome';
export const AUDIT_CHANNEL = 'countersign_audit';
/** The advisory lock key migrations run under. */
const MIGRATION_LOCK = PG_LOCKS.migrations;
/** The first key of the per-agent lock held calls are written under (the second is the agent id's hash; the two-key form never meets the one-key locks). */
export const HELD_CALLS_LOCK = PG_LOCKS.heldCalls;

/**
 * A held call's first statement: its agent's directory row (FOR SHARE; absent when the agent is
 * not enrolled) and the per-agent lock held calls are written under (always taken).
 */
const HELD_AGENT_AND_LOCK_SQL = `SELECT pg_advisory_xact_lock($3, hashtext($1)) IS NULL AS unlocked, a.status, a.key_status, a.key_agent, a.not_after,
  (a.status IS NOT NULL) AS found
  FROM (SELECT 1) AS one LEFT JOIN (${agentRowSql('$1', '$2')}) AS a ON true`;
/**
 * A held call's second statement, after its lock (so its snapshot sees every committed held call
 * of the agent): the agent's pending count, and when $9 the oldest open group of the same call
 * (the same group rule as the SQLite store, request-repository.ts openGroup).
 */
const HELD_COUNT_AND_GROUP_SQL = `SELECT (SELECT count(*) FROM requests WHERE agent_id = $1 AND state = 'pending') AS n, g.id, g.expires_at, g.followers
  FROM (SELECT 1) AS one LEFT JOIN (
    SELECT r.id, r.expires_at, (SELECT count(*) FROM requests f WHERE f.group_id = r.id) AS followers FROM requests r
    WHERE $9::boolean AND r.agent_id = $1 AND r.call_sha256 = $2 AND r.call_json = $3 AND r.policy_hash = $4 AND r.obligation = $5
      AND r.determining_policies = $6 AND r.conflicted_approvers = $7
      AND r.state = 'pending' AND r.group_id IS NULL AND r.sealed_at IS NULL AND r.expires_at > $8
    ORDER BY r.created_at, r.id LIMIT 1
  ) AS g ON true`;

/**
 * A decision's rows in one statement (one round trip instead of six): the agent's directory row
 * locked FOR SHARE (read in full: the outer query selects it), the nonce claimed with ON CONFLICT
 * DO NOTHING (a concurrent claim on any hub waits for the first transaction, then finds the row),
 * and only if this statement claimed it the request, its token (when $21 is not null) and the
 * audit submission, and the audit leader's notification. Data-modifying WITH clauses run to
 * completion whether or not the outer query reads them. The caller verifies the agent row and
 * the claim and throws (its savepoint rolls all of it back) if either refuses.
 */
const RECORD_DECISION_SQL = `WITH agent AS (${agentRowSql('$1::text', '$2::text')}),
  claimed AS (
    INSERT INTO seen_nonces (agent_id, nonce, expires_at) VALUES ($1, $3, $4) ON CONFLICT DO NOTHING RETURNING 1
  ),
  request AS (
    INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash,
      determining_policies, reasons, risk, created_at, expires_at, decided_at, decided_by_hub, obligation, conflicted_approvers, group_id)
    SELECT $5::text, $1, $2, $6::text, $7::text, $8::text, $3, $9::text, $10::text, $11::text, $12::text, $13::text, $14::bigint,
      $15::bigint, $16::bigint, $17::text, $18::text, $19::text, $20::text FROM claimed
    RETURNING id
  ),
  token AS (
    INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at)
    SELECT $21::text, id, $22::text, $23::text, $24::bigint, $25::bigint FROM request WHERE $21::text IS NOT NULL
  ),
  audit AS (
    INSERT INTO audit_submissions (at, kind, fields, request_id, hub) SELECT $26::bigint, $27::text, $28::text, $29::text, $31::text FROM request
  ),
  notified AS (SELECT pg_notify($30::text, '') FROM request)
SELECT (a.status IS NOT NULL) AS found, a.status, a.key_status, a.key_agent, a.not_after,
  (SELECT count(*) FROM notified) = 1 AS claimed
FROM (SELECT 1) AS one LEFT JOIN agent a ON true`;

/**
 * The allowed and denied decisions of one group in one statement, run as its own (implicit)
 * transaction: one round trip per group, its COMMIT included (the answer comes after the COMMIT,
 * so no token is released before it). Each row is unit `n`'s: its agent's directory row locked
 * FOR SHARE (in id order, so two groups never wait on each other's agents in opposite order), the
 * unit admitted only when the team directory accepts that agent and key ($30; the same rule as
 * PgDirectory.verifyAgent, which names the refusal), the nonce claimed with ON CONFLICT DO NOTHING
 * for one unit per (agent, nonce) (a concurrent claim on any hub waits for the first transaction,
 * then finds the row), and only for the units whose claim this statement made: the request, its
 * token, the audit submission (in unit order), the unit's risk events ($31-$33) and the audit
 * leader's notification. A refused unit writes nothing, its nonce included.
 */
const RECORD_DECISIONS_SQL = `WITH input AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
      $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::text[],
      $18::text[], $19::text[], $20::text[], $21::text[], $22::bigint[], $23::bigint[], $24::bigint[], $25::text[], $26::text[],
      $27::text[])
    AS t(n, agent_id, kid, nonce, nonce_expires_at, id, tool, call_json, call_sha256, state, policy_hash, determining_policies,
      reasons, risk, created_at, expires_at, obligation, conflicted, jti, token_kid, token, issued_at, token_expires_at,
      audit_at, audit_kind, audit_fields, audit_request_id)
  ),
  agent AS (
    SELECT i.n, a.status, k.status AS key_status, k.agent_id AS key_agent, k.not_after
    FROM input i JOIN directory_agents a ON a.id = i.agent_id LEFT JOIN directory_agent_keys k ON k.kid = i.kid
    ORDER BY a.id FOR SHARE OF a
  ),
  admitted AS (
    SELECT i.n, i.agent_id, i.nonce, i.nonce_expires_at FROM input i LEFT JOIN agent g ON g.n = i.n
    WHERE $30::boolean IS NOT TRUE OR (g.status = 'active' AND g.key_agent = i.agent_id AND g.key_status IS DISTINCT FROM 'revoked'
      AND NOT (g.key_status = 'retiring' AND (g.not_after IS NULL OR i.created_at >= g.not_after)))
  ),
  winner AS (SELECT DISTINCT ON (agent_id, nonce) n, agent_id, nonce, nonce_expires_at FROM admitted ORDER BY agent_id, nonce, n),
  claimed AS (
    INSERT INTO seen_nonces (agent_id, nonce, expires_at) SELECT agent_id, nonce, nonce_expires_at FROM winner ORDER BY agent_id, nonce
    ON CONFLICT DO NOTHING RETURNING agent_id, nonce
  ),
  won AS (SELECT w.n FROM winner w JOIN claimed c ON c.agent_id = w.agent_id AND c.nonce = w.nonce),
  request AS (
    INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash,
      determining_policies, reasons, risk, created_at, expires_at, decided_at, decided_by_hub, obligation, conflicted_approvers, group_id)
    SELECT i.id, i.agent_id, i.kid, i.tool, i.call_json, i.call_sha256, i.nonce, i.state, i.policy_hash, i.determining_policies,
      i.reasons, i.risk, i.created_at, i.expires_at, i.created_at, $28::text, i.obligation, i.conflicted, NULL
    FROM input i JOIN won USING (n) ORDER BY i.n
    RETURNING id
  ),
  token AS (
    INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at)
    SELECT i.jti, r.id, i.token_kid, i.token, i.issued_at, i.token_expires_at FROM input i JOIN request r ON r.id = i.id WHERE i.jti IS NOT NULL
  ),
  audit AS (
    INSERT INTO audit_submissions (at, kind, fields, request_id, hub)
    SELECT i.audit_at, i.audit_kind, i.audit_fields, i.audit_request_id, $28::text FROM input i JOIN request r ON r.id = i.id ORDER BY i.n
  ),
  risk AS (
    INSERT INTO risk_log (agent_id, hub, event)
    SELECT e.agent_id, $28::text, e.event FROM unnest($31::int[], $32::text[], $33::text[]) WITH ORDINALITY AS e(n, agent_id, event, k)
      JOIN won USING (n) ORDER BY e.k
    RETURNING id
  ),
  notified AS (SELECT pg_notify($29::text, '') FROM (SELECT 1 FROM request LIMIT 1) AS any_written)
SELECT i.n, (g.n IS NOT NULL) AS found, g.status, g.key_status, g.key_agent, g.not_after,
  EXISTS (SELECT 1 FROM won w WHERE w.n = i.n) AS claimed,
  (SELECT count(*) FROM notified) AS notified,
  (SELECT array_agg(id) FROM risk) AS risk_ids
FROM input i LEFT JOIN agent g ON g.n = i.n ORDER BY i.n`;

/** Which of the (agent, nonce) pairs were accepted already: the 1-based positions of those found. */
const NONCES_SEEN_SQL = `SELECT q.n FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(agent_id, nonce, n)
  WHERE EXISTS (SELECT 1 FROM seen_nonces s WHERE s.agent_id = q.agent_id AND s.nonce = q.nonce)`;
/** Most early nonce reads in one statement. */
const MAX_NONCE_READS = 256;

/** An audit submission and the leader's wake-up (delivered at COMMIT) in one round trip. */
const SUBMIT_AUDIT_SQL = `WITH submitted AS (
    INSERT INTO audit_submissions (at, kind, fields, request_id, hub) VALUES ($1, $2, $3, $4, $5) RETURNING 1
  )
  SELECT pg_notify($6, '') FROM submitted`;

/**
 * Groups in flight per hub: one can commit while the next runs. Units arriving meanwhile wait for
 * the next group, which is what makes groups: with one group per pooled connection (seven), a
 * decision almost always found a free connection, groups held about two decisions, and each paid
 * a statement, a COMMIT and a WAL flush nearly alone. Measured in the team-engine bench (two
 * hubs, 32 calls in flight, alternated in one run, load 20-24): 4.2-4.7 ms of CPU per decision
 * with two against 4.3-5.6 ms with seven, and 4.4-4.8 with one or three.
 */
export const GROUPS_IN_FLIGHT = 2;

type Work<T> = (client: pg.PoolClient) => Promise<T>;
/** A queued unit: work run in the group's transaction, or an allowed or denied decision's row for RECORD_DECISIONS_SQL. */
interface Unit {
  work?: Work<unknown>;
  decide?: () => DecisionRow;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** RECORD_DECISIONS_SQL's answer for one unit: its agent's directory row, whether its claim was made, the group's risk event ids. */
type DecisionRowResult = TeamAgentRow & { found: boolean; claimed: boolean; risk_ids: string[] | null };

/** One allowed or denied decision as RECORD_DECISIONS_SQL writes it (made inside its group, just before the statement). */
interface DecisionRow {
  agentId: string;
  createdAt: number;
  /** The row's columns in the order of $2-$27. */
  columns: unknown[];
  /** The risk events its learner hook queued. */
  riskEvents: unknown[];
  written: WrittenDecision;
}

export interface PgStoreOptions extends TeamDatabaseConfig {
  /** This hub's name (recorded with what it writes; unique per hub). */
  hub: string;
  onError?: (message: string) => void;
}

/**
 * Apply the numbered migrations once, under a transaction-scoped advisory lock, however many hubs
 * (or other users of the team database, such as the team key set) start together.
 */
export async function migrateTeamDatabase(pool: pg.Pool): Promise<void> {
  const ignore = () => undefined; // a dropped connection rejects the running query below
  const client = await checkOut(pool, ignore);
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)');
    const row = await client.query<{ version: number }>('SELECT version FROM schema_version');
    let version = row.rows[0]?.version ?? 0;
    if (row.rowCount === 0) await client.query('INSERT INTO schema_version (version) VALUES (0)');
    if (version > PG_MIGRATIONS.length)
      throw new CountersignError(
        'store_failed',
        `the database schema version ${version} is newer than this build supports (${PG_MIGRATIONS.length}); upgrade countersign`,
      );
    for (; version < PG_MIGRATIONS.length; version++) await client.query(PG_MIGRATIONS[version]!);
    await client.query('UPDATE schema_version SET version = $1', [version]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.off('error', ignore);
    client.release();
  }
}

/** What a unit of work writes for the risk learner (risk/pg-risk-log.ts): the events its hook just queued. */
export interface UnitRiskWriter {
  take(): unknown[];
  write(client: pg.ClientBase, taken: readonly unknown[]): Promise<void>;
  /** Taken events as risk_log's columns, for a statement that inserts them itself. */
  encode(taken: readonly unknown[]): { agents: string[]; texts: string[] };
  /** The ids that statement gave them (in any order). */
  noteWritten(taken: readonly unknown[], ids: readonly string[]): void;
}

export class PgDecisionStore implements DecisionStore {
  readonly kind = 'postgres' as const;
  readonly hub: string;
  readonly pool: pg.Pool;
  readonly config: ResolvedDatabaseConfig;
  private queue: Unit[] = [];
  private running = 0;
  private readonly maxGroups: number;
  private readonly finished = new EventEmitter();
  private listener: PgListener | undefined;
  private closed = false;
  /** Early nonce reads waiting for this turn's statement (nonceSeen). */
  private nonceReads: Array<{ agentId: string; nonce: string; resolve: (seen: boolean) => void; reject: (error: unknown) => void }> = [];
  private readonly onError: (message: string) => void;
  /** The team directory's check of the agent and key, inside each decision's transaction (pg-directory.ts). */
  private agentCheck: ((row: TeamAgentRow | undefined, agentId: string, now: number) => void) | undefined;

  private constructor(options: PgStoreOptions) {
    this.hub = options.hub;
    this.config = resolveDatabaseConfig(options);
    this.pool = new pg.Pool(this.config.pool);
    // An idle pooled connection that dies (database restart) must not crash the hub.
    this.pool.on('error', (error) => this.onError(`a pooled database connection failed: ${error.message}`));
    // The other pooled connections serve reads (nonces, outcomes, the desks' views) meanwhile.
    this.maxGroups = Math.max(1, Math.min(GROUPS_IN_FLIGHT, this.config.poolSize - 1));
    this.finished.setMaxListeners(0);
    // eslint-disable-next-line no-console -- default sink when the caller injects none
    this.onError = options.onError ?? ((message) => console.warn(message));
  }

  /** Connect, apply migrations, start the outcome listener. */
  static async open(options: PgStoreOptions): Promise<PgDecisionStore> {
    const store = new PgDecisionStore(options);
    try {
      await store.migrate();
      await store.listen();
    } catch (error) {
      await store.listener?.close();
      await store.pool.end().catch(() => undefined);
      throw storeError(error, 'opening the team database');
    }
    return store;
  }

  private migrate(): Promise<void> {
    return migrateTeamDatabase(this.pool);
  }

  // ---- the outcome listener: one connection per hub, re-established after a database restart ----

  private listen(): Promise<void> {
    this.listener = new PgListener({
      connection: this.config.pool,
      channel: OUTCOME_CHANNEL,
      name: "the held calls' outcomes",
      onNotify: (requestId) => {
        if (requestId) this.finished.emit(requestId);
      },
      // Notifications sent while no listener was connected are lost: everyone waiting re-reads.
      onConnected: () => {
        for (const name of this.finished.eventNames()) if (typeof name === 'string') this.finished.emit(name);
      },
      onError: this.onError,
    });
    return this.listener.start();
  }

  // ---- group commit ----

  /** Run `work` inside the next group transaction (in its own savepoint); resolves after COMMIT. */
  run<T>(work: Work<T>): Promise<T> {
    if (this.closed) return Promise.reject(new CountersignError('store_unavailable', 'the team store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  /** Queue an allowed or denied decision's row; resolves after the COMMIT of the statement that wrote it. */
  private runDecisionRow(decide: () => DecisionRow): Promise<WrittenDecision> {
    if (this.closed) return Promise.reject(new CountersignError('store_unavailable', 'the team store is closed'));
    return new Promise<WrittenDecision>((resolve, reject) => {
      this.queue.push({ decide, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.maxGroups && this.queue.length > 0) {
      this.running++;
      // Let units queued in this turn join the group before it is cut.
      setImmediate(() => {
        // A group is of one kind, the oldest unit's: decision rows (one statement) or work (a transaction).
        const rows = this.queue[0]?.decide !== undefined;
        const batch: Unit[] = [];
        const rest: Unit[] = [];
        for (const unit of this.queue)
          (batch.length < this.config.maxBatch && (unit.decide !== undefined) === rows ? batch : rest).push(unit);
        this.queue = rest;
        const done = () => {
          this.running--;
          this.pump();
        };
        if (batch.length === 0) done();
        else void (rows ? this.commitDecisionRows(batch) : this.commitGroup(batch)).finally(done);
      });
    }
  }

  /**
   * One group of allowed and denied decisions: each unit's row is made (its guard, learning and
   * audit event; a throw refuses that unit alone), then RECORD_DECISIONS_SQL writes them all in one
   * round trip, its own transaction. If the database refuses the statement (a deadlock, a
   * constraint), each row is tried again alone, so one unit's fault fails only that unit.
   */
  private async commitDecisionRows(batch: Unit[]): Promise<void> {
    const units: Array<{ unit: Unit; row: DecisionRow }> = [];
    for (const unit of batch) {
      try {
        units.push({ unit, row: unit.decide!() });
      } catch (error) {
        unit.reject(error);
      }
    }
    if (units.length === 0) return;
    let lost: Error | undefined;
    const onLost = (error: Error) => {
      lost = error;
    };
    let client: pg.PoolClient;
    try {
      client = await checkOut(this.pool, onLost);
    } catch (error) {
      const failure = storeError(error, 'connecting');
      for (const { unit } of units) unit.reject(failure);
      return;
    }
    let broken: unknown;
    try {
      try {
        this.settleDecisionRows(units, await this.writeDecisionRows(client, units));
      } catch (error) {
        if (!(error instanceof pg.DatabaseError) || isConnectionLoss(error) || units.length === 1) throw error;
        for (const one of units) {
          try {
            this.settleDecisionRows([one], await this.writeDecisionRows(client, [one]));
          } catch (alone) {
            if (!(alone instanceof pg.DatabaseError) || isConnectionLoss(alone)) throw alone;
            one.unit.reject(storeError(alone, 'a decision'));
          }
        }
      }
    } catch (error) {
      broken = error;
    } finally {
      client.off('error', onLost);
      client.release(lost ?? (broken !== undefined && isConnectionLoss(broken) ? (broken as Error) : undefined));
    }
    // Settling a unit twice is a no-op: those already answered keep their answer.
    if (broken !== undefined) {
      const failure = storeError(broken, 'committing a decision');
      for (const { unit } of units) unit.reject(failure);
    }
  }

  private async writeDecisionRows(client: pg.ClientBase, units: ReadonlyArray<{ row: DecisionRow }>): Promise<DecisionRowResult[]> {
    const columns: unknown[][] = Array.from({ length: 26 }, () => []);
    const riskUnits: number[] = [];
    const riskAgents: string[] = [];
    const riskTexts: string[] = [];
    units.forEach(({ row }, n) => {
      row.columns.forEach((value, c) => columns[c]!.push(value));
      if (row.riskEvents.length > 0) {
        const { agents, texts } = this.riskLog!.encode(row.riskEvents);
        for (const [k, agent] of agents.entries()) {
          riskUnits.push(n);
          riskAgents.push(agent);
          riskTexts.push(texts[k]!);
        }
      }
    });
    const { rows } = await client.query<DecisionRowResult>({
      name: 'cs_record_decisions',
      text: RECORD_DECISIONS_SQL,
      values: [
        units.map((_u, n) => n),
        ...columns,
        this.hub,
        AUDIT_CHANNEL,
        this.agentCheck !== undefined,
        riskUnits,
        riskAgents,
        riskTexts,
      ],
    });
    return rows;
  }

  /** Answer each unit from its result row (the statement has committed). */
  private settleDecisionRows(units: ReadonlyArray<{ unit: Unit; row: DecisionRow }>, results: DecisionRowResult[]): void {
    const wonEvents: unknown[] = [];
    units.forEach(({ unit, row }, n) => {
      const result = results[n]!;
      if (result.claimed) {
        wonEvents.push(...row.riskEvents);
        unit.resolve(row.written);
        return;
      }
      try {
        // The directory's refusal first (a revoked agent is told so, not that its nonce was used);
        // admitted by the directory but not claimed: the nonce was used.
        this.agentCheck?.(result.found ? result : undefined, row.agentId, row.createdAt);
        unit.reject(replayed());
      } catch (error) {
        unit.reject(error);
      }
    });
    if (wonEvents.length > 0) this.riskLog!.noteWritten(wonEvents, results[0]?.risk_ids ?? []);
  }

  private async commitGroup(batch: Unit[]): Promise<void> {
    // A checked-out client whose connection drops emits 'error' (pg-pool only listens on idle
    // ones): noted here so the connection is destroyed; the failing query rejects the group.
    let lost: Error | undefined;
    const onLost = (error: Error) => {
      lost = error;
    };
    let client: pg.PoolClient;
    try {
      client = await checkOut(this.pool, onLost);
    } catch (error) {
      const failure = storeError(error, 'connecting');
      for (const unit of batch) unit.reject(failure);
      return;
    }
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    let broken: unknown;
    try {
      // The savepoint rides with the statement before it (one round trip each, simple protocol):
      // BEGIN opens the first unit's, a RELEASE the next one's, and ROLLBACK TO keeps it open.
      await client.query('BEGIN; SAVEPOINT unit');
      for (const [i, unit] of batch.entries()) {
        let outcome: (typeof outcomes)[number];
        try {
          outcome = { ok: true, value: await unit.work!(client) };
        } catch (error) {
          if (isConnectionLoss(error)) throw error;
          await client.query('ROLLBACK TO SAVEPOINT unit');
          outcome = { ok: false, error };
        }
        outcomes.push(outcome);
        if (outcome.ok && i < batch.length - 1) await client.query('RELEASE SAVEPOINT unit; SAVEPOINT unit');
      }
      await client.query('COMMIT');
    } catch (error) {
      broken = error;
      // A lost connection is destroyed below and the server rolls back when its session ends;
      // a ROLLBACK sent on one that stopped answering would only wait for its own timeout.
      if (!isConnectionLoss(error)) await client.query('ROLLBACK').catch(() => undefined);
    } finally {
      client.off('error', onLost);
      // A connection that failed is destroyed, not reused.
      client.release(lost ?? (broken !== undefined && isConnectionLoss(broken) ? (broken as Error) : undefined));
    }
    if (broken !== undefined) {
      const failure = storeError(broken, 'committing a decision');
      for (const unit of batch) unit.reject(failure);
      return;
    }
    batch.forEach((unit, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) unit.resolve(outcome.value);
      // What the database refused is store_failed; what the caller's own checks threw reaches it unchanged.
      else unit.reject(outcome.error instanceof pg.DatabaseError ? storeError(outcome.error, 'a decision') : outcome.error);
    });
  }

  /**
   * Check every decision's agent and key with `check` inside its transaction (the team directory,
   * ADR 0013): the decision's statement reads the row (agentRowSql, FOR SHARE), `check` refuses it.
   */
  checkAgentsWith(check: (row: TeamAgentRow | undefined, agentId: string, now: number) => void): void {
    this.agentCheck = check;
  }

  /** The team's risk events (risk/pg-risk-log.ts): what a unit's learner hook queued is written in that unit. */
  riskLog: UnitRiskWriter | undefined;

  /** Write the risk events the learner queued in the hook that just ran (call before any await). */
  writeRiskEvents(client: pg.ClientBase): Promise<void> {
    const taken = this.riskLog?.take() ?? [];
    return taken.length === 0 ? Promise.resolve() : this.riskLog!.write(client, taken);
  }

  // ---- the seam ----

  async recordDecision(write: DecisionWrite): Promise<RequestOutcome> {
    const { request } = write;
    const written = request.state === 'pending' ? await this.recordHeld(write) : await this.runDecisionRow(() => this.decisionRow(write));
    return {
      requestId: request.id,
      state: request.state,
      token: write.token?.token ?? null,
      tokenExpiresAt: write.token?.expiresAt ?? null,
      written,
    };
  }

  /** An allowed or denied decision's row (inside its group, just before the statement): guard, learning, audit event. */
  private decisionRow(write: DecisionWrite): DecisionRow {
    const { request } = write;
    write.guard?.();
    const learningFault = write.learn?.();
    const riskEvents = this.riskLog?.take() ?? [];
    const written: WrittenDecision = { merged: undefined, expiresAt: request.expiresAt, learningFault };
    const audit = auditOf(write, written);
    assertAuditEvent(audit.kind, audit.event);
    const fields = audit.event as JsonObject;
    const token = write.token;
    return {
      agentId: write.agentId,
      createdAt: request.createdAt,
      riskEvents,
      written,
      columns: [
        write.agentId,
        request.kid,
        write.nonce,
        write.nonceExpiresAt,
        request.id,
        request.tool,
        request.callJson,
        request.callSha256,
        request.state,
        request.policyHash,
        JSON.stringify(request.determiningPolicies),
        JSON.stringify(request.reasons),
        request.risk,
        request.createdAt,
        request.expiresAt,
        request.obligation ? encodeRequirement(request.obligation) : null,
        JSON.stringify(request.conflicted ?? []),
        token?.jti ?? null,
        token?.kid ?? null,
        token?.token ?? null,
        token?.issuedAt ?? null,
        token?.expiresAt ?? null,
        audit.at,
        audit.kind,
        canonicalize(fields),
        typeof fields.requestId === 'string' ? fields.requestId : null,
      ],
    };
  }

  /** A held call: its agent's lock, the cap and the group rule, then its one statement, in the group's transaction. */
  private recordHeld(write: DecisionWrite): Promise<WrittenDecision> {
    const { request } = write;
    return this.run(async (client): Promise<WrittenDecision> => {
      write.guard?.();
      // Held calls of one agent are written one at a time across every hub: under READ COMMITTED
      // two transactions would each count the other's uncommitted rows as absent, both pass the
      // cap and both open a group for the same call. The lock lasts until this group's COMMIT.
      // (Two groups taking two agents' locks in opposite order: PostgreSQL ends one unit with a
      // deadlock error, store_failed, and nothing of it is written.) The agent's row comes with
      // the lock, and is checked first, so a revoked agent is told so rather than that its queue
      // is full. The count and the group search are the next statement: a statement's snapshot is
      // taken before a lock taken inside it is granted.
      const agent = await client.query<TeamAgentRow & { found: boolean }>({
        name: 'cs_held_agent_lock',
        text: HELD_AGENT_AND_LOCK_SQL,
        values: [write.agentId, request.kid, HELD_CALLS_LOCK],
      });
      const agentRow = agent.rows[0]!;
      this.agentCheck?.(agentRow.found ? agentRow : undefined, write.agentId, request.createdAt);
      const conflicted = JSON.stringify(request.conflicted ?? []);
      const obligation = request.obligation ? encodeRequirement(request.obligation) : null;
      const searchGroup = write.mergeable !== undefined && obligation !== null;
      const counted = await client.query<{ n: string; id: string | null; expires_at: string | null; followers: string | null }>({
        name: 'cs_held_count_group',
        text: HELD_COUNT_AND_GROUP_SQL,
        values: [
          write.agentId,
          request.callSha256,
          request.callJson,
          request.policyHash,
          obligation,
          JSON.stringify(request.determiningPolicies),
          conflicted,
          request.createdAt,
          searchGroup,
        ],
      });
      const found = counted.rows[0]!;
      if (write.maxPending !== undefined && Number(found.n) >= write.maxPending) throw pendingQueueFull(write.agentId, write.maxPending);
      let merged: WrittenDecision['merged'];
      let expiresAt = request.expiresAt;
      if (searchGroup && found.id !== null && Number(found.followers) < write.mergeable!.maxFollowers) {
        merged = { primaryId: found.id, size: Number(found.followers) + 2 };
        expiresAt = Number(found.expires_at);
      }
      // Learning and the audit event come before the one statement that writes the decision, so
      // it can carry them. A refusal after learning (agent, key, nonce) rolls the unit back, and
      // the decision service then forgets the agent's memory (it rebuilds from the database).
      const learningFault = write.learn?.();
      const riskEvents = this.riskLog?.take() ?? [];
      const done: WrittenDecision = { merged, expiresAt, learningFault };
      const audit = auditOf(write, done);
      assertAuditEvent(audit.kind, audit.event);
      const fields = audit.event as JsonObject;
      const token = write.token;
      // One round trip: the agent's row (FOR SHARE), the nonce claim, and only when it claimed the
      // request, its token and the audit submission, with the leader's wake-up (pg_notify is
      // delivered at COMMIT, and dropped if this unit rolls back).
      const { rows } = await client.query<TeamAgentRow & { found: boolean; claimed: boolean }>({
        name: 'cs_record_decision',
        text: RECORD_DECISION_SQL,
        values: [
          write.agentId,
          request.kid,
          write.nonce,
          write.nonceExpiresAt,
          request.id,
          request.tool,
          request.callJson,
          request.callSha256,
          request.state,
          request.policyHash,
          JSON.stringify(request.determiningPolicies),
          JSON.stringify(request.reasons),
          request.risk,
          request.createdAt,
          expiresAt,
          null,
          null,
          obligation,
          conflicted,
          merged?.primaryId ?? null,
          token?.jti ?? null,
          token?.kid ?? null,
          token?.token ?? null,
          token?.issuedAt ?? null,
          token?.expiresAt ?? null,
          audit.at,
          audit.kind,
          canonicalize(fields),
          typeof fields.requestId === 'string' ? fields.requestId : null,
          AUDIT_CHANNEL,
          this.hub,
        ],
      });
      const row = rows[0]!;
      // The directory's refusal first: a revoked agent is told so, not that its nonce was used.
      this.agentCheck?.(row.found ? row : undefined, write.agentId, request.createdAt);
      if (!row.claimed) throw replayed();
      if (riskEvents.length > 0) await this.riskLog!.write(client, riskEvents);
      return done;
    });
  }

  async finishRequest(write: FinishWrite): Promise<boolean> {
    assertAuditEvent(write.audit.kind, write.audit.event);
    return this.run(async (client) => {
      const moved = await client.query(
        "UPDATE requests SET state = $1, decided_at = $2, reasons = $3, decided_by_hub = $4 WHERE id = $5 AND state = 'pending'",
        [write.to, write.at, JSON.stringify(write.reasons), this.hub, write.requestId],
      );
      if (moved.rowCount !== 1) return false;
      if (write.token) await insertToken(client, write.requestId, write.token);
      await this.submitAudit(client, write.audit);
      // Delivered to every hub's listener only when this transaction commits.
      await client.query('SELECT pg_notify($1, $2)', [OUTCOME_CHANNEL, write.requestId]);
      return true;
    });
  }

  /** Append an audit event to the submissions the leader sequences (call inside a unit of work). */
  async submitAudit(client: pg.ClientBase, submission: AuditSubmission): Promise<void> {
    const fields = submission.event as JsonObject;
    await client.query({
      name: 'cs_submit_audit',
      text: SUBMIT_AUDIT_SQL,
      values: [
        submission.at,
        submission.kind,
        canonicalize(fields),
        typeof fields.requestId === 'string' ? fields.requestId : null,
        this.hub,
        AUDIT_CHANNEL,
      ],
    });
  }

  async outcome(requestId: string): Promise<RequestOutcome | undefined> {
    try {
      // Named (prepared once per connection): read for every held call; parsing and planning it each time cost more than running it.
      const { rows } = await this.pool.query<{ state: StoredState; token: string | null; expires_at: string | null }>({
        name: 'cs_outcome',
        text: 'SELECT r.state, t.token, t.expires_at FROM requests r LEFT JOIN tokens t ON t.request_id = r.id WHERE r.id = $1',
        values: [requestId],
      });
      const row = rows[0];
      return (
        row && { requestId, state: row.state, token: row.token, tokenExpiresAt: row.expires_at === null ? null : Number(row.expires_at) }
      );
    } catch (error) {
      throw storeError(error, 'reading a request');
    }
  }

  async waitForOutcome(requestId: string, options: { signal?: AbortSignal } = {}): Promise<RequestOutcome> {
    return new Promise<RequestOutcome>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        this.finished.off(requestId, check);
        options.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      // Woken by a notification (or a listener reconnect): re-read the committed state.
      const check = () => {
        this.outcome(requestId).then(
          (o) => {
            if (!o) finish(() => reject(new CountersignError('request_unknown', `no request has the id ${JSON.stringify(requestId)}`)));
            else if (isFinal(o.state)) finish(() => resolve(o));
          },
          (error: unknown) => {
            // The database is away: keep waiting; the listener's reconnect wakes us to re-read.
            if (!(error instanceof CountersignError && error.code === 'store_unavailable'))
              finish(() => reject(error instanceof Error ? error : storeError(error, 'reading a request')));
          },
        );
      };
      const onAbort = () =>
        finish(() => reject(new CountersignError('connection_closed', 'the wait for the request outcome was cancelled')));
      // Subscribe before the first read, so a commit between the two is not missed.
      this.finished.on(requestId, check);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      check();
    });
  }

  /**
   * The early nonce read (before risk, the policy and the signing). The reads asked for in one turn
   * of the event loop go to the database as one statement (NONCES_SEEN_SQL): one per decision was
   * the commonest round trip of a hub. Each is answered from its own row; a failing statement
   * fails every read in it (store_unavailable when the database is gone).
   */
  nonceSeen(agentId: string, nonce: string): Promise<boolean> {
    if (this.closed) return Promise.reject(new CountersignError('store_unavailable', 'the team store is closed'));
    return new Promise<boolean>((resolve, reject) => {
      this.nonceReads.push({ agentId, nonce, resolve, reject });
      if (this.nonceReads.length === 1) setImmediate(() => void this.readNonces());
    });
  }

  private async readNonces(): Promise<void> {
    const reads = this.nonceReads.splice(0, MAX_NONCE_READS);
    if (this.nonceReads.length > 0) setImmediate(() => void this.readNonces());
    try {
      const { rows } = await this.pool.query<{ n: number }>({
        name: 'cs_nonces_seen',
        text: NONCES_SEEN_SQL,
        values: [reads.map((r) => r.agentId), reads.map((r) => r.nonce)],
      });
      const seen = new Set(rows.map((row) => Number(row.n)));
      reads.forEach((read, i) => read.resolve(seen.has(i + 1)));
    } catch (error) {
      const failure = storeError(error, 'reading a nonce');
      for (const read of reads) read.reject(failure);
    }
  }

  async readRequest(requestId: string): Promise<StoredRequestView | undefined> {
    let row: RequestViewRow | undefined;
    try {
      ({
        rows: [row],
      } = await this.pool.query<RequestViewRow>(
        `SELECT r.id, r.agent_id, r.state, r.reasons, r.determining_policies, r.policy_hash, r.obligation, r.expires_at,
           t.token, t.expires_at AS token_expires_at
         FROM requests r LEFT JOIN tokens t ON t.request_id = r.id WHERE r.id = $1`,
        [requestId],
      ));
    } catch (error) {
      throw storeError(error, 'reading a request');
    }
    return row && decodeView(row);
  }

  async expireDue(now: number, reasons: readonly string[], settle: (row: ExpiringRequest) => AuditSubmission): Promise<ExpiringRequest[]> {
    const expired = await this.run(async (client) => {
      // Another hub expiring the same rows at once: the one whose UPDATE wins writes the audit
      // event; the other's WHERE state = 'pending' matches nothing (rows locked, then re-checked).
      const { rows } = await client.query<ExpiringRow>(
        `UPDATE requests SET state = 'expired', decided_at = $1, reasons = $2, decided_by_hub = $3
         WHERE state = 'pending' AND expires_at <= $1
         RETURNING id, agent_id, tool, call_json, call_sha256, policy_hash, determining_policies, created_at`,
        [now, JSON.stringify(reasons), this.hub],
      );
      const due = rows
        .map((r) => ({
          id: r.id,
          agentId: r.agent_id,
          tool: r.tool,
          callJson: r.call_json,
          callSha256: r.call_sha256,
          policyHash: r.policy_hash,
          determiningPolicies: textList(r.id, r.determining_policies),
          createdAt: Number(r.created_at),
        }))
        .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
      for (const row of due) {
        const audit = settle(row);
        await this.writeRiskEvents(client);
        assertAuditEvent(audit.kind, audit.event);
        await this.submitAudit(client, audit);
        await client.query('SELECT pg_notify($1, $2)', [OUTCOME_CHANNEL, row.id]);
      }
      return due;
    });
    return expired;
  }

  async pruneNonces(now: number): Promise<number> {
    try {
      const { rowCount } = await this.pool.query('DELETE FROM seen_nonces WHERE expires_at < $1', [now]);
      return rowCount ?? 0;
    } catch (error) {
      throw storeError(error, 'pruning nonces');
    }
  }

  async appendAudit(submission: AuditSubmission): Promise<void> {
    assertAuditEvent(submission.kind, submission.event);
    await this.run((client) => this.submitAudit(client, submission));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.listener?.close();
    await this.pool.end().catch(() => undefined);
  }
}

async function insertToken(client: pg.ClientBase, requestId: string, token: TokenRow): Promise<void> {
  await client.query('INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)', [
    token.jti,
    requestId,
    token.kid,
    token.token,
    token.issuedAt,
    token.expiresAt,
  ]);
}

interface RequestViewRow {
  id: string;
  agent_id: string;
  state: StoredState;
  reasons: string;
  determining_policies: string;
  policy_hash: string;
  obligation: string | null;
  expires_at: string | null;
  token: string | null;
  token_expires_at: string | null;
}

interface ExpiringRow {
  id: string;
  agent_id: string;
  tool: string;
  call_json: string;
  call_sha256: string;
  policy_hash: string;
  determining_policies: string;
  created_at: string;
}

const textListSchema = z.array(z.string());

/** A stored column this code wrote; a malformed one is internal_error naming the request. */
function stored<T>(requestId: string, name: string, schema: z.ZodType<T>, text: string): T {
  let value: unknown;
  try {
    value = parseStoredJson(text);
  } catch {
    value = undefined;
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CountersignError('internal_error', `request ${JSON.stringify(requestId)} has a malformed ${name}`);
  return parsed.data;
}

function textList(requestId: string, text: string): string[] {
  return stored(requestId, 'determining policy list', textListSchema, text);
}

function decodeView(row: RequestViewRow): StoredRequestView {
  return {
    id: row.id,
    agentId: row.agent_id,
    state: row.state,
    reasons: stored(row.id, 'reason list', textListSchema, row.reasons),
    determiningPolicies: textList(row.id, row.determining_policies),
    policyHash: row.policy_hash,
    obligation: row.obligation === null ? null : stored(row.id, 'approval requirement', storedRequirementSchema, row.obligation),
    expiresAt: row.expires_at === null ? null : Number(row.expires_at),
    token: row.token,
    tokenExpiresAt: row.token_expires_at === null ? null : Number(row.token_expires_at),
  };
}
