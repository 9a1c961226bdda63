/**
 * Enrollment straight through a data directory, without a running server (benchmarks and tests
 * that enroll thousands of agents): as the CLI does, the owner is made a person of the approver
 * directory and the scope is checked against the policy pack the server will load.
 */
import type { AgentRegistry } from '../../main/core/identity/agent-registry.js';
import type { AuditLog } from '../../main/core/audit/audit-log.js';
import type { Db } from '../../main/core/store/database.js';
import { ApproverDirectory } from '../../main/core/approvals/approver-directory.js';
import { loadPolicyDirectory } from '../../main/core/policy/policy-set.js';

export async function prepareDirectEnrollment(
  store: { db: Db; audit: AuditLog; registry: AgentRegistry },
  policyDir: string,
  owners: readonly string[],
): Promise<void> {
  const set = await loadPolicyDirectory(policyDir);
  store.registry.useVocabulary(() => set.vocabulary);
  const approvers = new ApproverDirectory(store.db, store.audit, {
    domain: 'production',
    rpId: 'localhost',
    origins: ['http://localhost'],
    requireAaguids: [],
    ceremonyTimeoutMs: 60_000,
  });
  for (const owner of owners) {
    if (approvers.resolvePerson(owner) === undefined) approvers.addApprover({ id: owner, displayName: owner, groups: [] });
  }
}
