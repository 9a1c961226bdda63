/**
 * The decision path for one signed call: authenticate the envelope against the enrolled key,
 * check replay and freshness, check the agent's scope, evaluate policy, and either issue a
 * token, deny, or hold the call as pending. Everything a decision writes (nonce, request row,
 * token row, audit entry) commits in one transaction, and nothing is returned to the agent
 * before that commit: a token never exists without its audit record.
 *
 * A held call identical to one already waiting (same agent, same canonical call, same policy
 * decision and obligation) joins that request's group instead of becoming a prompt of its own:
 * it keeps its own request id, shares the group's deadline and is answered with the group's
 * outcome (docs/approvals.md "Identical calls"). Risk and policy run first, for every call, so
 * a loop the risk factors deny is denied before any merging.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../store/database.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AgentRecord, AgentRegistry } from '../identity/agent-registry.js';
import { policyRequestFor, type PolicyDecision, type PolicyEngine } from '../policy/policy-engine.js';
import { isHighImpact } from '../policy/policy-set.js';
import { safeScore, type RiskLearner, type RiskScorer } from '../risk/risk-ports.js';
import { riskContext, type RiskAssessment } from '../../../shared/risk.js';
import { learnSafely } from '../risk/learn-safely.js';
import { auditedParams, auditedRisk } from '../audit/redaction.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { canonicalBytes, canonicalize, type JsonObject } from '../../../shared/canonical-json.js';
import type { AuditEventFields, SubmittedDecisionEvent } from '../../../shared/audit-events.js';
import { callDigest } from '../tokens/call-digest.js';
import type { TokenMinter } from '../tokens/token-minter.js';
import { decodeStoredCall } from '../store/request-repository.js';
import type { AuditSubmission, DecisionStore, ExpiringRequest, StoredRequestView, WrittenDecision } from '../store/store-seam.js';
import { SqliteDecisionStore } from './sqlite-decision-store.js';
import { newRequestId } from '../store/request-id.js';
import { decodeSignature } from '../../../shared/agent-keys.js';
import type {
  ApprovalRequirement,
  DecisionResult,
  RequestState,
  SessionReportParams,
  SessionReportResult,
  SignedEnvelope,
  ToolCall,
} from '../../../shared/protocol.js';
import { MAX_GROUP_FOLLOWERS } from '../../../shared/approvals.js';
import { requiredApprovers } from '../../../shared/quorum.js';

export interface DecisionServiceOptions {
  /** The process's own SQLite store: the agent directory, risk baselines, session reports. */
  db: Db;
  audit: AuditLog;
  /**
   * Where decisions, their nonces, tokens and audit records are written and held calls wait
   * (store/store-seam.ts). Absent: the SQLite store over `db` (the embedded default).
   */
  store?: DecisionStore;
  registry: AgentRegistry;
  policy: PolicyEngine;
  minter: TokenMinter;
  risk: RiskScorer;
  /** Keeps risk baselines in step with decisions (absent: nothing is learned). */
  learner?: RiskLearner | undefined;
  maxAgeMs: number;
  maxFutureMs: number;
  maxPendingPerAgent: number;
  /** Data classes whose parameters the audit log keeps only as a digest and a redacted view. */
  redactDataClasses?: readonly string[];
  clock?: () => number;
  /**
   * Optional stage timings (benchmarks), milliseconds: per decision verify, risk, policy, sign,
   * store; per group commit of the embedded store (inside `store`) group-commit and group-sync.
   */
  onTiming?: (stage: DecisionStage | GroupCommitStage, ms: number) => void;
  /** While a tamper alarm is open, high-impact calls the policy allows wait for approvers instead. */
  tamperHold?: TamperHold;
  /**
   * How far a pending request's quorum has come (the approval service's, by shared/quorum.ts):
   * request.get reports it as `approval.required`/`received`. Absent: `required` from the
   * requirement alone, no `received`.
   */
  quorumProgress?: (requestId: string) => Promise<{ required: number; received: number }> | { required: number; received: number };
}

/** A dry run's answer (the Policies view's "test a call"): the policy decision and the risk it was given. */
export type DryRunDecision = Pick<
  PolicyDecision,
  'outcome' | 'determiningPolicies' | 'reasons' | 'policyHash' | 'obligation' | 'errors'
> & {
  risk: RiskAssessment;
};

/** The open tamper alarm (if any) and the approval a held high-impact call then needs. */
export interface TamperHold {
  current(): { id: number; raisedAt: number; firstBadSeq: number } | undefined;
  requirement: ApprovalRequirement;
}

/** The reason a decision gives when the tamper alarm turned an automatic allow into a hold. */
export function tamperHoldReason(alarm: { id: number; firstBadSeq: number }): string {
  return `the audit log failed verification (tamper alarm ${alarm.id}, entry ${alarm.firstBadSeq}): high-impact calls wait for an approver until an admin acknowledges the alarm`;
}

export type DecisionStage = 'verify' | 'risk' | 'policy' | 'sign' | 'store';
/**
 * Per group commit (store/group-commit.ts): the event loop's time in its transaction, and its wait
 * for a covering sync; per audit checkpoint, the event loop's time in its row's durable COMMIT
 * (audit/checkpoints.ts), which holds the loop for one fsync.
 */
export type GroupCommitStage = 'group-commit' | 'group-sync' | 'checkpoint-commit';

export interface AuthenticatedSession {
  agentId: string;
  kid: string;
}

export const EXPIRED_REASON = 'approval window expired';

/** Internal: the tamper alarm went up between the policy decision and its commit. */
class AlarmRaisedMeanwhile extends Error {}

export class DecisionService {
  private readonly db: Db;
  private readonly clock: () => number;
  /** The one place decisions are written and read back (the store seam, ADR 0012). */
  readonly store: DecisionStore;
  private readonly agentStanding;
  /** Calls between submit() and their answer: 1 means the call being decided is alone. */
  private inFlight = 0;

  constructor(private readonly options: DecisionServiceOptions) {
    this.db = options.db;
    this.clock = options.clock ?? Date.now;
    this.store = options.store ?? new SqliteDecisionStore(options.db, options.audit);
    this.agentStanding = this.db.prepare<[string], { status: string; expires_at: number | null; owner_state: string }>(
      'SELECT status, expires_at, owner_state FROM agents WHERE id = ?',
    );
  }

  /** Decide one signed call from an authenticated agent connection. */
  async submit(session: AuthenticatedSession, envelope: SignedEnvelope): Promise<DecisionResult> {
    const now = this.clock();
    const { payload } = envelope;
    this.inFlight++;
    try {
      return await this.decide(session, envelope, now);
    } catch (error) {
      const code = isCountersignError(error) ? error.code : 'internal_error';
      if (code !== 'audit_write_failed') {
        this.recordRejection(now, {
          agentId: session.agentId,
          kid: payload.kid,
          claimedAgentId: payload.agentId,
          tool: payload.call.tool,
          nonce: payload.nonce,
          code,
        });
      }
      throw error;
    } finally {
      this.inFlight--;
    }
  }

  private async decide(session: AuthenticatedSession, envelope: SignedEnvelope, now: number): Promise<DecisionResult> {
    const { payload } = envelope;
    // Identity comes from the authenticated key, never from a payload field.
    if (payload.agentId !== session.agentId) {
      throw new CountersignError(
        'agent_mismatch',
        `this connection is authenticated as ${quote(session.agentId)}, not ${quote(payload.agentId)}`,
      );
    }
    const timing = this.options.onTiming;
    let mark = timing ? performance.now() : 0;
    const lap = (stage: DecisionStage) => {
      if (!timing) return;
      const t = performance.now();
      timing(stage, t - mark);
      mark = t;
    };
    const { agent, key } = this.options.registry.resolve(session.agentId, payload.kid, now);
    const signature = decodeSignature(envelope.signature);
    if (signature === undefined || !this.options.registry.verifySignature(key, canonicalBytes(payload), signature)) {
      throw new CountersignError('envelope_signature_invalid', 'the envelope signature does not verify with the enrolled key');
    }
    if (payload.timestamp < now - this.options.maxAgeMs) {
      throw new CountersignError(
        'envelope_stale',
        `the envelope is ${Math.round((now - payload.timestamp) / 1000)} s old; the limit is ${this.options.maxAgeMs / 1000} s`,
      );
    }
    if (payload.timestamp > now + this.options.maxFutureMs) {
      throw new CountersignError('envelope_future', 'the envelope is dated in the future; check the agent host clock');
    }
    if (await this.store.nonceSeen(agent.id, payload.nonce)) {
      throw new CountersignError('envelope_replayed', 'this envelope has already been submitted');
    }

    lap('verify');
    const { call } = payload;
    const tool = this.options.policy.tool(call.tool);
    if (!tool) throw new CountersignError('unknown_tool', `the tool ${quote(call.tool)} is not declared in the policy set`);
    const callSha256 = callDigest(call.tool, call.params);
    // A team hub first reads what other hubs committed for this agent (its baseline is the team's).
    await this.options.risk.prepare?.(agent.id, now);
    const risk = safeScore(this.options.risk, { agent, call, callSha256, now });
    lap('risk');
    const requestId = newRequestId(now);

    const scopeDenial = this.scopeDenial(agent, call.tool, call.dataClass, call.jurisdiction);
    let decision: Pick<PolicyDecision, 'outcome' | 'determiningPolicies' | 'reasons' | 'policyHash' | 'obligation'> = scopeDenial
      ? { outcome: 'deny' as const, determiningPolicies: [], reasons: [scopeDenial], policyHash: this.options.policy.hash }
      : await this.options.policy.evaluateAsync(policyRequestFor(agent, call, riskContext(risk), now), {
          inlineIfIdle: this.inFlight === 1,
          requestId,
        });

    // A tamper alarm is open: the log that vouches for automatic decisions cannot be trusted,
    // so a high-impact call the policy would allow waits for a person instead.
    const alarm = decision.outcome === 'allow' && isHighImpact(tool) ? this.options.tamperHold?.current() : undefined;
    if (alarm !== undefined) {
      const reason = tamperHoldReason(alarm);
      decision = {
        ...decision,
        outcome: 'approval_required',
        reasons: [...decision.reasons, reason],
        obligation: { ...this.options.tamperHold!.requirement, reasons: [reason], conflicted: [] },
      };
    }

    lap('policy');
    // Sign before the transaction (signing is async); the token is released only after commit.
    const minted =
      decision.outcome === 'allow'
        ? await this.options.minter.mint({
            requestId,
            agentId: agent.id,
            tool: call.tool,
            audience: tool.audience,
            params: call.params,
            policyHash: decision.policyHash,
            policies: decision.determiningPolicies,
            mode: 'automatic',
            now,
            callSha256,
          })
        : undefined;

    lap('sign');
    const state: RequestState = decision.outcome === 'allow' ? 'allowed' : decision.outcome === 'deny' ? 'denied' : 'pending';
    const obligation: ApprovalRequirement | undefined = decision.obligation
      ? {
          approvals: decision.obligation.approvals,
          groups: decision.obligation.groups,
          ttlSeconds: decision.obligation.ttlSeconds,
          userVerification: decision.obligation.userVerification,
        }
      : undefined;
    const expiresAt = obligation ? now + obligation.ttlSeconds * 1000 : null;

    const redact = this.options.redactDataClasses ?? [];
    const conflicted = decision.obligation?.conflicted ?? [];
    // Inside the store's transaction (one savepoint of a group commit), before anything is written.
    const guard = () => {
      // The agent is checked again inside the transaction: a revocation (or expiry, or a hold for
      // review) committed while this call was being scored, evaluated or signed must end it here,
      // or a revoked agent's call would be stored, queued for approvers, or even given a token.
      const standing = this.agentStanding.get(agent.id);
      if (standing === undefined || standing.status !== 'active')
        throw new CountersignError('agent_revoked', `agent ${quote(agent.id)} was revoked while its call was being decided`);
      if (standing.expires_at !== null && standing.expires_at <= now)
        throw new CountersignError('agent_expired', `agent ${quote(agent.id)}'s enrollment has expired`);
      if (standing.owner_state === 'held_for_review')
        throw new CountersignError('agent_held_for_review', `agent ${quote(agent.id)} is held for review`);
      // A tamper alarm raised while this automatic allow was being signed: it must not go out.
      // Read inside the commit's transaction, so an alarm committed before it is always seen.
      if (minted && alarm === undefined && isHighImpact(tool) && this.options.tamperHold?.current() !== undefined)
        throw new AlarmRaisedMeanwhile();
    };
    const auditEvent = (written: WrittenDecision): AuditSubmission => {
      const event: SubmittedDecisionEvent = {
        requestId,
        agentId: agent.id,
        kid: key.kid,
        tool: call.tool,
        callSha256,
        dataClass: call.dataClass,
        jurisdiction: call.jurisdiction,
        provenance: call.provenance,
        nonce: payload.nonce,
        policyHash: decision.policyHash,
        determiningPolicies: decision.determiningPolicies,
        reasons: decision.reasons,
        risk: auditedRisk(risk, call.dataClass, redact),
        ...auditedParams(call.params, call.dataClass, redact),
      };
      if (written.learningFault !== undefined) event.riskLearningFault = written.learningFault;
      if (alarm !== undefined) event.tamperAlarm = { alarmId: alarm.id, firstBadSeq: alarm.firstBadSeq, raisedAt: alarm.raisedAt };
      if (obligation && written.expiresAt !== null) event.approval = { ...obligation, expiresAt: written.expiresAt };
      if (written.merged !== undefined) event.mergedInto = { requestId: written.merged.primaryId, size: written.merged.size };
      if (minted) event.token = { jti: minted.jti, kid: minted.kid, expiresAt: minted.expiresAt, audience: tool.audience };
      return { kind: state === 'allowed' ? 'decision.allow' : state === 'denied' ? 'decision.deny' : 'decision.pending', at: now, event };
    };
    let written: WrittenDecision;
    let learned = false;
    try {
      const outcome = await this.store.recordDecision({
        agentId: agent.id,
        nonce: payload.nonce,
        nonceExpiresAt: payload.timestamp + this.options.maxAgeMs + this.options.maxFutureMs,
        request: {
          id: requestId,
          kid: key.kid,
          tool: call.tool,
          callJson: canonicalize(call),
          callSha256,
          state,
          policyHash: decision.policyHash,
          determiningPolicies: decision.determiningPolicies,
          reasons: decision.reasons,
          risk: JSON.stringify(risk),
          createdAt: now,
          expiresAt,
          obligation: obligation ?? null,
          conflicted,
        },
        token: minted && { jti: minted.jti, kid: minted.kid, token: minted.token, issuedAt: now, expiresAt: minted.expiresAt },
        audit: auditEvent,
        guard,
        maxPending: this.options.maxPendingPerAgent,
        mergeable: { maxFollowers: MAX_GROUP_FOLLOWERS },
        learn: () => {
          learned = true;
          return learnSafely(this.db, this.options.learner, agent.id, (l) =>
            l.submitted(agent.id, requestId, call, callSha256, now, state),
          );
        },
      });
      written = outcome.written ?? { expiresAt };
    } catch (error) {
      // Memory may hold what the rolled-back transaction learned: rebuild it from the database.
      // Only then: a refusal before learning (a full pending queue) must not make every later
      // call of the agent rebuild its whole history (on a team hub, a read and replay of risk_log).
      if (learned) this.options.learner?.forget(agent.id);
      // Nothing was written (the nonce neither): decide again, and the open alarm holds the call.
      if (error instanceof AlarmRaisedMeanwhile) return this.decide(session, envelope, now);
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the decision could not be stored, so it was not issued', { cause: error });
    }
    lap('store');

    const result: DecisionResult = {
      requestId,
      decision: state === 'allowed' ? 'allow' : state === 'denied' ? 'deny' : 'pending',
      state,
      reasons: decision.reasons,
      determiningPolicies: decision.determiningPolicies,
      policyHash: decision.policyHash,
    };
    if (minted) {
      result.token = minted.token;
      result.tokenExpiresAt = minted.expiresAt;
    }
    if (obligation && written.expiresAt !== null) result.approval = { ...obligation, expiresAt: written.expiresAt };
    if (written.merged !== undefined) result.mergedInto = { requestId: written.merged.primaryId, size: written.merged.size };
    return result;
  }

  /** An agent may only read its own requests. */
  async getRequest(session: AuthenticatedSession, requestId: string): Promise<DecisionResult> {
    const row = await this.store.readRequest(requestId);
    if (!row || row.agentId !== session.agentId)
      throw new CountersignError('request_unknown', `no request ${quote(requestId)} exists for this agent`);
    const progress = row.state === 'pending' && row.obligation !== null ? await this.options.quorumProgress?.(row.id) : undefined;
    return toResult(row, { token: row.token, tokenExpiresAt: row.tokenExpiresAt, ...(progress === undefined ? {} : { progress }) });
  }

  /**
   * A held call's final result (its token when approved) once it is committed, wherever it was
   * decided (another hub included: the store's wake-up, never polling). Rejects when `signal` aborts.
   */
  async finalResult(requestId: string, signal?: AbortSignal): Promise<DecisionResult> {
    await this.store.waitForOutcome(requestId, signal === undefined ? {} : { signal });
    const row = await this.store.readRequest(requestId);
    if (!row) throw new CountersignError('request_unknown', `no request ${quote(requestId)} exists`);
    return toResult(row, { token: row.token, tokenExpiresAt: row.tokenExpiresAt });
  }

  /**
   * Move pending requests past their deadline to `expired` (terminal); returns what changed.
   * A row whose stored call no longer decodes is still expired; its risk learning is recorded
   * as a learning fault instead of stopping every other expiry.
   */
  async expireDue(now = this.clock()): Promise<Array<{ agentId: string; result: DecisionResult }>> {
    const touched = new Set<string>();
    let expired: ExpiringRequest[];
    try {
      expired = await this.store.expireDue(now, [EXPIRED_REASON], (row) => {
        touched.add(row.agentId);
        const call = decodeStoredCall(row.callJson);
        const learningFault =
          call === undefined
            ? this.unlearnable(row.agentId, row.id)
            : learnSafely(this.db, this.options.learner, row.agentId, (l) =>
                l.settled(row.agentId, { id: row.id, call, callSha256: row.callSha256, createdAt: row.createdAt }, 'expired', now),
              );
        const event: AuditEventFields<'decision.expired'> = { requestId: row.id, agentId: row.agentId, reasons: [EXPIRED_REASON] };
        if (learningFault !== undefined) event.riskLearningFault = learningFault;
        return { kind: 'decision.expired', at: now, event };
      });
    } catch (error) {
      for (const agentId of touched) this.options.learner?.forget(agentId);
      throw error;
    }
    return expired.map((row) => ({
      agentId: row.agentId,
      result: {
        requestId: row.id,
        decision: 'deny',
        state: 'expired',
        reasons: [EXPIRED_REASON],
        determiningPolicies: row.determiningPolicies,
        policyHash: row.policyHash,
      },
    }));
  }

  /** A stored call that no longer decodes cannot be learned from: forget the agent's baseline (it misses a settlement) and say why. */
  private unlearnable(agentId: string, requestId: string): string | undefined {
    if (!this.options.learner) return undefined;
    this.options.learner.forget(agentId);
    return `the stored call of request ${quote(requestId)} is malformed`;
  }

  /**
   * Data-flow provenance (session.report, docs/protocol.md): what one of the agent's sessions
   * read. The risk scorer keeps only digests of the values found in it; the audit log records
   * that the report was made, each read's source, trust, length and SHA-256 — never its text —
   * and its origin, as a digest when the read's data class is redacted.
   */
  reportReads(session: AuthenticatedSession, params: SessionReportParams): SessionReportResult {
    const now = this.clock();
    const { agent } = this.options.registry.resolve(session.agentId, session.kid, now);
    const redact = this.options.redactDataClasses ?? [];
    const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
    const reads: Array<AuditEventFields<'session.reported'>['reads'][number]> = params.reads.map((r) => {
      const entry: AuditEventFields<'session.reported'>['reads'][number] = {
        source: r.source,
        trust: r.trust,
        contentSha256: sha256(r.content),
        contentChars: r.content.length,
      };
      if (r.dataClass !== undefined) entry.dataClass = r.dataClass;
      if (r.origin !== undefined) {
        if (r.dataClass !== undefined && redact.includes(r.dataClass)) entry.originSha256 = sha256(r.origin);
        else entry.origin = r.origin;
      }
      return entry;
    });
    let values = 0;
    const record = this.db.transaction(() => {
      const fault = learnSafely(this.db, this.options.learner, agent.id, (l) => {
        values = l.reported?.(agent.id, params.sessionId, params.reads, now) ?? 0;
      });
      const event: AuditEventFields<'session.reported'> = { agentId: agent.id, sessionId: params.sessionId, reads, values };
      if (fault !== undefined) event.riskLearningFault = fault;
      this.options.audit.append('session.reported', now, event);
    });
    try {
      record.immediate();
    } catch (error) {
      this.options.learner?.forget(agent.id);
      throw error;
    }
    return { sessionId: params.sessionId, reads: params.reads.length, values };
  }

  /** Forget nonces whose envelopes are too old to be accepted anyway. */
  pruneReplayCache(now = this.clock()): Promise<number> {
    return this.store.pruneNonces(now);
  }

  /** Record a rejected message in the audit log. Never throws: a rejection is already an error. */
  recordRejection(now: number, event: Record<string, string | number | null | undefined>): void {
    const clean: JsonObject = {};
    for (const [k, v] of Object.entries(event)) if (v !== undefined) clean[k] = typeof v === 'string' ? v.slice(0, 256) : v;
    // The SQLite store writes it before returning; the caller already fails closed, and an
    // unwritable audit log also surfaces on the next decision.
    this.store.appendAudit({ kind: 'call.rejected', at: now, event: clean as AuditEventFields<'call.rejected'> }).catch(() => undefined);
  }

  // ---- the Policies view's "test a call" (a dry run) ----

  /**
   * What the decision path would answer for `agentId` making `call` now: the same scope check,
   * risk score, Cedar evaluation and tamper hold as `decide`, and nothing else. No envelope (so
   * no signature, nonce or clock check), no request row, no audit entry, no token, no learning:
   * nothing is written. Refuses an unknown tool (unknown_tool) and an agent that is not enrolled
   * (agent_unknown) or not active (agent_revoked) as the decision path would.
   */
  async dryRun(agentId: string, call: ToolCall, now = this.clock()): Promise<DryRunDecision> {
    const agent = this.options.registry.getAgent(agentId);
    if (agent === undefined) throw new CountersignError('agent_unknown', `no enrolled agent has the id ${quote(agentId)}`);
    if (agent.status !== 'active') throw new CountersignError('agent_revoked', `agent ${quote(agentId)} is revoked`);
    const tool = this.options.policy.tool(call.tool);
    if (!tool) throw new CountersignError('unknown_tool', `the tool ${quote(call.tool)} is not declared in the policy set`);
    await this.options.risk.prepare?.(agent.id, now);
    const risk = safeScore(this.options.risk, { agent, call, callSha256: callDigest(call.tool, call.params), now });
    const scopeDenial = this.scopeDenial(agent, call.tool, call.dataClass, call.jurisdiction);
    let decision: Pick<PolicyDecision, 'outcome' | 'determiningPolicies' | 'reasons' | 'policyHash' | 'obligation' | 'errors'> = scopeDenial
      ? { outcome: 'deny', determiningPolicies: [], reasons: [scopeDenial], policyHash: this.options.policy.hash, errors: [] }
      : await this.options.policy.evaluateAsync(policyRequestFor(agent, call, riskContext(risk), now));
    const alarm = decision.outcome === 'allow' && isHighImpact(tool) ? this.options.tamperHold?.current() : undefined;
    if (alarm !== undefined) {
      const reason = tamperHoldReason(alarm);
      decision = {
        ...decision,
        outcome: 'approval_required',
        reasons: [...decision.reasons, reason],
        obligation: { ...this.options.tamperHold!.requirement, reasons: [reason], conflicted: [] },
      };
    }
    return { ...decision, risk };
  }

  private scopeDenial(agent: AgentRecord, tool: string, dataClass: string, jurisdiction: string): string | undefined {
    if (!agent.allowedTools.includes(tool)) return `the tool ${quote(tool)} is outside this agent's scope`;
    if (!agent.dataClasses.includes(dataClass)) return `the data class ${quote(dataClass)} is outside this agent's scope`;
    if (!agent.jurisdictions.includes(jurisdiction)) return `the jurisdiction ${quote(jurisdiction)} is outside this agent's scope`;
    return undefined;
  }
}

/** The agent's view of a request; `outcome` (its token and quorum progress) only for request.get. */
function toResult(
  row: StoredRequestView,
  outcome?: { token?: string | null; tokenExpiresAt?: number | null; progress?: { required: number; received: number } },
): DecisionResult {
  const state = row.state;
  const result: DecisionResult = {
    requestId: row.id,
    decision: state === 'allowed' || state === 'approved' ? 'allow' : state === 'pending' ? 'pending' : 'deny',
    state,
    reasons: row.reasons,
    determiningPolicies: row.determiningPolicies,
    policyHash: row.policyHash,
  };
  if (outcome?.token != null && outcome.tokenExpiresAt != null) {
    result.token = outcome.token;
    result.tokenExpiresAt = outcome.tokenExpiresAt;
  }
  if (state === 'pending' && row.obligation !== null && row.expiresAt !== null) {
    result.approval = { ...row.obligation, expiresAt: row.expiresAt };
    // How far the quorum has come, so a waiting host can say "1 of 2" (request.get only): the
    // people needed and the people counted, both by the one quorum rule (shared/quorum.ts).
    if (outcome !== undefined) {
      result.approval.required = outcome.progress?.required ?? requiredApprovers(row.obligation);
      if (outcome.progress !== undefined) result.approval.received = outcome.progress.received;
    }
  }
  return result;
}
