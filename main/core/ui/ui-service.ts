/**
 * The ONE server implementation of the bridge table (shared/bridge-table.ts), for both
 * transports: the HTTP edge's bridge routes and the Electron shell's IPC handlers call it through
 * `callBridgeMethod` (bridge-routes.ts), which has already checked every argument against the
 * table, so the methods here take typed values. Results are projected onto exactly the
 * documented members (the client validates them against the table).
 * Status, decisions and agents are read-only: every statement here is a bounded SELECT
 * (better-sqlite3 confirms `readonly` for the decisions query, request-repository.ts `recent`). The approval methods delegate to the approver directory
 * and the approval service (which record challenges, keys and approvals, audited).
 */
import type { Db } from '../store/database.js';
import type { AgentRegistry } from '../identity/agent-registry.js';
import type { SignerCustody } from '../custody/signer.js';
import type { GatewayStats } from '../gateway/gateway-server.js';
import type { CountersignConfig } from '../config.js';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Ability, ApprovalService, ApprovalEntry as CoreApprovalEntry, ApprovalRequestView } from '../approvals/approval-service.js';
import type { ApproverDirectory } from '../approvals/approver-directory.js';
import type { TamperAlarm, TamperAlarmView } from '../audit/tamper-alarm.js';
import { CountersignError } from '../../../shared/errors.js';
import {
  clampDecisionLimit,
  type AgentSummary,
  type ApprovalCeremony,
  type ApprovalEntry,
  type ApprovalOutcome,
  type ApprovalRequest,
  type ApprovalVerdict,
  type ApproverSummary,
  type AuditAlarmSummary,
  type BridgeStatus,
  type DecisionSummary,
  type DeskAbility,
  type DeskRequest,
  type RegisteredKey,
  type WebAuthnCreationOptions,
  type WebAuthnRequestOptions,
  type WebAuthnResponseJson,
} from '../../../shared/bridge.js';
import { RequestRepository, type RequestRecord } from '../store/request-repository.js';
import type { BridgeMethods } from '../../../shared/bridge-table.js';
import type { HistoryReader } from './history-reader.js';
import type { PolicyDesk } from './policy-desk.js';
import type { HealthDesk } from './health-desk.js';
import type {
  AuditVerification,
  CustodyHealth,
  HistoryEntry,
  HistoryPage,
  HistoryQuery,
  PolicyOverview,
  PolicyTestResult,
} from '../../../shared/desk-records.js';
import type { ToolCall } from '../../../shared/protocol.js';
import type { AdminActions } from '../approvals/admin-actions.js';
import type { FirstRun } from '../approvals/first-run.js';
import type { AdminAction } from '../../../shared/admin-actions.js';
import type {
  AdminCeremony,
  AdminConfirmationCeremony,
  AdminConfirmationOutcome,
  AdminConfirmationVerdict,
  AdminOutcome,
  AdminProposalList,
  ApproverDetail,
  FirstAdmin,
  FirstRunStateView,
} from '../../../shared/bridge-admin.js';
import type { WebhookDeadLetter } from '../../../shared/bridge.js';
import type { WebhookOutbox } from '../notify/webhook-outbox.js';
import type { DeskSessions } from './desk-sessions.js';
import { currentBridgeCall } from './bridge-caller.js';
import type { DeskSessionView } from '../../../shared/desk-session.js';

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
  approvals?: Pick<
    ApprovalService,
    'listPending' | 'countPending' | 'getPending' | 'startCeremony' | 'submitCeremony' | 'listQueue' | 'requestFor'
  >;
  /** The tamper alarm (RunningCountersign.tamperAlarm); without it the status shows none. */
  tamperAlarm?: Pick<TamperAlarm, 'current'>;
  /** The approver directory (RunningCountersign.approvers); without it the approver methods refuse. */
  approvers?: Pick<ApproverDirectory, 'list' | 'beginRegistration' | 'finishRegistration'>;
  /** The History, Policies and Custody-and-health views (ui/history-reader.ts, policy-desk.ts, health-desk.ts). */
  history?: Pick<HistoryReader, 'page' | 'entry'>;
  policyDesk?: Pick<PolicyDesk, 'overview' | 'testCall'>;
  healthDesk?: Pick<HealthDesk, 'health' | 'verifyNow'>;
  /** The admin console and first run (admin actions, the directory with keys); without it those methods refuse. */
  adminConsole?: {
    admin: Pick<AdminActions, 'start' | 'submit' | 'quorum' | 'listProposals' | 'startConfirmation' | 'submitConfirmation'>;
    firstRun: Pick<FirstRun, 'state' | 'createFirstAdmin'>;
    directory: Pick<ApproverDirectory, 'list' | 'credentialsOf' | 'aliasesOf'>;
  };
  /** Signed webhooks' outbox (RunningCountersign.webhookOutbox) and a way to wake its delivery loop. */
  webhooks?: { outbox: Pick<WebhookOutbox, 'deadLetters' | 'retry'>; kick: () => void; now: () => number };
  /** Desk sessions (sign-in with a security key); without them no one can sign in and person rows refuse. */
  deskSessions?: DeskSessions;
  /** A team hub: the newest requests of every hub, from the team database (store/pg/pg-request-reads.ts); default: `db`. */
  recentRequests?: (limit: number) => Promise<RequestRecord[]>;
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
  return {
    id: alarm.id,
    raisedAt: alarm.raisedAt,
    source: alarm.source,
    firstBadSeq: alarm.firstBadSeq,
    findings: alarm.findings.length,
    reason: (alarm.findings[0]?.reason ?? '').slice(0, 500),
  };
}

/** The queue's first page (the desk asks for 50). */
const DESK_QUEUE_PAGE = 50;

function deskAbility(ability: Ability): DeskAbility {
  if (ability.ok) return { ok: true };
  const out: DeskAbility = { ok: false, code: ability.code, message: ability.message.slice(0, 2048) };
  if (ability.conflict !== undefined) out.conflict = ability.conflict;
  return out;
}

export class UiService implements BridgeMethods {
  /** The `requests` rows (read only here). */
  private readonly requests: RequestRepository;

  constructor(private readonly deps: UiServiceDeps) {
    this.requests = new RequestRepository(deps.db);
  }

  /** callBridgeMethod resolves each caller's session with these (bridge-routes.ts). */
  get deskSessions(): DeskSessions | undefined {
    return this.deps.deskSessions;
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

  listRecentDecisions(limit?: number): Promise<DecisionSummary[]> {
    const recent = this.deps.recentRequests;
    return settle(() => clampDecisionLimit(limit)).then(async (limited) =>
      (recent === undefined ? this.requests.recent(limited) : await recent(limited)).map((row) => ({
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

  // ---- approvals (arguments were checked against the bridge table by callBridgeMethod) ----

  listApprovers(): Promise<{ approvers: ApproverSummary[] }> {
    return settle(() => ({
      approvers: this.approverDirectory()
        .list()
        .map((a) => ({
          id: a.id,
          displayName: a.displayName,
          groups: [...a.groups],
          virtual: a.virtual,
          status: a.status,
          createdAt: a.createdAt,
        })),
    }));
  }

  /** A page of the queue (`limit` 0 or absent: the whole first page) and how many wait in all. */
  async listPendingApprovals(limit?: number, offset?: number): Promise<{ pending: ApprovalRequest[]; total: number }> {
    const service = this.approvalService();
    const pending = await service.listPending(limit || undefined, offset ?? 0);
    return { pending: pending.map(toApprovalRequest), total: await service.countPending() };
  }

  async beginApproverRegistration(approverId: string, registrationCode: string): Promise<WebAuthnCreationOptions> {
    // The directory spends the code (single use) before it issues a challenge.
    return (await this.approverDirectory().beginRegistration(approverId, registrationCode)) as unknown as WebAuthnCreationOptions;
  }

  async finishApproverRegistration(approverId: string, response: WebAuthnResponseJson): Promise<RegisteredKey> {
    // The directory verifies the registration in full (@simplewebauthn/server).
    const credential = await this.approverDirectory().finishRegistration(approverId, response as unknown as RegistrationResponseJSON);
    return { credentialId: credential.credentialId, aaguid: credential.aaguid, approverId: credential.approverId };
  }

  async startApprovalCeremony(requestId: string, approverId: string, verdict: ApprovalVerdict): Promise<ApprovalCeremony> {
    const started = await this.approvalService().startCeremony({ requestId, approverId, verdict });
    return { options: started.options, record: started.record } as ApprovalCeremony;
  }

  async submitApprovalCeremony(
    requestId: string,
    approverId: string,
    response: WebAuthnResponseJson,
    reason?: string,
  ): Promise<ApprovalOutcome> {
    // The approval service verifies the assertion in full (@simplewebauthn/server).
    const input = { requestId, approverId, response: response as unknown as AuthenticationResponseJSON };
    const outcome = await this.approvalService().submitCeremony(reason === undefined ? input : { ...input, reason });
    const out: ApprovalOutcome = {
      requestId: outcome.requestId,
      state: outcome.state,
      approvalsSoFar: outcome.approvalsSoFar.map(toEntry),
      reasons: [...outcome.reasons],
    };
    if (outcome.token !== undefined) out.token = outcome.token;
    if (outcome.tokenExpiresAt !== undefined) out.tokenExpiresAt = outcome.tokenExpiresAt;
    return out;
  }

  // ---- History, Policies, Custody and health (read-only; arguments checked by callBridgeMethod) ----

  searchHistory(historyQuery: HistoryQuery): Promise<HistoryPage> {
    return settle(() => this.need(this.deps.history, 'history')).then((h) => h.page(historyQuery));
  }

  getHistoryEntry(requestId: string): Promise<HistoryEntry> {
    return settle(() => this.need(this.deps.history, 'history')).then((h) => h.entry(requestId));
  }

  getPolicyOverview(): Promise<PolicyOverview> {
    return settle(() => this.need(this.deps.policyDesk, 'the policies view')).then((p) => p.overview());
  }

  testPolicyCall(agentId: string, call: ToolCall): Promise<PolicyTestResult> {
    return settle(() => this.need(this.deps.policyDesk, 'the policies view')).then((p) => p.testCall({ agentId, call }));
  }

  getCustodyHealth(): Promise<CustodyHealth> {
    return settle(() => this.need(this.deps.healthDesk, 'the health view').health());
  }

  verifyAuditNow(): Promise<AuditVerification> {
    return settle(() => this.need(this.deps.healthDesk, 'the health view')).then((d) => d.verifyNow());
  }

  private need<T>(part: T | undefined, name: string): T {
    if (part === undefined) throw new CountersignError('internal_error', `${name} is not available through this UI service`);
    return part;
  }
  // ---- the admin console and the first run (rules live in the core: first-run.ts, admin-actions.ts) ----

  getFirstRun(): Promise<FirstRunStateView> {
    return settle(() => {
      const state = this.console().firstRun.state();
      return { open: state.open, approvers: state.approvers };
    });
  }

  async createFirstAdmin(newAdminId: string, displayName: string): Promise<FirstAdmin> {
    const made = await this.console().firstRun.createFirstAdmin(newAdminId, displayName);
    return { approverId: made.approverId, code: made.code, expiresAt: made.expiresAt };
  }

  async startAdminAction(adminId: string, action: AdminAction): Promise<AdminCeremony> {
    const started = await this.console().admin.start(adminId, action);
    return { options: started.options, action: started.action } as AdminCeremony;
  }

  async submitAdminAction(adminId: string, response: WebAuthnResponseJson): Promise<AdminOutcome> {
    // The admin actions verify the tap in full (@simplewebauthn/server) and perform the action once.
    const done = await this.console().admin.submit(adminId, response as unknown as AuthenticationResponseJSON);
    const result = typeof done.result === 'object' && done.result !== null ? (done.result as Record<string, unknown>) : {};
    return { action: done.action, result, ...(done.proposal === undefined ? {} : { proposal: done.proposal }) };
  }

  // ---- the admin quorum (approvals.adminQuorum: 2): a second admin confirms a proposed action ----

  async listPendingAdminActions(): Promise<AdminProposalList> {
    const { admin } = this.console();
    return { quorum: admin.quorum, proposals: await admin.listProposals() };
  }

  async startAdminConfirmation(
    proposalId: string,
    adminId: string,
    confirmation: AdminConfirmationVerdict,
  ): Promise<AdminConfirmationCeremony> {
    const started = await this.console().admin.startConfirmation(adminId, proposalId, confirmation);
    return { options: started.options, proposal: started.proposal, verdict: started.verdict } as AdminConfirmationCeremony;
  }

  async submitAdminConfirmation(adminId: string, response: WebAuthnResponseJson): Promise<AdminConfirmationOutcome> {
    const done = await this.console().admin.submitConfirmation(adminId, response as unknown as AuthenticationResponseJSON);
    const result = typeof done.result === 'object' && done.result !== null ? (done.result as Record<string, unknown>) : {};
    return { proposalId: done.proposalId, verdict: done.verdict, action: done.action, result };
  }

  listApproverDirectory(): Promise<{ approvers: ApproverDetail[] }> {
    return settle(() => {
      const { directory } = this.console();
      return {
        approvers: directory.list().map((a) => ({
          id: a.id,
          displayName: a.displayName,
          groups: [...a.groups],
          aliases: directory.aliasesOf(a.id),
          virtual: a.virtual,
          status: a.status,
          keys: directory.credentialsOf(a.id, false).map((c) => ({
            credentialId: c.credentialId,
            aaguid: c.aaguid,
            attestationFmt: c.attestationFmt,
            transports: [...c.transports],
            status: c.status,
            createdAt: c.createdAt,
            ...(c.lastUsedAt === undefined ? {} : { lastUsedAt: c.lastUsedAt }),
          })),
        })),
      };
    });
  }

  private console(): NonNullable<UiServiceDeps['adminConsole']> {
    if (this.deps.adminConsole === undefined)
      throw new CountersignError('internal_error', 'the admin console is not available through this UI service');
    return this.deps.adminConsole;
  }

  // ---- signed webhooks: dead letters (the desk shows them in an admin panel) ----

  listWebhookDeadLetters(): Promise<{ deadLetters: WebhookDeadLetter[] }> {
    return settle(() => ({
      deadLetters: this.webhookOutbox()
        .outbox.deadLetters()
        .map((row) => ({
          deliveryId: row.deliveryId,
          webhookId: row.webhookId,
          event: row.event,
          requestId: row.requestId,
          attempts: row.attempts,
          lastError: row.lastError,
          createdAt: row.createdAt,
          failedAt: row.finishedAt ?? row.createdAt,
        })),
    }));
  }

  retryWebhookDeadLetter(deliveryId: string): Promise<{ deliveryId: string; state: 'pending' }> {
    return settle(() => {
      const webhooks = this.webhookOutbox();
      webhooks.outbox.retry(deliveryId, webhooks.now());
      webhooks.kick();
      return { deliveryId, state: 'pending' as const };
    });
  }

  private webhookOutbox(): NonNullable<UiServiceDeps['webhooks']> {
    if (this.deps.webhooks === undefined)
      throw new CountersignError('internal_error', 'webhooks are not available through this UI service');
    return this.deps.webhooks;
  }

  // ---- desk sessions (the caller of the call in progress: bridge-caller.ts) ----

  getSession(): Promise<{ session: DeskSessionView | null }> {
    return settle(() => ({ session: currentBridgeCall().session ?? null }));
  }

  beginSignIn(approverId: string): Promise<{ options: WebAuthnRequestOptions }> {
    return this.sessions().begin(approverId) as Promise<{ options: WebAuthnRequestOptions }>;
  }

  async finishSignIn(approverId: string, response: WebAuthnResponseJson): Promise<{ session: DeskSessionView }> {
    const { caller } = currentBridgeCall();
    const sessions = this.sessions();
    const { token, session } = await sessions.finish(approverId, response);
    // One desk, one session: signing in again (as anyone) ends the one this caller held.
    await sessions.signOut(caller.token, 'replaced');
    caller.keep(token, sessions.cookieMaxAgeSeconds);
    return { session };
  }

  async signOut(): Promise<{ signedOut: boolean }> {
    const { caller } = currentBridgeCall();
    const signedOut = (await this.deps.deskSessions?.signOut(caller.token)) ?? false;
    caller.forget();
    return { signedOut };
  }

  private sessions(): DeskSessions {
    if (this.deps.deskSessions === undefined) throw new CountersignError('not_signed_in', 'this desk has no sign-in');
    return this.deps.deskSessions;
  }

  // ---- the desk's queue and request views ----

  /** A page of the queue, the soonest to expire first (`limit` 0 or absent: 50), and how many wait in all. */
  async listQueue(limit?: number, offset?: number): Promise<{ pending: ApprovalRequest[]; total: number }> {
    const service = this.approvalService();
    const pending = await service.listQueue(limit || DESK_QUEUE_PAGE, offset ?? 0);
    return { pending: pending.map(toApprovalRequest), total: await service.countPending() };
  }

  async getRequest(requestId: string, approverId: string): Promise<DeskRequest> {
    const found = await this.approvalService().requestFor(requestId, approverId);
    return {
      request: toApprovalRequest(found.request),
      keys: found.keys.map((k) => ({ approverId: k.approverId, credentialId: k.credentialId })),
      approve: deskAbility(found.approve),
      deny: deskAbility(found.deny),
    };
  }

  private approvalService(): NonNullable<UiServiceDeps['approvals']> {
    if (this.deps.approvals === undefined)
      throw new CountersignError('internal_error', 'approvals are not available through this UI service');
    return this.deps.approvals;
  }

  private approverDirectory(): NonNullable<UiServiceDeps['approvers']> {
    if (this.deps.approvers === undefined)
      throw new CountersignError('internal_error', 'the approver directory is not available through this UI service');
    return this.deps.approvers;
  }
}
