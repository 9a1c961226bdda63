/**
 * The store seam (ADR 0012): the decision-critical writes and reads both stores implement, with
 * the same semantics. The embedded default is SQLite (decision/sqlite-decision-store.ts, over the existing
 * tables, group commit and audit log, unchanged); team mode is PostgreSQL (pg/pg-decision-store.ts; its audit leader is audit/pg-audit-leader.ts).
 * Semantics every implementation keeps:
 *  - one transaction per decision (nonce, request, token, audit submission), committed in groups;
 *    nothing is resolved to the caller before the COMMIT holding its rows returned;
 *  - a nonce is accepted once per agent, also under concurrency (envelope_replayed otherwise);
 *  - a request's state only moves forward: pending -> approved | denied | expired, once;
 *  - at most one token per request;
 *  - waitForOutcome resolves on the commit of the request's final state, wherever it was made
 *    (PostgreSQL: LISTEN/NOTIFY sent inside that transaction), never by polling.
 */
import type { AuditEventFields, AuditKind } from '../../../shared/audit-events.js';

export type StoreKind = 'sqlite' | 'postgres';

export type FirstState = 'allowed' | 'denied' | 'pending';
export type FinalState = 'approved' | 'denied' | 'expired';
export type StoredState = FirstState | FinalState;

export interface TokenRow {
  jti: string;
  kid: string;
  token: string;
  issuedAt: number;
  expiresAt: number;
}

export interface AuditSubmission<K extends AuditKind = AuditKind> {
  kind: K;
  at: number;
  event: AuditEventFields<K>;
}

export interface DecisionWrite {
  agentId: string;
  nonce: string;
  /** Until when the nonce must stay remembered (its envelope's acceptance window). */
  nonceExpiresAt: number;
  request: {
    id: string;
    kid: string;
    tool: string;
    callJson: string;
    callSha256: string;
    state: FirstState;
    policyHash: string;
    determiningPolicies: readonly string[];
    reasons: readonly string[];
    risk: string;
    createdAt: number;
    /** Pending requests expire. */
    expiresAt: number | null;
  };
  token?: TokenRow | undefined;
  audit: AuditSubmission;
}

export interface FinishWrite {
  requestId: string;
  to: FinalState;
  at: number;
  reasons: readonly string[];
  /** The token an approval releases (approved only). */
  token?: TokenRow | undefined;
  audit: AuditSubmission;
}

export interface RequestOutcome {
  requestId: string;
  state: StoredState;
  token: string | null;
  tokenExpiresAt: number | null;
}

export interface DecisionStore {
  readonly kind: StoreKind;
  /** Write one decision; resolves after its COMMIT. envelope_replayed when the nonce was used. */
  recordDecision(write: DecisionWrite): Promise<RequestOutcome>;
  /**
   * Move a pending request to its final state (with its token and audit record) in one
   * transaction. Resolves true after the COMMIT; false when the request was no longer pending
   * (another approver, another hub or the expiry got there first): nothing was written.
   */
  finishRequest(write: FinishWrite): Promise<boolean>;
  outcome(requestId: string): Promise<RequestOutcome | undefined>;
  /** Resolves with the request's final outcome once committed (immediately if it already is). */
  waitForOutcome(requestId: string, options?: { signal?: AbortSignal }): Promise<RequestOutcome>;
  close(): Promise<void>;
}

export const isFinal = (state: StoredState): boolean => state !== 'pending';
