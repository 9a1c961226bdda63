/**
 * The approval service's policy hook: the current policy over the call exactly as stored, so a
 * change while a request waited applies at completion (a deny denies; stricter obligations and
 * newly named conflicts are merged by the service).
 */
import type { AgentRegistry } from '../identity/agent-registry.js';
import { policyRequestFor, type PolicyEngine } from '../policy/policy-engine.js';
import type { ApprovalPolicyHook } from './approval-service.js';
import { riskContext } from '../../../shared/risk.js';

export function policyReevaluation(registry: AgentRegistry, policy: PolicyEngine, clock: () => number): ApprovalPolicyHook {
  return {
    async reevaluate({ agentId, call, risk }) {
      const agent = registry.getAgent(agentId);
      if (agent === undefined || agent.status !== 'active') {
        return { outcome: 'deny', policyHash: policy.hash, reasons: ['the agent is no longer enrolled'], determiningPolicies: [] };
      }
      // An enrollment that expired while the call waited: no token for an agent that can no longer act.
      if (agent.expiresAt !== undefined && clock() >= agent.expiresAt) {
        return { outcome: 'deny', policyHash: policy.hash, reasons: ["the agent's enrollment has expired"], determiningPolicies: [] };
      }
      const d = await policy.evaluateAsync(policyRequestFor(agent, call, riskContext(risk), clock()));
      if (d.outcome === 'deny')
        return { outcome: 'deny', policyHash: d.policyHash, reasons: d.reasons, determiningPolicies: d.determiningPolicies };
      if (d.outcome === 'approval_required' && d.obligation !== undefined) {
        const { approvals, groups, ttlSeconds, userVerification, conflicted } = d.obligation;
        return {
          outcome: 'approval_required',
          policyHash: d.policyHash,
          obligation: { approvals, groups, ttlSeconds, userVerification },
          conflicted,
        };
      }
      return { outcome: 'allow', policyHash: d.policyHash };
    },
  };
}
