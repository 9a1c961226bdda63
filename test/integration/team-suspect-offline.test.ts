/**
 * A cloned key caught on a hub while the team database is down (docs/team-mode.md "A cloned key
 * while the database is down"): the tap is refused with credential_suspect, the hub holds the
 * suspicion in its own SQLite (it refuses the key at once, and a restart keeps it), and the team
 * directory records it for every hub, audited once, as soon as the database answers again.
 * Two hubs on a real PostgreSQL 15 that the test stops and starts.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import { CeremonyEngine } from '../../main/core/approvals/ceremony.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
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
  vi.restoreAllMocks();
  await closeTeamRoom({ clients: [], db, cluster, hubs, dirs });
}, 60_000);

async function teamStatus(credentialId: string): Promise<{ status: string | undefined; audited: number }> {
  const key = await db.query<{ status: string }>('SELECT status FROM directory_credentials WHERE credential_id = $1', [credentialId]);
  const audited = await db.query(
    `SELECT 1 FROM audit_submissions WHERE kind = 'approver.credential_suspect' AND fields LIKE $1
     UNION ALL SELECT 1 FROM audit_log WHERE kind = 'approver.credential_suspect' AND record LIKE $1`,
    [`%${credentialId}%`],
  );
  return { status: key.rows[0]?.status, audited: audited.rowCount ?? 0 };
}

/**
 * Have `admin`'s clone (its counter one behind the tap hub `hub` stored) answer an admin action
 * there; the database goes down once the hub has read the ceremony's challenge, as the answer is
 * verified (a spy that stops the real server, then runs the real verification unchanged).
 */
async function cloneTapsWhileDatabaseDown(hub: RunningCountersign, admin: string, key: VirtualAuthenticator): Promise<string> {
  const credentialId = key.listCredentials()[0]!.id;
  const desk = await signInOverHttp(hub, admin, key); // a tap on this hub: its counter moves here
  const started = await desk.bridge.startAdminAction(admin, { kind: 'approver.issue_registration_code', id: 'newcomer' });
  key.setCounter(credentialId, key.listCredentials()[0]!.signCount - 1);
  const answer = tapKey(hub, key, started.options);
  const prototype = CeremonyEngine.prototype;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the engine as `this`
  const verify = prototype.verify;
  const spy = vi.spyOn(prototype, 'verify').mockImplementationOnce(function (this: CeremonyEngine, ...args) {
    cluster.stopServer();
    return verify.apply(this, args);
  });
  try {
    // Before the fix: store_unavailable, and the key stayed active on every hub.
    await expect(desk.bridge.submitAdminAction(admin, answer)).rejects.toMatchObject({ code: 'credential_suspect' });
  } finally {
    spy.mockRestore();
  }
  expect(hub.approvers.credential(credentialId).status).toBe('suspect');
  expect(hub.team!.directory.heldSuspicions()).toMatchObject([{ credentialId, approverId: admin }]);
  return credentialId;
}

async function recordedForTheTeam(credentialId: string): Promise<void> {
  await vi.waitFor(async () => expect(await teamStatus(credentialId)).toEqual({ status: 'suspect', audited: 1 }), {
    timeout: 20_000,
    interval: 50,
  });
}

describe('a cloned key caught while the team database is down', () => {
  it('is refused with credential_suspect, held on the hub, and marked suspect for every hub once the database is back', async () => {
    const room = { dirs, hubs };
    const dirA = teamHubDir(room, 'hub-a');
    let a = await startTeamHub(room, 'hub-a', cluster.url, dirA);
    const b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b'));
    const ada = await registerTeamPerson(a, 'ada', ['countersign-admins']);
    const bea = await registerTeamPerson(a, 'bea', ['countersign-admins']);
    await registerTeamPerson(a, 'cy', ['countersign-admins']); // the last active admin is never taken out by a clone here
    await ensureTeamPeople(a, 'newcomer');

    // The database comes back while the hub runs: its directory listener reconnects and replays.
    const adas = await cloneTapsWhileDatabaseDown(a, 'ada', ada);
    cluster.startServer();
    await recordedForTheTeam(adas);
    await vi.waitFor(() => expect(a.team!.directory.heldSuspicions()).toEqual([]), { timeout: 10_000, interval: 50 });
    await b.team!.directory.catchUp();
    expect(b.approvers.credential(adas).status).toBe('suspect');
    // The genuine key is refused on every hub too (either may be the clone): no sign-in on hub B.
    await expect(signInOverHttp(b, 'ada', ada)).rejects.toThrow(/credential/);

    // Hub A restarts while the database is still down: the suspicion is kept in its data directory.
    const beas = await cloneTapsWhileDatabaseDown(a, 'bea', bea);
    await a.close();
    hubs.splice(hubs.indexOf(a), 1);
    expect(await teamStatus(beas).catch(() => 'database down')).toBe('database down');
    cluster.startServer();
    a = await startTeamHub(room, 'hub-a', cluster.url, dirA);
    await recordedForTheTeam(beas);
    await vi.waitFor(() => expect(a.team!.directory.heldSuspicions()).toEqual([]), { timeout: 10_000, interval: 50 });
    expect(a.approvers.credential(beas).status).toBe('suspect');
  }, 120_000);
});
