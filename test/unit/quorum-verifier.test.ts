/**
 * The tool-side verifier's quorum (shared/verify-approvals.ts `verifiedQuorum` and
 * `satisfiesQuorum`) over the one quorum rule's vectors, test/vectors/quorum.json: each vector's
 * approvals are real WebAuthn assertions (the virtual authenticator) verified with
 * verifyApprovals, as a tool server does, and the verified set is checked against the vector's
 * requirement.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isCountersignError } from '../../shared/errors.js';
import { personKey } from '../../shared/quorum.js';
import { satisfiesQuorum, verifiedQuorum, verifyApprovals, type VerifiedApprovalSet } from '../../shared/verify-approvals.js';
import { ApprovalFixture } from '../vectors/generate-approvals.js';
import type { QuorumVector, QuorumVectorFile } from '../vectors/quorum-vectors.js';

const file = JSON.parse(readFileSync(new URL('../vectors/quorum.json', import.meta.url), 'utf8')) as QuorumVectorFile;

/** The index of the first approval by a person already seen (two keys, or two spellings of one id). */
function firstRepeat(v: QuorumVector): number {
  const seen = new Set<string>();
  return v.approvals.findIndex((a) => {
    const repeat = seen.has(personKey(a.approverId));
    seen.add(personKey(a.approverId));
    return repeat;
  });
}

/** Real assertions for the vector's approvals: one directory entry per person, one key per credential id. */
async function signedApprovals(v: QuorumVector): Promise<{ fx: ApprovalFixture; assertions: unknown[] }> {
  const people = new Map<string, { id: string; groups: string[]; keys: string[] }>();
  for (const a of v.approvals) {
    const person = people.get(personKey(a.approverId)) ?? { id: a.approverId, groups: a.groups, keys: [] };
    if (!person.keys.includes(a.credentialId)) person.keys.push(a.credentialId);
    people.set(personKey(a.approverId), person);
  }
  const fx = await ApprovalFixture.create([...people.values()].map((p) => ({ id: p.id, groups: p.groups, keys: p.keys.length })));
  const assertions: unknown[] = [];
  for (const a of v.approvals) {
    const person = people.get(personKey(a.approverId))!;
    assertions.push(await fx.assert(a.approverId, { credentialId: fx.credentialOf(person.id, person.keys.indexOf(a.credentialId)) }));
  }
  return { fx, assertions };
}

/** The set a tool could build by hand (verifyApprovals never yields one person twice). */
function handBuiltSet(v: QuorumVector): VerifiedApprovalSet {
  return {
    approvers: v.approvals.map((a) => ({ approverId: a.approverId, groups: a.groups, credentialId: a.credentialId, userVerified: true })),
    count: v.approvals.length,
  };
}

describe('tool-side verifier quorum over test/vectors/quorum.json', () => {
  it.each(file.quorum.map((v) => [v.name, v] as const))('%s', async (_name, v) => {
    const { fx, assertions } = await signedApprovals(v);
    const repeat = firstRepeat(v);
    let set = handBuiltSet(v);
    if (repeat >= 0) {
      // One person twice in a token is refused outright, stricter than counting them once.
      await expect(verifyApprovals(assertions, fx.options())).rejects.toMatchObject({
        code: 'approval_invalid',
        details: { index: repeat, reason: 'duplicate approver' },
      });
    } else {
      set = await verifyApprovals(assertions, fx.options());
      expect(set.approvers.map((a) => a.approverId)).toEqual(v.approvals.map((a) => a.approverId));
    }
    if (v.verifier?.error !== undefined) {
      for (const check of [() => verifiedQuorum(set, v.requirement), () => satisfiesQuorum(set, v.requirement)]) {
        let code: string | undefined;
        try {
          check();
        } catch (error) {
          code = isCountersignError(error) ? error.code : 'not a CountersignError';
        }
        expect(code).toBe(v.verifier.error);
      }
      return;
    }
    expect(verifiedQuorum(set, v.requirement)).toEqual(v.expect);
    expect(satisfiesQuorum(set, v.requirement)).toBe(v.expect.satisfied);
  });
});
