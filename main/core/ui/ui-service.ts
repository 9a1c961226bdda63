/**
 * The core side of the UI bridge: CountersignBridge implemented on the running core's parts.
 * Status, decisions and agents are read-only: every statement here is a bounded SELECT
 * (better-sqlite3 confirms `readonly`). The approval methods delegate to the approver directory
 * and the approval service (which record challenges, keys and approvals, audited); they are
 * answered only when those are given (the Electron shell passes the running core; headless HTTP
 * serves them from main/core/approvals/approvals-http.ts instead). Every approval result is
 * projected onto and checked against the bridge schemas before it leaves.
 * Used by the headless HTTP API (ui-http.ts) and by the Electron shell's IPC handlers.
 */
import type { Db } from '../store/database.js';
import type { AgentRegistry } from '../identity/agent-registry.js';
import type { SignerCustody } from '../custody/signer.js';
import type { GatewayStats } from '../gateway/gateway-server.js';
import type { CountersignConfig } from '../config.js';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { ApprovalService, ApprovalEntry as CoreApprovalEntry, ApprovalRequestView } from '../approvals/approval-service.js';
import type { ApproverDirectory } from '../approvals/approver-directory.js';
import type { TamperAlarm, TamperAlarmView } from '../audit/tamper-alarm.js';
import { CountersignError } from '../../../shared/errors.js';
import {
  approvalCeremonySchema, approvalOutcomeSchema, approvalReasonSchema, approvalVerdictSchema, approverListSchema, bridgeIdSchema, clampDecisionLimit,
  parseBridgeArgument, parseBridgeResult, pendingApprovalListSchema, registeredKeySchema, registrationCodeSchema, registrationOptionsSchema, webauthnResponseSchema,
  type AgentSummary, type ApprovalCeremony, type ApprovalEntry, type ApprovalOutcome, type ApprovalRequest, type ApprovalVerdict, type ApproverSummary,
  type AuditAlarmSummary, type BridgeStatus, type CountersignBridge, type DecisionSummary, type RegisteredKey, type WebAuthnCreationOptions, type WebAuthnResponseJson,
} from '../../../shared/bridge.js';
import { RequestRepository } from '../store/request-repository.js';

/** What the service reads; a RunningCountersign provides all of it. */
export interface UiServiceDeps {
  db: Db;
  registry: Pick<AgentRegistry, 'list'>;
  policy: { readonly hash: string };
  signer: { readonly custody: SignerCustody };
  config: Pick<CountersignConfig, 'serverId' | 'domain'>;
  gateway: { getStats(): GatewayStats };
  /** The agent gateway URL (known once the server listens, hence a function). */
  gatewayUrl: () => string;
  /** Human approvals (RunningCountersign.approvals); without it the approval methods refuse. */
  approvals?: Pick<ApprovalService, 'listPending' | 'startCeremony' | 'submitCeremony'>;
  /** The tamper alarm (RunningCountersign.tamperAlarm); without it the status shows none. */
  tamperAlarm?: Pick<TamperAlarm, 'current'>;
  /** The approver directory (RunningCountersign.approvers); without it the approver methods refuse. */
  approvers?: Pick<ApproverDirectory, 'list' | 'beginRegistration' | 'finishRegistration'>;
}

/** Reasons as the desk shows them: at most 64, each at most 4096 characters. */
function shownReasons(reasons: readonly string[]): string[] {
  return reasons.slice(0, 64).map((r) => r.slice(0, 4096));
}

/** Run synchronous work as a promise (a throw becomes a rejection). */
function settle<T>(work: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(work()));
}

function toEntry(entry: CoreApprovalEntry): ApprovalEntry {
  const out: ApprovalEntry = { approverId: entry.approverId, displayName: entry.displayName, verdict: entry.verdict, at: entry.at };
  if (entry.reason !== undefined) out.reason = entry.reason;
  return out;
}

/** The bridge's view of a held request: exactly the documented members, nothing else. */
function toApprovalRequest(view: ApprovalRequestView): ApprovalRequest {
  const out: ApprovalRequest = {
    requestId: view.requestId,
    agentId: view.agentId,
    tool: view.tool,
    params: view.params,
    dataClass: view.dataClass,
    jurisdiction: view.jurisdiction,
    provenance: [...view.provenance],
    callSha256: view.callSha256,
    policyHash: view.policyHash,
    determiningPolicies: [...view.determiningPolicies],
    reasons: [...view.reasons],
    obligation: {
      approvals: view.obligation.approvals,
      groups: view.obligation.groups.map((list) => [...list]),
      ttlSeconds: view.obligation.ttlSeconds,
      userVerification: view.obligation.userVerification,
    },
    risk: { score: view.risk.score, factors: view.risk.factors.map((f) => ({ ...f, observed: { ...f.observed } })) },
    state: view.state,
    createdAt: view.createdAt,
    expiresAt: view.expiresAt,
    approvals: view.approvals.map(toEntry),
    count: view.count,
    followers: [...view.followers],
    excludedApprovers: view.excludedApprovers.map((e) => ({ approverId: e.approverId, reason: e.reason })),
  };
  if (view.ownerUnresolved === true) out.ownerUnresolved = true;
  if (view.agentDisplayName !== undefined) out.agentDisplayName = view.agentDisplayName;
  if (view.agentOwner !== undefined) out.agentOwner = view.agentOwner;
  if (view.decidedAt !== undefined) out.decidedAt = view.decidedAt;
  return out;
}

function alarmSummary(alarm: TamperAlarmView | undefined): AuditAlarmSummary | null {
  if (alarm === undefined) return null;
  return { id: alarm.id, raisedAt: alarm.raisedAt, source: alarm.source, firstBadSeq: alarm.firstBadSeq, findings: alarm.findings.length, reason: (alarm.findings[0]?.reason ?? '').slice(0, 500) };
}

export class UiService implements CountersignBridge {
  /** The `requests` rows (read only here). */
  private readonly requests: RequestRepository;

  constructor(private readonly deps: UiServiceDeps) {
    this.requests = new RequestRepository(deps.db);
  }

  getStatus(): Promise<BridgeStatus> {
    return settle(() => {
      const stats = this.deps.gateway.getStats();
      return {
        serverId: this.deps.config.serverId,
        domain: this.deps.config.domain,
        policyHash: this.deps.policy.hash,
        custody: this.deps.signer.custody,
        gatewayUrl: this.deps.gatewayUrl(),
        connections: stats.connections,
        authenticated: stats.authenticated,
        decisions: stats.decisions,
        auditAlarm: alarmSummary(this.deps.tamperAlarm?.current()),
      };
    });
  }

  listRecentDecisions(limit: number): Promise<DecisionSummary[]> {
    return settle(() =>
      this.requests.recent(clampDecisionLimit(limit)).map((row) => ({
        requestId: row.id,
        agentId: row.agentId,
        tool: row.tool,
        state: row.state,
        reasons: shownReasons(row.reasons),
        policyHash: row.policyHash,
        createdAt: row.createdAt,
      })),
    );
  }

  listAgents(): Promise<AgentSummary[]> {
    return settle(() =>
      this.deps.registry.list().map((agent) => ({
        id: agent.id,
        displayName: agent.displayName,
        owner: agent.owner,
        group: agent.group,
        status: agent.status,
        allowedTools: [...agent.allowedTools],
        keys: agent.keys.map((key) => ({ kid: key.kid, alg: key.alg, status: key.status })),
      })),
    );
  }

  // ---- approvals (arguments may come straight from IPC: each is checked first) ----

  listApprovers(): Promise<ApproverSummary[]> {
    return settle(() => {
      const approvers = this.approverDirectory().list().map((a) => ({
        id: a.id, displayName: a.displayName, groups: [...a.groups], virtual: a.virtual, status: a.status, createdAt: a.createdAt,
      }));
      return parseBridgeResult(approverListSchema, approvers);
    });
  }

  listPendingApprovals(): Promise<ApprovalRequest[]> {
    return settle(() => parseBridgeResult(pendingApprovalListSchema, this.approvalService().listPending().map(toApprovalRequest)));
  }

  async beginApproverRegistration(approverId: string, registrationCode: string): Promise<WebAuthnCreationOptions> {
    const id = parseBridgeArgument(bridgeIdSchema, approverId, 'approverId');
    const code = parseBridgeArgument(registrationCodeSchema, registrationCode, 'registrationCode');
    // The directory spends the code (single use) before it issues a challenge.
    return parseBridgeResult(registrationOptionsSchema, await this.approverDirectory().beginRegistration(id, code));
  }

  async finishApproverRegistration(approverId: string, response: WebAuthnResponseJson): Promise<RegisteredKey> {
    const id = parseBridgeArgument(bridgeIdSchema, approverId, 'approverId');
    const checked = parseBridgeArgument(webauthnResponseSchema, response, 'response');
    // The directory verifies the registration in full (@simplewebauthn/server).
    const credential = await this.approverDirectory().finishRegistration(id, checked as unknown as RegistrationResponseJSON);
    return parseBridgeResult(registeredKeySchema, { credentialId: credential.credentialId, aaguid: credential.aaguid, approverId: credential.approverId });
  }

  async startApprovalCeremony(requestId: string, approverId: string, verdict: ApprovalVerdict): Promise<ApprovalCeremony> {
    const input = {
      requestId: parseBridgeArgument(bridgeIdSchema, requestId, 'requestId'),
      approverId: parseBridgeArgument(bridgeIdSchema, approverId, 'approverId'),
      verdict: parseBridgeArgument(approvalVerdictSchema, verdict, 'verdict'),
    };
    const started = await this.approvalService().startCeremony(input);
    return parseBridgeResult(approvalCeremonySchema, { options: started.options, record: started.record });
  }

  async submitApprovalCeremony(requestId: string, approverId: string, response: WebAuthnResponseJson, reason?: string): Promise<ApprovalOutcome> {
    const input = {
      requestId: parseBridgeArgument(bridgeIdSchema, requestId, 'requestId'),
      approverId: parseBridgeArgument(bridgeIdSchema, approverId, 'approverId'),
      // The approval service verifies the assertion in full (@simplewebauthn/server).
      response: parseBridgeArgument(webauthnResponseSchema, response, 'response') as unknown as AuthenticationResponseJSON,
    };
    const why = reason === undefined ? undefined : parseBridgeArgument(approvalReasonSchema, reason, 'reason');
    const outcome = await this.approvalService().submitCeremony(why === undefined ? input : { ...input, reason: why });
    const out: ApprovalOutcome = {
      requestId: outcome.requestId, state: outcome.state, approvalsSoFar: outcome.approvalsSoFar.map(toEntry), reasons: [...outcome.reasons],
    };
    if (outcome.token !== undefined) out.token = outcome.token;
    if (outcome.tokenExpiresAt !== undefined) out.tokenExpiresAt = outcome.tokenExpiresAt;
    return parseBridgeResult(approvalOutcomeSchema, out);
  }

  private approvalService(): NonNullable<UiServiceDeps['approvals']> {
    if (this.deps.approvals === undefined) throw new CountersignError('internal_error', 'approvals are not available through this UI service');
    return this.deps.approvals;
  }

  private approverDirectory(): NonNullable<UiServiceDeps['approvers']> {
    if (this.deps.approvers === undefined) throw new CountersignError('internal_error', 'the approver directory is not available through this UI service');
    return this.deps.approvers;
  }
}

export function createUiService(deps: UiServiceDeps): UiService {
  return new UiService(deps);
}
