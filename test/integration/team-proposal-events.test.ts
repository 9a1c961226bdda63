/**
 * Admin quorum proposals push to the desks of every hub (docs/team-mode.md "One origin, any
 * hub"): a proposal made on hub A reaches a desk signed in on hub B as its `adminProposal` event
 * (Server-Sent Events, the desk's own stream), and its confirmation on hub B reaches the proposer's
 * desk on hub A; each desk gets each event once. Two hubs on a real PostgreSQL 15 (LISTEN/NOTIFY).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import type { BridgeEvent } from '../../shared/bridge-table.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest } from '../../shared/enrollment.js';
import { FINANCE_SCOPE } from '../helpers/harness.js';
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js';
import { signInOverHttp, tapKey, type HttpSignIn } from '../helpers/desk-session.js';
import { closeTeamRoom, ensureTeamPeople, registerTeamPerson, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

let cluster: PostgresCluster;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];

beforeAll(async () => {
  cluster = await startPostgres();
}, 120_000);

afterAll(async () => {
  await closeTeamRoom({ clients: [], db: undefined, cluster, hubs, dirs });
}, 60_000);

/** The push events a desk signed in on `hub` receives, once its stream is open. */
async function deskEvents(hub: RunningCountersign, desk: HttpSignIn): Promise<{ pushed: BridgeEvent[]; stop: () => void }> {
  const pushed: BridgeEvent[] = [];
  const before = hub.bridgeEvents.subscribers;
  const stop = desk.bridge.subscribe((event) => {
    if (event.name === 'adminProposal') pushed.push(event);
  });
  await vi.waitFor(() => expect(hub.bridgeEvents.subscribers).toBe(before + 1));
  return { pushed, stop };
}

describe('admin proposals on two hubs', () => {
  it("reach the desks of the other hub as push events: proposed on A, seen on B's desk; confirmed on B, seen on A's", async () => {
    const room = { dirs, hubs };
    const settings = { approvals: { adminQuorum: 2, adminProposalTtlMs: 3_600_000 } };
    const a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a', settings));
    const b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b', settings));
    const keys = new Map<string, VirtualAuthenticator>();
    for (const id of ['root', 'second']) keys.set(id, await registerTeamPerson(a, id, ['countersign-admins']));
    await ensureTeamPeople(a, FINANCE_SCOPE.owner);
    await b.team!.directory.catchUp();
    const onA = await signInOverHttp(a, 'root', keys.get('root')!);
    const onB = await signInOverHttp(b, 'second', keys.get('second')!);
    const seenOnA = await deskEvents(a, onA);
    const seenOnB = await deskEvents(b, onB);

    const request = await createEnrollmentRequest(await importAgentKey(await generateAgentKey('EdDSA')), 'pushed-bot', 'pushed-bot');
    const started = await onA.bridge.startAdminAction('root', { kind: 'agent.enroll', request, scope: { ...FINANCE_SCOPE } });
    const proposalId = (await onA.bridge.submitAdminAction('root', tapKey(a, keys.get('root')!, started.options))).proposal!.id;
    // Before the fix only hub A's desks were told; hub B's desk saw it on its next reload.
    await vi.waitFor(() => expect(seenOnB.pushed).toHaveLength(1), { timeout: 10_000 });
    expect(seenOnB.pushed).toEqual([{ name: 'adminProposal', data: { proposalId, state: 'pending' } }]);

    const confirm = await onB.bridge.startAdminConfirmation(proposalId, 'second', 'confirm');
    await onB.bridge.submitAdminConfirmation('second', tapKey(b, keys.get('second')!, confirm.options));
    await vi.waitFor(() => expect(seenOnA.pushed).toHaveLength(2), { timeout: 10_000 });
    await vi.waitFor(() => expect(seenOnB.pushed).toHaveLength(2), { timeout: 10_000 });
    // Each desk told once of each step: its own hub's event and the other hub's notification are not both delivered.
    const expected = [
      { name: 'adminProposal', data: { proposalId, state: 'pending' } },
      { name: 'adminProposal', data: { proposalId, state: 'executed' } },
    ];
    expect({ onA: seenOnA.pushed, onB: seenOnB.pushed }).toEqual({ onA: expected, onB: expected });
    // A later event on each stream proves no third one was on its way: a rejected second proposal.
    const again = await onA.bridge.startAdminAction('root', { kind: 'approver.issue_registration_code', id: 'second' });
    const second = (await onA.bridge.submitAdminAction('root', tapKey(a, keys.get('root')!, again.options))).proposal!.id;
    const reject = await onB.bridge.startAdminConfirmation(second, 'second', 'reject');
    await onB.bridge.submitAdminConfirmation('second', tapKey(b, keys.get('second')!, reject.options));
    await vi.waitFor(() => expect(seenOnA.pushed.at(-1)?.data).toEqual({ proposalId: second, state: 'rejected' }), { timeout: 10_000 });
    await vi.waitFor(() => expect(seenOnB.pushed.at(-1)?.data).toEqual({ proposalId: second, state: 'rejected' }), { timeout: 10_000 });
    expect([seenOnA.pushed.length, seenOnB.pushed.length]).toEqual([4, 4]);
    seenOnA.stop();
    seenOnB.stop();
  }, 120_000);
});
