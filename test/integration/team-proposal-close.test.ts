/**
 * A confirmed team admin proposal is closed in the transaction of the action it performs
 * (TeamTap.closesProposal): when the action is refused, the proposal stays pending and no record
 * says it ran (review of fe1d212: it was stored 'executed' with only its proposal in the audit log).
 * And the admin quorum is counted again inside the transaction of a tap that would act alone: a
 * second admin committed after the hub counted (the tap's change queued behind the directory
 * lock, after the promotion) makes the tap a proposal.
 * One hub on a real PostgreSQL 15 per test (the second on its own database), admin quorum 2,
 * admins with software keys.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PG_LOCKS } from '../../main/core/store/pg/pg-locks.js';
import type { RunningCountersign } from '../../main/core/app.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { FINANCE_SCOPE } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { signInOverHttp, tapKey } from '../helpers/desk-session.js';
import { closeTeamRoom, ensureTeamPeople, registerTeamPerson, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
}, 120_000);

afterAll(async () => {
  await closeTeamRoom({ clients: [], db, cluster, hubs, dirs });
}, 60_000);

describe('a confirmed team proposal whose action is refused', () => {
  it('stays pending with no admin.action record, listed on the desk, and a second admin can still reject it', async () => {
    const room = { dirs, hubs };
    const hub = await startTeamHub(room, 'hub-p', cluster.url, teamHubDir(room, 'hub-p', { approvals: { adminQuorum: 2 } }));
    const prime = await registerTeamPerson(hub, 'prime', ['countersign-admins']);
    const second = await registerTeamPerson(hub, 'second', ['countersign-admins']);
    await ensureTeamPeople(hub, FINANCE_SCOPE.owner);
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    const request = await createEnrollmentRequest(key, 'raced-bot', 'raced-bot');
    const action = { kind: 'agent.enroll' as const, request, scope: { ...FINANCE_SCOPE } };
    const root = await signInOverHttp(hub, 'prime', prime);
    const started = await root.bridge.startAdminAction('prime', action);
    const proposalId = (await root.bridge.submitAdminAction('prime', tapKey(hub, prime, started.options))).proposal!.id;
    const other = await signInOverHttp(hub, 'second', second);
    const confirm = await other.bridge.startAdminConfirmation(proposalId, 'second', 'confirm');
    // Meanwhile the same agent is enrolled another way (the CLI with --database): performing the proposal now fails.
    await hub.team!.agents.enroll(await verifyEnrollmentRequest(request), FINANCE_SCOPE);
    const outcome = await other.bridge.submitAdminConfirmation('second', tapKey(hub, second, confirm.options)).then(
      () => 'performed',
      (error: { code?: string }) => `refused ${error.code}`,
    );
    expect(outcome).toMatch(/^refused /);
    const { rows } = await db.query<{ state: string }>('SELECT state FROM admin_proposals WHERE id = $1', [proposalId]);
    const audited = await db.query<{ kind: string }>(
      `SELECT kind FROM (SELECT kind, fields AS text FROM audit_submissions UNION ALL SELECT kind, record FROM audit_log) entries
       WHERE text LIKE $1 ORDER BY kind`,
      [`%${proposalId}%`],
    );
    // Before the fix: [{ state: 'executed' }] with only admin.action_proposed in the team audit log.
    expect({ outcome, rows, kinds: audited.rows.map((r) => r.kind) }).toEqual({
      outcome: 'refused enrollment_conflict',
      rows: [{ state: 'pending' }],
      kinds: ['admin.action_proposed'],
    });
    // Still listed on the desk, and a second admin may reject it now: closed once, with its record.
    expect((await other.bridge.listPendingAdminActions()).proposals.map((p) => p.id)).toContain(proposalId);
    const reject = await other.bridge.startAdminConfirmation(proposalId, 'second', 'reject');
    await other.bridge.submitAdminConfirmation('second', tapKey(hub, second, reject.options));
    const closed = await db.query<{ state: string }>('SELECT state FROM admin_proposals WHERE id = $1', [proposalId]);
    expect(closed.rows).toEqual([{ state: 'rejected' }]);
  }, 120_000);
});

describe('the admin quorum on a team hub', () => {
  it("is counted again inside the tap's transaction: a second admin committed after the hub counted makes the tap a proposal, never an action alone", async () => {
    // Its own team database, so its admins are the only ones.
    await db.query('CREATE DATABASE quorum_window');
    const url = cluster.url.replace(/\/postgres$/, '/quorum_window');
    const room = { dirs, hubs };
    const hub = await startTeamHub(room, 'hub-q', url, teamHubDir(room, 'hub-q', { approvals: { adminQuorum: 2 } }));
    const prime = await registerTeamPerson(hub, 'prime', ['countersign-admins']);
    await registerTeamPerson(hub, 'second', []); // a key, not yet an admin: prime alone can tap, so the quorum does not apply
    const root = await signInOverHttp(hub, 'prime', prime);
    const started = await root.bridge.startAdminAction('prime', { kind: 'approver.add', id: 'carol', displayName: 'Carol', groups: [] });
    const team = testPool(url, 3);
    const holder = await team.connect();
    try {
      // Every directory change waits behind this lock. Queued first: `second` joins the admins
      // (two admins can tap once it commits); queued next: prime's tap, counted before it.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1)', [PG_LOCKS.directory]);
      const promoted = hub.team!.approvers.setGroups('second', ['countersign-admins']);
      await vi.waitFor(async () => expect(await lockWaiters(team)).toBe(1));
      const tapped = root.bridge.submitAdminAction('prime', tapKey(hub, prime, started.options));
      await vi.waitFor(async () => expect(await lockWaiters(team)).toBe(2));
      await holder.query('COMMIT');
      await promoted;
      const outcome = await tapped;
      const carol = await team.query('SELECT id FROM directory_approvers WHERE id = $1', ['carol']);
      const proposals = await team.query<{ proposed_by: string; state: string }>('SELECT proposed_by, state FROM admin_proposals');
      // Before the count moved inside the transaction: carol was added by prime's tap alone, no proposal.
      expect({ proposed: outcome.proposal !== undefined, carol: carol.rows, proposals: proposals.rows }).toEqual({
        proposed: true,
        carol: [],
        proposals: [{ proposed_by: 'prime', state: 'pending' }],
      });
    } finally {
      holder.release();
      await team.end();
    }
  }, 120_000);
});

/** Transactions waiting for an advisory lock now. */
async function lockWaiters(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
  return Number(rows[0]!.n);
}
