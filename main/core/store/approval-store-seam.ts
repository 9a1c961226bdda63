/**
 * The approval store seam (ADR 0015): what the approval service reads about held
 * requests and their recorded approvals, and its one commit, with two implementations of the same
 * semantics: SQLite for the embedded default (approvals/sqlite-approval-store.ts, the existing
 * tables and audit log) and PostgreSQL for hubs (pg/pg-approval-store.ts).
 *
 * The rules (quorum, separation of duties, re-evaluation, groups of identical calls) live only
 * in approvals/approval-service.ts. A store reads rows and applies writes; the service's
 * `decide` callback runs synchronously INSIDE the store's transaction on rows read there (the
 * primary request locked), re-checks everything and names the writes, or throws and nothing is
 * written. Semantics every implementation keeps:
 *  - one transaction per approval: approval row, request final states, tokens and audit
 *    submissions commit together or not at all; nothing is resolved before that COMMIT;
 *  - commits on one group are serialised (SQLite: one writer; PostgreSQL: the primary row locked
 *    FOR UPDATE), so two approvers completing a quorum at once on two hubs make one token;
 *  - a request finishes only from pending (a finish that finds it decided fails the commit);
 *  - an approver decides a request once (primary key request_id, approver_id).
 */
import type { RequestRecord } from './request-repository.js';
import type { AuditSubmission, StoreKind, TokenRow } from './store-seam.js';
import type { ApprovalRequirement } from '../../../shared/protocol.js';

export type ApprovalVerdict = 'approve' | 'deny';

/** One recorded approval or denial (the `approvals` table). */
export interface ApprovalRow {
  request_id: string;
  approver_id: string;
  credential_id: string;
  verdict: ApprovalVerdict;
  reason: string | null;
  /** JCS of the assertion as carried in the token. */
  assertion: string;
  at: number;
}

/** What a commit reads inside its transaction: the group's primary, its pending followers, its approvals. */
export interface ApprovalSnapshot {
  primary: RequestRecord;
  /** The primary's followers still pending, sorted by id. */
  followers: RequestRecord[];
  /** The primary's recorded approvals, by (at, approver_id). */
  approvals: ApprovalRow[];
}

/** A request a commit moves to its final state. */
export interface ApprovalFinish {
  requestId: string;
  state: 'approved' | 'denied';
  reasons: readonly string[];
  token?: TokenRow | undefined;
}

/** Everything one approval commits (the service's decision, applied by the store in one transaction). */
export interface ApprovalCommit {
  approval: ApprovalRow;
  /** A stricter approval requirement for the primary (the current policy asked for more). */
  requirement?: ApprovalRequirement | undefined;
  /** The primary's new conflicted approver list (lowercase, sorted, unique). */
  conflicted?: readonly string[] | undefined;
  finishes: readonly ApprovalFinish[];
  /** Audit events, in order. */
  audit: readonly AuditSubmission[];
  /**
   * The tap's new signature counter (the approval's approver and key). The SQLite store has
   * already advanced this data directory's counter inside `decide`; the PostgreSQL store checks
   * the approver and key in the team directory and advances the team's counter in the same
   * transaction (store/pg/pg-directory.ts checkTap).
   */
  tap?: { counter: number } | undefined;
}

export interface ApprovalStore {
  readonly kind: StoreKind;
  /** One request, or undefined. */
  request(id: string): Promise<RequestRecord | undefined>;
  /** Every follower of a primary (any state), sorted by id. */
  followers(primaryId: string): Promise<RequestRecord[]>;
  /** The followers of several primaries at once, by primary id. */
  followersOfMany(primaryIds: readonly string[]): Promise<Map<string, RequestRecord[]>>;
  /** The recorded approvals of a request, by (at, approver_id). */
  approvals(requestId: string): Promise<ApprovalRow[]>;
  /** The approvals of several requests at once, by request id. */
  approvalsOfMany(requestIds: readonly string[]): Promise<Map<string, ApprovalRow[]>>;
  /** Pending, unexpired prompts (primaries only), one page: oldest first ('age') or soonest to expire ('expiry'). */
  pendingPage(order: 'age' | 'expiry', now: number, limit: number, offset: number): Promise<RequestRecord[]>;
  /** How many prompts wait (a group counts once). */
  countPending(now: number): Promise<number>;
  /** Decided requests that needed approval (primaries only), newest first. */
  history(limit: number): Promise<RequestRecord[]>;
  /**
   * Seal a group (no identical call joins it once an approver has begun) and return its pending
   * follower ids, sorted: the list every challenge record of this request names.
   */
  seal(primaryId: string, now: number): Promise<string[]>;
  /**
   * Record an audit event with local work (the ceremony's challenge): SQLite runs both in one
   * transaction; PostgreSQL runs `local` (the hub's own database) before committing the event.
   */
  record(audit: AuditSubmission, local: () => void): Promise<void>;
  /**
   * The one commit: read the snapshot of `primaryId` inside a transaction (the primary locked),
   * call `decide` synchronously on it, apply the writes it returns, commit; resolves with its
   * result after the COMMIT. A throw from `decide` or a failed write rolls everything back and
   * reaches the caller (store failures as store_failed or store_unavailable).
   */
  commit<T>(primaryId: string, decide: (snapshot: ApprovalSnapshot) => { commit: ApprovalCommit; result: T }): Promise<T>;
}
