/**
 * The renderer's quorum display (renderer/src/quorum-view.ts) over the one quorum rule's
 * vectors, test/vectors/quorum.json: each vector becomes a pending request as the bridge
 * delivers it (approval entries, obligation) and the approver list the view loads.
 */
import { describe, expect, it } from 'vitest';
import type { ApprovalRequest, ApproverSummary } from '../../shared/bridge.js';
import type { QuorumVector, QuorumVectorFile } from '../../test/vectors/quorum-vectors.js';
import vectorFile from '../../test/vectors/quorum.json';
import { approvalProgress, mayStillApprove, whoCanStillApprove, type QuorumRequest } from '../src/quorum-view.js';

const file = vectorFile as QuorumVectorFile;

function approverList(v: QuorumVector): ApproverSummary[] {
  const list: ApproverSummary[] = [];
  for (const p of [...v.approvals, ...(v.candidates ?? [])]) {
    if (list.some((a) => a.id === p.approverId)) continue;
    list.push({
      id: p.approverId,
      displayName: `Approver ${p.approverId}`,
      groups: p.groups,
      virtual: false,
      status: 'active',
      createdAt: 1,
    });
  }
  return list;
}

function requestOf(v: QuorumVector): QuorumRequest {
  return {
    obligation: { ...v.requirement, ttlSeconds: 900, userVerification: 'required' },
    // One entry per approval, as the core lists them (the bridge carries no key ids).
    approvals: v.approvals.map((a, i) => ({
      approverId: a.approverId,
      displayName: `Approver ${a.approverId}`,
      verdict: 'approve' as const,
      at: 1000 + i,
    })),
  };
}

describe('renderer quorum display over test/vectors/quorum.json', () => {
  it.each(file.quorum.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const approvers = approverList(v);
    const request = requestOf(v);
    const progress = approvalProgress(request, approvers);
    const { text, ...status } = progress;
    expect(status).toEqual(v.expect);
    expect(text).toBe(`${v.expect.counted.length} of ${v.expect.required}`);
    for (const candidate of v.candidates ?? []) {
      expect({ candidate: candidate.approverId, stillNeeded: mayStillApprove(request, approvers, candidate.approverId) }).toEqual({
        candidate: candidate.approverId,
        stillNeeded: candidate.stillNeeded,
      });
    }
    const eligible = new Set(whoCanStillApprove(request, approvers).map((a) => a.id));
    for (const candidate of v.candidates ?? []) expect(eligible.has(candidate.approverId)).toBe(candidate.stillNeeded);
  });
});

describe('renderer quorum display: what the core would not count', () => {
  const finance = (id: string, status: ApproverSummary['status'] = 'active'): ApproverSummary => ({
    id,
    displayName: id,
    groups: ['finance'],
    virtual: false,
    status,
    createdAt: 1,
  });
  const base: Pick<ApprovalRequest, 'obligation' | 'approvals'> = {
    obligation: { approvals: 2, groups: [['finance']], ttlSeconds: 900, userVerification: 'required' },
    approvals: [{ approverId: 'alice', displayName: 'Alice', verdict: 'approve', at: 1 }],
  };

  it('shows "1 of 2" for one approval of two and lists who can still approve', () => {
    const approvers = [finance('alice'), finance('bob'), finance('carol')];
    expect(approvalProgress(base, approvers).text).toBe('1 of 2');
    expect(whoCanStillApprove(base, approvers).map((a) => a.id)).toEqual(['bob', 'carol']);
  });

  it('does not count a disabled or unlisted approver, nor a denial', () => {
    expect(approvalProgress(base, [finance('alice', 'disabled'), finance('bob')]).text).toBe('0 of 2');
    expect(approvalProgress(base, [finance('bob')]).text).toBe('0 of 2');
    const denied = { ...base, approvals: [{ approverId: 'alice', displayName: 'Alice', verdict: 'deny' as const, at: 1 }] };
    expect(approvalProgress(denied, [finance('alice'), finance('bob')]).text).toBe('0 of 2');
    // Who decided (either way) may not decide again.
    expect(mayStillApprove(denied, [finance('alice'), finance('bob')], 'alice')).toBe(false);
  });

  it('counts nobody excluded from the request, and nobody at all while the owner is unresolved', () => {
    const approvers = [finance('alice'), finance('bob'), finance('dana')];
    const excluded = {
      ...base,
      excludedApprovers: [
        { approverId: 'alice', reason: 'policy' as const },
        { approverId: 'dana', reason: 'owner' as const },
      ],
    };
    expect(approvalProgress(excluded, approvers).text).toBe('0 of 2');
    expect(whoCanStillApprove(excluded, approvers).map((a) => a.id)).toEqual(['bob']);
    const held = { ...base, ownerUnresolved: true as const };
    expect(approvalProgress(held, approvers).text).toBe('0 of 2');
    expect(whoCanStillApprove(held, approvers)).toEqual([]);
  });
});
