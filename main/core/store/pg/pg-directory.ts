/**
 * The team directory on PostgreSQL (ADR 0013): one directory of agents and approvers for every
 * hub of a database. PostgreSQL is the authority; each hub keeps its SQLite directory tables as a
 * replica, so every read of the directory (the decision path, the approval service) stays
 * synchronous and local.
 *  - A write takes the directory's transaction-scoped advisory lock, checks and writes the
 *    authoritative rows (uniqueness is the database's: primary keys), appends one entry to the
 *    change log `directory_changes` (seq = last + 1, so commit order is seq order and a reader
 *    never sees a gap), submits its team audit records and sends pg_notify, all in one
 *    transaction. Nothing is written to a hub's SQLite directory except by the applier.
 *  - The applier reads the log past the replica's last applied seq and applies each entry in its
 *    own SQLite transaction with the new seq (meta `team_directory_seq`): at open (catch-up), on
 *    each notification, after a listener reconnect. Upserts of row images, so an entry applied by
 *    another process on the same data directory (the CLI) is simply skipped.
 *  - A decision checks its agent and key in PostgreSQL inside its own transaction (checkAgent,
 *    FOR SHARE), so a revocation committed on another hub holds on the next call even before this
 *    hub's replica has applied it.
 *  - A cloned key caught while the database is down is held in the hub's SQLite (holdSuspicion)
 *    and recorded for the team after the next catch-up (whenCaughtUp; docs/team-mode.md).
 */
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { z } from 'zod';
import type { Db } from '../database.js';
import type { AuditSubmission } from '../store-seam.js';
import { assertAuditEvent } from '../../../../shared/audit-events.js';
import { CountersignError, quote } from '../../../../shared/errors.js';
import { parseStrictJson } from '../../../../shared/canonical-json.js';
import { counterRegressed } from '../../../../shared/authenticators.js';
import { checkOut, isConnectionLoss, isDeadlockVictim, storeError } from './pg-errors.js';
import { PgListener } from './pg-listener.js';
import { PG_LOCKS } from './pg-locks.js';
import type { PgDecisionStore } from './pg-decision-store.js';

export const DIRECTORY_CHANNEL = 'countersign_directory';
/** Serialises directory writes across hubs. */
const DIRECTORY_LOCK = PG_LOCKS.directory;
const LOCAL_SEQ_KEY = 'team_directory_seq';
const LOCAL_ID_KEY = 'team_directory_id';
/** Meta keys of the suspicions this hub holds until the team directory records them (one per key). */
const HELD_SUSPICION_PREFIX = 'team_suspect_held:';
const PAGE = 500;

export type ReplicaValue = string | number | null;
export type ReplicaRow = Record<string, ReplicaValue>;

/** The replica's tables: key column and every column a row image carries (never interpolated from data). */
const REPLICA_TABLES = {
  agents: {
    key: 'id',
    columns: [
      'id',
      'display_name',
      'owner',
      'group_name',
      'allowed_tools',
      'data_classes',
      'jurisdictions',
      'status',
      'created_at',
      'expires_at',
      'revoked_at',
      'revoked_reason',
      'model',
      'agent_version',
      'owner_state',
      'owner_entered',
      'review_reason',
    ],
  },
  agent_keys: { key: 'kid', columns: ['kid', 'agent_id', 'alg', 'public_jwk', 'status', 'created_at', 'not_after', 'revoked_at'] },
  approvers: { key: 'id', columns: ['id', 'display_name', 'groups_json', 'virtual', 'status', 'created_at', 'disabled_at'] },
  approver_aliases: { key: 'alias', columns: ['alias', 'approver_id', 'created_at'] },
  approver_credentials: {
    key: 'credential_id',
    columns: [
      'credential_id',
      'approver_id',
      'public_key',
      'public_jwk',
      'sign_count',
      'aaguid',
      'attestation_fmt',
      'attestation_object',
      'transports',
      'status',
      'created_at',
      'last_used_at',
    ],
  },
  registration_codes: { key: 'code_hash', columns: ['code_hash', 'approver_id', 'issued_by', 'expires_at', 'used_at'] },
} as const;

export type ReplicaTable = keyof typeof REPLICA_TABLES;
export type ReplicaOp = { table: ReplicaTable; row: ReplicaRow } | { table: ReplicaTable; delete: string };

const replicaValue = z.union([z.string(), z.number(), z.null()]);
const opsSchema = z.array(
  z.union([
    z.strictObject({ table: z.enum(Object.keys(REPLICA_TABLES) as [ReplicaTable]), row: z.record(z.string(), replicaValue) }),
    z.strictObject({ table: z.enum(Object.keys(REPLICA_TABLES) as [ReplicaTable]), delete: z.string() }),
  ]),
);

/** What a directory write decided inside its transaction. */
export interface DirectoryWrite<T> {
  ops: ReplicaOp[];
  audit: AuditSubmission[];
  result: T;
}

/**
 * A security-key tap as the commit it authorises checks it in the team directory: the approver,
 * the key, and the key's new signature counter (advanced in the same transaction).
 */
export interface TeamTap {
  approverId: string;
  credentialId: string;
  counter: number;
  at: number;
  /**
   * The admin quorum proposal this tap confirms, closed in the same transaction as the change it
   * authorises (admin-actions.ts): proposal, action and audit record commit or roll back together,
   * so a refused action leaves the proposal pending, never "executed" with nothing performed.
   */
  closesProposal?: (client: pg.PoolClient) => Promise<void>;
  /**
   * The desk sign-in's challenge, recorded as used in the same transaction (ui/desk-sessions.ts,
   * ADR 0019), before the counter is checked: a replayed assertion is refused as a used challenge,
   * never read as a cloned key's (its counter is no longer ahead of the team's).
   */
  spendsChallenge?: (client: pg.PoolClient) => Promise<void>;
  /**
   * An admin's tap that performs its action alone (admin-actions.ts): inside the transaction,
   * under the directory lock that every change of admins and keys takes, the admin quorum must
   * still not apply; it throws TeamQuorumApplies when a second admin who can tap was committed
   * since the hub counted them, and the change rolls back.
   */
  actsAlone?: (client: pg.PoolClient) => Promise<void>;
}

/**
 * Thrown inside a change by TeamTap.actsAlone: the admin quorum applies now, so the tap may only
 * propose; nothing was written and the caller proposes instead (admin-actions.ts).
 */
export class TeamQuorumApplies extends Error {
  constructor() {
    super('the admin quorum applies');
  }
}

/**
 * Thrown inside a commit when a tap's counter does not advance past the team's: the commit rolls
 * back and the caller takes the key out of service for every hub (approvals/team-approvers.ts).
 */
export class TeamCounterRegression extends Error {
  constructor(
    readonly credentialId: string,
    readonly approverId: string,
    readonly stored: number,
    readonly reported: number,
  ) {
    super('counter regression');
  }
}

/**
 * A cloned key this hub caught while the team directory could not record it (the database down
 * at that moment): kept in this hub's SQLite until the team directory marks the key suspect.
 */
export interface HeldSuspicion {
  credentialId: string;
  approverId: string;
  stored: number;
  reported: number;
  /** When the regression was caught (the audit record's time). */
  at: number;
}

const heldSuspicionSchema = z.strictObject({
  credentialId: z.string(),
  approverId: z.string(),
  stored: z.number(),
  reported: z.number(),
  at: z.number(),
});

export class PgDirectory {
  private readonly events = new EventEmitter();
  private readonly afterCatchUp: Array<() => Promise<void>> = [];
  private listener: PgListener | undefined;
  private pulling: Promise<number> | undefined;
  private pullAgain = false;
  private closed = false;
  private readonly upserts = new Map<ReplicaTable, { run(row: ReplicaRow): void }>();
  private readonly deletes = new Map<ReplicaTable, { run(key: string): void }>();

  private constructor(
    private readonly store: PgDecisionStore,
    private readonly db: Db,
    private readonly onError: (message: string) => void,
  ) {
    this.events.setMaxListeners(0);
    for (const [name, spec] of Object.entries(REPLICA_TABLES) as Array<[ReplicaTable, (typeof REPLICA_TABLES)[ReplicaTable]]>) {
      const columns: readonly string[] = spec.columns;
      // The replica's sign counters and last use are this hub's own (the team's counters are
      // checked and advanced in PostgreSQL, in each tap's commit: checkTap); a key marked
      // suspect here stays suspect until the directory removes it.
      const kept = name === 'approver_credentials' ? new Set(['sign_count', 'last_used_at', 'status']) : new Set<string>();
      const sets = columns.filter((c) => c !== spec.key && !kept.has(c)).map((c) => `${c} = excluded.${c}`);
      if (name === 'approver_credentials')
        sets.push(
          "status = CASE WHEN approver_credentials.status = 'suspect' AND excluded.status = 'active' THEN 'suspect' ELSE excluded.status END",
        );
      const upsert = db.prepare(
        `INSERT INTO ${name} (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')}) ON CONFLICT (${spec.key}) DO UPDATE SET ${sets.join(', ')}`,
      );
      this.upserts.set(name, {
        run: (row) => {
          const keys = Object.keys(row);
          if (keys.length !== columns.length || !keys.every((k) => columns.includes(k)))
            throw new CountersignError('store_failed', `a directory change carries a malformed ${name} row`);
          upsert.run(row);
        },
      });
      const remove = db.prepare(`DELETE FROM ${name} WHERE ${spec.key} = ?`);
      this.deletes.set(name, { run: (key) => remove.run(key) });
    }
  }

  /** Open the directory of `store`'s database over `db` (the hub's SQLite): catch up, then listen. */
  static async open(store: PgDecisionStore, db: Db, onError: (message: string) => void = () => undefined): Promise<PgDirectory> {
    const directory = new PgDirectory(store, db, onError);
    await directory.adopt();
    try {
      await directory.listen(); // then the first catch-up: nothing committed meanwhile is missed
    } catch (error) {
      await directory.close();
      throw storeError(error, 'reading the directory changes');
    }
    return directory;
  }

  /** The team database's pool (reads beside the directory, such as the calls a revocation ended). */
  get pool(): pg.Pool {
    return this.store.pool;
  }

  /** The last change this hub's replica has applied. */
  get appliedSeq(): number {
    const row = this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(LOCAL_SEQ_KEY);
    return row === undefined ? 0 : Number(row.value);
  }

  /**
   * A data directory that replicated another team database starts over (its rows are overwritten
   * by the new database's row images as they are applied).
   */
  private async adopt(): Promise<void> {
    let id: string;
    try {
      const { rows } = await this.store.pool.query<{ value: string }>("SELECT value FROM meta WHERE key = 'directory_id'");
      id = rows[0]?.value ?? '';
    } catch (error) {
      throw storeError(error, 'reading the directory');
    }
    const local = this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(LOCAL_ID_KEY)?.value;
    if (local === id) return;
    this.db
      .transaction(() => {
        const put = this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
        put.run(LOCAL_ID_KEY, id);
        put.run(LOCAL_SEQ_KEY, '0');
      })
      .immediate();
  }

  // ---- the applier ----

  /** Apply every change committed so far; resolves with the seq applied. One pull at a time. */
  catchUp(): Promise<number> {
    if (this.pulling !== undefined) {
      this.pullAgain = true;
      return this.pulling.then(() => this.catchUp());
    }
    this.pulling = this.pull().finally(() => {
      this.pulling = undefined;
    });
    return this.pulling;
  }

  private async pull(): Promise<number> {
    for (;;) {
      this.pullAgain = false;
      const from = this.appliedSeq;
      let rows: Array<{ seq: string; kind: string; ops: string }>;
      try {
        ({ rows } = await this.store.pool.query<{ seq: string; kind: string; ops: string }>(
          'SELECT seq, kind, ops FROM directory_changes WHERE seq > $1 ORDER BY seq LIMIT $2',
          [from, PAGE],
        ));
      } catch (error) {
        throw storeError(error, 'reading the directory changes');
      }
      for (const row of rows) {
        const revoked = this.apply(Number(row.seq), row.kind, row.ops);
        for (const agentId of revoked) this.events.emit('revoked', agentId);
      }
      if (rows.length > 0) this.events.emit('applied', this.appliedSeq);
      if (rows.length < PAGE && !this.pullAgain) return this.appliedSeq;
    }
  }

  /** Apply one change; returns the agents it revoked (each hub ends their sessions, whichever hub revoked). */
  private apply(seq: number, kind: string, text: string): string[] {
    let ops: ReplicaOp[];
    try {
      ops = opsSchema.parse(parseStrictJson(text));
    } catch (cause) {
      throw new CountersignError('store_failed', `directory change ${seq} (${kind}) is malformed; this hub's directory stops here`, {
        cause,
      });
    }
    this.db
      .transaction(() => {
        const applied = this.appliedSeq;
        if (seq <= applied) return; // another process on this data directory applied it
        if (seq !== applied + 1)
          throw new CountersignError('store_failed', `directory change ${seq} follows ${applied}: a change is missing`);
        for (const op of ops) {
          if ('row' in op) this.upserts.get(op.table)!.run(op.row);
          else this.deletes.get(op.table)!.run(op.delete);
        }
        this.db
          .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
          .run(LOCAL_SEQ_KEY, String(seq));
      })
      .immediate();
    if (kind !== 'agent.revoked') return [];
    return ops.flatMap((op) => ('row' in op && op.table === 'agents' && op.row.status === 'revoked' ? [String(op.row.id)] : []));
  }

  /** Call `listener` with each agent a change this replica applies revokes (committed on any hub). */
  onRevoked(listener: (agentId: string) => void): void {
    this.events.on('revoked', listener);
  }

  /** Resolves once this hub's replica has applied change `seq`. */
  waitForSeq(seq: number): Promise<void> {
    if (this.appliedSeq >= seq) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (applied: number) => {
        if (applied < seq) return;
        this.events.off('applied', check);
        resolve();
      };
      this.events.on('applied', check);
    });
  }

  // ---- the listener: wake-ups by NOTIFY, a catch-up after every (re)connect ----

  private listen(): Promise<void> {
    this.listener = new PgListener({
      connection: this.store.config.pool,
      channel: DIRECTORY_CHANNEL,
      name: 'the directory replica',
      onNotify: () => void this.listener?.catchUp(),
      // A replica left behind would refuse agents the team enrolled: PgListener retries until it applied everything.
      onConnected: async () => {
        await this.catchUp();
        for (const work of this.afterCatchUp) await work();
      },
      onError: this.onError,
    });
    return this.listener.start();
  }

  /**
   * Run `work` after every catch-up of the listener (at each reconnect, and now): what this hub
   * owes the team database once it answers again. A rejection is retried with the catch-up's backoff.
   */
  whenCaughtUp(work: () => Promise<void>): void {
    this.afterCatchUp.push(work);
    void this.listener?.catchUp();
  }

  // ---- suspicions held on this hub while the team database is unreachable ----

  /**
   * Keep `suspicion` in this hub's SQLite and take the key out of service in this hub's replica,
   * in one local transaction: this hub refuses the key from now on (the replica keeps a suspect
   * key suspect), and the suspicion survives a restart until {@link releaseSuspicion}.
   */
  holdSuspicion(suspicion: HeldSuspicion): void {
    this.db
      .transaction(() => {
        this.db
          .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING')
          .run(HELD_SUSPICION_PREFIX + suspicion.credentialId, JSON.stringify(suspicion));
        this.db
          .prepare("UPDATE approver_credentials SET status = 'suspect' WHERE credential_id = ? AND status = 'active'")
          .run(suspicion.credentialId);
      })
      .immediate();
  }

  /** The suspicions this hub holds, oldest first. */
  heldSuspicions(): HeldSuspicion[] {
    return this.db
      .prepare<[number, string], { value: string }>('SELECT value FROM meta WHERE substr(key, 1, ?) = ?')
      .all(HELD_SUSPICION_PREFIX.length, HELD_SUSPICION_PREFIX)
      .map((row) => heldSuspicionSchema.parse(parseStrictJson(row.value)))
      .sort((x, y) => x.at - y.at);
  }

  /** The team directory recorded the suspicion (or can never): this hub no longer holds it. */
  releaseSuspicion(credentialId: string): void {
    this.db.prepare('DELETE FROM meta WHERE key = ?').run(HELD_SUSPICION_PREFIX + credentialId);
  }

  // ---- writes ----

  /**
   * One directory write: `work` checks and writes the authoritative rows on `client` and says what
   * the replicas apply and what the team audit log records; all of it commits together, under the
   * directory lock. Resolves once committed with `work`'s result, after this hub's replica applied
   * it when it can (a failed catch-up is retried in the background: the write still succeeded, so
   * callers answer from `result`, not from the replica). A write with no operations and no audit
   * record appends no change.
   */
  async change<T>(kind: string, at: number, work: (client: pg.PoolClient) => Promise<DirectoryWrite<T>>, tap?: TeamTap): Promise<T> {
    // A deadlock victim (40P01) committed nothing: the whole write runs again, a bounded number of
    // times (team.database.deadlockAttempts). The cycle is real: a hub's group commit holds a held request (an approval's unit)
    // and then wants its agent FOR SHARE (a decision's unit), while a revocation holds the agent
    // and wants the request; PostgreSQL ends one side, and the revocation must not fail for it.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.changeOnce(kind, at, work, tap);
      } catch (error) {
        if (!isDeadlockVictim(error)) throw error;
        if (attempt >= this.store.config.deadlockAttempts)
          throw new CountersignError(
            'store_failed',
            `the directory change was ended as a deadlock victim ${attempt} times; nothing was written`,
            {
              cause: error,
            },
          );
      }
    }
  }

  private async changeOnce<T>(
    kind: string,
    at: number,
    work: (client: pg.PoolClient) => Promise<DirectoryWrite<T>>,
    tap?: TeamTap,
  ): Promise<T> {
    if (this.closed) throw new CountersignError('store_unavailable', 'the team directory is closed');
    let lost: Error | undefined;
    const onLost = (error: Error) => {
      lost = error;
    };
    let client: pg.PoolClient;
    try {
      client = await checkOut(this.store.pool, onLost); // listening before any error can arrive
    } catch (error) {
      throw storeError(error, 'connecting');
    }
    let seq = 0;
    let written: DirectoryWrite<T>;
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [DIRECTORY_LOCK]);
      // The admin's tap that authorises this change: their key's counter advances with it.
      // A proposal first: of two confirmations racing, the later finds it closed before its tap is
      // checked, so a tap that lost the race never reads as a cloned key's (a counter behind).
      await tap?.closesProposal?.(client);
      await tap?.spendsChallenge?.(client);
      await tap?.actsAlone?.(client);
      if (tap !== undefined) await PgDirectory.checkTap(client, tap);
      written = await work(client);
      if (written.ops.length > 0 || written.audit.length > 0) {
        const { rows } = await client.query<{ seq: string }>('SELECT coalesce(max(seq), 0) + 1 AS seq FROM directory_changes');
        seq = Number(rows[0]!.seq);
        await client.query('INSERT INTO directory_changes (seq, at, hub, kind, ops) VALUES ($1, $2, $3, $4, $5)', [
          seq,
          at,
          this.store.hub,
          kind,
          JSON.stringify(written.ops),
        ]);
        for (const audit of written.audit) {
          assertAuditEvent(audit.kind, audit.event);
          await this.store.submitAudit(client, audit);
        }
        await client.query('SELECT pg_notify($1, $2)', [DIRECTORY_CHANNEL, String(seq)]);
      }
      await client.query('COMMIT');
    } catch (error) {
      // As the decision store's group (pg-decision-store.ts): a connection that stopped answering
      // is destroyed and the server rolls back when its session ends; a ROLLBACK sent on it would
      // only wait for its own timeout, and the pool must never get it back.
      if (isConnectionLoss(error)) lost ??= error as Error;
      else await client.query('ROLLBACK').catch(() => undefined);
      // A cloned key's tap: the caller takes the key out of service (admin-actions.ts), so it must see this as it is.
      if (error instanceof TeamCounterRegression || error instanceof TeamQuorumApplies) throw error;
      throw storeError(error, 'changing the directory');
    } finally {
      client.off('error', onLost);
      client.release(lost);
    }
    // Committed, so the write succeeded whatever happens to this hub's replica now: the caller is
    // answered with what was committed (`written.result`, never a re-read of the replica). A
    // catch-up that fails (the local file busy, the database gone a moment) is tried again by the
    // listener with backoff until it applies; the caller is not told of it.
    if (seq > 0 && !(await this.listener!.catchUp()))
      this.onError(`directory change ${seq} is committed; this hub's replica applies it when its catch-up succeeds`);
    return written.result;
  }

  /**
   * Inside a decision's transaction: the agent and the key it signed with, as the team directory
   * has them now. FOR SHARE makes a concurrent revocation wait for this decision's COMMIT (and a
   * decision starting after the revocation's COMMIT sees it), so no hub decides for an agent
   * after its revocation committed. The decision store reads the same row (agentRowSql) inside its
   * one decision statement and verifies it with verifyAgent.
   */
  static async checkAgent(client: pg.ClientBase, agentId: string, kid: string, now: number): Promise<void> {
    const { rows } = await client.query<TeamAgentRow>(agentRowSql('$1', '$2'), [agentId, kid]);
    PgDirectory.verifyAgent(rows[0], agentId, now);
  }

  /** Refuses a decision for the agent row agentRowSql read (undefined: no such agent) with the embedded codes. */
  static verifyAgent(row: TeamAgentRow | undefined, agentId: string, now: number): void {
    if (row === undefined)
      throw new CountersignError('agent_unknown', `no agent named ${quote(agentId)} is enrolled in the team directory`);
    if (row.status !== 'active') throw new CountersignError('agent_revoked', `agent ${quote(agentId)} has been revoked`);
    if (row.key_agent !== agentId) throw new CountersignError('key_unknown', `the key is not enrolled for agent ${quote(agentId)}`);
    if (row.key_status === 'revoked' || (row.key_status === 'retiring' && (row.not_after === null || now >= Number(row.not_after))))
      throw new CountersignError('key_revoked', `that key of agent ${quote(agentId)} has been rotated out or revoked`);
  }

  /**
   * Inside the transaction a tap authorises (an approval's commit, an admin's directory change):
   * the approver active and the key theirs and active in the team directory, as they are now on
   * every hub (FOR SHARE: a removal waits for this commit, and a commit after the removal sees
   * it), and the key's signature counter advanced past the team's (FOR UPDATE: two taps of one
   * key on two hubs are ordered). Throws the embedded codes, or TeamCounterRegression.
   */
  static async checkTap(client: pg.ClientBase, tap: TeamTap): Promise<void> {
    const approver = await client.query<{ status: string }>('SELECT status FROM directory_approvers WHERE id = $1 FOR SHARE', [
      tap.approverId,
    ]);
    const status = approver.rows[0]?.status;
    if (status === undefined)
      throw new CountersignError('approver_unknown', `no approver named ${quote(tap.approverId)} is in the team directory`);
    if (status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(tap.approverId)} is disabled`);
    const { rows } = await client.query<{ approver_id: string; status: string; sign_count: string }>(
      'SELECT approver_id, status, sign_count FROM directory_credentials WHERE credential_id = $1 FOR UPDATE',
      [tap.credentialId],
    );
    const key = rows[0];
    if (key === undefined || key.approver_id !== tap.approverId)
      throw new CountersignError('credential_unknown', `that security key is not registered to approver ${quote(tap.approverId)}`);
    if (key.status === 'suspect')
      throw new CountersignError(
        'credential_suspect',
        'that security key is marked suspect (its signature counter went backwards) and is refused',
      );
    if (key.status !== 'active') throw new CountersignError('credential_unknown', 'that security key has been removed');
    const stored = Number(key.sign_count);
    if (counterRegressed(stored, tap.counter)) throw new TeamCounterRegression(tap.credentialId, tap.approverId, stored, tap.counter);
    await client.query('UPDATE directory_credentials SET sign_count = $2, last_used_at = $3 WHERE credential_id = $1', [
      tap.credentialId,
      tap.counter,
      tap.at,
    ]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.listener?.close();
  }
}

/** An agent and the key it signed with, as a decision reads them in its transaction (agentRowSql). */
export interface TeamAgentRow {
  status: string;
  key_status: string | null;
  key_agent: string | null;
  not_after: string | null;
}

/**
 * The query of an agent's row and its key's (parameters `agent` and `kid` are placeholders such as
 * '$1'), the agent locked FOR SHARE until COMMIT: see checkAgent.
 */
export function agentRowSql(agent: string, kid: string): string {
  return `SELECT a.status, k.status AS key_status, k.agent_id AS key_agent, k.not_after
       FROM directory_agents a LEFT JOIN directory_agent_keys k ON k.kid = ${kid} WHERE a.id = ${agent} FOR SHARE OF a`;
}

/**
 * Whether this data directory holds a replica of a team directory (a hub's, or the CLI's after a
 * write with --database): its agents are written through PostgreSQL only, never here alone.
 */
export function replicatesTeamDirectory(db: Db): boolean {
  return db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(LOCAL_ID_KEY) !== undefined;
}

/** The authoritative tables a write locks a row of, by their key column (never interpolated from data). */
const LOCKABLE = { directory_agents: 'id', directory_approvers: 'id', directory_credentials: 'credential_id' } as const;

/**
 * Inside a directory write: the authoritative row `key` of `table` (its status and row image),
 * locked FOR UPDATE until COMMIT; undefined when the team directory has none.
 */
export async function lockDirectoryRow(
  client: pg.ClientBase,
  table: keyof typeof LOCKABLE,
  key: string,
): Promise<{ status: string; row: ReplicaRow } | undefined> {
  const { rows } = await client.query<{ status: string; row: string }>(
    `SELECT status, row FROM ${table} WHERE ${LOCKABLE[table]} = $1 FOR UPDATE`,
    [key],
  );
  const found = rows[0];
  return found === undefined ? undefined : { status: found.status, row: storedRow(found.row) };
}

/** A row image stored in an authoritative table's `row` column. */
export function storedRow(text: string): ReplicaRow {
  return parseStrictJson(text) as ReplicaRow;
}
