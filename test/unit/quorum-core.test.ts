/**
 * The core's quorum path (main/core/approvals/approval-quorum.ts, what the approval service
 * calls) over the one quorum rule's vectors, test/vectors/quorum.json.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  inAnyGroup,
  quorumMet,
  quorumOf,
  stillNeeded,
  stricterRequirement,
  type QuorumPerson,
} from '../../main/core/approvals/approval-quorum.js';
import type { ApprovalRequirement } from '../../shared/protocol.js';
import { approvalRequirementSchema } from '../../shared/bridge.js';
import { storedRequirementSchema } from '../../main/core/store/request-repository.js';
import type { QuorumVectorApproval, QuorumVectorFile } from '../vectors/quorum-vectors.js';

const file = JSON.parse(readFileSync(new URL('../vectors/quorum.json', import.meta.url), 'utf8')) as QuorumVectorFile;

/** The service's people: one entry per approval (two keys of one person are two entries here). */
const people = (approvals: readonly QuorumVectorApproval[]): QuorumPerson[] =>
  approvals.map((a) => ({ id: a.approverId, groups: a.groups }));
const requirementOf = (r: { approvals: number; groups: string[][] }): ApprovalRequirement => ({
  ...r,
  ttlSeconds: 600,
  userVerification: 'required',
});

describe('core quorum path over test/vectors/quorum.json', () => {
  it('has the edge cases the rule is about', () => {
    const names = file.quorum.map((v) => v.name).join('\n');
    for (const topic of ['zero approvals', 'more group lists than approvals', 'one person in two groups', 'two keys', 'two spellings'])
      expect(names).toContain(topic);
    expect(file.stricter.some((v) => v.quorumAfter !== undefined)).toBe(true);
  });

  it.each(file.quorum.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    const requirement = requirementOf(v.requirement);
    const current = people(v.approvals);
    expect(quorumOf(requirement, current)).toEqual(v.expect);
    expect(quorumMet(requirement, current)).toBe(v.expect.satisfied);
    for (const candidate of v.candidates ?? []) {
      expect({
        candidate: candidate.approverId,
        stillNeeded: stillNeeded(requirement, current, { id: candidate.approverId, groups: candidate.groups }),
      }).toEqual({ candidate: candidate.approverId, stillNeeded: candidate.stillNeeded });
      // Who may approve may also deny: in a group of some list.
      if (candidate.stillNeeded) expect(inAnyGroup(requirement, candidate.groups)).toBe(true);
    }
  });

  it.each(file.stricter.map((v) => [v.name, v] as const))('stricter of two: %s', (_name, v) => {
    const stricter = stricterRequirement(v.a, v.b);
    expect(stricter).toEqual(v.expect);
    // Either order: the stricter of two does not depend on which is stored.
    expect(stricterRequirement(v.b, v.a)).toEqual({ ...v.expect, groups: expect.arrayContaining(v.expect.groups) as string[][] });
    if (v.approvals !== undefined) {
      expect(quorumMet(v.a, people(v.approvals))).toBe(v.quorumBefore?.satisfied);
      expect(quorumOf(stricter, people(v.approvals))).toEqual(v.quorumAfter);
    }
  });
});

describe('one rule for an empty group list', () => {
  it.each(file.quorum.map((v) => [v.name, v] as const))(
    'the shared and the stored requirement schema refuse exactly what the verifier refuses: %s',
    (_name, v) => {
      const refused = v.verifier?.error !== undefined;
      expect(approvalRequirementSchema.safeParse(requirementOf(v.requirement)).success).toBe(!refused);
      expect(storedRequirementSchema.safeParse(requirementOf(v.requirement)).success).toBe(!refused);
    },
  );

  it('has a vector with an empty group list', () => {
    expect(file.quorum.some((v) => v.requirement.groups.some((list) => list.length === 0))).toBe(true);
  });
});
