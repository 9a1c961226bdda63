/**
 * The one bridge from a decision to an approval token: automatic decisions (DecisionService)
 * and human-approved ones (ApprovalService, with the approvers' assertions) both mint here.
 *
 * The minting ports live here, with their provider, so the decision and approval rooms both
 * point down at tokens/ (docs/adr/0005-layering.md).
 */
import type { TokenIssuer } from './token-issuer.js';
import type { JsonObject } from '../../../shared/canonical-json.js';
import type { ApprovalAssertion } from '../../../shared/approvals.js';

export interface MintInput {
  requestId: string;
  agentId: string;
  tool: string;
  audience: string;
  params: JsonObject;
  policyHash: string;
  policies: string[];
  mode: 'automatic' | 'approved';
  now: number;
  /** The call digest already computed for this call (tokens/call-digest.ts). */
  callSha256: string;
}

/** Issues signed approval tokens (the custody key lives behind this). */
export interface TokenMinter {
  mint(input: MintInput): Promise<{ token: string; jti: string; kid: string; expiresAt: number }>;
}

/** MintInput for a human-approved decision: the approvers' assertions travel in the token. */
export interface ApprovedMintInput extends Omit<MintInput, 'mode'> {
  mode: 'approved';
  /** Every counted approver's assertion, in approval order. */
  approvals: ApprovalAssertion[];
}

/** Issues co-signed approval tokens (the same minter automatic decisions use). */
export interface ApprovedMinter {
  mint(input: ApprovedMintInput): Promise<{ token: string; jti: string; kid: string; expiresAt: number }>;
}

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
