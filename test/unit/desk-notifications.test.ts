/**
 * The desk's notification rules (shared/desk-notifications.ts): who is notified, a new request
 * once, a reminder once before expiry, a burst coalesced into one summary, and the title count.
 */
import { describe, expect, it } from 'vitest';
import type { ApprovalRequest } from '../../shared/bridge.js';
import { EMPTY_NOTIFY_MEMORY, needsPerson, planNotifications, titleWithCount, type NotifyPerson } from '../../shared/desk-notifications.js';

const NOW = 1_800_000_000_000;
const alice: NotifyPerson = { approverId: 'alice', groups: ['finance'] };

function request(id: string, over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    requestId: id,
    agentId: 'agent-1',
    tool: 'payments.transfer',
    params: { amount: 48000 },
    dataClass: 'financial',
    jurisdiction: 'EU',
    provenance: [],
    callSha256: 'A'.repeat(43),
    policyHash: 'sha256:x',
    determiningPolicies: ['p'],
    reasons: [],
    obligation: { approvals: 2, groups: [['finance']], ttlSeconds: 600, userVerification: 'required' },
    risk: { score: 40, factors: [] },
    state: 'pending',
    createdAt: NOW - 1000,
    expiresAt: NOW + 10 * 60_000,
    approvals: [],
    ...over,
  };
}

describe('who a request needs', () => {
  it('needs a person in a counted group who has not answered', () => {
    expect(needsPerson(request('r1'), alice, NOW)).toBe(true);
  });
  it('does not need someone outside every group list', () => {
    expect(needsPerson(request('r1'), { approverId: 'bob', groups: ['ops'] }, NOW)).toBe(false);
  });
  it('needs anyone when the requirement names no groups', () => {
    const open = request('r1', { obligation: { approvals: 1, groups: [], ttlSeconds: 600, userVerification: 'required' } });
    expect(needsPerson(open, { approverId: 'bob', groups: [] }, NOW)).toBe(true);
  });
  it('does not need the owner or anyone excluded (compared as one person, any case)', () => {
    expect(needsPerson(request('r1', { excludedApprovers: [{ approverId: ' Alice', reason: 'owner' }] }), alice, NOW)).toBe(false);
  });
  it('does not need someone who already approved or denied', () => {
    const answered = request('r1', { approvals: [{ approverId: 'ALICE', displayName: 'A', verdict: 'approve', at: NOW - 10 }] });
    expect(needsPerson(answered, alice, NOW)).toBe(false);
  });
  it('does not need anyone for an expired, decided or owner-unresolved request', () => {
    expect(needsPerson(request('r1', { expiresAt: NOW }), alice, NOW)).toBe(false);
    expect(needsPerson(request('r1', { state: 'approved' }), alice, NOW)).toBe(false);
    expect(needsPerson(request('r1', { ownerUnresolved: true }), alice, NOW)).toBe(false);
  });
});

describe('planning notices', () => {
  it('notifies a new request once, with its link target and no approve wording beyond the key tap', () => {
    const first = planNotifications([request('r1')], alice, NOW, EMPTY_NOTIFY_MEMORY);
    expect(first.notices).toHaveLength(1);
    expect(first.notices[0]).toMatchObject({ kind: 'new', requestId: 'r1', title: 'Approval needed: payments.transfer' });
    expect(first.notices[0]!.body).toContain('approving needs your security key');
    expect(first.count).toBe(1);
    const again = planNotifications([request('r1')], alice, NOW + 1000, first.memory);
    expect(again.notices).toHaveLength(0);
  });

  it('reminds once when the lead before expiry is reached, and wakes for it', () => {
    const r = request('r1', { expiresAt: NOW + 5 * 60_000 });
    const first = planNotifications([r], alice, NOW, EMPTY_NOTIFY_MEMORY, { reminderLeadMs: 120_000, coalesceAbove: 3 });
    expect(first.nextWakeAt).toBe(NOW + 3 * 60_000);
    const early = planNotifications([r], alice, NOW + 3 * 60_000 - 1, first.memory, { reminderLeadMs: 120_000, coalesceAbove: 3 });
    expect(early.notices).toHaveLength(0);
    const due = planNotifications([r], alice, NOW + 3 * 60_000, early.memory, { reminderLeadMs: 120_000, coalesceAbove: 3 });
    expect(due.notices).toEqual([
      expect.objectContaining({ kind: 'reminder', requestId: 'r1', title: 'Expiring soon: payments.transfer' }),
    ]);
    expect(due.nextWakeAt).toBeUndefined();
    const after = planNotifications([r], alice, NOW + 4 * 60_000, due.memory, { reminderLeadMs: 120_000, coalesceAbove: 3 });
    expect(after.notices).toHaveLength(0);
  });

  it('does not send a reminder right after the first notice when a request arrives inside the lead', () => {
    const late = request('r1', { expiresAt: NOW + 60_000 });
    const first = planNotifications([late], alice, NOW, EMPTY_NOTIFY_MEMORY);
    expect(first.notices.map((n) => n.kind)).toEqual(['new']);
    expect(planNotifications([late], alice, NOW + 1000, first.memory).notices).toHaveLength(0);
  });

  it('coalesces a burst above the limit into one summary opening the most urgent request', () => {
    const burst = [1, 2, 3, 4].map((i) => request(`r${i}`, { expiresAt: NOW + (10 - i) * 60_000 }));
    const plan = planNotifications(burst, alice, NOW, EMPTY_NOTIFY_MEMORY);
    expect(plan.notices).toEqual([expect.objectContaining({ kind: 'summary', requestId: 'r4', title: '4 requests need your approval' })]);
    expect(plan.count).toBe(4);
    const three = planNotifications(burst.slice(0, 3), alice, NOW, EMPTY_NOTIFY_MEMORY);
    expect(three.notices.map((n) => n.kind)).toEqual(['new', 'new', 'new']);
  });

  it('forgets requests that stopped waiting, and counts only what needs this person', () => {
    const first = planNotifications(
      [request('r1'), request('r2', { excludedApprovers: [{ approverId: 'alice', reason: 'owner' }] })],
      alice,
      NOW,
      EMPTY_NOTIFY_MEMORY,
    );
    expect(first.count).toBe(1);
    const gone = planNotifications([], alice, NOW + 1, first.memory);
    expect(gone.count).toBe(0);
    expect(gone.memory.notified.size).toBe(0);
  });
});

describe('title count', () => {
  it('prefixes the count, caps it, and leaves the title alone at zero', () => {
    expect(titleWithCount('Countersign', 0)).toBe('Countersign');
    expect(titleWithCount('Countersign', 3)).toBe('(3) Countersign');
    expect(titleWithCount('Countersign', 250)).toBe('(99+) Countersign');
  });
});
