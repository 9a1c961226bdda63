/**
 * The approvals view's quorum display: "1 of 2", which group lists are still open and who can
 * still approve, computed with the one quorum rule (shared/quorum.ts) from what the bridge gives
 * the renderer (the request and the approver list). Pure (no DOM, no React), so
 * renderer/test/quorum-view.test.ts runs test/vectors/quorum.json through it.
 *
 * The core decides; this only shows. It counts as the core does: approvals of active approvers,
 * not excluded from the request, nobody while the agent's owner is unresolved.
 */
import type { ApprovalRequest, ApproverSummary } from '../../shared/bridge.js';
import { isStillNeeded, quorumStatus, samePerson, type QuorumApproval, type QuorumStatus } from '../../shared/quorum.js';

export interface ApprovalProgress extends QuorumStatus {
  /** "1 of 2": the people who count so far of those required. */
  text: string;
}

/** The request's fields the display reads (a stored outcome's approvals may replace `approvals`). */
export type QuorumRequest = Pick<ApprovalRequest, 'obligation' | 'approvals' | 'excludedApprovers' | 'ownerUnresolved'>;

function directoryEntry(approvers: readonly ApproverSummary[], approverId: string): ApproverSummary | undefined {
  return approvers.find((a) => a.id === approverId) ?? approvers.find((a) => samePerson(a.id, approverId));
}

function excluded(request: QuorumRequest, approverId: string): boolean {
  return request.ownerUnresolved === true || (request.excludedApprovers ?? []).some((e) => samePerson(e.approverId, approverId));
}

/** The approvals the core would count: approve verdicts of active, listed approvers who are not excluded. */
export function countedApprovals(request: QuorumRequest, approvers: readonly ApproverSummary[]): QuorumApproval[] {
  const out: QuorumApproval[] = [];
  for (const entry of request.approvals) {
    if (entry.verdict !== 'approve' || excluded(request, entry.approverId)) continue;
    const approver = directoryEntry(approvers, entry.approverId);
    if (approver === undefined || approver.status !== 'active') continue;
    out.push({ approverId: entry.approverId, groups: approver.groups });
  }
  return out;
}

/** Where the request's quorum stands, with its "n of m" text. */
export function approvalProgress(request: QuorumRequest, approvers: readonly ApproverSummary[]): ApprovalProgress {
  const status = quorumStatus(request.obligation, countedApprovals(request, approvers));
  return { ...status, text: `${status.counted.length} of ${status.required}` };
}

/**
 * Whether `approverId` may still approve: active, not excluded, has not decided, and approving
 * would move the request towards its quorum (the core's approver_not_eligible otherwise).
 */
export function mayStillApprove(request: QuorumRequest, approvers: readonly ApproverSummary[], approverId: string): boolean {
  const approver = directoryEntry(approvers, approverId);
  if (approver === undefined || approver.status !== 'active' || excluded(request, approver.id)) return false;
  if (request.approvals.some((e) => e.approverId === approver.id)) return false;
  return isStillNeeded(request.obligation, countedApprovals(request, approvers), { approverId: approver.id, groups: approver.groups });
}

/** Everyone in the approver list who may still approve, in list order. */
export function whoCanStillApprove(request: QuorumRequest, approvers: readonly ApproverSummary[]): ApproverSummary[] {
  return approvers.filter((a) => mayStillApprove(request, approvers, a.id));
}
