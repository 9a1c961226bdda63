/**
 * Decision writes for the store-seam tests and the team bench: well-formed rows and audit events
 * (the decision.* schemas of shared/audit-events.ts) without running policy, so the store's own
 * semantics are what is measured and tested.
 */
import { randomUUID } from 'node:crypto';
import type { DecisionWrite, FinishWrite, TokenRow } from '../../main/core/store/store-seam.js';

export function tokenFor(requestId: string, at: number): TokenRow {
  return { jti: `jti-${requestId}`, kid: 'kid-1', token: `token-for-${requestId}`, issuedAt: at, expiresAt: at + 60_000 };
}

export function decisionWrite(
  options: { agentId?: string; nonce?: string; state?: 'allowed' | 'denied' | 'pending'; at?: number } = {},
): DecisionWrite {
  const at = options.at ?? Date.now();
  const id = randomUUID();
  const agentId = options.agentId ?? 'agent-1';
  const nonce = options.nonce ?? randomUUID();
  const state = options.state ?? 'allowed';
  const token = state === 'allowed' ? tokenFor(id, at) : undefined;
  const kind = state === 'allowed' ? 'decision.allow' : state === 'denied' ? 'decision.deny' : 'decision.pending';
  return {
    agentId,
    nonce,
    nonceExpiresAt: at + 120_000,
    request: {
      id,
      kid: 'agent-kid',
      tool: 'payments.transfer',
      callJson: '{"tool":"payments.transfer"}',
      callSha256: 'a'.repeat(64),
      state,
      policyHash: 'p'.repeat(64),
      determiningPolicies: ['policy0'],
      reasons: [],
      risk: '{"score":0}',
      createdAt: at,
      expiresAt: state === 'pending' ? at + 600_000 : null,
    },
    token,
    audit: {
      kind,
      at,
      event: {
        requestId: id,
        agentId,
        kid: 'agent-kid',
        tool: 'payments.transfer',
        callSha256: 'a'.repeat(64),
        dataClass: 'financial',
        jurisdiction: 'EU',
        provenance: [],
        nonce,
        policyHash: 'p'.repeat(64),
        determiningPolicies: ['policy0'],
        reasons: [],
        risk: { score: 0 },
        ...(token ? { token: { jti: token.jti, kid: token.kid, expiresAt: token.expiresAt, audience: 'payments' } } : {}),
      },
    },
  };
}

export function approveWrite(requestId: string, agentId = 'agent-1', at = Date.now()): FinishWrite {
  const token = tokenFor(requestId, at);
  return {
    requestId,
    to: 'approved',
    at,
    reasons: ['approved by alice and bob'],
    token,
    audit: {
      kind: 'decision.approved',
      at,
      event: {
        requestId,
        agentId,
        tool: 'payments.transfer',
        callSha256: 'a'.repeat(64),
        policyHash: 'p'.repeat(64),
        determiningPolicies: ['policy0'],
        reasons: ['approved by alice and bob'],
        approvers: ['alice', 'bob'],
        approval: { quorum: 2 },
        token: { jti: token.jti, kid: token.kid, expiresAt: token.expiresAt, audience: 'payments' },
      },
    },
  };
}
