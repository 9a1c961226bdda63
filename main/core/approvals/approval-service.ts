/**
 * Human approvals of pending requests: WebAuthn ceremonies whose challenge is bound to the exact
 * call (shared/approvals.ts), quorum of distinct people, and the co-signed approval token.
 *
 * Lifecycle: pending -> approved | denied | expired; terminal states never change. Expiry itself
 * is DecisionService.expireDue's job; here a request past its deadline is simply not approvable.
 *
 * One ceremony:
 * 1. startCeremony: the request is pending and unexpired, the approver active, not the agent's
 *    owner, not already decided and (to approve) still needed by the request's group
 *    requirements. The challenge is base64url(SHA-256(JCS(record))) where the record names the
 *    request, call digest, verdict, policy hash, expiry, approver and a fresh nonce. It is stored
 *    single-use in webauthn_challenges.
 * 2. submitCeremony: every check runs before the (asynchronous) WebAuthn verification; if this
 *    approval completes the quorum the policy hook re-evaluates the call and the token is minted,
 *    still outside any transaction; then ONE immediate transaction re-checks everything that can
 *    have changed meanwhile and commits the challenge use, the approval, the key's counter, the
 *    request's new state, the token and the audit records together, or nothing at all.
 *
 * Separation of duties compares persons (identity/people.ts), never strings: the agent's owner,
 * the agent itself (the requester of its calls) and the approvers a policy names conflicted are
 * each resolved through the directory's ids and aliases, so `sam@example.com` as owner excludes
 * the approver `sam` who holds that alias. An owner that names no person (an agent held for
 * review) fails closed: nobody may decide its requests.
 *
 * Quorum counts distinct people, never keys (shared/quorum.ts, the one rule, via approval-quorum.ts):
 * count >= max(1, approvals, number of group lists) and every group list is covered by a
 * different person (bipartite matching). Approvals of people who
 * were disabled since, or who left the required groups, no longer count and are not carried in
 * the token (tool servers check assertions against the published directory of active approvers).
 *
 * Identical held calls (decision/decision-service.ts) form one group: a primary request and its
 * followers, listed once with a count. Approvers decide the primary; the first ceremony seals the
 * group and every challenge record names all followers, so each approver's key signs for every
 * member by id. Quorum mints one token per member (its own jti, bound to its own request id,
 * carrying the same assertions); a denial, a policy deny or expiry ends every member alike, and
 * each member gets its own audit records and its own notification.
 */
import { randomBytes } from 'node:crypto';
import type { AuthenticationResponseJSON, PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { Db } from '../store/database.js';
import type { RiskAssessment } from '../../../shared/risk.js';
import type { RiskLearner } from '../risk/risk-ports.js';
import { learnSafely } from '../risk/learn-safely.js';
import { sha256, type AuditEventFields, type AuditLog, type AuditKind } from '../audit/audit-log.js';
import type { DeniedAtApprovalEvent } from '../../../shared/audit-events.js';
import type { ApproverDirectory, ApproverRecord, CredentialRecord } from './approver-directory.js';
import type { ResolvedPerson } from '../identity/people.js';
import type { ApprovedMinter } from '../tokens/token-minter.js';
import { inAnyGroup, quorumMet, quorumOf, stillNeeded, stricterRequirement, type QuorumPerson as Person } from './approval-quorum.js';
import type { RequestRecord } from '../store/request-repository.js';
import type { ApprovalCommit, ApprovalRow, ApprovalSnapshot, ApprovalStore } from '../store/approval-store-seam.js';
import type { AuditSubmission, TokenRow } from '../store/store-seam.js';
import { SqliteApprovalStore } from './sqlite-approval-store.js';
import { parseStoredJson } from '../store/stored-json.js';
import { CeremonyEngine, CounterRegression, parseOffered, type AssertionResponse, type StoredChallenge } from './ceremony.js';
import { TeamCounterRegression } from '../store/pg/pg-directory.js';
import {
  APPROVAL_CHALLENGE_TYP,
  approvalAssertionSchema,
  approvalChallengeRecordSchema,
  recordChallengeWith,
  type ApprovalAssertion,
  type ApprovalChallengeRecord,
} from '../../../shared/approvals.js';
import { CountersignError, isCountersignError, quote, type ErrorCode } from '../../../shared/errors.js';
import { canonicalize, parseStrictJson, type JsonObject } from '../../../shared/canonical-json.js';
import type { ApprovalRequirement, DecisionResult, RequestState, ToolCall } from '../../../shared/protocol.js';

export type { ApprovalVerdict } from '../store/approval-store-seam.js';
import type { ApprovalVerdict } from '../store/approval-store-seam.js';

/** What the policy hook is given: the call exactly as stored when it was submitted. */
export interface ReevaluationInput {
  requestId: string;
  agentId: string;
  call: ToolCall;
  /** The risk assessment recorded with the request. */
  risk: RiskAssessment;
  /** The policy set hash the request was decided (held) under. */
  policyHash: string;
}

/** The current policy's answer for a pending call. */
export type Reevaluation =
  | { outcome: 'allow'; policyHash: string }
  | { outcome: 'deny'; policyHash: string; reasons: string[]; determiningPolicies: string[] }
  | { outcome: 'approval_required'; policyHash: string; obligation: ApprovalRequirement; conflicted?: string[] };

/**
 * Optional: re-evaluate a pending call under the current policy when its quorum is about to be
 * met. A deny ends the request with the policy's reasons; approval_required is combined with the
 * stored obligation (the stricter of both). Throwing fails the approval (nothing is committed).
 */
export interface ApprovalPolicyHook {
  reevaluate(input: ReevaluationInput): Promise<Reevaluation> | Reevaluation;
}

export interface ApprovalServiceOptions {
  db: Db;
  audit: AuditLog;
  /**
   * Where requests and approvals are read and committed (store/approval-store-seam.ts): a hub
   * passes the team database's; by default the data directory's SQLite. Key counters' replica
   * and risk baselines stay in `db` either way; challenges too, except on a team hub, where the
   * ceremony engine keeps them in the team database (any hub finishes a ceremony another began).
   */
  store?: ApprovalStore | undefined;
  directory: ApproverDirectory;
  minter: ApprovedMinter;
  /** The token audience of a tool (app.ts: `(tool) => policy.tool(tool)?.audience`). */
  audienceOf: (tool: string) => string | undefined;
  policy?: ApprovalPolicyHook;
  /** Keeps risk baselines in step: an approved call is an executed call. */
  learner?: RiskLearner | undefined;
  now?: () => number;
  /** How long an approver has to complete one ceremony (never beyond the request's expiry). */
  ceremonyTimeoutMs: number;
  /** Called after a request reached a terminal state here (app.ts: the gateway's notifyAgent). */
  onDecided?: (agentId: string, result: DecisionResult) => void;
  /** Called after an approval or denial of `requestId` (a group's primary) committed here, before its onDecided. */
  onRecorded?: (requestId: string) => void;
  /** Optional stage timings of each submitted key tap (benchmarks), milliseconds per stage. */
  onTiming?: (stage: ApprovalStage, ms: number) => void;
}

/**
 * The stages of one submitted key tap: the checks before the signature (request, challenge,
 * approver, key); the WebAuthn verification and, beside it on its own clock, the plan's reads
 * (`plan`) and the policy re-evaluation (`policy`); the challenge claim; any wait left for the
 * plan (`planned`); the tokens minted; the one commit; the agents told. A stage a tap does not
 * reach (a denial, an approval short of its quorum) folds into the next one timed.
 */
export type ApprovalStage = 'checks' | 'webauthn' | 'plan' | 'policy' | 'claim' | 'planned' | 'mint' | 'commit' | 'notify';

export interface ApprovalEntry {
  approverId: string;
  displayName: string;
  verdict: ApprovalVerdict;
  at: number;
  reason?: string;
}

/** One recorded approval with the assertion that proves it. */
export interface RecordedApproval extends ApprovalEntry {
  credentialId: string;
  assertion: ApprovalAssertion;
}

/** Everything an approver needs to see to decide a request: the call in full and its context. */
export interface ApprovalRequestView {
  requestId: string;
  agentId: string;
  agentDisplayName?: string;
  agentOwner?: string;
  tool: string;
  params: JsonObject;
  dataClass: string;
  jurisdiction: string;
  provenance: string[];
  callSha256: string;
  policyHash: string;
  determiningPolicies: string[];
  reasons: string[];
  obligation: ApprovalRequirement;
  risk: RiskAssessment;
  state: RequestState;
  createdAt: number;
  expiresAt: number;
  decidedAt?: number;
  approvals: ApprovalEntry[];
  /** How many identical calls this request stands for: itself plus its followers (1 when alone). */
  count: number;
  /** The followers' own request ids, sorted (each caller's request; decided with this one). */
  followers: string[];
  /** People who may not decide this request, and why (approver ids: compare them exactly). */
  excludedApprovers: ExcludedApprover[];
  /** True when the agent's owner is not a known person: nobody may decide (fail closed). */
  ownerUnresolved?: boolean;
}
export type PendingApproval = ApprovalRequestView;

/** Why a person may not decide a request. */
export type ConflictReason = 'owner' | 'requester' | 'policy';

/** The person a handle (id or alias) names, or undefined. */
type PersonLookup = (handle: string) => ResolvedPerson | undefined;
export interface ExcludedApprover {
  approverId: string;
  reason: ConflictReason;
}

export interface CeremonyStart {
  /** For navigator.credentials.get() (e.g. @simplewebauthn/browser startAuthentication). */
  options: PublicKeyCredentialRequestOptionsJSON;
  /** What the approver signs over: show it. */
  record: ApprovalChallengeRecord;
}

export interface ApprovalOutcome {
  requestId: string;
  state: 'pending' | 'approved' | 'denied';
  approvalsSoFar: ApprovalEntry[];
  reasons: string[];
  token?: string;
  tokenExpiresAt?: number;
}

/**
 * The risk a group is shown and re-evaluated with: the highest-scoring member's assessment (the
 * primary's first on a tie). Repeats can score higher than the first call (call rate, loops), and
 * an approver deciding for every member must see the worst of them.
 */
function worstRisk(primary: RiskAssessment, followers: readonly RequestRecord[]): RiskAssessment {
  let worst = primary;
  for (const follower of followers) if (follower.risk.score > worst.score) worst = follower.risk;
  return worst;
}

/** Whether one approver's ceremony for one verdict could succeed now, and if not the error it would meet. */
export type Ability = { ok: true } | { ok: false; code: ErrorCode; message: string; conflict?: ConflictReason };

/** The desk's request view for one approver (ApprovalService.requestFor). */
export interface RequestForApprover {
  request: ApprovalRequestView;
  /** The security key (credential id) behind each recorded decision. */
  keys: Array<{ approverId: string; credentialId: string }>;
  approve: Ability;
  deny: Ability;
}

const MAX_REASON_LENGTH = 500;
const MAX_HISTORY = 1000;
/** Most pending requests one listing returns (the full queue can be paged with offset). */
const MAX_PENDING_PAGE = 1000;

/** A page request clamped as every listing clamps it: 1..MAX_PENDING_PAGE items from offset 0 up. */
function pageOf(limit: number, offset: number): [number, number] {
  const n = Math.max(1, Math.min(MAX_PENDING_PAGE, Math.floor(Number.isFinite(limit) ? limit : MAX_PENDING_PAGE)));
  return [n, Math.max(0, Math.floor(Number.isFinite(offset) ? offset : 0))];
}
const MAX_PLAN_ATTEMPTS = 4;

/** Thrown inside the final transaction when what was planned outside it no longer holds. */
class StalePlan extends Error {}

/** The same handle in any case: used only to ADD conflicts on top of person matching. */
function sameSpelling(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** The approval requirement of a request that waits for approvers (internal_error when it has none). */
function requirementOf(row: RequestRecord): ApprovalRequirement {
  if (row.obligation === null) throw new CountersignError('internal_error', `request ${quote(row.id)} has no approval requirement`);
  return row.obligation;
}

function cleanReason(reason: string | undefined): string | undefined {
  if (reason === undefined) return undefined;
  if (typeof reason !== 'string') throw new CountersignError('schema_invalid', 'the reason must be text');
  const text = reason.trim();
  if (text.length > MAX_REASON_LENGTH)
    throw new CountersignError('schema_invalid', `the reason must be at most ${MAX_REASON_LENGTH} characters`);
  // Control characters are never part of a reason shown to people.
  if ([...text].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    throw new CountersignError('schema_invalid', 'the reason must not contain control characters');
  return text.length === 0 ? undefined : text;
}

/** An audit event for the store to commit (typed by its kind). */
function submission<K extends AuditKind>(kind: K, at: number, event: AuditEventFields<K>): AuditSubmission {
  return { kind, at, event };
}

function joinNames(names: string[]): string {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]!}`;
}

type Plan =
  | { kind: 'deny' }
  | { kind: 'policy_deny'; reevaluation: Extract<Reevaluation, { outcome: 'deny' }>; storedRequirement: string | null }
  | { kind: 'record'; obligation: ApprovalRequirement; storedRequirement: string | null; tightened: boolean; conflicted: string[] }
  | {
      kind: 'approve';
      obligation: ApprovalRequirement;
      storedRequirement: string | null;
      tightened: boolean;
      counted: string[];
      /** Approvers the current policy newly names as conflicted (merged into the request on commit). */
      conflicted: string[];
      /** One token per member still pending: the primary first, then each follower. */
      minted: Array<{ requestId: string; token: string; jti: string; kid: string; expiresAt: number }>;
      audience: string;
    };

/** A plan before its tokens are minted (ApprovalService.prepare): what to sign, for whom, with which assertions. */
type Prepared =
  | Exclude<Plan, { kind: 'approve' }>
  | (Omit<Extract<Plan, { kind: 'approve' }>, 'kind' | 'minted'> & {
      kind: 'mint';
      row: RequestRecord;
      /** The members still pending, the primary first: one token each. */
      members: string[];
      /** Every counted approver's assertion, this tap's last. */
      signed: ApprovalAssertion[];
    });

/** What one commit decided, per member of the group, for the agents' notifications. */
interface Committed {
  outcome: ApprovalOutcome;
  agentId: string;
  results: DecisionResult[];
}

interface SubmitContext {
  requestId: string;
  approverId: string;
  verdict: ApprovalVerdict;
  challenge: string;
  /** The challenge's row as claimed after verification (its bindings are checked again inside the commit). */
  challengeRow: StoredChallenge;
  credentialId: string;
  /** The key's response, as read by the ceremony engine (its credential is re-checked on commit). */
  response: AssertionResponse;
  record: ApprovalChallengeRecord;
  reason: string | undefined;
  assertion: ApprovalAssertion;
  newCounter: number;
}

export class ApprovalService {
  private readonly db: Db;
  private readonly now: () => number;
  /** The key taps: challenge binding, offered keys, userHandle, signature, counter. */
  private readonly ceremonies: CeremonyEngine;
  /** Requests and approvals: read, and committed in one transaction (SQLite embedded, PostgreSQL on a hub). */
  private readonly requests: ApprovalStore;

  constructor(private readonly options: ApprovalServiceOptions) {
    this.db = options.db;
    this.now = options.now ?? Date.now;
    this.requests = options.store ?? new SqliteApprovalStore(options.db, options.audit);
    this.ceremonies = new CeremonyEngine({ db: options.db, audit: options.audit, directory: options.directory, now: this.now });
    if (!Number.isSafeInteger(options.ceremonyTimeoutMs) || options.ceremonyTimeoutMs < 1) {
      throw new CountersignError('config_invalid', 'the ceremony timeout must be a positive number of milliseconds');
    }
  }

  // ---- people ----

  /**
   * Whether `handle` names `approverId`: the person it resolves to through the directory's ids
   * and aliases. A handle spelled like the id (in any case) also matches, so a database still
   * holding two ids differing only by case excludes both rather than neither.
   */
  private names(handle: string, approverId: string): boolean {
    return this.options.directory.resolvePerson(handle)?.id === approverId || sameSpelling(handle, approverId);
  }

  /** The person a handle names, through the directory (ids and aliases). */
  private readonly person: PersonLookup = (handle) => this.options.directory.resolvePerson(handle);

  /** Whether the agent's owner is a person (the agent not held for review). */
  private ownerResolved(row: RequestRecord, person: PersonLookup = this.person): boolean {
    return row.agent.owner !== null && row.agent.ownerState === 'resolved' && person(row.agent.owner) !== undefined;
  }

  /**
   * Why `approverId` may not decide this request, or undefined: the agent's owner, the agent
   * itself as requester, or a person the policy named (stored on the request, or `extra` from
   * the current policy). An unreadable conflicted list conflicts everyone.
   */
  private conflictOf(row: RequestRecord, approverId: string, extra: readonly string[] = []): ConflictReason | undefined {
    if (row.agent.owner !== null && this.names(row.agent.owner, approverId)) return 'owner';
    if (this.names(row.agentId, approverId)) return 'requester';
    if ([...row.conflictedApprovers, ...extra].some((name) => this.names(name, approverId))) return 'policy';
    return undefined;
  }

  /** The people excluded from deciding this request, resolved for display (the renderer's reasons). */
  private excludedOf(row: RequestRecord, lookup: PersonLookup = this.person): ExcludedApprover[] {
    const out = new Map<string, ConflictReason>();
    const add = (handle: string | null, reason: ConflictReason) => {
      const person = handle === null ? undefined : lookup(handle);
      if (person !== undefined && !out.has(person.id)) out.set(person.id, reason);
    };
    add(row.agent.owner, 'owner');
    add(row.agentId, 'requester');
    for (const name of row.conflictedApprovers) add(name, 'policy');
    return [...out].map(([approverId, reason]) => ({ approverId, reason }));
  }

  // ---- reading ----

  /** Pending, unexpired requests, oldest first; `limit`/`offset` page through a long queue. */
  async listPending(limit = MAX_PENDING_PAGE, offset = 0): Promise<PendingApproval[]> {
    const [n, skip] = pageOf(limit, offset);
    return this.views(await this.requests.pendingPage('age', this.now(), n, skip));
  }

  /** The desk's queue: pending, unexpired prompts, the soonest to expire first. */
  async listQueue(limit = MAX_PENDING_PAGE, offset = 0): Promise<PendingApproval[]> {
    const [n, skip] = pageOf(limit, offset);
    return this.views(await this.requests.pendingPage('expiry', this.now(), n, skip));
  }

  /**
   * Views of a page of requests with a fixed number of statements (the page itself, its
   * approvals, its followers), never one per request: the queue stays as fast with 10,000
   * waiting as with 10 (bench BENCH_ONLY=desk-queue).
   */
  private async views(rows: readonly RequestRecord[]): Promise<ApprovalRequestView[]> {
    const approvals = await this.requests.approvalsOfMany(rows.map((r) => r.id));
    const followers = await this.requests.followersOfMany(rows.filter((r) => r.groupId === null).map((r) => r.id));
    // A page names the same few people again and again (one agent, its owner): each handle is
    // resolved once per page, not once per row (two SELECTs each).
    const resolved = new Map<string, ResolvedPerson | undefined>();
    const person: PersonLookup = (handle) => {
      if (!resolved.has(handle)) resolved.set(handle, this.person(handle));
      return resolved.get(handle);
    };
    return rows.map((row) => this.viewOf(row, { approvals: approvals.get(row.id) ?? [], followers: followers.get(row.id) ?? [], person }));
  }

  /**
   * What the desk's request view shows one approver: the request (any state; a follower shows
   * its group), the key each decision was made with, and for each verdict whether this approver's
   * ceremony could succeed now and if not why (the same checks the ceremony runs, as a dry run).
   */
  async requestFor(requestId: string, approverId: string): Promise<RequestForApprover> {
    const row = await this.primaryRow(requestId);
    const approvals = await this.requests.approvals(row.id);
    const keys = approvals.map((a) => ({ approverId: a.approver_id, credentialId: a.credential_id }));
    const able = (verdict: ApprovalVerdict): Ability => {
      try {
        const obligation = this.assertApprovable(row, this.now());
        this.checkApprover(row, obligation, approverId, verdict, approvals);
        if (this.options.directory.credentialsOf(approverId).length === 0)
          return { ok: false, code: 'credential_unknown', message: `approver ${quote(approverId)} has no registered security key` };
        return { ok: true };
      } catch (error) {
        if (!isCountersignError(error)) throw error;
        const out: Ability = { ok: false, code: error.code, message: error.message };
        const reason = error.details?.reason;
        if (reason === 'owner' || reason === 'requester' || reason === 'policy') out.conflict = reason;
        return out;
      }
    };
    return { request: await this.view(row, approvals), keys, approve: able('approve'), deny: able('deny') };
  }

  /** How many prompts are waiting (a merged group counts once; for paging and the UI's counter). */
  countPending(): Promise<number> {
    return this.requests.countPending(this.now());
  }

  /** One pending, unexpired request (request_unknown / request_not_pending otherwise); a follower shows its group. */
  async getPending(requestId: string): Promise<PendingApproval> {
    const row = await this.primaryRow(requestId);
    this.assertApprovable(row, this.now());
    return this.view(row);
  }

  /** Requests that needed approval and are decided (approved, denied, expired), newest first. */
  async history(limit = 100): Promise<ApprovalRequestView[]> {
    const n = Math.max(1, Math.min(MAX_HISTORY, Math.floor(Number.isFinite(limit) ? limit : 100)));
    return this.views(await this.requests.history(n));
  }

  /**
   * How far a request's quorum has come, by the one quorum rule (shared/quorum.ts): the people it
   * needs and the people whose approvals count now (active, in a required group, not conflicted,
   * each person once). The agent's request.get reports it; the MCP proxy says "1 of 2" from it.
   */
  async quorumProgress(requestId: string): Promise<{ required: number; received: number }> {
    const primary = await this.primaryRow(requestId);
    const requirement = requirementOf(primary);
    const status = quorumOf(requirement, this.countedPeople(primary, requirement, await this.requests.approvals(primary.id)));
    return { required: status.required, received: status.counted.length };
  }

  /** Every recorded approval or denial of a request, with its assertion, in order. */
  async approvalsOf(requestId: string): Promise<RecordedApproval[]> {
    const primary = await this.primaryRow(requestId);
    return (await this.requests.approvals(primary.id)).map((row) => {
      const entry: RecordedApproval = {
        ...this.entry(row),
        credentialId: row.credential_id,
        assertion: approvalAssertionSchema.parse(parseStoredJson(row.assertion)),
      };
      return entry;
    });
  }

  // ---- ceremonies ----

  async startCeremony(input: { requestId: string; approverId: string; verdict: ApprovalVerdict }): Promise<CeremonyStart> {
    const { requestId, approverId, verdict } = input;
    if (verdict !== 'approve' && verdict !== 'deny')
      throw new CountersignError('schema_invalid', 'the verdict must be "approve" or "deny"');
    const now = this.now();
    const row = await this.primaryRow(requestId);
    const obligation = this.assertApprovable(row, now);
    const approver = this.checkApprover(row, obligation, approverId, verdict, await this.requests.approvals(row.id));
    const credentials = this.ceremonies.keysOf(approver.id, `approver ${quote(approver.id)} has no active security key`);
    const expiresAt = row.expiresAt!;
    // Seal the group before reading its members: no identical call joins once an approver has
    // begun deciding, so this list is the group every approver of this request signs for.
    const followers = await this.stored(this.requests.seal(row.id, now));
    const record: ApprovalChallengeRecord = approvalChallengeRecordSchema.parse({
      typ: APPROVAL_CHALLENGE_TYP,
      requestId: row.id,
      callSha256: row.callSha256,
      verdict,
      policyHash: row.policyHash,
      expiresAt,
      approverId: approver.id,
      nonce: randomBytes(32).toString('base64url'),
      ...(followers.length > 0 ? { followers } : {}),
    });
    const challenge = recordChallengeWith(record, sha256);
    const ceremonyExpiry = Math.min(expiresAt, now + this.options.ceremonyTimeoutMs);
    const { options, offered } = await this.ceremonies.offer({
      credentials,
      challenge,
      userVerification: obligation.userVerification,
      timeoutMs: ceremonyExpiry - now,
    });
    const started: AuditEventFields<'approval.started'> = {
      requestId: row.id,
      agentId: row.agentId,
      approverId: approver.id,
      verdict,
      challenge,
      callSha256: row.callSha256,
      expiresAt: ceremonyExpiry,
    };
    if (followers.length > 0) started.followers = followers;
    // Embedded, the challenge and its event commit in one transaction; a team hub keeps the
    // challenge in the team database (any hub finishes the ceremony), stored before the event.
    await this.stored(
      this.ceremonies.issueChallenge(
        'approval',
        { challenge, userId: approver.id, requestId: row.id, verdict, record, expiresAt: ceremonyExpiry, offered },
        (local) => this.requests.record(submission('approval.started', now, started), local),
      ),
    );
    return { options, record };
  }

  /**
   * Verify an approver's assertion and record it. `verdict`, when given, must match the verdict
   * the ceremony was started (and the key signed) for.
   */
  async submitCeremony(input: {
    requestId: string;
    approverId: string;
    response: AuthenticationResponseJSON;
    reason?: string;
    verdict?: ApprovalVerdict;
  }): Promise<ApprovalOutcome> {
    const { approverId } = input;
    const lap = this.stopwatch();
    // A follower's id stands for its group: the ceremony was started (and signed) for the primary.
    const row = await this.primaryRow(input.requestId);
    const requestId = row.id;
    const reason = cleanReason(input.reason);
    const read = this.ceremonies.read(input.response);
    const { response, challenge } = read;
    const now = this.now();

    // Everything that can be checked before the signature, in the order callers expect.
    this.assertApprovable(row, now);
    const { record, verdict, offered } = await this.checkChallenge(challenge, requestId, approverId, input.verdict, now);
    const approvals = await this.requests.approvals(requestId);
    const credential = this.checkSubmitter(row, approverId, verdict, response, offered, approvals);
    const userHandle = response.response.userHandle ?? undefined;
    const assertionParse = approvalAssertionSchema.safeParse({
      approverId,
      credentialId: response.id,
      authenticatorData: response.response.authenticatorData,
      clientDataJSON: response.response.clientDataJSON,
      signature: response.response.signature,
      ...(userHandle !== undefined ? { userHandle } : {}),
      record,
    });
    if (!assertionParse.success) throw new CountersignError('assertion_invalid', 'the security key response is malformed');

    lap('checks');
    const assertion = assertionParse.data;
    const obligation = requirementOf(row);
    // The WebAuthn verification (asynchronous, so outside any transaction) and, beside it, the
    // plan's reads and the policy re-evaluation: neither writes nor signs anything, so they need
    // not wait for the signature. Their result is used only once the signature verified and the
    // challenge is claimed, in that order (a bad signature is refused as before, whatever the plan
    // found), and the commit re-checks everything the plan assumed.
    const planned = this.prepare({ requestId, approverId, verdict, assertion }, { row, approvals });
    planned.catch(() => undefined); // awaited below, unless the signature is refused first
    const newCounter = await this.ceremonies.verify(read, credential, obligation.userVerification);
    lap('webauthn');
    // On a team hub the challenge is spent here, once for every hub (a copy of this answer sent
    // to another hub at the same moment finds it used); embedded, inside the commit below.
    const claimed = await this.ceremonies.claimChallenge('approval', challenge, approverId, this.now());
    lap('claim');
    if (claimed === undefined)
      throw new CountersignError('challenge_invalid', 'the ceremony challenge has already been used or has expired');
    const ctx: SubmitContext = {
      requestId,
      approverId,
      verdict,
      challenge,
      challengeRow: claimed,
      credentialId: credential.credentialId,
      response,
      record,
      reason,
      assertion,
      newCounter,
    };

    for (let attempt = 1; ; attempt++) {
      // A stale plan (the commit found the request changed) is planned again from fresh reads.
      const prepared = attempt === 1 ? await planned : await this.prepare(ctx);
      lap('planned');
      const plan = await this.mint(prepared);
      lap('mint');
      let committed: Committed;
      try {
        committed = await this.commit(ctx, plan);
        lap('commit');
      } catch (error) {
        if (error instanceof StalePlan && attempt < MAX_PLAN_ATTEMPTS) continue;
        if (error instanceof StalePlan)
          throw new CountersignError('store_failed', 'the approval could not be recorded: the request kept changing; try again');
        if (error instanceof CounterRegression || error instanceof TeamCounterRegression) await this.ceremonies.refuse(error);
        throw error;
      }
      this.told(() => this.options.onRecorded?.(requestId));
      for (const result of committed.results) this.notify(committed.agentId, result);
      lap('notify');
      return committed.outcome;
    }
  }

  // ---- checks (each runs before verification and again inside the final transaction) ----

  private async requestRow(requestId: string): Promise<RequestRecord> {
    const row = await this.requests.request(requestId);
    if (row === undefined) throw new CountersignError('request_unknown', `no request ${quote(requestId)} exists`);
    return row;
  }

  /** The request, or for a follower of a merged group, the group's primary request. */
  private async primaryRow(requestId: string): Promise<RequestRecord> {
    const row = await this.requestRow(requestId);
    return row.groupId === null ? row : this.requestRow(row.groupId);
  }

  private assertApprovable(row: RequestRecord, now: number): ApprovalRequirement {
    if (row.state !== 'pending') throw new CountersignError('request_not_pending', `request ${quote(row.id)} is already ${row.state}`);
    if (row.expiresAt === null || row.expiresAt <= now)
      throw new CountersignError('request_not_pending', `the approval window of request ${quote(row.id)} has closed`);
    return requirementOf(row);
  }

  /** Active, not conflicted, not already decided, eligible for this verdict. */
  private checkApprover(
    row: RequestRecord,
    obligation: ApprovalRequirement,
    approverId: string,
    verdict: ApprovalVerdict,
    approvals: readonly ApprovalRow[],
  ): ApproverRecord {
    const approver = this.options.directory.get(approverId);
    if (approver.status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(approverId)} is disabled`);
    if (!this.ownerResolved(row)) {
      throw new CountersignError(
        'agent_held_for_review',
        `the owner of agent ${quote(row.agentId)} is not a known person, so nobody may decide its requests until an administrator sets one`,
      );
    }
    const conflict = this.conflictOf(row, approver.id);
    if (conflict === 'owner') {
      throw new CountersignError(
        'approver_conflicted',
        `approver ${quote(approver.id)} owns the agent that made this request (owner ${quote(row.agent.owner ?? '')}) and may not decide it`,
        { details: { reason: 'owner' } },
      );
    }
    if (conflict === 'requester') {
      throw new CountersignError(
        'approver_conflicted',
        `approver ${quote(approver.id)} is the requester of this call and may not decide it`,
        { details: { reason: 'requester' } },
      );
    }
    if (conflict === 'policy') {
      throw new CountersignError('approver_conflicted', `the policy names approver ${quote(approver.id)} as conflicted for this request`, {
        details: { reason: 'policy' },
      });
    }
    if (approvals.some((a) => a.approver_id === approver.id)) {
      throw new CountersignError('approver_already_decided', `approver ${quote(approver.id)} has already decided request ${quote(row.id)}`);
    }
    const candidate: Person = { id: approver.id, groups: approver.groups };
    const eligible =
      verdict === 'deny'
        ? inAnyGroup(obligation, approver.groups)
        : stillNeeded(obligation, this.countedPeople(row, obligation, approvals), candidate);
    if (!eligible) {
      throw new CountersignError(
        'approver_not_eligible',
        `approver ${quote(approver.id)} is in none of the groups request ${quote(row.id)} still needs`,
      );
    }
    return approver;
  }

  /** The challenge row must be this approval ceremony: request, approver, verdict, unused, live, bound. */
  private async checkChallenge(
    challenge: string,
    requestId: string,
    approverId: string,
    verdict: ApprovalVerdict | undefined,
    now: number,
  ): Promise<{ record: ApprovalChallengeRecord; verdict: ApprovalVerdict; offered: string[] }> {
    const { row, record } = this.challengeRow(await this.ceremonies.challenge('approval', challenge), requestId, approverId, verdict, now);
    if (recordChallengeWith(record, sha256) !== challenge)
      throw new CountersignError('challenge_invalid', 'the ceremony challenge does not match its bound record');
    return { record, verdict: row.verdict as ApprovalVerdict, offered: parseOffered(row.offered) };
  }

  /**
   * The bindings of a challenge row (read before verification, and again inside the commit on
   * the row claimed for it: its bindings never change, and its single use is the spend there).
   */
  private challengeRow(
    row: StoredChallenge | undefined,
    requestId: string,
    approverId: string,
    verdict: ApprovalVerdict | undefined,
    now: number,
  ): { row: StoredChallenge; record: ApprovalChallengeRecord } {
    const invalid = (why: string) => new CountersignError('challenge_invalid', `the ceremony challenge ${why}`);
    if (row === undefined || row.record === null || (row.verdict !== 'approve' && row.verdict !== 'deny')) throw invalid('is unknown');
    if (row.requestId !== requestId) throw invalid(`was issued for another request, not ${quote(requestId)}`);
    if (row.userId !== approverId) throw invalid(`was issued to another approver, not ${quote(approverId)}`);
    if (verdict !== undefined && row.verdict !== verdict) throw invalid(`was issued to ${row.verdict}, not to ${verdict}`);
    if (row.usedAt !== null) throw invalid('has already been used');
    if (row.expiresAt <= now) throw invalid('has expired; start a new ceremony');
    const record = approvalChallengeRecordSchema.safeParse(parseStrictJson(row.record));
    if (
      !record.success ||
      record.data.requestId !== requestId ||
      record.data.approverId !== approverId ||
      record.data.verdict !== row.verdict
    ) {
      throw invalid('is bound to a different record');
    }
    return { row, record: record.data };
  }

  /** The approver checks, then the key: this approver's, active, offered in this ceremony, answering for them. */
  private checkSubmitter(
    row: RequestRecord,
    approverId: string,
    verdict: ApprovalVerdict,
    response: AssertionResponse,
    offered: readonly string[],
    approvals: readonly ApprovalRow[],
  ): CredentialRecord {
    this.checkApprover(row, requirementOf(row), approverId, verdict, approvals);
    return this.ceremonies.credentialFor(approverId, response, offered);
  }

  /** Approvers whose approval counts now: approved, active, in a required group, not conflicted. */
  private countedPeople(row: RequestRecord, obligation: ApprovalRequirement, approvals: readonly ApprovalRow[]): Person[] {
    return this.countedApprovals(row, obligation, approvals).map(({ approver }) => ({ id: approver.id, groups: approver.groups }));
  }

  private countedApprovals(
    row: RequestRecord,
    obligation: ApprovalRequirement,
    approvals: readonly ApprovalRow[],
    extraConflicted: readonly string[] = [],
  ): Array<{ approver: ApproverRecord; approval: ApprovalRow }> {
    const out: Array<{ approver: ApproverRecord; approval: ApprovalRow }> = [];
    for (const approval of approvals) {
      if (approval.verdict !== 'approve') continue;
      let approver: ApproverRecord;
      try {
        approver = this.options.directory.get(approval.approver_id);
      } catch {
        continue;
      }
      if (approver.status !== 'active' || !inAnyGroup(obligation, approver.groups)) continue;
      if (!this.ownerResolved(row) || this.conflictOf(row, approver.id, extraConflicted) !== undefined) continue;
      out.push({ approver, approval });
    }
    return out;
  }

  // ---- deciding ----

  /**
   * What committing this approval would do, up to its tokens: the request and its approvals read
   * (or `fresh`, read by the caller a moment ago), the quorum, the policy re-evaluated. Reads and
   * evaluates only, so it may run beside the WebAuthn verification (submitCeremony).
   */
  private async prepare(
    input: Pick<SubmitContext, 'requestId' | 'approverId' | 'verdict' | 'assertion'>,
    fresh?: { row: RequestRecord; approvals: ApprovalRow[] },
  ): Promise<Prepared> {
    if (input.verdict === 'deny') return { kind: 'deny' };
    const lap = this.stopwatch();
    const row = fresh?.row ?? (await this.requestRow(input.requestId));
    const stored = this.assertApprovable(row, this.now());
    const approvals = fresh?.approvals ?? (await this.requests.approvals(row.id));
    const self = this.options.directory.get(input.approverId);
    const selfPerson: Person = { id: self.id, groups: self.groups };
    if (!quorumMet(stored, [...this.countedPeople(row, stored, approvals), selfPerson])) {
      return { kind: 'record', obligation: stored, storedRequirement: row.obligationJson, tightened: false, conflicted: [] };
    }
    const followers = await this.requests.followers(row.id);
    let obligation = stored;
    let tightened = false;
    let conflicted: string[] = [];
    lap('plan');
    if (this.options.policy !== undefined) {
      const reevaluation = await this.options.policy.reevaluate({
        requestId: row.id,
        agentId: row.agentId,
        call: row.call,
        risk: worstRisk(row.risk, followers),
        policyHash: row.policyHash,
      });
      if (reevaluation.outcome === 'deny') return { kind: 'policy_deny', reevaluation, storedRequirement: row.obligationJson };
      if (reevaluation.outcome === 'approval_required') {
        obligation = stricterRequirement(stored, reevaluation.obligation);
        const storedNames = row.conflictedApprovers;
        conflicted = (reevaluation.conflicted ?? []).filter((name) => !storedNames.some((n) => sameSpelling(n, name)));
        if (conflicted.some((name) => this.names(name, self.id))) {
          throw new CountersignError(
            'approver_conflicted',
            `the current policy names approver ${quote(self.id)} as conflicted for this request`,
          );
        }
        tightened = canonicalize(obligation) !== canonicalize(stored) || conflicted.length > 0;
      }
    }
    lap('policy');
    const counted = this.countedApprovals(row, obligation, approvals, conflicted);
    if (!quorumMet(obligation, [...counted.map(({ approver }) => ({ id: approver.id, groups: approver.groups })), selfPerson])) {
      return { kind: 'record', obligation, storedRequirement: row.obligationJson, tightened, conflicted };
    }
    const audience = this.options.audienceOf(row.tool);
    if (audience === undefined)
      throw new CountersignError('unknown_tool', `the tool ${quote(row.tool)} is no longer declared in the policy set`);
    const signed = [...counted.map(({ approval }) => approvalAssertionSchema.parse(parseStoredJson(approval.assertion))), input.assertion];
    // Each member gets its own token, bound to its own request id; every assertion must name
    // that id (as requestId or a follower), or the approver never signed for that member.
    const members = [row.id, ...followers.filter((f) => f.state === 'pending').map((f) => f.id)];
    for (const member of members) {
      for (const assertion of signed) {
        if (assertion.record.requestId !== member && !(assertion.record.followers ?? []).includes(member)) {
          throw new CountersignError(
            'internal_error',
            `approver ${quote(assertion.approverId)} did not sign for request ${quote(member)} of this group`,
          );
        }
      }
    }
    return {
      kind: 'mint',
      row,
      members,
      signed,
      obligation,
      storedRequirement: row.obligationJson,
      tightened,
      counted: [...counted.map(({ approver }) => approver.id), self.id],
      audience,
      conflicted,
    };
  }

  /** The plan with its tokens: one per member still pending, signed only once the key's signature verified. */
  private async mint(prepared: Prepared): Promise<Plan> {
    if (prepared.kind !== 'mint') return prepared;
    const { row, members, signed, ...approve } = prepared;
    const minted: Extract<Plan, { kind: 'approve' }>['minted'] = [];
    for (const member of members) {
      const token = await this.options.minter.mint({
        requestId: member,
        agentId: row.agentId,
        tool: row.tool,
        audience: approve.audience,
        params: row.call.params,
        policyHash: row.policyHash,
        policies: row.determiningPolicies,
        mode: 'approved',
        now: this.now(),
        callSha256: row.callSha256,
        approvals: signed,
      });
      minted.push({ requestId: member, ...token });
    }
    return { ...approve, kind: 'approve', minted };
  }

  /** The one transaction: re-check everything, then commit it all (or throw and commit nothing). */
  private async commit(ctx: SubmitContext, plan: Plan): Promise<Committed> {
    const learned = new Set<string>();
    try {
      return await this.requests.commit(ctx.requestId, (snapshot) => this.decide(ctx, plan, snapshot, (agentId) => learned.add(agentId)));
    } catch (error) {
      // The transaction rolled back: memory may hold what it learned.
      for (const agentId of learned) this.options.learner?.forget(agentId);
      if (
        isCountersignError(error) ||
        error instanceof StalePlan ||
        error instanceof CounterRegression ||
        error instanceof TeamCounterRegression
      )
        throw error;
      throw new CountersignError('store_failed', 'the approval could not be stored, so nothing was recorded', { cause: error });
    }
  }

  /**
   * Inside the store's transaction, on the rows read there: every check again (the request, the
   * challenge, the approver, the key, the plan still right), then the local writes (challenge
   * spent, key counter, risk learning) and the writes the store commits with them.
   */
  private decide(
    ctx: SubmitContext,
    plan: Plan,
    snapshot: ApprovalSnapshot,
    touched: (agentId: string) => void,
  ): { commit: ApprovalCommit; result: Committed } {
    const now = this.now();
    const row = snapshot.primary;
    this.assertApprovable(row, now);
    const challengeRow = this.challengeRow(ctx.challengeRow, ctx.requestId, ctx.approverId, ctx.verdict, now).row;
    const credential = this.checkSubmitter(
      row,
      ctx.approverId,
      ctx.verdict,
      ctx.response,
      parseOffered(challengeRow.offered),
      snapshot.approvals,
    );
    const approver = this.options.directory.get(ctx.approverId);
    if (plan.kind !== 'deny' && row.obligationJson !== plan.storedRequirement) throw new StalePlan();
    if (plan.kind === 'record' || plan.kind === 'approve') {
      const counted = this.countedApprovals(row, plan.obligation, snapshot.approvals, plan.conflicted);
      const people = [...counted.map(({ approver: a }) => ({ id: a.id, groups: a.groups })), { id: approver.id, groups: approver.groups }];
      const met = quorumMet(plan.obligation, people);
      if (plan.kind === 'record' && met) throw new StalePlan();
      if (plan.kind === 'approve' && (!met || canonicalize(people.map((p) => p.id)) !== canonicalize(plan.counted))) throw new StalePlan();
    }
    // Every member still pending is decided now: the group's rows, primary first.
    const members = [row, ...snapshot.followers];
    if (plan.kind === 'approve' && canonicalize(members.map((m) => m.id)) !== canonicalize(plan.minted.map((m) => m.requestId)))
      throw new StalePlan();
    // The key's counter only once the plan holds: a stale plan is planned again with this same
    // counter, and on a team hub the replica's counter is not rolled back with the team commit,
    // so a write before a StalePlan would make the retry look like a cloned key.
    this.ceremonies.recordUse(credential, ctx.newCounter, now);

    // The approval itself.
    if (!this.ceremonies.spendChallenge('approval', ctx.challenge, now))
      throw new CountersignError('challenge_invalid', 'the ceremony challenge has already been used');
    const approval: ApprovalRow = {
      request_id: ctx.requestId,
      approver_id: ctx.approverId,
      credential_id: ctx.credentialId,
      verdict: ctx.verdict,
      reason: ctx.reason ?? null,
      assertion: canonicalize(ctx.assertion),
      at: now,
    };
    const audit: AuditSubmission[] = [];
    const finishes: ApprovalCommit['finishes'][number][] = [];
    const step: AuditEventFields<'approval.given' | 'approval.denied'> = {
      requestId: ctx.requestId,
      agentId: row.agentId,
      approverId: ctx.approverId,
      credentialId: ctx.credentialId,
      verdict: ctx.verdict,
      callSha256: row.callSha256,
      policyHash: row.policyHash,
      challenge: ctx.challenge,
      signCount: ctx.newCounter,
    };
    if (ctx.reason !== undefined) step.reason = ctx.reason;
    // The followers this key signed for (the record names them; each member is decided below).
    if (ctx.record.followers !== undefined) step.followers = [...ctx.record.followers];
    audit.push(submission(ctx.verdict === 'approve' ? 'approval.given' : 'approval.denied', now, step));

    const determiningPolicies = row.determiningPolicies;
    const finish = (member: RequestRecord, state: 'approved' | 'denied', reasons: string[], token?: TokenRow): string | undefined => {
      finishes.push({ requestId: member.id, state, reasons, token });
      touched(member.agentId);
      return learnSafely(this.db, this.options.learner, member.agentId, (l) =>
        l.settled(
          member.agentId,
          { id: member.id, call: member.call, callSha256: member.callSha256, createdAt: member.createdAt },
          state,
          now,
        ),
      );
    };
    /** Audit fields naming a follower's group (absent for the primary). */
    const groupOf = (member: RequestRecord): JsonObject => (member.id === row.id ? {} : { groupOf: row.id });
    const outcome = (state: ApprovalOutcome['state'], reasons: string[]): ApprovalOutcome => ({
      requestId: row.id,
      state,
      approvalsSoFar: [...snapshot.approvals, approval]
        .sort((a, b) => a.at - b.at || (a.approver_id < b.approver_id ? -1 : a.approver_id > b.approver_id ? 1 : 0))
        .map((r) => this.entry(r)),
      reasons,
    });
    const done = (result: Committed, extra: Pick<ApprovalCommit, 'requirement' | 'conflicted'> = {}) => ({
      commit: { approval, finishes, audit, tap: { counter: ctx.newCounter }, ...extra },
      result,
    });

    if (plan.kind === 'deny' || plan.kind === 'policy_deny') {
      const reasons =
        plan.kind === 'deny'
          ? [ctx.reason === undefined ? `denied by ${approver.displayName}` : `denied by ${approver.displayName}: ${ctx.reason}`]
          : plan.reevaluation.reasons;
      const results: DecisionResult[] = [];
      for (const member of members) {
        const learningFault = finish(member, 'denied', reasons);
        const event: DeniedAtApprovalEvent = {
          requestId: member.id,
          agentId: member.agentId,
          tool: member.tool,
          callSha256: member.callSha256,
          policyHash: member.policyHash,
          reasons,
          determiningPolicies: plan.kind === 'deny' ? determiningPolicies : plan.reevaluation.determiningPolicies,
          ...groupOf(member),
        };
        if (learningFault !== undefined) event.riskLearningFault = learningFault;
        if (plan.kind === 'deny') event.deniedBy = approver.id;
        else event.reevaluatedPolicyHash = plan.reevaluation.policyHash;
        audit.push(submission('decision.deny', now, event));
        results.push({
          requestId: member.id,
          decision: 'deny',
          state: 'denied',
          reasons,
          determiningPolicies: plan.kind === 'deny' ? determiningPolicies : plan.reevaluation.determiningPolicies,
          policyHash: plan.kind === 'deny' ? row.policyHash : plan.reevaluation.policyHash,
        });
      }
      return done({ outcome: outcome('denied', reasons), agentId: row.agentId, results });
    }

    const extra: Pick<ApprovalCommit, 'requirement' | 'conflicted'> = {};
    if (plan.tightened) extra.requirement = plan.obligation;
    if (plan.conflicted.length > 0)
      extra.conflicted = [...new Set([...row.conflictedApprovers, ...plan.conflicted.map((c) => c.toLowerCase())])].sort();
    if (plan.kind === 'record') {
      if (plan.tightened) {
        audit.push(
          submission('decision.pending', now, {
            requestId: row.id,
            agentId: row.agentId,
            reason: 'the current policy asks for more approval',
            approval: { ...plan.obligation, expiresAt: row.expiresAt! },
          }),
        );
      }
      return done({ outcome: outcome('pending', row.reasons), agentId: row.agentId, results: [] }, extra);
    }

    const names = plan.counted.map((id) => (id === approver.id ? approver : this.options.directory.get(id)).displayName);
    const results: DecisionResult[] = [];
    for (const [i, member] of members.entries()) {
      const minted = plan.minted[i]!;
      // Each member keeps its own reasons (risk sentences may differ) plus who approved.
      const reasons = [...member.reasons, `approved by ${joinNames(names)}`];
      const learningFault = finish(member, 'approved', reasons, {
        jti: minted.jti,
        kid: minted.kid,
        token: minted.token,
        issuedAt: now,
        expiresAt: minted.expiresAt,
      });
      const approvedEvent: AuditEventFields<'decision.approved'> = {
        requestId: member.id,
        agentId: member.agentId,
        tool: member.tool,
        callSha256: member.callSha256,
        policyHash: member.policyHash,
        determiningPolicies,
        reasons,
        approvers: plan.counted,
        approval: { ...plan.obligation },
        token: { jti: minted.jti, kid: minted.kid, expiresAt: minted.expiresAt, audience: plan.audience },
        ...groupOf(member),
      };
      if (learningFault !== undefined) approvedEvent.riskLearningFault = learningFault;
      audit.push(submission('decision.approved', now, approvedEvent));
      results.push({
        requestId: member.id,
        decision: 'allow',
        state: 'approved',
        token: minted.token,
        tokenExpiresAt: minted.expiresAt,
        reasons,
        determiningPolicies,
        policyHash: member.policyHash,
      });
    }
    const primary = results[0]!;
    return done(
      {
        outcome: { ...outcome('approved', primary.reasons), token: primary.token!, tokenExpiresAt: primary.tokenExpiresAt! },
        agentId: row.agentId,
        results,
      },
      extra,
    );
  }

  // ---- plumbing ----

  /** A lap timer over the key tap's stages (a no-op unless onTiming is set). */
  private stopwatch(): (stage: ApprovalStage) => void {
    const timing = this.options.onTiming;
    if (timing === undefined) return () => undefined;
    let mark = performance.now();
    return (stage) => {
      const t = performance.now();
      timing(stage, t - mark);
      mark = t;
    };
  }

  /** A store write; failures that are not ours become store_failed. */
  private async stored<T>(write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (error) {
      if (isCountersignError(error)) throw error;
      throw new CountersignError('store_failed', 'the approval could not be stored, so nothing was recorded', { cause: error });
    }
  }

  private notify(agentId: string, result: DecisionResult): void {
    this.told(() => this.options.onDecided?.(agentId, result));
  }

  /** Tell a listener of what committed; its fault never reaches the approver's answer. */
  private told(tell: () => void): void {
    try {
      tell();
    } catch {
      // The decision is committed; the agent can still fetch it with request.get, the desk on reload.
    }
  }

  private entry(row: ApprovalRow): ApprovalEntry {
    let displayName = row.approver_id;
    try {
      displayName = this.options.directory.get(row.approver_id).displayName;
    } catch {
      // An unknown approver id is shown as itself.
    }
    const entry: ApprovalEntry = { approverId: row.approver_id, displayName, verdict: row.verdict, at: row.at };
    if (row.reason !== null) entry.reason = row.reason;
    return entry;
  }

  /** One request's view, reading its approvals (unless given) and followers. */
  private async view(row: RequestRecord, approvals?: ApprovalRow[]): Promise<ApprovalRequestView> {
    return this.viewOf(row, {
      approvals: approvals ?? (await this.requests.approvals(row.id)),
      followers: row.groupId === null ? await this.requests.followers(row.id) : [],
      person: this.person,
    });
  }

  private viewOf(
    row: RequestRecord,
    prefetched: { approvals: ApprovalRow[]; followers: RequestRecord[]; person: PersonLookup },
  ): ApprovalRequestView {
    const call = row.call;
    const view: ApprovalRequestView = {
      requestId: row.id,
      agentId: row.agentId,
      tool: row.tool,
      params: call.params,
      dataClass: call.dataClass,
      jurisdiction: call.jurisdiction,
      provenance: call.provenance,
      callSha256: row.callSha256,
      policyHash: row.policyHash,
      determiningPolicies: row.determiningPolicies,
      reasons: row.reasons,
      obligation: requirementOf(row),
      risk: row.groupId === null ? worstRisk(row.risk, prefetched.followers) : row.risk,
      state: row.state,
      createdAt: row.createdAt,
      expiresAt: row.expiresAt ?? row.createdAt,
      approvals: prefetched.approvals.map((r) => this.entry(r)),
      count: 1,
      followers: [],
      excludedApprovers: this.excludedOf(row, prefetched.person),
    };
    if (!this.ownerResolved(row, prefetched.person)) view.ownerUnresolved = true;
    if (row.groupId === null) {
      // A pending group shows its pending members; a decided one shows every member it had.
      const followers = prefetched.followers.filter((f) => row.state !== 'pending' || f.state === 'pending');
      view.followers = followers.map((f) => f.id);
      view.count = 1 + followers.length;
    }
    if (row.agent.displayName !== null) view.agentDisplayName = row.agent.displayName;
    if (row.agent.owner !== null) view.agentOwner = row.agent.owner;
    if (row.decidedAt !== null) view.decidedAt = row.decidedAt;
    return view;
  }
}
