/**
 * The one codec and repository for `requests` rows: every reader and writer of the table in
 * main/core goes through here. A row is parsed strictly into one typed record (a zod schema for
 * every JSON column; a malformed column is internal_error naming the request, never a guess), and
 * written from typed values, so the JSON in the table has exactly one spelling.
 *
 * It sits in store/ (below decision, approvals and tokens) and imports only shared/ and the
 * database, so every layer that needs a request can read it here.
 */
import { z } from 'zod';
import type Database from 'better-sqlite3';
import type { Db } from './database.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { parseStoredRisk, type RiskAssessment } from '../../../shared/risk.js';
import { MAX_GROUP_FOLLOWERS } from '../../../shared/approvals.js';
import { toolCallSchema, type ApprovalRequirement, type RequestState, type ToolCall } from '../../../shared/protocol.js';
import { approvalRequirementSchema } from '../../../shared/bridge.js';
import { cachedStatement } from './statement-cache.js';

/**
 * The approval requirement column (`obligation`): the shared requirement schema, with the two
 * allowances a stored row has always had: unknown members are dropped and a row written before
 * `userVerification` existed reads as 'required'.
 */
export const storedRequirementSchema = z.object({
  ...approvalRequirementSchema.shape,
  userVerification: approvalRequirementSchema.shape.userVerification.default('required'),
});
const textListSchema = z.array(z.string());
const stateSchema = z.enum(['allowed', 'denied', 'pending', 'approved', 'expired']);

/** One `requests` row, parsed. */
export interface RequestRecord {
  id: string;
  agentId: string;
  kid: string;
  tool: string;
  call: ToolCall;
  /** The call's JCS as stored (what `callSha256` digests and identical calls compare). */
  callJson: string;
  callSha256: string;
  state: RequestState;
  policyHash: string;
  determiningPolicies: string[];
  reasons: string[];
  obligation: ApprovalRequirement | null;
  /** The obligation column as stored: a plan made outside a transaction compares it to see a change. */
  obligationJson: string | null;
  risk: RiskAssessment;
  createdAt: number;
  expiresAt: number | null;
  decidedAt: number | null;
  /** Names the determining permits gave in @conflicted_approvers (stored lowercase). */
  conflictedApprovers: string[];
  groupId: string | null;
  sealedAt: number | null;
  /** The requesting agent (LEFT JOIN agents: all null when the agent row is gone). */
  agent: { displayName: string | null; owner: string | null; ownerState: string | null };
}

/** What the decision path stores for a new request. */
export interface NewRequest {
  id: string;
  agentId: string;
  kid: string;
  tool: string;
  callJson: string;
  callSha256: string;
  nonce: string;
  state: RequestState;
  policyHash: string;
  determiningPolicies: readonly string[];
  reasons: readonly string[];
  obligation: ApprovalRequirement | null;
  risk: RiskAssessment;
  createdAt: number;
  expiresAt: number | null;
  decidedAt: number | null;
  conflicted: readonly string[];
  groupId: string | null;
}

/** The columns an identical held call must share with a waiting group (decision-service.ts). */
export interface GroupKey {
  agentId: string;
  callSha256: string;
  callJson: string;
  policyHash: string;
  obligation: ApprovalRequirement;
  determiningPolicies: readonly string[];
  conflicted: readonly string[];
}

/**
 * A `requests` row's own columns as stored, in both stores. `Time` is how the driver returns the
 * time columns: SQLite a number, PostgreSQL's bigint a string (pg-approval-store.ts converts).
 */
export interface StoredRequestColumns<Time = number> {
  id: string;
  agent_id: string;
  kid: string;
  tool: string;
  call_json: string;
  call_sha256: string;
  state: string;
  policy_hash: string;
  determining_policies: string;
  reasons: string;
  obligation: string | null;
  risk: string;
  created_at: Time;
  expires_at: Time | null;
  decided_at: Time | null;
  conflicted_approvers: string;
  group_id: string | null;
  sealed_at: Time | null;
}

/** A `requests` row as stored, with its agent's columns (PostgreSQL's reader fills them from the hub's directory). */
export interface RequestRow extends StoredRequestColumns {
  agent_display_name: string | null;
  agent_owner: string | null;
  agent_owner_state: string | null;
}

type Row = RequestRow;

const COLUMNS = `SELECT r.id, r.agent_id, r.kid, r.tool, r.call_json, r.call_sha256, r.state, r.policy_hash, r.determining_policies, r.reasons,
  r.obligation, r.risk, r.created_at, r.expires_at, r.decided_at, r.conflicted_approvers, r.group_id, r.sealed_at,
  a.display_name AS agent_display_name, a.owner AS agent_owner, a.owner_state AS agent_owner_state`;
const SELECT = `${COLUMNS} FROM requests r LEFT JOIN agents a ON a.id = r.agent_id`;

/**
 * SELECT through one named index: SQLite's planner (without ANALYZE statistics) prefers the older
 * `requests_pending (state, expires_at)` and then sorts every pending row; naming the index makes
 * the page read in order and stop, and a statement whose WHERE no longer fits the index fails to
 * prepare instead of silently scanning.
 */
const selectIndexedBy = (index: string) => `${COLUMNS} FROM requests r INDEXED BY ${index} LEFT JOIN agents a ON a.id = r.agent_id`;

/**
 * Decoded JSON columns, remembered by their exact text. The desk re-reads the queue's first page
 * at every push event, from every open desk, and a page's rows repeat the same few texts (one
 * policy's reasons and requirement), so parsing and checking each text again was most of a
 * page's cost per row (bench BENCH_ONLY=desk-queue). A value here is what the same strict parse
 * and schema made of that same text (a pure function of it; a text that fails is never kept),
 * deep-frozen so that no reader can change what another one reads (also a value not remembered,
 * so a reader sees the same kind of value either way). Bounded by size, not only by count
 * (review4 finding 1): a text longer than `maxTextChars` is decoded and never remembered (the
 * repeated texts are reasons, requirements and policy lists of a few hundred characters; a large
 * call would pin its text for the life of the process), and once the remembered texts pass
 * `budgetChars` in all, the oldest are forgotten first.
 */
class DecodedTexts<T> {
  private readonly values = new Map<string, T>();
  private chars = 0;

  constructor(
    private readonly maxTextChars: number,
    private readonly budgetChars: number,
  ) {}

  get(text: string, decode: (text: string) => T): T {
    const known = this.values.get(text);
    if (known !== undefined) return known;
    const value = deepFreeze(decode(text));
    if (text.length > this.maxTextChars) return value;
    this.values.set(text, value);
    this.chars += text.length;
    while (this.chars > this.budgetChars) {
      const oldest = this.values.keys().next().value as string;
      this.values.delete(oldest);
      this.chars -= oldest.length;
    }
    return value;
  }

  /** Characters of text remembered now (for the test that keeps the bound). */
  get rememberedChars(): number {
    return this.chars;
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}

/** One memory per JSON column: texts up to 4 KiB characters, 1 Mi characters of them per column. */
const MAX_REMEMBERED_TEXT_CHARS = 4_096;
const REMEMBERED_CHARS_PER_COLUMN = 1_048_576;
const DECODED = {
  call: new DecodedTexts<ToolCall>(MAX_REMEMBERED_TEXT_CHARS, REMEMBERED_CHARS_PER_COLUMN),
  risk: new DecodedTexts<RiskAssessment>(MAX_REMEMBERED_TEXT_CHARS, REMEMBERED_CHARS_PER_COLUMN),
  requirement: new DecodedTexts<ApprovalRequirement>(MAX_REMEMBERED_TEXT_CHARS, REMEMBERED_CHARS_PER_COLUMN),
  textList: new DecodedTexts<string[]>(MAX_REMEMBERED_TEXT_CHARS, REMEMBERED_CHARS_PER_COLUMN),
};

/** Characters of decoded text the request reads keep, per column (the test of the bound reads it). */
export function rememberedDecodedChars(): Record<keyof typeof DECODED, number> {
  return {
    call: DECODED.call.rememberedChars,
    risk: DECODED.risk.rememberedChars,
    requirement: DECODED.requirement.rememberedChars,
    textList: DECODED.textList.rememberedChars,
  };
}

function column<T>(row: Row, name: string, schema: z.ZodType<T>, text: string, memory: DecodedTexts<T>): T {
  return memory.get(text, () => {
    let value: unknown;
    try {
      value = parseStrictJson(text);
    } catch {
      value = undefined;
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new CountersignError('internal_error', `request ${quote(row.id)} has a malformed ${name}`);
    return parsed.data;
  });
}

function checkedState(row: Row): RequestState {
  const parsed = stateSchema.safeParse(row.state);
  if (!parsed.success) throw new CountersignError('internal_error', `request ${quote(row.id)} has a malformed state`);
  return parsed.data;
}

/** Parse one row strictly (internal_error naming the request and the column otherwise). */
export function decodeRequest(row: Row): RequestRecord {
  const call = column(row, 'stored call', toolCallSchema, row.call_json, DECODED.call);
  return {
    id: row.id,
    agentId: row.agent_id,
    kid: row.kid,
    tool: row.tool,
    call,
    callJson: row.call_json,
    callSha256: row.call_sha256,
    state: checkedState(row),
    policyHash: row.policy_hash,
    determiningPolicies: column(row, 'determining policy list', textListSchema, row.determining_policies, DECODED.textList),
    reasons: column(row, 'reason list', textListSchema, row.reasons, DECODED.textList),
    obligation:
      row.obligation === null ? null : column(row, 'approval requirement', storedRequirementSchema, row.obligation, DECODED.requirement),
    obligationJson: row.obligation,
    risk: DECODED.risk.get(row.risk, parseStoredRisk),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    decidedAt: row.decided_at,
    conflictedApprovers: column(row, 'conflicted approver list', textListSchema, row.conflicted_approvers, DECODED.textList),
    groupId: row.group_id,
    sealedAt: row.sealed_at,
    agent: { displayName: row.agent_display_name, owner: row.agent_owner, ownerState: row.agent_owner_state },
  };
}

/**
 * A pending request as a revocation or expiry ends it: the narrow read those two security state
 * changes need. The call stays raw (`callJson`); expiry decodes it only for risk learning
 * (`decodeStoredCall`), and a call that no longer decodes is a learning fault, not an abort.
 */
export interface EndingRequest {
  id: string;
  agentId: string;
  tool: string;
  callJson: string;
  callSha256: string;
  policyHash: string;
  determiningPolicies: string[];
  createdAt: number;
}

interface EndingRow {
  id: string;
  agent_id: string;
  tool: string;
  call_json: string;
  call_sha256: string;
  policy_hash: string;
  determining_policies: string;
  created_at: number;
}

const ENDING_SELECT = 'SELECT id, agent_id, tool, call_json, call_sha256, policy_hash, determining_policies, created_at FROM requests';

function decodeEnding(row: EndingRow): EndingRequest {
  let determiningPolicies: string[];
  try {
    determiningPolicies = textListSchema.parse(parseStrictJson(row.determining_policies));
  } catch {
    throw new CountersignError('internal_error', `request ${quote(row.id)} has a malformed determining policy list`);
  }
  return {
    id: row.id,
    agentId: row.agent_id,
    tool: row.tool,
    callJson: row.call_json,
    callSha256: row.call_sha256,
    policyHash: row.policy_hash,
    determiningPolicies,
    createdAt: row.created_at,
  };
}

/** Decode a stored call strictly; `undefined` when it no longer matches the call schema. */
export function decodeStoredCall(callJson: string): ToolCall | undefined {
  try {
    const parsed = toolCallSchema.safeParse(parseStrictJson(callJson));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The queue's statements (migration 16): each page reads its rows in index order and stops, and
 * the count reads one kept row plus the prompts past expiry that the sweeper has not ended yet.
 * Each WHERE repeats its partial index's word for word (test/integration/desk-queue-store.test.ts
 * reads their plans).
 */
export const QUEUE_STATEMENTS = {
  /** The desk's queue: the soonest to expire first. Parameters: now, limit, offset. */
  byExpiry: `${selectIndexedBy('requests_queue_by_expiry')} WHERE r.state = 'pending' AND r.group_id IS NULL AND r.expires_at > ? ORDER BY r.expires_at, r.id LIMIT ? OFFSET ?`,
  /** The older approvals listing: oldest first. Parameters: now, limit, offset. */
  byAge: `${selectIndexedBy('requests_queue_by_age')} WHERE r.state = 'pending' AND r.group_id IS NULL AND r.expires_at > ? ORDER BY r.created_at, r.id LIMIT ? OFFSET ?`,
  /** The prompts pending and not followers, as the triggers keep it. */
  keptCount: "SELECT n FROM queue_counts WHERE name = 'prompts'",
  /** Of those, the ones already past expiry at `now`. */
  staleCount:
    "SELECT COUNT(*) AS n FROM requests INDEXED BY requests_queue_by_expiry WHERE state = 'pending' AND group_id IS NULL AND expires_at <= ?",
} as const;

/**
 * An agent's requests created at or after `since`, oldest first (RequestRepository.recentOf), in
 * three disjoint parts, each a range of an index every decision already writes or none does
 * (migration 23 dropped the index by (agent_id, created_at) that served this alone):
 * - decided rows decided no earlier than created: created at or after `since` means decided at or
 *   after it too, so the part is a range of requests_decided_by_agent, filtered by created_at;
 * - pending rows: the agent's few, through requests_pending_by_agent;
 * - decided rows with decided_at before created_at (a clock stepped back) or missing: through
 *   requests_decided_out_of_order, whose rows are exactly those (an ordinary decision writes none).
 * Each WHERE repeats its partial index's condition word for word, so a part that no longer fits
 * its index fails to prepare instead of scanning (test/unit/request-repository.test.ts reads the plan).
 */
const recentPart = (index: string) =>
  `${COLUMNS}, r.rowid AS row_order FROM requests r INDEXED BY ${index} LEFT JOIN agents a ON a.id = r.agent_id`;
/**
 * The desk's recent requests (its header and status list, read on every refresh and after each
 * event): newest recorded first. A request's rowid is given when its row is written, so the
 * table read backwards is that order and stops after `limit` rows. Ordered by `created_at`
 * instead (no index has it since migration 23, and none had it alone before) SQLite read and
 * sorted every request on each read: 287-453 ms of the event loop at 120,000 requests. The two
 * orders differ only for a row written after a clock stepped back, which is then listed as the
 * newest, as it is.
 */
export const RECENT_REQUESTS = `${SELECT} ORDER BY r.rowid DESC LIMIT ?`;

const RECENT_OF = `SELECT * FROM (
  ${recentPart('requests_decided_by_agent')}
    WHERE r.agent_id = @agentId AND r.state <> 'pending' AND r.decided_at >= @since AND r.decided_at >= r.created_at AND r.created_at >= @since
  UNION ALL
  ${recentPart('requests_pending_by_agent')}
    WHERE r.agent_id = @agentId AND r.state = 'pending' AND r.created_at >= @since
  UNION ALL
  ${recentPart('requests_decided_out_of_order')}
    WHERE r.agent_id = @agentId AND r.state <> 'pending' AND (r.decided_at IS NULL OR r.decided_at < r.created_at) AND r.created_at >= @since
) ORDER BY created_at, row_order`;

/** The one spelling of the approval requirement column (identical held calls compare it byte for byte). */
export function encodeRequirement(requirement: ApprovalRequirement): string {
  return JSON.stringify(requirement);
}

export class RequestRepository {
  private readonly byId;
  private readonly insertStmt;
  private readonly openGroupStmt;
  private readonly followerCountStmt;
  private readonly pendingOfAgentCountStmt;
  private readonly outcomeStmt;
  private readonly pendingByAgeStmt;
  private readonly pendingByExpiryStmt;
  private readonly followersOfManyStmt;
  private readonly promptCountStmt;
  private readonly stalePromptCountStmt;
  private recentOfStmt: Database.Statement<{ agentId: string; since: number }, Row> | undefined;

  constructor(private readonly db: Db) {
    this.pendingByAgeStmt = db.prepare<[number, number, number], Row>(QUEUE_STATEMENTS.byAge);
    this.pendingByExpiryStmt = db.prepare<[number, number, number], Row>(QUEUE_STATEMENTS.byExpiry);
    this.followersOfManyStmt = db.prepare<[string], Row>(`${SELECT} WHERE r.group_id IN (SELECT value FROM json_each(?)) ORDER BY r.id`);
    this.promptCountStmt = db.prepare<[], { n: number }>(QUEUE_STATEMENTS.keptCount);
    this.stalePromptCountStmt = db.prepare<[number], { n: number }>(QUEUE_STATEMENTS.staleCount);
    this.byId = db.prepare<[string], Row>(`${SELECT} WHERE r.id = ?`);
    this.insertStmt = db.prepare(
      `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash, determining_policies, reasons, obligation, risk, created_at, expires_at, decided_at, conflicted_approvers, group_id)
       VALUES (@id, @agentId, @kid, @tool, @callJson, @callSha256, @nonce, @state, @policyHash, @determining, @reasons, @obligation, @risk, @createdAt, @expiresAt, @decidedAt, @conflicted, @groupId)`,
    );
    // The group an identical held call joins: still pending, unexpired, not yet sealed by a
    // ceremony, and decided exactly alike (every column an approver's challenge or the quorum reads).
    // INDEXED BY: the agent's open groups only, whatever the planner guesses without statistics
    // (left to itself it walked every pending request of every agent).
    this.openGroupStmt = db.prepare<[string, string, string, string, string, string, string, number], { id: string; expires_at: number }>(
      `SELECT id, expires_at FROM requests INDEXED BY requests_open_groups
       WHERE agent_id = ? AND call_sha256 = ? AND call_json = ? AND policy_hash = ? AND obligation = ? AND determining_policies = ? AND conflicted_approvers = ?
         AND state = 'pending' AND group_id IS NULL AND sealed_at IS NULL AND expires_at > ?
         AND (SELECT COUNT(*) FROM requests f WHERE f.group_id = requests.id) < ${MAX_GROUP_FOLLOWERS}
       ORDER BY created_at, id LIMIT 1`,
    );
    this.followerCountStmt = db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM requests WHERE group_id = ?');
    // The agent's pending rows only (migration 18), however many other agents have waiting.
    this.pendingOfAgentCountStmt = db.prepare<[string], { n: number }>(
      "SELECT COUNT(*) AS n FROM requests INDEXED BY requests_pending_by_agent WHERE agent_id = ? AND state = 'pending'",
    );
    this.outcomeStmt = db.prepare<[string], { token: string | null; token_expires_at: number | null }>(
      `SELECT t.token AS token, t.expires_at AS token_expires_at
       FROM requests r LEFT JOIN tokens t ON t.request_id = r.id WHERE r.id = ?`,
    );
  }

  // ---- reading ----

  /** One request, parsed, or undefined. */
  get(id: string): RequestRecord | undefined {
    const row = typeof id === 'string' ? this.byId.get(id) : undefined;
    return row === undefined ? undefined : decodeRequest(row);
  }

  /** The agent that made a request (a cheap ownership check that parses nothing). */
  agentOf(id: string): string | undefined {
    return this.db.prepare<[string], { agent_id: string }>('SELECT agent_id FROM requests WHERE id = ?').get(id)?.agent_id;
  }

  /** A request's state alone (the approvals page polls it). */
  stateOf(id: string): RequestState | undefined {
    return this.db.prepare<[string], { state: RequestState }>('SELECT state FROM requests WHERE id = ?').get(id)?.state;
  }

  /** A request's token (when one was issued). */
  outcomeOf(id: string): { token: string | null; tokenExpiresAt: number | null } | undefined {
    const row = this.outcomeStmt.get(id);
    return row === undefined ? undefined : { token: row.token, tokenExpiresAt: row.token_expires_at };
  }

  /** Pending, unexpired prompts (a group's primary only), oldest first, one page (index requests_queue_by_age). */
  listPending(now: number, limit: number, offset: number): RequestRecord[] {
    return this.pendingByAgeStmt.all(now, limit, offset).map(decodeRequest);
  }

  /**
   * How many prompts are waiting (a merged group counts once): the count the triggers of
   * migration 16 keep, less the prompts already past expiry that the sweeper has not ended yet
   * (a short range of requests_queue_by_expiry), so it costs the same with 10 or 10,000 waiting.
   */
  countPending(now: number): number {
    const kept = this.promptCountStmt.get()?.n ?? 0;
    const stale = this.stalePromptCountStmt.get(now)?.n ?? 0;
    return Math.max(0, kept - stale);
  }

  /**
   * Requests that needed approval and are decided (a group's primary only), newest first. Through
   * the partial index of exactly those rows (migration 23), which no automatic decision writes.
   */
  history(limit: number): RequestRecord[] {
    return this.db
      .prepare<[number], Row>(
        `${selectIndexedBy('requests_held_decided')} WHERE r.obligation IS NOT NULL AND r.state <> 'pending' AND r.group_id IS NULL ORDER BY r.decided_at DESC, r.id LIMIT ?`,
      )
      .all(limit)
      .map(decodeRequest);
  }

  // ---- the desk's queue (one statement per page, whatever its length: bench BENCH_ONLY=desk-queue) ----

  /** Pending, unexpired prompts, the soonest to expire first (the desk's queue order). */
  listPendingByExpiry(now: number, limit: number, offset: number): RequestRecord[] {
    return this.pendingByExpiryStmt.all(now, limit, offset).map(decodeRequest);
  }

  /** The followers of several primaries in one statement, by primary id (each list sorted by id). */
  followersOfMany(primaryIds: readonly string[]): Map<string, RequestRecord[]> {
    const out = new Map<string, RequestRecord[]>(primaryIds.map((id) => [id, []]));
    if (primaryIds.length === 0) return out;
    const rows = this.followersOfManyStmt.all(JSON.stringify(primaryIds)).map(decodeRequest);
    for (const row of rows) if (row.groupId !== null) out.get(row.groupId)?.push(row);
    return out;
  }

  /** Every follower of a primary (any state), sorted by id. */
  followers(primaryId: string): RequestRecord[] {
    return cachedStatement<[string], Row>(this.db, `${SELECT} WHERE r.group_id = ?`)
      .all(primaryId)
      .map(decodeRequest)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The ids of a primary's followers still pending, sorted (as challenge records list them). */
  pendingFollowerIds(primaryId: string): string[] {
    return cachedStatement<[string], { id: string }>(this.db, "SELECT id FROM requests WHERE group_id = ? AND state = 'pending'")
      .all(primaryId)
      .map((r) => r.id)
      .sort();
  }

  /** How many of an agent's requests wait for approvers (the per-agent cap). */
  countPendingOf(agentId: string): number {
    return this.pendingOfAgentCountStmt.get(agentId)!.n;
  }

  /**
   * An agent's pending requests, oldest first, as a revocation ends them: only the columns it
   * records, so a row whose other columns no longer decode cannot roll a revocation back.
   */
  pendingOf(agentId: string): EndingRequest[] {
    return this.db
      .prepare<[string], EndingRow>(`${ENDING_SELECT} WHERE agent_id = ? AND state = 'pending' ORDER BY created_at, id`)
      .all(agentId)
      .map(decodeEnding);
  }

  /** An agent's requests denied at `decidedAt` with exactly `reasons` (what one revocation ended), oldest first. */
  deniedAt(agentId: string, decidedAt: number, reasons: readonly string[]): RequestRecord[] {
    return this.db
      .prepare<[string, number, string], Row>(
        `${SELECT} WHERE r.agent_id = ? AND r.state = 'denied' AND r.state <> 'pending' AND r.decided_at = ? AND r.reasons = ? ORDER BY r.created_at, r.id`,
      )
      .all(agentId, decidedAt, JSON.stringify(reasons))
      .map(decodeRequest);
  }

  /**
   * Pending requests whose approval window has closed at `now`, with only the columns expiry
   * uses: one row whose other columns no longer decode cannot stop every expiry.
   */
  dueForExpiry(now: number): EndingRequest[] {
    return this.db
      .prepare<[number], EndingRow>(`${ENDING_SELECT} WHERE state = 'pending' AND expires_at <= ? ORDER BY created_at, id`)
      .all(now)
      .map(decodeEnding);
  }

  /** The newest requests (any state), for the desk's recent activity. */
  recent(limit: number): RequestRecord[] {
    const stmt = this.db.prepare<[number], Row>(RECENT_REQUESTS);
    // The desk's read path never writes (ui-service.ts, docs/desktop.md): better-sqlite3 confirms it.
    if (!stmt.readonly) throw new CountersignError('internal_error', 'the recent-decisions query is not read-only');
    return stmt.all(limit).map(decodeRequest);
  }

  /** An agent's requests created at or after `since`, oldest first (the risk profile's window). */
  recentOf(agentId: string, since: number): RequestRecord[] {
    // Prepared once: the risk scorer reads this for every agent whose profile is not cached,
    // and compiling it each time was about a tenth of the decision path's store work (issue #12).
    this.recentOfStmt ??= this.db.prepare<{ agentId: string; since: number }, Row>(RECENT_OF);
    return this.recentOfStmt.all({ agentId, since }).map(decodeRequest);
  }

  /** The waiting group an identical held call joins, if any (with its follower count). */
  openGroup(key: GroupKey, now: number): { id: string; expiresAt: number; followers: number } | undefined {
    const group = this.openGroupStmt.get(
      key.agentId,
      key.callSha256,
      key.callJson,
      key.policyHash,
      encodeRequirement(key.obligation),
      JSON.stringify(key.determiningPolicies),
      JSON.stringify(key.conflicted),
      now,
    );
    return group === undefined
      ? undefined
      : { id: group.id, expiresAt: group.expires_at, followers: this.followerCountStmt.get(group.id)!.n };
  }

  // ---- writing (call these inside the caller's transaction) ----

  insert(request: NewRequest): void {
    this.insertStmt.run({
      id: request.id,
      agentId: request.agentId,
      kid: request.kid,
      tool: request.tool,
      callJson: request.callJson,
      callSha256: request.callSha256,
      nonce: request.nonce,
      state: request.state,
      policyHash: request.policyHash,
      determining: JSON.stringify(request.determiningPolicies),
      reasons: JSON.stringify(request.reasons),
      obligation: request.obligation === null ? null : encodeRequirement(request.obligation),
      risk: JSON.stringify(request.risk),
      createdAt: request.createdAt,
      expiresAt: request.expiresAt,
      decidedAt: request.decidedAt,
      conflicted: JSON.stringify(request.conflicted),
      groupId: request.groupId,
    });
  }

  /** Move a pending request to a terminal state; false when it was no longer pending. */
  finish(id: string, state: 'approved' | 'denied' | 'expired', now: number, reasons: readonly string[]): boolean {
    return (
      cachedStatement(this.db, "UPDATE requests SET state = ?, decided_at = ?, reasons = ? WHERE id = ? AND state = 'pending'").run(
        state,
        now,
        JSON.stringify(reasons),
        id,
      ).changes === 1
    );
  }

  /** Seal a group: no identical call joins it once an approver has begun deciding. */
  seal(id: string, now: number): void {
    this.db.prepare('UPDATE requests SET sealed_at = ? WHERE id = ? AND sealed_at IS NULL').run(now, id);
  }

  /** Store a stricter approval requirement (the current policy asked for more). */
  setRequirement(id: string, requirement: ApprovalRequirement): void {
    this.db.prepare('UPDATE requests SET obligation = ? WHERE id = ?').run(encodeRequirement(requirement), id);
  }

  /** Store the conflicted approver names (the caller keeps them lowercase, sorted, unique). */
  setConflicted(id: string, names: readonly string[]): void {
    this.db.prepare('UPDATE requests SET conflicted_approvers = ? WHERE id = ?').run(JSON.stringify(names), id);
  }
}
