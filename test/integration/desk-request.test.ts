/**
 * The desk's two bridge rows against the real core (SQLite, the demo policies, virtual approvers
 * in the test key domain): listQueue orders the queue by expiry with the page's approvals and
 * merged followers, and getRequest's dry run reports, for one approver and each verdict, the error
 * the ceremony would meet (owner conflict, not eligible, already decided, no key), so the desk can
 * disable a button with its reason. Bad input fails with stable codes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_SCOPE, startHarness, transferCall, type Harness } from '../helpers/harness.js';
import type { AgentClient } from '../../shared/agent-client.js';
import { isCountersignError } from '../../shared/errors.js';

let h: Harness;
let finance: AgentClient;
let deploy: AgentClient;

beforeAll(async () => {
  h = await startHarness({ config: { domain: 'test' } });
  const va = h.app.virtualApprovers!;
  await va.create({ id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] });
  await va.create({ id: 'bob', displayName: 'Bob', groups: ['finance-approvers'] });
  await va.create({ id: 'sre-1', displayName: 'SRE One', groups: ['sre-approvers'] });
  await va.create({ id: 'sam@example.com', displayName: 'Sam', groups: ['sre-approvers'] });
  // In the right group, but never registered a key.
  h.app.approvers.addApprover({ id: 'keyless', displayName: 'Keyless', groups: ['finance-approvers'] });
  finance = h.client('finance-bot', await h.enroll('finance-bot'));
  deploy = h.client('deploy-bot', await h.enroll('deploy-bot', DEPLOY_SCOPE));
}, 60_000);

afterAll(async () => {
  await h?.close();
});

async function refusal(work: Promise<unknown>): Promise<string> {
  try {
    await work;
  } catch (error) {
    return isCountersignError(error) ? error.code : 'not a CountersignError';
  }
  return 'resolved';
}

describe('the desk queue and request rows', () => {
  it('lists the queue soonest-to-expire first, with approvals and merged followers from one page read', async () => {
    const ui = h.app.ui;
    const transfer = await finance.submit(transferCall('48000.00', 'Northwind Traders')); // 15 min window
    const twin = await finance.submit(transferCall('48000.00', 'Northwind Traders')); // merged into the first
    const deployment = await deploy.submit({
      tool: 'deploy.production',
      params: { service: 'checkout', environment: 'production', changeId: 'CHG-7', diff: '+ x' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    }); // 30 min window
    await h.app.virtualApprovers!.decide({ requestId: transfer.requestId, approverId: 'alice', verdict: 'approve' });
    const page = await ui.listQueue(50);
    const ids = page.pending.map((r) => r.requestId);
    expect(ids.indexOf(transfer.requestId)).toBeLessThan(ids.indexOf(deployment.requestId));
    expect(ids).not.toContain(twin.requestId);
    const shown = page.pending.find((r) => r.requestId === transfer.requestId)!;
    expect(shown.count).toBe(2);
    expect(shown.followers).toEqual([twin.requestId]);
    expect(shown.approvals.map((a) => a.approverId)).toEqual(['alice']);
    // The batched page and the one-request read agree member for member.
    expect(shown).toEqual((await ui.listPendingApprovals(50)).pending.find((r) => r.requestId === transfer.requestId));
    expect(page.total).toBe(page.pending.length);
  });

  it('says why each verdict would fail for each approver, and that it would succeed for an eligible one', async () => {
    const ui = h.app.ui;
    const held = await finance.submit(transferCall('26000.00', 'Contoso'));
    await h.app.virtualApprovers!.decide({ requestId: held.requestId, approverId: 'alice', verdict: 'approve' });

    const bob = await ui.getRequest(held.requestId, 'bob');
    expect(bob.approve).toEqual({ ok: true });
    expect(bob.deny).toEqual({ ok: true });
    expect(bob.keys).toEqual([{ approverId: 'alice', credentialId: h.app.approvers.credentialsOf('alice')[0]!.credentialId }]);

    const alice = await ui.getRequest(held.requestId, 'alice');
    expect(alice.approve).toMatchObject({ ok: false, code: 'approver_already_decided' });
    expect((await ui.getRequest(held.requestId, 'sre-1')).approve).toMatchObject({ ok: false, code: 'approver_not_eligible' });
    expect((await ui.getRequest(held.requestId, 'keyless')).approve).toMatchObject({ ok: false, code: 'credential_unknown' });

    const change = await deploy.submit({
      tool: 'deploy.production',
      params: { service: 'search', environment: 'production', changeId: 'CHG-8', diff: '+ y' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    });
    const sam = await ui.getRequest(change.requestId, 'sam@example.com');
    expect(sam.approve).toMatchObject({ ok: false, code: 'approver_conflicted', conflict: 'owner' });
    expect(sam.deny).toMatchObject({ ok: false, code: 'approver_conflicted', conflict: 'owner' });
    expect((await ui.getRequest(change.requestId, 'sre-1')).approve).toEqual({ ok: true });
  });

  it('reports a decided request with both verdicts refused as no longer pending', async () => {
    const held = await finance.submit(transferCall('27000.00', 'Fabrikam'));
    await h.app.virtualApprovers!.decide({ requestId: held.requestId, approverId: 'alice', verdict: 'deny', reason: 'no' });
    const shown = await h.app.ui.getRequest(held.requestId, 'bob');
    expect(shown.request.state).toBe('denied');
    expect(shown.approve).toMatchObject({ ok: false, code: 'request_not_pending' });
  });

  it('refuses an unknown request and an unknown approver with stable codes', async () => {
    const held = await finance.submit(transferCall('28000.00', 'Litware'));
    expect(await refusal(h.app.ui.getRequest('req_nope', 'bob'))).toBe('request_unknown');
    const stranger = await h.app.ui.getRequest(held.requestId, 'nobody');
    expect(stranger.approve).toMatchObject({ ok: false, code: 'approver_unknown' });
  });
});
