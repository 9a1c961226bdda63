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
import { CountersignError, quote } from '../../../shared/errors.js';
import type { ApprovalRequirement } from '../../../shared/protocol.js';

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
    /** What a held call needs from approvers (null or absent: not held). */
    obligation?: ApprovalRequirement | null | undefined;
    /** Names the determining permits gave in @conflicted_approvers. */
    conflicted?: readonly string[] | undefined;
  };
  token?: TokenRow | undefined;
  /** The audit event; a function is called inside the transaction with what was decided there. */
  audit: AuditSubmission | ((written: WrittenDecision) => AuditSubmission);
  /**
   * Checked inside the transaction before anything is written (the agent still active, no tamper
   * alarm raised meanwhile); a throw rolls the unit back and reaches the caller unchanged.
   */
  guard?: (() => void) | undefined;
  /** A held call is refused (pending_queue_full) when its agent already has this many pending. */
  maxPending?: number | undefined;
  /** A held call identical to one still waiting joins its group (docs/approvals.md "Identical calls"). */
  mergeable?: { maxFollowers: number } | undefined;
  /** Risk learning, run inside the transaction after the rows; returns a learning fault to audit. */
  learn?: (() => string | undefined) | undefined;
}

/** What the transaction settled for a decision besides the write itself. */
export interface WrittenDecision {
  /** The group this held call joined: its primary and the group's size. */
  merged?: { primaryId: string; size: number } | undefined;
  /** The request's deadline (a follower shares its group's). */
  expiresAt: number | null;
  learningFault?: string | undefined;
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
  /** recordDecision only: what the transaction settled (group, deadline, learning fault). */
  written?: WrittenDecision;
}

/** A request as its agent reads it back (request.get and request.decided). */
export interface StoredRequestView {
  id: string;
  agentId: string;
  state: StoredState;
  reasons: string[];
  determiningPolicies: string[];
  policyHash: string;
  obligation: ApprovalRequirement | null;
  expiresAt: number | null;
  token: string | null;
  tokenExpiresAt: number | null;
}

/** A pending request past its deadline, as expiry ends it (the call stays raw). */
export interface ExpiringRequest {
  id: string;
  agentId: string;
  tool: string;
  callJson: string;
  callSha256: string;
  policyHash: string;
  determiningPolicies: string[];
  createdAt: number;
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
  /**
   * Whether the agent's nonce was already accepted: a cheap early refusal, before risk, the policy
   * and the signing (a replay must cost no HSM signature and must not reset the agent's risk
   * memory); recordDecision's claim is the guarantee (review5 F1). On PostgreSQL the reads asked in
   * one turn share one indexed statement.
   */
  nonceSeen(agentId: string, nonce: string): Promise<boolean>;
  /** One request as its agent reads it back, or undefined. */
  readRequest(requestId: string): Promise<StoredRequestView | undefined>;
  /**
   * Expire every pending request past its deadline at `now` with `reasons`, in one transaction:
   * `settle` (run inside it for each row, after its update) gives the audit event. Resolves with the rows after the COMMIT.
   */
  expireDue(now: number, reasons: readonly string[], settle: (row: ExpiringRequest) => AuditSubmission): Promise<ExpiringRequest[]>;
  /** Forget nonces whose envelopes are too old to be accepted anyway; returns how many. */
  pruneNonces(now: number): Promise<number>;
  /** Append an audit event on its own (rejections, reports); resolves after its COMMIT. */
  appendAudit(submission: AuditSubmission): Promise<void>;
  close(): Promise<void>;
}

export const auditOf = (write: DecisionWrite, written: WrittenDecision): AuditSubmission =>
  typeof write.audit === 'function' ? write.audit(written) : write.audit;

export const isFinal = (state: StoredState): boolean => state !== 'pending';

/** The one refusal of a nonce already accepted (both stores). */
export function replayed(): CountersignError {
  return new CountersignError('envelope_replayed', 'this envelope has already been submitted');
}

/** The one refusal of a held call beyond its agent's cap (both stores). */
export function pendingQueueFull(agentId: string, max: number): CountersignError {
  return new CountersignError('pending_queue_full', `agent ${quote(agentId)} already has ${max} calls waiting for approval`);
}
