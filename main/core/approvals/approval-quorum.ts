/**
 * The approval service's quorum path: the core's people (approver records, already filtered for
 * status and conflicts by the service) run through the one quorum rule in shared/quorum.ts.
 * test/unit/quorum-core.test.ts runs test/vectors/quorum.json through these functions.
 */
import type { ApprovalRequirement } from '../../../shared/protocol.js';
import { countsTowards, isStillNeeded, quorumStatus, type QuorumApproval, type QuorumStatus } from '../../../shared/quorum.js';

/** The stricter of the stored requirement and the current policy's (re-evaluation at completion). */
export { stricterRequirement } from '../../../shared/quorum.js';

/** A person as the approval service counts them: an approver id and the approver's groups. */
export interface QuorumPerson {
  id: string;
  groups: readonly string[];
}

const asApproval = (person: QuorumPerson): QuorumApproval => ({ approverId: person.id, groups: person.groups });

/** Where the people who approved stand against the request's requirement. */
export function quorumOf(requirement: ApprovalRequirement, people: readonly QuorumPerson[]): QuorumStatus {
  return quorumStatus(requirement, people.map(asApproval));
}

/** Whether these people meet the requirement (the service mints only when they do). */
export function quorumMet(requirement: ApprovalRequirement, people: readonly QuorumPerson[]): boolean {
  return quorumOf(requirement, people).satisfied;
}

/** Whether someone in `groups` can count towards (and so decide) the requirement. */
export function inAnyGroup(requirement: ApprovalRequirement, groups: readonly string[]): boolean {
  return countsTowards(requirement, groups);
}

/** Whether `candidate` approving would move the request towards its quorum (else approver_not_eligible). */
export function stillNeeded(requirement: ApprovalRequirement, current: readonly QuorumPerson[], candidate: QuorumPerson): boolean {
  return isStillNeeded(requirement, current.map(asApproval), asApproval(candidate));
}
