/**
 * The admin quorum (approvals.adminQuorum: 2) against a real core over HTTP: admins sign in with
 * their keys (the project's software authenticator, real WebAuthn structures), the first admin's
 * tapped action becomes a proposal, a second, distinct admin confirms or rejects it with their own
 * tap, the proposer cannot decide their own, it is performed exactly once (two confirmations
 * racing: one wins, the other is admin_proposal_closed), and the audit log holds both admins'
 * assertions. Expiry runs on an injected clock.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { registerPerson, signInOverHttp, tapKey, type HttpSignIn } from '../helpers/desk-session.js';
import { createEnrollmentRequest } from '../../shared/enrollment.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import type { AdminAction } from '../../shared/admin-actions.js';
import type { BridgeEvent } from '../../shared/bridge-table.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

// The injected clock starts at the real time (enrollment requests are dated by the real clock).
let now = Date.now();
const clock = () => now;

interface Admin {
  readonly id: string;
  readonly key: VirtualAuthenticator;
  readonly desk: HttpSignIn;
}

async function start(quorum: 1 | 2, admins: string[]): Promise<{ app: Harness['app']; admins: Admin[] }> {
  now = Date.now();
  h = await startHarness({
    config: { domain: 'test', approvals: { adminQuorum: quorum, adminProposalTtlMs: 3600_000 } },
    start: { clock },
  });
  const { app } = h;
  const out: Admin[] = [];
  for (const id of admins) {
    const key = await registerPerson(app, id, ['countersign-admins']);
    out.push({ id, key, desk: await signInOverHttp(app, id, key) });
  }
  return { app, admins: out };
}

async function enrollAction(agentId: string): Promise<AdminAction> {
  const key = await importAgentKey(await generateAgentKey('ES256'));
  return {
    kind: 'agent.enroll',
    request: await createEnrollmentRequest(key, agentId, `${agentId} bot`),
    scope: {
      owner: 'root',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US'],
    },
  };
}

/** Collect the push events `admin`'s desk receives (Server-Sent Events), once its stream is open. */
async function listen(app: Harness['app'], admin: Admin): Promise<{ pushed: BridgeEvent[]; stop: () => void }> {
  const pushed: BridgeEvent[] = [];
  const before = app.bridgeEvents.subscribers;
  const stop = admin.desk.bridge.subscribe((event) => pushed.push(event));
  await vi.waitFor(() => expect(app.bridgeEvents.subscribers).toBe(before + 1));
  return { pushed, stop };
}

/** The admin's own tap over `action` (start, key, submit). */
async function act(app: Harness['app'], admin: Admin, action: AdminAction) {
  const started = await admin.desk.bridge.startAdminAction(admin.id, action);
  return admin.desk.bridge.submitAdminAction(admin.id, tapKey(app, admin.key, started.options));
}

/** A second admin's tap confirming (or rejecting) a proposal. */
async function decide(app: Harness['app'], admin: Admin, proposalId: string, confirmation: 'confirm' | 'reject') {
  const started = await admin.desk.bridge.startAdminConfirmation(proposalId, admin.id, confirmation);
  return admin.desk.bridge.submitAdminConfirmation(admin.id, tapKey(app, admin.key, started.options));
}

const records = (app: Harness['app'], kind: string) =>
  (app.db.prepare('SELECT record FROM audit_log WHERE kind = ? ORDER BY seq').all(kind) as Array<{ record: string }>).map(
    (r) => JSON.parse(r.record) as Record<string, unknown>,
  );

describe('the admin quorum (two admins)', { timeout: 90_000 }, () => {
  it("holds the first admin's tapped enrollment as a proposal; a second admin's tap performs it once, audited with both", async () => {
    const { app, admins } = await start(2, ['root', 'second']);
    const [root, second] = admins as [Admin, Admin];
    // The second admin's desk is told by push events (adminProposal), not by polling the list.
    const { pushed, stop } = await listen(app, second);
    const action = await enrollAction('quorum-bot');
    const proposed = await act(app, root, action);
    await vi.waitFor(() => expect(pushed).toHaveLength(1));
    expect(pushed).toEqual([{ name: 'adminProposal', data: { proposalId: proposed.proposal!.id, state: 'pending' } }]);
    expect(proposed.proposal).toMatchObject({ proposedBy: 'root', action: { kind: 'agent.enroll' } });
    expect(proposed.result).toEqual({});
    expect(app.registry.getAgent('quorum-bot')).toBeUndefined();
    expect(records(app, 'admin.action')).toEqual([]);
    expect(records(app, 'admin.action_proposed')).toHaveLength(1);

    const listed = await second.desk.bridge.listPendingAdminActions();
    expect(listed.quorum).toBe(2);
    expect(listed.proposals.map((p) => p.id)).toEqual([proposed.proposal!.id]);
    // The second admin's tap is over exactly the proposed action.
    expect(listed.proposals[0]!.action).toEqual(action);

    const done = await decide(app, second, proposed.proposal!.id, 'confirm');
    expect(done).toMatchObject({ proposalId: proposed.proposal!.id, verdict: 'confirm', result: { enrolled: 'quorum-bot' } });
    expect(app.registry.getAgent('quorum-bot')).toMatchObject({ status: 'active', owner: 'root' });
    const audited = records(app, 'admin.action');
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({
      adminId: 'root',
      credentialId: root.key.listCredentials()[0]!.id,
      proposalId: proposed.proposal!.id,
      confirmedBy: { adminId: 'second', credentialId: second.key.listCredentials()[0]!.id },
    });
    expect((await second.desk.bridge.listPendingAdminActions()).proposals).toEqual([]);
    await vi.waitFor(() => expect(pushed).toHaveLength(2));
    expect(pushed[1]).toEqual({ name: 'adminProposal', data: { proposalId: proposed.proposal!.id, state: 'executed' } });
    stop();
    // Exactly once: a later confirmation finds it closed.
    await expect(second.desk.bridge.startAdminConfirmation(proposed.proposal!.id, 'second', 'confirm')).rejects.toMatchObject({
      code: 'admin_proposal_closed',
    });
  });

  it('refuses the proposer deciding their own proposal (admin_self_confirm), before and after the tap', async () => {
    const { app, admins } = await start(2, ['root', 'second']);
    const [root, second] = admins as [Admin, Admin];
    const proposed = await act(app, root, { kind: 'approver.add', id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] });
    const id = proposed.proposal!.id;
    await expect(root.desk.bridge.startAdminConfirmation(id, 'root', 'confirm')).rejects.toMatchObject({ code: 'admin_self_confirm' });
    await expect(root.desk.bridge.startAdminConfirmation(id, 'root', 'reject')).rejects.toMatchObject({ code: 'admin_self_confirm' });
    // Nor in another admin's name (the desk binds adminId to the signed-in person).
    await expect(root.desk.bridge.startAdminConfirmation(id, 'second', 'confirm')).rejects.toMatchObject({ code: 'approver_mismatch' });
    // A confirmation challenge is not an admin action challenge, and the reverse.
    const started = await second.desk.bridge.startAdminConfirmation(id, 'second', 'confirm');
    await expect(second.desk.bridge.submitAdminAction('second', tapKey(app, second.key, started.options))).rejects.toMatchObject({
      code: 'challenge_invalid',
    });
    expect(() => app.approvers.get('alice')).toThrow();
    expect((await second.desk.bridge.listPendingAdminActions()).proposals).toHaveLength(1);
  });

  it('rejects: nothing is performed, the rejection is audited with the second admin, and the proposal is closed', async () => {
    const { app, admins } = await start(2, ['root', 'second']);
    const [root, second] = admins as [Admin, Admin];
    const proposed = await act(app, root, { kind: 'approver.add', id: 'mallory', displayName: 'Mallory', groups: ['countersign-admins'] });
    const { pushed, stop } = await listen(app, root);
    // A refused confirmation (the proposer's own) changes nothing and tells no one.
    await expect(root.desk.bridge.startAdminConfirmation(proposed.proposal!.id, 'root', 'reject')).rejects.toMatchObject({
      code: 'admin_self_confirm',
    });
    const rejected = await decide(app, second, proposed.proposal!.id, 'reject');
    await vi.waitFor(() => expect(pushed).toHaveLength(1));
    stop();
    expect(pushed).toEqual([{ name: 'adminProposal', data: { proposalId: proposed.proposal!.id, state: 'rejected' } }]);
    expect(rejected).toMatchObject({ verdict: 'reject', result: { rejected: proposed.proposal!.id } });
    expect(() => app.approvers.get('mallory')).toThrow();
    expect(records(app, 'admin.action_rejected')).toEqual([
      expect.objectContaining({ proposalId: proposed.proposal!.id, proposedBy: 'root', adminId: 'second' }),
    ]);
    expect(records(app, 'admin.action')).toEqual([]);
    await expect(decide(app, second, proposed.proposal!.id, 'confirm')).rejects.toMatchObject({ code: 'admin_proposal_closed' });
  });

  it('performs exactly once when two admins confirm at the same time; the replayed tap and an unknown proposal are refused', async () => {
    const { app, admins } = await start(2, ['root', 'second', 'third']);
    const [root, second, third] = admins as [Admin, Admin, Admin];
    const proposed = await act(app, root, await enrollAction('race-bot'));
    const id = proposed.proposal!.id;
    const a = await second.desk.bridge.startAdminConfirmation(id, 'second', 'confirm');
    const b = await third.desk.bridge.startAdminConfirmation(id, 'third', 'confirm');
    const tapA = tapKey(app, second.key, a.options);
    const outcomes = await Promise.allSettled([
      second.desk.bridge.submitAdminConfirmation('second', tapA),
      third.desk.bridge.submitAdminConfirmation('third', tapKey(app, third.key, b.options)),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const lost = outcomes.find((o) => o.status === 'rejected');
    expect(lost?.reason).toMatchObject({ code: 'admin_proposal_closed' });
    expect(records(app, 'admin.action')).toHaveLength(1);
    expect(app.registry.getAgent('race-bot')).toMatchObject({ status: 'active' });
    await expect(second.desk.bridge.submitAdminConfirmation('second', tapA)).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(second.desk.bridge.startAdminConfirmation('adm-none', 'second', 'confirm')).rejects.toMatchObject({
      code: 'admin_proposal_unknown',
    });
  });

  it('closes a proposal that waited past approvals.adminProposalTtlMs, and refuses a confirmation once the proposer lost the admin group', async () => {
    const { app, admins } = await start(2, ['root', 'second', 'third']);
    const [root, second, third] = admins as [Admin, Admin, Admin];
    const stale = await act(app, root, { kind: 'approver.add', id: 'late', displayName: 'Late', groups: [] });
    now += 3600_000;
    // An hour on, the desks' sessions have idled out too: everyone signs in again.
    const root2 = await signInOverHttp(app, 'root', root.key);
    const second2 = await signInOverHttp(app, 'second', second.key);
    const third2 = await signInOverHttp(app, 'third', third.key);
    expect((await second2.bridge.listPendingAdminActions()).proposals).toEqual([]);
    await expect(second2.bridge.startAdminConfirmation(stale.proposal!.id, 'second', 'confirm')).rejects.toMatchObject({
      code: 'admin_proposal_closed',
    });

    // root proposes; before anyone confirms, root is taken out of the admin group (second proposes, third confirms).
    const fresh = await act(app, { ...root, desk: root2 }, { kind: 'approver.add', id: 'quiet', displayName: 'Quiet', groups: [] });
    const demote = await act(app, { ...second, desk: second2 }, { kind: 'approver.set_groups', id: 'root', groups: [] });
    await decide(app, { ...third, desk: third2 }, demote.proposal!.id, 'confirm');
    expect(app.approvers.get('root').groups).toEqual([]);
    await expect(decide(app, { ...third, desk: third2 }, fresh.proposal!.id, 'confirm')).rejects.toMatchObject({
      code: 'approver_not_eligible',
    });
    expect(() => app.approvers.get('quiet')).toThrow();
  });

  it('lets one admin act alone while fewer than two admins can tap (the first run), and with quorum 1 as before', async () => {
    const { app, admins } = await start(2, ['root']);
    const [root] = admins as [Admin];
    const alone = await act(app, root, { kind: 'approver.add', id: 'second', displayName: 'Second', groups: ['countersign-admins'] });
    expect(alone.proposal).toBeUndefined();
    expect(app.approvers.get('second').groups).toEqual(['countersign-admins']);
    // The second admin has no key yet, so still one admin can tap.
    const stillAlone = await act(app, root, { kind: 'approver.add', id: 'bob', displayName: 'Bob', groups: [] });
    expect(stillAlone.proposal).toBeUndefined();
    await h!.close();

    const single = await start(1, ['root', 'second']);
    const done = await act(single.app, single.admins[0]!, { kind: 'approver.add', id: 'carol', displayName: 'Carol', groups: [] });
    expect(done.proposal).toBeUndefined();
    expect((await single.admins[1]!.desk.bridge.listPendingAdminActions()).quorum).toBe(1);
  });
});
