/**
 * The store seam over the embedded SQLite store: the same tables, the same group committer
 * (group-commit.ts) and the same audit log (audit/audit-log.ts) the decision path always used,
 * so the embedded default keeps its behaviour. Writes run synchronously inside better-sqlite3
 * transactions (a rejection is in the log before the call returns); outcome waits are served
 * in-process (one process owns a data directory: data-dir-lock.ts), woken by the commit that
 * finished the request.
 */
import { EventEmitter } from 'node:events';
import { CountersignError } from '../../../shared/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Db } from '../store/database.js';
import { GroupCommitter } from '../store/group-commit.js';
import type { RequestSearchIndex } from '../store/request-search-index.js';
import { RequestRepository, encodeRequirement } from '../store/request-repository.js';
import type {
  AuditSubmission,
  DecisionStore,
  DecisionWrite,
  ExpiringRequest,
  FinishWrite,
  RequestOutcome,
  StoredRequestView,
  StoredState,
  TokenRow,
  WrittenDecision,
} from '../store/store-seam.js';
import { auditOf, isFinal, pendingQueueFull, replayed } from '../store/store-seam.js';

export class SqliteDecisionStore implements DecisionStore {
  readonly kind = 'sqlite' as const;
  private readonly committer: GroupCommitter;
  private readonly requests: RequestRepository;
  private readonly finished = new EventEmitter();
  private readonly statements;

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    committer?: GroupCommitter,
    /** Told after each commit that wrote requests, to index them for the History search soon. */
    private readonly searchIndex?: Pick<RequestSearchIndex, 'schedule'>,
  ) {
    this.committer = committer ?? new GroupCommitter(db);
    this.requests = new RequestRepository(db);
    this.finished.setMaxListeners(0);
    this.statements = {
      nonceSeen: db.prepare<[string, string], { one: number }>('SELECT 1 AS one FROM seen_nonces WHERE agent_id = ? AND nonce = ?'),
      claimNonce: db.prepare('INSERT INTO seen_nonces (agent_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
      insertRequest: db.prepare(
        `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash, determining_policies, reasons, obligation, risk, created_at, expires_at, decided_at, conflicted_approvers, group_id)
         VALUES (@id, @agentId, @kid, @tool, @callJson, @callSha256, @nonce, @state, @policyHash, @determining, @reasons, @obligation, @risk, @createdAt, @expiresAt, @decidedAt, @conflicted, @groupId)`,
      ),
      insertToken: db.prepare('INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)'),
      pruneNonces: db.prepare('DELETE FROM seen_nonces WHERE expires_at < ?'),
    };
  }

  async recordDecision(write: DecisionWrite): Promise<RequestOutcome> {
    const { request } = write;
    const written = await this.committer.run((): WrittenDecision => {
      write.guard?.();
      const held = request.state === 'pending';
      if (held && write.maxPending !== undefined && this.requests.countPendingOf(write.agentId) >= write.maxPending)
        throw pendingQueueFull(write.agentId, write.maxPending);
      let merged: WrittenDecision['merged'];
      let expiresAt = request.expiresAt;
      const conflicted = request.conflicted ?? [];
      if (held && write.mergeable && request.obligation) {
        const group = this.requests.openGroup(
          {
            agentId: write.agentId,
            callSha256: request.callSha256,
            callJson: request.callJson,
            policyHash: request.policyHash,
            obligation: request.obligation,
            determiningPolicies: request.determiningPolicies,
            conflicted,
          },
          request.createdAt,
        );
        if (group !== undefined && group.followers < write.mergeable.maxFollowers) {
          merged = { primaryId: group.id, size: group.followers + 2 };
          // A follower is decided with its group, so it shares the group's deadline.
          expiresAt = group.expiresAt;
        }
      }
      const claimed = this.statements.claimNonce.run(write.agentId, write.nonce, write.nonceExpiresAt);
      if (claimed.changes !== 1) throw replayed();
      this.statements.insertRequest.run({
        id: request.id,
        agentId: write.agentId,
        kid: request.kid,
        tool: request.tool,
        callJson: request.callJson,
        callSha256: request.callSha256,
        nonce: write.nonce,
        state: request.state,
        policyHash: request.policyHash,
        determining: JSON.stringify(request.determiningPolicies),
        reasons: JSON.stringify(request.reasons),
        obligation: request.obligation ? encodeRequirement(request.obligation) : null,
        risk: request.risk,
        createdAt: request.createdAt,
        expiresAt,
        decidedAt: held ? null : request.createdAt,
        conflicted: JSON.stringify(conflicted),
        groupId: merged?.primaryId ?? null,
      });
      if (write.token) this.insertToken(request.id, write.token);
      const learningFault = write.learn?.();
      const done: WrittenDecision = { merged, expiresAt, learningFault };
      const audit = auditOf(write, done);
      try {
        this.audit.append(audit.kind, audit.at, audit.event);
      } catch (cause) {
        throw new CountersignError('audit_write_failed', undefined, { cause });
      }
      return done;
    });
    this.searchIndex?.schedule();
    return {
      requestId: request.id,
      state: request.state,
      token: write.token?.token ?? null,
      tokenExpiresAt: write.token?.expiresAt ?? null,
      written,
    };
  }

  async finishRequest(write: FinishWrite): Promise<boolean> {
    const done = await this.committer.run(() => {
      if (!this.requests.finish(write.requestId, write.to, write.at, write.reasons)) return false;
      if (write.token) this.insertToken(write.requestId, write.token);
      this.audit.append(write.audit.kind, write.audit.at, write.audit.event);
      return true;
    });
    // Woken only after the COMMIT above returned: no token is released before it is durable.
    if (done) this.finished.emit(write.requestId);
    return done;
  }

  outcome(requestId: string): Promise<RequestOutcome | undefined> {
    const row = this.db
      .prepare<[string], { state: StoredState; token: string | null; expires_at: number | null }>(
        'SELECT r.state, t.token, t.expires_at FROM requests r LEFT JOIN tokens t ON t.request_id = r.id WHERE r.id = ?',
      )
      .get(requestId);
    return Promise.resolve(row && { requestId, state: row.state, token: row.token, tokenExpiresAt: row.expires_at });
  }

  async waitForOutcome(requestId: string, options: { signal?: AbortSignal } = {}): Promise<RequestOutcome> {
    const now = await this.outcome(requestId);
    if (!now) throw new CountersignError('request_unknown', `no request has the id ${JSON.stringify(requestId)}`);
    if (isFinal(now.state)) return now;
    return new Promise<RequestOutcome>((resolve, reject) => {
      const onFinish = () => {
        options.signal?.removeEventListener('abort', onAbort);
        void this.outcome(requestId).then((o) => resolve(o!), reject);
      };
      const onAbort = () => {
        this.finished.off(requestId, onFinish);
        reject(new CountersignError('connection_closed', 'the wait for the request outcome was cancelled'));
      };
      this.finished.once(requestId, onFinish);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  nonceSeen(agentId: string, nonce: string): Promise<boolean> {
    return Promise.resolve(this.statements.nonceSeen.get(agentId, nonce) !== undefined);
  }

  readRequest(requestId: string): Promise<StoredRequestView | undefined> {
    try {
      const row = this.requests.get(requestId);
      if (row === undefined) return Promise.resolve(undefined);
      const outcome = this.requests.outcomeOf(requestId);
      return Promise.resolve({
        id: row.id,
        agentId: row.agentId,
        state: row.state,
        reasons: row.reasons,
        determiningPolicies: row.determiningPolicies,
        policyHash: row.policyHash,
        obligation: row.obligation,
        expiresAt: row.expiresAt,
        token: outcome?.token ?? null,
        tokenExpiresAt: outcome?.tokenExpiresAt ?? null,
      });
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Runs synchronously (one immediate transaction) before the promise is returned. */
  expireDue(now: number, reasons: readonly string[], settle: (row: ExpiringRequest) => AuditSubmission): Promise<ExpiringRequest[]> {
    const expire = this.db.transaction(() => {
      const due = this.requests.dueForExpiry(now);
      for (const row of due) {
        this.requests.finish(row.id, 'expired', now, reasons);
        const audit = settle(row);
        this.audit.append(audit.kind, audit.at, audit.event);
      }
      return due;
    });
    try {
      const expired = expire.immediate();
      for (const row of expired) this.finished.emit(row.id);
      return Promise.resolve(expired);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  pruneNonces(now: number): Promise<number> {
    return Promise.resolve(this.statements.pruneNonces.run(now).changes);
  }

  /** Runs synchronously (one immediate transaction) before the promise is returned. */
  appendAudit(submission: AuditSubmission): Promise<void> {
    try {
      this.db.transaction(() => this.audit.append(submission.kind, submission.at, submission.event)).immediate();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  close(): Promise<void> {
    this.finished.removeAllListeners();
    return Promise.resolve();
  }

  private insertToken(requestId: string, token: TokenRow): void {
    this.statements.insertToken.run(token.jti, requestId, token.kid, token.token, token.issuedAt, token.expiresAt);
  }
}
