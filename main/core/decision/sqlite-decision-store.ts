/**
 * The store seam over the embedded SQLite store: the same tables, the same group committer
 * (group-commit.ts) and the same audit log (audit/audit-log.ts) the decision service uses, so
 * the embedded default keeps its behaviour. Outcome waits are served in-process (one process
 * owns a data directory: data-dir-lock.ts), woken by the commit that finished the request.
 */
import { EventEmitter } from 'node:events';
import { CountersignError } from '../../../shared/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Db } from '../store/database.js';
import { GroupCommitter } from '../store/group-commit.js';
import type { DecisionStore, DecisionWrite, FinishWrite, RequestOutcome, StoredState, TokenRow } from '../store/store-seam.js';
import { isFinal } from '../store/store-seam.js';

export class SqliteDecisionStore implements DecisionStore {
  readonly kind = 'sqlite' as const;
  private readonly committer: GroupCommitter;
  private readonly finished = new EventEmitter();

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    committer?: GroupCommitter,
  ) {
    this.committer = committer ?? new GroupCommitter(db);
    this.finished.setMaxListeners(0);
  }

  async recordDecision(write: DecisionWrite): Promise<RequestOutcome> {
    const { request } = write;
    await this.committer.run(() => {
      const claimed = this.db
        .prepare('INSERT INTO seen_nonces (agent_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING')
        .run(write.agentId, write.nonce, write.nonceExpiresAt);
      if (claimed.changes !== 1) throw new CountersignError('envelope_replayed', 'the envelope nonce has been used before');
      this.db
        .prepare(
          `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash,
             determining_policies, reasons, obligation, risk, created_at, expires_at, decided_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)`,
        )
        .run(
          request.id,
          write.agentId,
          request.kid,
          request.tool,
          request.callJson,
          request.callSha256,
          write.nonce,
          request.state,
          request.policyHash,
          JSON.stringify(request.determiningPolicies),
          JSON.stringify(request.reasons),
          request.risk,
          request.createdAt,
          request.expiresAt,
          request.state === 'pending' ? null : request.createdAt,
        );
      if (write.token) this.insertToken(request.id, write.token);
      this.audit.append(write.audit.kind, write.audit.at, write.audit.event);
    });
    return {
      requestId: request.id,
      state: request.state,
      token: write.token?.token ?? null,
      tokenExpiresAt: write.token?.expiresAt ?? null,
    };
  }

  async finishRequest(write: FinishWrite): Promise<boolean> {
    const done = await this.committer.run(() => {
      const moved = this.db
        .prepare("UPDATE requests SET state = ?, decided_at = ?, reasons = ? WHERE id = ? AND state = 'pending'")
        .run(write.to, write.at, JSON.stringify(write.reasons), write.requestId);
      if (moved.changes !== 1) return false;
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

  close(): Promise<void> {
    this.finished.removeAllListeners();
    return Promise.resolve();
  }

  private insertToken(requestId: string, token: TokenRow): void {
    this.db
      .prepare('INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(token.jti, requestId, token.kid, token.token, token.issuedAt, token.expiresAt);
  }
}
