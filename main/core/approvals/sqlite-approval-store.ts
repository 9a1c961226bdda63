/**
 * The approval store of the embedded default (store/approval-store-seam.ts) over the data
 * directory's SQLite tables and audit log, as the approval service always wrote them: reads are
 * prepared statements answered at once, and the commit is ONE immediate transaction in which the
 * service's `decide` runs (its challenge spend, key counter and risk learning in the same
 * transaction), then the approval row, requirement, final states, tokens and audit records.
 */
import type { Db } from '../store/database.js';
import { RequestRepository, type RequestRecord } from '../store/request-repository.js';
import type { ApprovalCommit, ApprovalRow, ApprovalSnapshot, ApprovalStore } from '../store/approval-store-seam.js';
import type { AuditSubmission } from '../store/store-seam.js';
import type { AuditLog } from '../audit/audit-log.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';

export class SqliteApprovalStore implements ApprovalStore {
  readonly kind = 'sqlite' as const;
  private readonly requests: RequestRepository;
  private readonly approvalsStmt;
  private readonly approvalsOfManyStmt;
  private readonly insertApprovalStmt;
  private readonly insertTokenStmt;

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
  ) {
    this.requests = new RequestRepository(db);
    this.approvalsStmt = db.prepare<[string], ApprovalRow>('SELECT * FROM approvals WHERE request_id = ? ORDER BY at, approver_id');
    this.approvalsOfManyStmt = db.prepare<[string], ApprovalRow>(
      'SELECT * FROM approvals WHERE request_id IN (SELECT value FROM json_each(?)) ORDER BY at, approver_id',
    );
    this.insertApprovalStmt = db.prepare(
      'INSERT INTO approvals (request_id, approver_id, credential_id, verdict, reason, assertion, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.insertTokenStmt = db.prepare('INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
  }

  // ---- reads (answered at once) ----

  request(id: string): Promise<RequestRecord | undefined> {
    return this.read(() => this.requests.get(id));
  }

  followers(primaryId: string): Promise<RequestRecord[]> {
    return this.read(() => this.requests.followers(primaryId));
  }

  followersOfMany(primaryIds: readonly string[]): Promise<Map<string, RequestRecord[]>> {
    return this.read(() => this.requests.followersOfMany(primaryIds));
  }

  approvals(requestId: string): Promise<ApprovalRow[]> {
    return this.read(() => this.approvalsStmt.all(requestId));
  }

  approvalsOfMany(requestIds: readonly string[]): Promise<Map<string, ApprovalRow[]>> {
    return this.read(() => {
      const out = new Map<string, ApprovalRow[]>(requestIds.map((id) => [id, []]));
      if (requestIds.length > 0) for (const a of this.approvalsOfManyStmt.all(JSON.stringify(requestIds))) out.get(a.request_id)?.push(a);
      return out;
    });
  }

  pendingPage(order: 'age' | 'expiry', now: number, limit: number, offset: number): Promise<RequestRecord[]> {
    return this.read(() =>
      order === 'age' ? this.requests.listPending(now, limit, offset) : this.requests.listPendingByExpiry(now, limit, offset),
    );
  }

  countPending(now: number): Promise<number> {
    return this.read(() => this.requests.countPending(now));
  }

  history(limit: number): Promise<RequestRecord[]> {
    return this.read(() => this.requests.history(limit));
  }

  // ---- writes ----

  seal(primaryId: string, now: number): Promise<string[]> {
    return this.read(() =>
      this.transaction(() => {
        this.requests.seal(primaryId, now);
        return this.requests.pendingFollowerIds(primaryId);
      }),
    );
  }

  record(audit: AuditSubmission, local: () => void): Promise<void> {
    return this.read(() =>
      this.transaction(() => {
        local();
        this.append(audit);
      }),
    );
  }

  commit<T>(primaryId: string, decide: (snapshot: ApprovalSnapshot) => { commit: ApprovalCommit; result: T }): Promise<T> {
    return this.read(() =>
      this.transaction(() => {
        const primary = this.requests.get(primaryId);
        if (primary === undefined) throw new CountersignError('request_unknown', `no request ${quote(primaryId)} exists`);
        const followers = this.requests.pendingFollowerIds(primaryId).map((id) => this.requests.get(id)!);
        const { commit, result } = decide({ primary, followers, approvals: this.approvalsStmt.all(primaryId) });
        const a = commit.approval;
        this.insertApprovalStmt.run(a.request_id, a.approver_id, a.credential_id, a.verdict, a.reason, a.assertion, a.at);
        if (commit.requirement !== undefined) this.requests.setRequirement(primaryId, commit.requirement);
        if (commit.conflicted !== undefined) this.requests.setConflicted(primaryId, commit.conflicted);
        for (const finish of commit.finishes) {
          if (!this.requests.finish(finish.requestId, finish.state, a.at, finish.reasons))
            throw new CountersignError('request_not_pending', `request ${quote(finish.requestId)} is no longer pending`);
          const token = finish.token;
          if (token !== undefined)
            this.insertTokenStmt.run(token.jti, finish.requestId, token.kid, token.token, token.issuedAt, token.expiresAt);
        }
        for (const submission of commit.audit) this.append(submission);
        return result;
      }),
    );
  }

  // ---- plumbing ----

  /** One immediate transaction; failures that are not ours become store_failed. */
  private transaction<T>(work: () => T): T {
    try {
      return this.db.transaction(work).immediate();
    } catch (error) {
      if (isCountersignError(error) || !isSqliteError(error)) throw error;
      throw new CountersignError('store_failed', 'the approval could not be stored, so nothing was recorded', { cause: error });
    }
  }

  /** Answer at once, a throw as a rejection (callers await every read). */
  private read<T>(work: () => T): Promise<T> {
    try {
      return Promise.resolve(work());
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private append(submission: AuditSubmission): void {
    try {
      this.audit.append(submission.kind, submission.at, submission.event);
    } catch (cause) {
      throw new CountersignError('audit_write_failed', undefined, { cause });
    }
  }
}

/** What better-sqlite3 throws for a refused statement (a constraint, a busy database). */
function isSqliteError(error: unknown): boolean {
  return error instanceof Error && error.name === 'SqliteError';
}
