/**
 * The team-mode store on PostgreSQL (ADR 0012). Same semantics as the SQLite store:
 *  - Group commit: units of work queued in the same moment share one transaction, each in its own
 *    SAVEPOINT (a failing unit rolls back alone), one COMMIT; several groups run at once, one per
 *    pooled connection. Nobody is answered before the COMMIT holding their rows returned; if the
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

export const OUTCOME_CHANNEL = 'countersign_outcome';
export const AUDIT_CHANNEL = 'countersign_audit';
/** The advisory lock key migrations run under. */
const MIGRATION_LOCK = PG_LOCKS.migrations;
/** The first key of the per-agent lock held calls are written under (the second is the agent id's hash; the two-key form never meets the one-key locks). */
export const HELD_CALLS_LOCK = PG_LOCKS.heldCalls;

type Work<T> = (client: pg.PoolClient) => Promise<T>;
interface Unit {
  work: Work<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
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
  private readonly onError: (message: string) => void;
  /** The team directory's check of the agent and key, inside each decision's transaction (pg-directory.ts). */
  private agentCheck: ((client: pg.PoolClient, agentId: string, kid: string, now: number) => Promise<void>) | undefined;

  private constructor(options: PgStoreOptions) {
    this.hub = options.hub;
    this.config = resolveDatabaseConfig(options);
    this.pool = new pg.Pool(this.config.pool);
    // An idle pooled connection that dies (database restart) must not crash the hub.
    this.pool.on('error', (error) => this.onError(`a pooled database connection failed: ${error.message}`));
    this.maxGroups = Math.max(1, this.config.poolSize - 1);
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

  private pump(): void {
    while (this.running < this.maxGroups && this.queue.length > 0) {
      this.running++;
      // Let units queued in this turn join the group before it is cut.
      setImmediate(() => {
        const batch = this.queue.splice(0, this.config.maxBatch);
        const done = () => {
          this.running--;
          this.pump();
        };
        if (batch.length === 0) done();
        else void this.commitGroup(batch).finally(done);
      });
    }
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
      await client.query('BEGIN');
      for (const unit of batch) {
        await client.query('SAVEPOINT unit');
        try {
          const value = await unit.work(client);
          await client.query('RELEASE SAVEPOINT unit');
          outcomes.push({ ok: true, value });
        } catch (error) {
          if (isConnectionLoss(error)) throw error;
          await client.query('ROLLBACK TO SAVEPOINT unit');
          outcomes.push({ ok: false, error });
        }
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

  /** Check every decision's agent and key with `check` inside its transaction (the team directory, ADR 0013). */
  checkAgentsWith(check: (client: pg.PoolClient, agentId: string, kid: string, now: number) => Promise<void>): void {
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
    const written = await this.run(async (client): Promise<WrittenDecision> => {
      write.guard?.();
      await this.agentCheck?.(client, write.agentId, request.kid, request.createdAt);
      const held = request.state === 'pending';
      // Held calls of one agent are written one at a time across every hub: under READ COMMITTED
      // two transactions would each count the other's uncommitted rows as absent, both pass the
      // cap and both open a group for the same call. The lock lasts until this group's COMMIT.
      // (Two groups taking two agents' locks in opposite order: PostgreSQL ends one unit with a
      // deadlock error, store_failed, and nothing of it is written.)
      if (held) await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [HELD_CALLS_LOCK, write.agentId]);
      if (held && write.maxPending !== undefined) {
        const { rows } = await client.query<{ n: string }>("SELECT count(*) AS n FROM requests WHERE agent_id = $1 AND state = 'pending'", [
          write.agentId,
        ]);
        if (Number(rows[0]!.n) >= write.maxPending) throw pendingQueueFull(write.agentId, write.maxPending);
      }
      const conflicted = JSON.stringify(request.conflicted ?? []);
      const obligation = request.obligation ? encodeRequirement(request.obligation) : null;
      let merged: WrittenDecision['merged'];
      let expiresAt = request.expiresAt;
      if (held && write.mergeable && obligation !== null) {
        // The same group rule as the SQLite store (request-repository.ts openGroup).
        const { rows } = await client.query<{ id: string; expires_at: string; followers: string }>(
          `SELECT r.id, r.expires_at, (SELECT count(*) FROM requests f WHERE f.group_id = r.id) AS followers FROM requests r
           WHERE r.agent_id = $1 AND r.call_sha256 = $2 AND r.call_json = $3 AND r.policy_hash = $4 AND r.obligation = $5
             AND r.determining_policies = $6 AND r.conflicted_approvers = $7
             AND r.state = 'pending' AND r.group_id IS NULL AND r.sealed_at IS NULL AND r.expires_at > $8
           ORDER BY r.created_at, r.id LIMIT 1`,
          [
            write.agentId,
            request.callSha256,
            request.callJson,
            request.policyHash,
            obligation,
            JSON.stringify(request.determiningPolicies),
            conflicted,
            request.createdAt,
          ],
        );
        const group = rows[0];
        if (group !== undefined && Number(group.followers) < write.mergeable.maxFollowers) {
          merged = { primaryId: group.id, size: Number(group.followers) + 2 };
          expiresAt = Number(group.expires_at);
        }
      }
      const claimed = await client.query(
        'INSERT INTO seen_nonces (agent_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [write.agentId, write.nonce, write.nonceExpiresAt],
      );
      if (claimed.rowCount !== 1) throw replayed();
      await client.query(
        `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash,
           determining_policies, reasons, risk, created_at, expires_at, decided_at, decided_by_hub, obligation, conflicted_approvers, group_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
        [
          request.id,
          write.agentId,
          request.kid,
          request.tool,
          request.callJson,
          request.callSha256,
          write.nonce,
          request.state,
          request.policyHash,
          JSON.stringify(request.determiningPolicies),
          JSON.stringify(request.reasons),
          request.risk,
          request.createdAt,
          expiresAt,
          held ? null : request.createdAt,
          held ? null : this.hub,
          obligation,
          conflicted,
          merged?.primaryId ?? null,
        ],
      );
      if (write.token) await insertToken(client, request.id, write.token);
      const learningFault = write.learn?.();
      await this.writeRiskEvents(client);
      const done: WrittenDecision = { merged, expiresAt, learningFault };
      const audit = auditOf(write, done);
      assertAuditEvent(audit.kind, audit.event);
      await this.submitAudit(client, audit);
      return done;
    });
    return {
      requestId: request.id,
      state: request.state,
      token: write.token?.token ?? null,
      tokenExpiresAt: write.token?.expiresAt ?? null,
      written,
    };
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
    await client.query('INSERT INTO audit_submissions (at, kind, fields, request_id, hub) VALUES ($1, $2, $3, $4, $5)', [
      submission.at,
      submission.kind,
      canonicalize(fields),
      typeof fields.requestId === 'string' ? fields.requestId : null,
      this.hub,
    ]);
    await client.query('SELECT pg_notify($1, $2)', [AUDIT_CHANNEL, '']);
  }

  async outcome(requestId: string): Promise<RequestOutcome | undefined> {
    try {
      const { rows } = await this.pool.query<{ state: StoredState; token: string | null; expires_at: string | null }>(
        'SELECT r.state, t.token, t.expires_at FROM requests r LEFT JOIN tokens t ON t.request_id = r.id WHERE r.id = $1',
        [requestId],
      );
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

  async nonceSeen(agentId: string, nonce: string): Promise<boolean> {
    try {
      const { rowCount } = await this.pool.query('SELECT 1 FROM seen_nonces WHERE agent_id = $1 AND nonce = $2', [agentId, nonce]);
      return rowCount === 1;
    } catch (error) {
      throw storeError(error, 'reading a nonce');
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
