/**
 * The desk's read-only views of requests on a team hub, over the shared PostgreSQL database, so
 * a desk on any hub sees what every hub decided: the recent activity (newest requests) and the
 * History (decided requests paged by (decided_at, id), newest first, with the SQLite filters and
 * search; one request in full with its approvals and token). The same rows and order as the
 * SQLite reads (request-repository.ts `recent`, ui/history-reader.ts), on PG migration 6's
 * indexes: keyed pages, no OFFSET; ids compare in code-unit order (COLLATE "C") as SQLite's do.
 * The search is a substring match (ILIKE, case-insensitive as SQLite's trigram FTS5 index) over
 * request id, agent, tool and payee, read through the pg_trgm index `requests_search`.
 */
import type { RequestRecord } from '../request-repository.js';
import type { StoredState } from '../store-seam.js';
import { COLUMNS, decodePgRequest, type AgentColumns, type PgRequestRow } from './pg-approval-store.js';
import type { PgDecisionStore } from './pg-decision-store.js';
import { storeError } from './pg-errors.js';

/** One History page's filters, as the History reader checked them (the cursor already parsed). */
export interface HistoryFilter {
  states?: readonly string[] | undefined;
  tool?: string | undefined;
  agentId?: string | undefined;
  since?: number | undefined;
  until?: number | undefined;
  text?: string | undefined;
  after?: { decidedAt: number; id: string } | undefined;
  /** Rows to read (the page size plus one, to tell whether another page follows). */
  limit: number;
}

/** One History row as read (the History reader shapes it). */
export interface HistoryPageRow {
  id: string;
  agent_id: string;
  tool: string;
  state: StoredState;
  payee: unknown;
  created_at: number;
  decided_at: number;
  reasons: string;
  approvals: number;
}

export interface ApprovalRead {
  approver_id: string;
  credential_id: string;
  verdict: 'approve' | 'deny';
  reason: string | null;
  at: number;
}

/** The searched text of a request: must stay the expression of PG migration 6's index `requests_search`. */
const SEARCH_TEXT = 'request_search_text(r.id, r.agent_id, r.tool, r.call_json)';

/** `text` as a LIKE pattern matching it as a substring, never as pattern syntax. */
export function likeSubstring(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** The SQL and values of one History page (exported so a test can read the query plan). */
export function pgHistoryStatement(filter: HistoryFilter): { sql: string; values: Array<string | number> } {
  const where = [`r.state <> 'pending'`, 'r.decided_at IS NOT NULL'];
  const values: Array<string | number> = [];
  const param = (value: string | number): string => {
    values.push(value);
    return `$${values.length}`;
  };
  if (filter.states !== undefined) where.push(`r.state IN (${filter.states.map(param).join(', ')})`);
  if (filter.tool !== undefined) where.push(`r.tool = ${param(filter.tool)}`);
  if (filter.agentId !== undefined) where.push(`r.agent_id = ${param(filter.agentId)}`);
  if (filter.since !== undefined) where.push(`r.decided_at >= ${param(filter.since)}`);
  if (filter.until !== undefined) where.push(`r.decided_at <= ${param(filter.until)}`);
  if (filter.text !== undefined) where.push(`${SEARCH_TEXT} ILIKE ${param(likeSubstring(filter.text))}`);
  if (filter.after !== undefined) {
    const at = param(filter.after.decidedAt);
    where.push(`(r.decided_at < ${at} OR (r.decided_at = ${at} AND r.id COLLATE "C" < ${param(filter.after.id)}))`);
  }
  // request_call_jsonb (PG migration 7), never call_json::jsonb: a call holding U+0000 must not fail the page.
  const sql = `SELECT r.id, r.agent_id, r.tool, r.state,
      CASE WHEN jsonb_typeof(request_call_jsonb(r.call_json) #> '{params,payee}') = 'string' THEN request_call_jsonb(r.call_json) #>> '{params,payee}' END AS payee,
      r.created_at, r.decided_at, r.reasons,
      (SELECT count(*) FROM approvals a WHERE a.request_id = COALESCE(r.group_id, r.id)) AS approvals
    FROM requests r WHERE ${where.join(' AND ')}
    ORDER BY r.decided_at DESC, r.id COLLATE "C" DESC LIMIT ${param(filter.limit)}`;
  return { sql, values };
}

export class PgRequestReads {
  constructor(
    private readonly store: PgDecisionStore,
    /** The agent's display name and owner, from this hub's directory. */
    private readonly agentOf: (agentId: string) => AgentColumns | undefined,
  ) {}

  private async query<R extends object>(doing: string, sql: string, values: unknown[]): Promise<R[]> {
    try {
      return (await this.store.pool.query<R & Record<string, unknown>>(sql, values)).rows;
    } catch (error) {
      throw storeError(error, doing);
    }
  }

  /** The newest requests on every hub, newest first (the desk's recent activity). */
  async recent(limit: number): Promise<RequestRecord[]> {
    const rows = await this.query<PgRequestRow>(
      'reading the recent requests',
      `SELECT ${COLUMNS} FROM requests ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $1`,
      [limit],
    );
    return rows.map((row) => decodePgRequest(row, this.agentOf));
  }

  async historyPage(filter: HistoryFilter): Promise<HistoryPageRow[]> {
    const { sql, values } = pgHistoryStatement(filter);
    const rows = await this.query<
      { created_at: string; decided_at: string; approvals: string } & Omit<HistoryPageRow, 'created_at' | 'decided_at' | 'approvals'>
    >('reading the history', sql, values);
    return rows.map((row) => ({
      ...row,
      created_at: Number(row.created_at),
      decided_at: Number(row.decided_at),
      approvals: Number(row.approvals),
    }));
  }

  async request(id: string): Promise<RequestRecord | undefined> {
    const [row] = await this.query<PgRequestRow>('reading a request', `SELECT ${COLUMNS} FROM requests WHERE id = $1`, [id]);
    return row && decodePgRequest(row, this.agentOf);
  }

  /** A request's approvals in the SQLite order (at, approver id). */
  async approvals(requestId: string): Promise<ApprovalRead[]> {
    const rows = await this.query<Omit<ApprovalRead, 'at'> & { at: string }>(
      'reading approvals',
      `SELECT approver_id, credential_id, verdict, reason, at FROM approvals WHERE request_id = $1
       ORDER BY at, approver_id COLLATE "C" LIMIT 1000`,
      [requestId],
    );
    return rows.map((row) => ({ ...row, at: Number(row.at) }));
  }

  async token(requestId: string): Promise<{ jti: string; expires_at: number } | undefined> {
    const [row] = await this.query<{ jti: string; expires_at: string }>(
      'reading a token',
      'SELECT jti, expires_at FROM tokens WHERE request_id = $1',
      [requestId],
    );
    return row && { jti: row.jti, expires_at: Number(row.expires_at) };
  }
}
