/**
 * The one quorum rule of Countersign: how many people an approval requirement needs, which
 * approvals count, how many (and which group lists) are still needed, whether one more person
 * would move a request towards its quorum, and the stricter of two requirements.
 *
 * Used by the core's approval service (main/core/approvals/approval-quorum.ts), the tool-side
 * verifier (shared/verify-approvals.ts `satisfiesQuorum`) and the renderer's approvals view
 * (renderer/src/quorum-view.ts). All three run the vectors in test/vectors/quorum.json through
 * their own entry point; docs/approvals.md ("The quorum rule") states the rule in prose.
 *
 * Pure TypeScript (no node:, no DOM): the agent SDK and browsers use it too.
 */
import type { ApprovalRequirement } from './protocol.js';

/** The part of an approval requirement the quorum maths reads. */
export interface QuorumRequirement {
  /** Minimum number of distinct people (0 still means one: a held call needs an approval). */
  approvals: number;
  /**
   * AND of lists: each inner list is filled by a DIFFERENT person in ANY of its groups.
   * [['finance'], ['security']] = one from finance and another person from security;
   * [['finance', 'treasury']] = one from either. An empty list can never be filled.
   */
  groups: readonly (readonly string[])[];
}

/** One approval as the quorum sees it: who (a person's approver id) and their groups. */
export interface QuorumApproval {
  approverId: string;
  groups: readonly string[];
}

export interface QuorumStatus {
  /** Distinct people needed: max(1, approvals, number of group lists). */
  required: number;
  /** The approver ids that count, one per person, in the order first given. */
  counted: string[];
  /** Whether `counted` meets the requirement: enough people and every group list filled by a different one. */
  satisfied: boolean;
  /** The fewest more people that could still meet it (0 when satisfied). */
  stillNeeded: number;
  /** The group lists no counted person fills (by one maximum matching, lists in order). */
  openGroups: string[][];
}

/**
 * A person's identity key: approver ids compared trimmed and in any case, so one person counts
 * once whatever key signed and however the id was spelled. Aliases (emails, chat handles) are
 * resolved to the person's approver id by the directory before they reach this module.
 */
export function personKey(approverId: string): string {
  return approverId.trim().toLowerCase();
}

/** Whether two approver ids name the same person. */
export function samePerson(a: string, b: string): boolean {
  return personKey(a) === personKey(b);
}

/**
 * People needed: at least one (fail closed: a held call is never approved by nobody, whatever
 * `approvals` says), at least `approvals`, at least one per group list.
 */
export function requiredApprovers(requirement: QuorumRequirement): number {
  return Math.max(1, requirement.approvals, requirement.groups.length);
}

/** Whether someone in `groups` can count towards the requirement: in a group of any list (anyone when there are no lists). */
export function countsTowards(requirement: QuorumRequirement, groups: readonly string[]): boolean {
  return requirement.groups.length === 0 || requirement.groups.some((list) => list.some((g) => groups.includes(g)));
}

/** The approvals that count: one entry per person (groups merged), only people who count towards the requirement. */
function distinctPeople(requirement: QuorumRequirement, approvals: readonly QuorumApproval[]): QuorumApproval[] {
  const byPerson = new Map<string, { approverId: string; groups: Set<string> }>();
  for (const approval of approvals) {
    const key = personKey(approval.approverId);
    const person = byPerson.get(key) ?? { approverId: approval.approverId, groups: new Set<string>() };
    for (const g of approval.groups) person.groups.add(g);
    byPerson.set(key, person);
  }
  return [...byPerson.values()]
    .map((p) => ({ approverId: p.approverId, groups: [...p.groups] }))
    .filter((p) => countsTowards(requirement, p.groups));
}

/**
 * Maximum bipartite matching of group lists to distinct people (Kuhn's augmenting paths, lists
 * in order). Returns, per list, the index of the person filling it or -1.
 */
function matchLists(requirement: QuorumRequirement, people: readonly QuorumApproval[]): number[] {
  const listOf = new Array<number>(people.length).fill(-1);
  const covers = (list: readonly string[], person: QuorumApproval) => list.some((g) => person.groups.includes(g));
  const augment = (listIndex: number, seen: boolean[]): boolean => {
    const list = requirement.groups[listIndex]!;
    for (let p = 0; p < people.length; p++) {
      if (seen[p] || !covers(list, people[p]!)) continue;
      seen[p] = true;
      const current = listOf[p]!;
      if (current === -1 || augment(current, seen)) {
        listOf[p] = listIndex;
        return true;
      }
    }
    return false;
  };
  for (let i = 0; i < requirement.groups.length; i++) augment(i, new Array<boolean>(people.length).fill(false));
  const filledBy = new Array<number>(requirement.groups.length).fill(-1);
  listOf.forEach((list, person) => {
    if (list !== -1) filledBy[list] = person;
  });
  return filledBy;
}

/** Where `approvals` (approvals of people, any number of keys each) stand against `requirement`. */
export function quorumStatus(requirement: QuorumRequirement, approvals: readonly QuorumApproval[]): QuorumStatus {
  const people = distinctPeople(requirement, approvals);
  const filledBy = matchLists(requirement, people);
  const required = requiredApprovers(requirement);
  const openGroups = requirement.groups.filter((_, i) => filledBy[i] === -1).map((list) => [...list]);
  // Each more person adds one to the count and fills at most one more list; one in an open list's group always fills it.
  const stillNeeded = Math.max(0, required - people.length, openGroups.length);
  return { required, counted: people.map((p) => p.approverId), satisfied: stillNeeded === 0, stillNeeded, openGroups };
}

/** Whether `approvals` meet `requirement`. */
export function quorumMet(requirement: QuorumRequirement, approvals: readonly QuorumApproval[]): boolean {
  return quorumStatus(requirement, approvals).satisfied;
}

/**
 * Whether `candidate` approving would move `current` towards the quorum: they count towards the
 * requirement, are not already counted, and either every group list is already filled (any
 * member adds a person) or they fill one more list. While a list is open, a person who cannot
 * fill one more list is not needed yet. (A request whose quorum is met is no longer pending.)
 */
export function isStillNeeded(requirement: QuorumRequirement, current: readonly QuorumApproval[], candidate: QuorumApproval): boolean {
  if (!countsTowards(requirement, candidate.groups)) return false;
  const people = distinctPeople(requirement, current);
  if (people.some((p) => samePerson(p.approverId, candidate.approverId))) return false;
  if (requirement.groups.length === 0) return true;
  const filled = (list: readonly QuorumApproval[]) => matchLists(requirement, list).filter((p) => p !== -1).length;
  const before = filled(people);
  if (before === requirement.groups.length) return true;
  return filled([...people, candidate]) > before;
}

/**
 * The stricter of two requirements (a pending request re-evaluated under a changed policy):
 * the most approvals, every group list of both (each list once, as a sorted set), the shortest
 * window, user verification if either requires it.
 */
export function stricterRequirement(a: ApprovalRequirement, b: ApprovalRequirement): ApprovalRequirement {
  const lists = new Map<string, string[]>();
  for (const list of [...a.groups, ...b.groups]) {
    const sorted = [...new Set(list)].sort();
    lists.set(JSON.stringify(sorted), sorted);
  }
  return {
    approvals: Math.max(a.approvals, b.approvals),
    groups: [...lists.values()],
    ttlSeconds: Math.min(a.ttlSeconds, b.ttlSeconds),
    userVerification: a.userVerification === 'required' || b.userVerification === 'required' ? 'required' : 'preferred',
  };
}
