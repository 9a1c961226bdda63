/**
 * The one bridge from a decision to an approval token: automatic decisions (DecisionService)
 * and human-approved ones (ApprovalService, with the approvers' assertions) both mint here.
 */
import type { TokenIssuer } from './token-issuer.js';
import type { MintInput, TokenMinter } from '../decision/decision-service.js';
import type { ApprovedMinter, ApprovedMintInput } from '../approvals/approval-service.js';

export function tokenMinter(issuer: TokenIssuer): TokenMinter & ApprovedMinter {
  return {
    async mint(input: MintInput | ApprovedMintInput) {
      const issued = await issuer.issue({
        agentId: input.agentId,
        audience: input.audience,
        tool: input.tool,
        params: input.params,
        decision: { id: input.requestId, mode: input.mode, policy_hash: input.policyHash, policies: input.policies },
        callSha256: input.callSha256,
        ...('approvals' in input ? { approvals: input.approvals } : {}),
      });
      return { token: issued.token, jti: issued.claims.jti, kid: issued.header.kid, expiresAt: issued.claims.exp * 1000 };
    },
  };
}
