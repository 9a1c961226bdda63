/**
 * A confirmed team admin proposal is closed in the transaction of the action it performs
 * (TeamTap.closesProposal): when the action is refused, the proposal stays pending and no record
 * says it ran (review of fe1d212: it was stored 'executed' with only its proposal in the audit log).
 * One hub on a real PostgreSQL 15, admin quorum 2, two admins with software keys.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
