/**
 * The desk's History view, read side: decided requests paged by the key (decided_at, id), newest
 * first, with filters (states, tool, agent, decided between) and a search over request id, agent,
 * tool and payee; and one decided request in full with its approvals (who, which key, when,
 * verdict, reason), its token id and its audit entries with their inclusion proof against a signed
 * checkpoint (audit/audit-proofs.ts). Every page is one statement over the partial indexes and the
 * trigram search index of migration 14 (keyed pages, no OFFSET, no scan of the table per page);
 * every statement here is a SELECT that better-sqlite3 confirms read-only. The writes a read may
 * cause: a search first indexes the requests committed since the search index last caught up
 * (store/request-search-index.ts), and when no checkpoint covers an entry's audit records yet,
 * one is signed, as for an agent's `audit.proof`.
 */
import type { Db } from '../store/database.js';
import { RequestRepository } from '../store/request-repository.js';
import { RequestSearchIndex } from '../store/request-search-index.js';
import type { HistoryFilter, PgRequestReads } from '../store/pg/pg-request-reads.js';
import type { AuditProofs } from '../audit/audit-proofs.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import {
  HISTORY_PAGE_DEFAULT,
  historyStateSchema,
  type HistoryEntry,
  type HistoryPage,
  type HistoryQuery,
  type HistoryRow,
} from '../../../shared/desk-records.js';
import type { NoteVerificationKey } from '../../../shared/audit-verify.js';
import type { RequestState } from '../../../shared/protocol.js';

interface PageRow {
  id: string;
  agent_id: string;
  tool: string;
  state: RequestState;
  payee: unknown;
  created_at: number;
  decided_at: number;
  reasons: string;
  approvals: number;
}

export interface HistoryReaderDeps {
  db: Db;
  proofs: Pick<AuditProofs, 'forRequest'>;
  /** The log's origin (`countersign/<serverId>`; on a hub, the team log's `team.auditOrigin`). */
  origin: string;
  /** Every signing key the log has had (public JWKs), to check checkpoints with (on a hub, read in the team database). */
  noteKeys: () => NoteVerificationKey[] | Promise<NoteVerificationKey[]>;
  /** The search index, caught up before each search (default: one over `db`). */
  searchIndex?: Pick<RequestSearchIndex, 'catchUp'>;
  /**
   * A team hub: the requests, approvals and tokens of every hub, read in the team database
   * (store/pg/pg-request-reads.ts); approvers' names still come from this hub's directory. Its
   * `proofs` then come from the team audit log (audit/pg-audit-proofs.ts).
   */
  team?: Pick<PgRequestReads, 'historyPage' | 'request' | 'approvals' | 'token'>;
}

/** The search text as one FTS5 phrase (a quote inside is doubled): matched as a substring, never as query syntax. */
export function searchPhrase(text: string): string {
  return `"${text.replace(/"/g, '""')}"`;
}

function textList(json: string): string[] {
  try {
    const value = parseStrictJson(json);
    return Array.isArray(value)
      ? value
          .filter((v): v is string => typeof v === 'string')
          .slice(0, 64)
          .map((r) => r.slice(0, 4096))
      : [];
  } catch {
    return [];
  }
}

/** The page's cursor as (decided_at, id) (history_cursor_invalid when no page could have returned it). */
function parseCursor(cursor: string): { decidedAt: number; id: string } {
  const colon = cursor.indexOf(':');
  const decidedAt = Number(cursor.slice(0, colon));
  if (!Number.isSafeInteger(decidedAt))
    throw new CountersignError('history_cursor_invalid', `the history cursor ${quote(cursor)} is not one a page returned`);
  return { decidedAt, id: cursor.slice(colon + 1) };
}

/** The SQL and values of one history page (exported so a test can read the query plan). */
export function historyPageStatement(query: HistoryQuery): { sql: string; values: Array<string | number> } {
  const where = [`r.state <> 'pending'`, 'r.decided_at IS NOT NULL'];
  const values: Array<string | number> = [];
  // Without a state filter or a search, the page names every decided state (the table's CHECK
  // allows only these and 'pending'): it is then one ordered range of requests_decided_by_state
  // per state, each stopped once the page is full. The index by (decided_at, id) alone that
  // served it went in migration 23, so that a decision writes one B-tree fewer. A search is read
  // from the search index's matches, as before.
  const states = query.states ?? (query.text === undefined ? historyStateSchema.options : undefined);
  if (states !== undefined) {
    where.push(`r.state IN (${states.map(() => '?').join(', ')})`);
    values.push(...states);
  }
  if (query.tool !== undefined) {
    where.push('r.tool = ?');
    values.push(query.tool);
  }
  if (query.agentId !== undefined) {
    where.push('r.agent_id = ?');
    values.push(query.agentId);
  }
  if (query.since !== undefined) {
    where.push('r.decided_at >= ?');
    values.push(query.since);
  }
  if (query.until !== undefined) {
    where.push('r.decided_at <= ?');
    values.push(query.until);
  }
  if (query.text !== undefined) {
    where.push('r.rowid IN (SELECT rowid FROM request_search WHERE request_search MATCH ?)');
    values.push(searchPhrase(query.text));
  }
  if (query.cursor !== undefined) {
    const { decidedAt, id } = parseCursor(query.cursor);
    // The bound on decided_at alone is implied by the next term; it makes the page start at the
    // cursor in the index instead of walking down to it from the newest row.
    where.push('r.decided_at <= ?', '(r.decided_at < ? OR (r.decided_at = ? AND r.id < ?))');
    values.push(decidedAt, decidedAt, decidedAt, id);
  }
  const limit = query.limit ?? HISTORY_PAGE_DEFAULT;
  values.push(limit + 1);
  const sql = `SELECT r.id, r.agent_id, r.tool, r.state, json_extract(r.call_json, '$.params.payee') AS payee, r.created_at, r.decided_at, r.reasons,
      (SELECT COUNT(*) FROM approvals a WHERE a.request_id = COALESCE(r.group_id, r.id)) AS approvals
    FROM requests r WHERE ${where.join(' AND ')}
    ORDER BY r.decided_at DESC, r.id DESC LIMIT ?`;
  return { sql, values };
}

/** The page's filters for the team database's reader (the cursor checked and parsed here, as for SQLite). */
function teamFilter(query: HistoryQuery, limit: number): HistoryFilter {
  return {
    states: query.states,
    tool: query.tool,
    agentId: query.agentId,
    since: query.since,
    until: query.until,
    text: query.text,
    after: query.cursor === undefined ? undefined : parseCursor(query.cursor),
    limit,
  };
}

export class HistoryReader {
  private readonly requests: RequestRepository;
  private readonly searchIndex: Pick<RequestSearchIndex, 'catchUp'>;
  private readonly approvalsStmt;
  private readonly tokenStmt;
  private readonly nameStmt;

  constructor(private readonly deps: HistoryReaderDeps) {
    this.requests = new RequestRepository(deps.db);
    this.searchIndex = deps.searchIndex ?? new RequestSearchIndex(deps.db);
    this.approvalsStmt = deps.db.prepare<
      [string],
      {
        approver_id: string;
        credential_id: string;
        verdict: 'approve' | 'deny';
        reason: string | null;
        at: number;
        display_name: string | null;
      }
    >(
      `SELECT a.approver_id, a.credential_id, a.verdict, a.reason, a.at, p.display_name
       FROM approvals a LEFT JOIN approvers p ON p.id = a.approver_id WHERE a.request_id = ? ORDER BY a.at, a.approver_id LIMIT 1000`,
    );
    this.nameStmt = deps.db.prepare<[string], { display_name: string }>('SELECT display_name FROM approvers WHERE id = ?');
    this.tokenStmt = deps.db.prepare<[string], { jti: string; expires_at: number }>(
      'SELECT jti, expires_at FROM tokens WHERE request_id = ?',
    );
  }

  /** One page of decided requests, newest decision first. */
  async page(query: HistoryQuery): Promise<HistoryPage> {
    const limit = query.limit ?? HISTORY_PAGE_DEFAULT;
    const found = this.deps.team === undefined ? this.localPage(query) : await this.deps.team.historyPage(teamFilter(query, limit + 1));
    const rows: HistoryRow[] = found.slice(0, limit).map((row) => ({
      requestId: row.id,
      agentId: row.agent_id,
      tool: row.tool,
      state: row.state,
      payee: typeof row.payee === 'string' ? row.payee.slice(0, 500) : null,
      createdAt: row.created_at,
      decidedAt: row.decided_at,
      approvals: row.approvals,
      reasons: textList(row.reasons),
    }));
    const last = rows[rows.length - 1];
    return { rows, nextCursor: found.length > limit && last !== undefined ? `${last.decidedAt}:${last.requestId}` : null };
  }

  private localPage(query: HistoryQuery): PageRow[] {
    const { sql, values } = historyPageStatement(query);
    const stmt = this.deps.db.prepare<Array<string | number>, PageRow>(sql);
    if (!stmt.readonly) throw new CountersignError('internal_error', 'the history query is not read-only');
    // The index is filled after the decision commits (store/request-search-index.ts): a search
    // first indexes what is still missing, so it finds every request committed so far.
    if (query.text !== undefined) this.searchIndex.catchUp();
    return stmt.all(...values);
  }

  /** One decided request in full, with its audit proof. */
  async entry(requestId: string): Promise<HistoryEntry> {
    const team = this.deps.team;
    const record = team === undefined ? this.requests.get(requestId) : await team.request(requestId);
    if (record === undefined || record.state === 'pending')
      throw new CountersignError('history_request_unknown', `no decided request has the id ${quote(requestId)}`);
    const decided =
      team === undefined
        ? this.approvalsStmt.all(record.groupId ?? record.id)
        : (await team.approvals(record.groupId ?? record.id)).map((a) => ({
            ...a,
            display_name: this.nameStmt.get(a.approver_id)?.display_name ?? null,
          }));
    const approvals = decided.map((a) => ({
      approverId: a.approver_id,
      displayName: a.display_name ?? a.approver_id,
      credentialId: a.credential_id,
      verdict: a.verdict,
      at: a.at,
      reason: a.reason,
    }));
    const token = team === undefined ? this.tokenStmt.get(record.id) : await team.token(record.id);
    let proof: HistoryEntry['proof'] = null;
    try {
      proof = await this.deps.proofs.forRequest(record.agentId, record.id);
    } catch (error) {
      // A request whose audit entries are not written yet has no proof to show (the page says so).
      if (!isCountersignError(error) || error.code !== 'audit_proof_unavailable') throw error;
    }
    return {
      requestId: record.id,
      agentId: record.agentId,
      tool: record.tool,
      state: record.state,
      call: record.call,
      callSha256: record.callSha256,
      policyHash: record.policyHash,
      determiningPolicies: [...record.determiningPolicies],
      reasons: record.reasons.slice(0, 64),
      obligation: record.obligation,
      risk: {
        score: record.risk.score,
        factors: record.risk.factors.map((f) => ({ name: f.name, explanation: f.explanation.slice(0, 1000) })),
      },
      createdAt: record.createdAt,
      decidedAt: record.decidedAt,
      groupId: record.groupId,
      approvals,
      tokenId: token?.jti ?? null,
      tokenExpiresAt: token?.expires_at ?? null,
      proof,
      origin: this.deps.origin,
      noteKeys: await this.deps.noteKeys(),
    };
  }
}
