/**
 * Migration 23 takes two indexes of `requests` that every decision wrote (by agent and creation
 * time; by decision time alone) and serves their reads from the indexes that stay and two partial
 * indexes no automatic decision writes. A database written before it (schema 22) answers every
 * read the same after the upgrade as before it: the risk window of each agent, the desk History's
 * pages (every filter, walked by cursor to the end), the approvals listing, an agent's pending and
 * revocation-denied requests, compared with the statements of the version before, run on the old
 * database. And an automatically allowed decision (real core, real SQLite file) writes no page of
 * the indexes that went or of the partial ones, read from the WAL frames of its commit.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, schemaVersion, type Db } from '../../main/core/store/database.js';
import { MIGRATIONS } from '../../main/core/store/migrations.js';
import { RECENT_REQUESTS, RequestRepository } from '../../main/core/store/request-repository.js';
import { newRequestId, requestKey } from '../../main/core/store/request-id.js';
import { historyPageStatement } from '../../main/core/ui/history-reader.js';
import { prng } from '../helpers/prng.js';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import type { HistoryQuery } from '../../shared/desk-records.js';

/** The schema version just before migration 23. */
const BEFORE = 22;
const BASE = 1_790_000_000_000;
const AGENTS = 12;
const TOOLS = ['payments.transfer', 'deploy.staging', 'deploy.production'];

const dirs: string[] = [];
let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * A schema-22 database holding every kind of row the reads tell apart: automatic decisions,
 * held requests decided later (approved, denied, expired), pending ones, followers of a group,
 * revocation denials sharing one decision time, decided rows whose decision time is before their
 * creation (a clock stepped back) and one whose decision time is missing (a hand-edited row).
 */
function writeOldDatabase(file: string): void {
  const old = new Database(file);
  old.function('countersign_request_key', { deterministic: true }, (id: unknown) => (typeof id === 'string' ? requestKey(id) : null));
  for (const step of MIGRATIONS.slice(0, BEFORE)) old.exec(step);
  old.pragma(`user_version = ${BEFORE}`);
  const insert = old.prepare(
    `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash, determining_policies, reasons, obligation, risk, created_at, expires_at, decided_at, conflicted_approvers, group_id)
     VALUES (@id, @agent, 'k1', @tool, @call, @sha, @nonce, @state, 'sha256:p', '["p"]', @reasons, @obligation, '{"score":5,"factors":[]}', @created, @expires, @decided, '[]', @group)`,
  );
  const token = old.prepare('INSERT INTO tokens (jti, request_id, kid, token, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
  const rng = prng(23);
  const obligation = '{"approvals":1,"groups":[["finance"]],"ttlSeconds":900,"userVerification":"required"}';
  old.transaction(() => {
    let lastPrimary: string | undefined;
    for (let i = 0; i < 1500; i++) {
      const created = BASE + i * 1000;
      const r = rng();
      const agent = `agent-${Math.floor(rng() * AGENTS)}`;
      const tool = TOOLS[Math.floor(rng() * TOOLS.length)]!;
      const id = newRequestId(created, randomBytes(16));
      const call = JSON.stringify({
        dataClass: 'financial',
        jurisdiction: 'US',
        params: { payee: `Vendor ${i % 40}` },
        provenance: [],
        tool,
      });
      let state = 'allowed';
      let decided: number | null = created;
      let held = false;
      let group: string | null = null;
      let reasons = '["r"]';
      if (r < 0.1) state = 'denied';
      else if (r < 0.25) {
        held = true;
        state = ['approved', 'denied', 'expired'][Math.floor(rng() * 3)]!;
        decided = created + Math.floor(rng() * 900_000);
      } else if (r < 0.3) {
        held = true;
        state = 'pending';
        decided = null;
      } else if (r < 0.33 && lastPrimary !== undefined) {
        held = true;
        state = 'approved';
        decided = created + 5_000;
        group = lastPrimary;
      } else if (r < 0.35) {
        // Revocation denials: several of one agent at one decision time, with one reason list.
        state = 'denied';
        decided = BASE + 777_000;
        reasons = '["agent revoked"]';
      } else if (r < 0.37) {
        // The clock stepped back between creation and decision.
        held = true;
        state = 'approved';
        decided = created - Math.floor(rng() * 3_600_000);
      }
      insert.run({
        id,
        agent,
        tool,
        call,
        sha: randomBytes(32).toString('hex'),
        nonce: randomBytes(16).toString('base64url'),
        state,
        reasons,
        obligation: held ? obligation : null,
        created,
        expires: held ? created + 900_000 : null,
        decided,
        group,
      });
      if (held && group === null) lastPrimary = id;
      if (state === 'allowed' || state === 'approved')
        token.run(randomBytes(16).toString('base64url'), id, 'k1', `eyJ.${i}`, decided, decided! + 60_000);
    }
    // A decided row without a decision time (as a hand edit could leave one).
    insert.run({
      id: newRequestId(BASE + 2_000_000, randomBytes(16)),
      agent: 'agent-0',
      tool: TOOLS[0],
      call: JSON.stringify({ dataClass: 'financial', jurisdiction: 'US', params: {}, provenance: [], tool: TOOLS[0] }),
      sha: 'a'.repeat(64),
      nonce: 'hand-edited',
      state: 'denied',
      reasons: '["r"]',
      obligation: null,
      created: BASE + 2_000_000,
      expires: null,
      decided: null,
      group: null,
    });
  })();
  old.close();
}

/** The History page statement of the version before migration 23 (no state named by default, no bound on the cursor). */
function previousHistoryStatement(query: HistoryQuery): { sql: string; values: Array<string | number> } {
  const where = [`r.state <> 'pending'`, 'r.decided_at IS NOT NULL'];
  const values: Array<string | number> = [];
  if (query.states !== undefined) {
    where.push(`r.state IN (${query.states.map(() => '?').join(', ')})`);
    values.push(...query.states);
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
  if (query.cursor !== undefined) {
    const colon = query.cursor.indexOf(':');
    const decidedAt = Number(query.cursor.slice(0, colon));
    where.push('(r.decided_at < ? OR (r.decided_at = ? AND r.id < ?))');
    values.push(decidedAt, decidedAt, query.cursor.slice(colon + 1));
  }
  values.push((query.limit ?? 25) + 1);
  const sql = `SELECT r.id, r.agent_id, r.tool, r.state, json_extract(r.call_json, '$.params.payee') AS payee, r.created_at, r.decided_at, r.reasons,
      (SELECT COUNT(*) FROM approvals a WHERE a.request_id = COALESCE(r.group_id, r.id)) AS approvals
    FROM requests r WHERE ${where.join(' AND ')}
    ORDER BY r.decided_at DESC, r.id DESC LIMIT ?`;
  return { sql, values };
}

type Page = Array<{ id: string; decided_at: number }>;

/** Every page of a History query, walked by cursor to the end: the ids of each page. */
function walk(db: Db, statement: typeof historyPageStatement, query: HistoryQuery): string[][] {
  const pages: string[][] = [];
  let cursor: string | undefined;
  for (;;) {
    const { sql, values } = statement({ ...query, limit: 40, ...(cursor === undefined ? {} : { cursor }) });
    const rows = db.prepare<Array<string | number>, Page[number]>(sql).all(...values);
    const page = rows.slice(0, 40);
    pages.push(page.map((r) => r.id));
    if (rows.length <= 40) return pages;
    cursor = `${page[page.length - 1]!.decided_at}:${page[page.length - 1]!.id}`;
  }
}

const HISTORY_QUERIES: HistoryQuery[] = [
  {},
  { states: ['approved'] },
  { states: ['denied', 'expired'] },
  { tool: 'deploy.staging' },
  { agentId: 'agent-3' },
  { agentId: 'agent-3', states: ['denied'] },
  { since: BASE + 300_000_000, until: BASE + 900_000_000 },
  { since: BASE + 300_000_000 },
];

/** Every answer the reads give, by the statements of the version before (run on the old database). */
function previousAnswers(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    const recent: Record<string, string[]> = {};
    for (let a = 0; a < AGENTS; a++)
      for (const since of [BASE, BASE + 500_000_000, BASE + 1_400_000_000, BASE + 1_500_000_000])
        recent[`agent-${a}@${since}`] = db
          .prepare<[string, number], { id: string }>(
            'SELECT id FROM requests WHERE agent_id = ? AND created_at >= ? ORDER BY created_at, rowid',
          )
          .all(`agent-${a}`, since)
          .map((r) => r.id);
    return {
      recent,
      history: HISTORY_QUERIES.map((q) => walk(db, previousHistoryStatement, q)),
      approvals: db
        .prepare<[], { id: string }>(
          "SELECT id FROM requests r WHERE r.obligation IS NOT NULL AND r.state <> 'pending' AND r.group_id IS NULL ORDER BY r.decided_at DESC, r.id LIMIT 500",
        )
        .all()
        .map((r) => r.id),
      pending: Array.from({ length: AGENTS }, (_, a) =>
        db
          .prepare<[string], { id: string }>("SELECT id FROM requests WHERE agent_id = ? AND state = 'pending' ORDER BY created_at, id")
          .all(`agent-${a}`)
          .map((r) => r.id),
      ),
      revoked: Array.from({ length: AGENTS }, (_, a) =>
        db
          .prepare<[string, number, string], { id: string }>(
            "SELECT id FROM requests r WHERE r.agent_id = ? AND r.state = 'denied' AND r.decided_at = ? AND r.reasons = ? ORDER BY r.created_at, r.id",
          )
          .all(`agent-${a}`, BASE + 777_000, '["agent revoked"]')
          .map((r) => r.id),
      ),
    };
  } finally {
    db.close();
  }
}

/** The B-tree each page of the database belongs to (dbstat), for naming WAL frames. */
function treeOfPage(file: string): (page: number) => string {
  const db = new Database(file, { readonly: true });
  const names = new Map(
    db
      .prepare<[], { name: string; pageno: number }>('SELECT name, pageno FROM dbstat')
      .all()
      .map((r) => [r.pageno, r.name]),
  );
  db.close();
  return (page) => names.get(page) ?? `page ${page}`;
}

/** The page numbers of the WAL's valid frames, in order, up to its last commit. */
function walPages(file: string): number[] {
  let wal: Buffer;
  try {
    wal = readFileSync(`${file}-wal`);
  } catch {
    return [];
  }
  if (wal.length < 32) return [];
  const pageSize = wal.readUInt32BE(8);
  const salt = [wal.readUInt32BE(16), wal.readUInt32BE(20)];
  const pages: number[] = [];
  let committed = 0;
  for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
    if (wal.readUInt32BE(at + 8) !== salt[0] || wal.readUInt32BE(at + 12) !== salt[1]) break;
    pages.push(wal.readUInt32BE(at));
    if (wal.readUInt32BE(at + 4) !== 0) committed = pages.length;
  }
  return pages.slice(0, committed);
}

describe('the indexes of requests (migration 23)', () => {
  it('a database written before migration 23 answers every read the same after the upgrade', () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir, 'countersign.db');
    writeOldDatabase(file);
    const before = previousAnswers(file);
    // The fixture has every kind of row the reads tell apart.
    expect(before.approvals.length).toBeGreaterThan(100);
    expect(before.pending.flat().length).toBeGreaterThan(20);
    expect(before.revoked.flat().length).toBeGreaterThan(10);

    const db = openStore(file);
    try {
      expect(schemaVersion(db)).toBe(MIGRATIONS.length);
      const indexes = db
        .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests'")
        .all()
        .map((r) => r.name);
      expect(indexes).not.toContain('requests_by_agent');
      expect(indexes).not.toContain('requests_decided');
      expect(indexes).toEqual(expect.arrayContaining(['requests_decided_out_of_order', 'requests_held_decided']));
      // The partial indexes hold exactly the rows they are for: none of the automatic decisions.
      const outOfOrderRows = "state <> 'pending' AND (decided_at IS NULL OR decided_at < created_at)";
      const count = (sql: string) => db.prepare<[], { n: number }>(sql).get()!.n;
      expect(count(`SELECT COUNT(*) AS n FROM requests INDEXED BY requests_decided_out_of_order WHERE ${outOfOrderRows}`)).toBe(
        count(`SELECT COUNT(*) AS n FROM requests NOT INDEXED WHERE ${outOfOrderRows}`),
      );

      const repo = new RequestRepository(db);
      for (const [key, ids] of Object.entries(before.recent)) {
        const [agent, since] = key.split('@') as [string, string];
        expect(
          repo.recentOf(agent, Number(since)).map((r) => r.id),
          key,
        ).toEqual(ids);
      }
      // The stepped-back and hand-edited rows are in some agent's window (the third part of recentOf).
      const outOfOrder = db
        .prepare<[], { id: string }>("SELECT id FROM requests WHERE state <> 'pending' AND (decided_at IS NULL OR decided_at < created_at)")
        .all()
        .map((r) => r.id);
      expect(outOfOrder.length).toBeGreaterThan(5);
      expect(Object.values(before.recent).flat()).toEqual(expect.arrayContaining(outOfOrder));

      HISTORY_QUERIES.forEach((query, i) =>
        expect(walk(db, historyPageStatement, query), JSON.stringify(query)).toEqual(before.history[i]),
      );
      expect(repo.history(500).map((r) => r.id)).toEqual(before.approvals);
      for (let a = 0; a < AGENTS; a++) {
        expect(repo.pendingOf(`agent-${a}`).map((r) => r.id)).toEqual(before.pending[a]);
        expect(repo.deniedAt(`agent-${a}`, BASE + 777_000, ['agent revoked']).map((r) => r.id)).toEqual(before.revoked[a]);
      }
    } finally {
      db.close();
    }
  });

  it('reads each part of the risk window, the History pages and the approvals listing through an index, never a scan of requests', () => {
    const dir = tempDir();
    dirs.push(dir);
    const db = openStore(join(dir, 'countersign.db'));
    try {
      const plan = (sql: string, values: unknown[]) =>
        db
          .prepare(`EXPLAIN QUERY PLAN ${sql}`)
          .all(...values)
          .map((p) => (p as { detail: string }).detail);
      const scans = (details: string[]) => details.filter((d) => /^SCAN r\b/.test(d) && !/USING (COVERING )?INDEX/.test(d));
      for (const query of [{}, { cursor: `${BASE}:req_x` }, { since: 1, until: 2 }]) {
        const { sql, values } = historyPageStatement(query);
        const details = plan(sql, values);
        expect(scans(details), JSON.stringify(query)).toEqual([]);
        // One ordered range per decided state, starting at the cursor when there is one.
        expect(details.join(' | '), JSON.stringify(query)).toMatch(
          /requests_decided_by_state \(state=\? AND decided_at>\? AND decided_at<\?\)|requests_decided_by_state \(state=\? AND decided_at>\?\)/,
        );
      }
      const { sql, values } = historyPageStatement({ cursor: `${BASE}:req_x` });
      expect(plan(sql, values).join(' | ')).toMatch(/decided_at<\?/);
      // recentOf and history name their indexes (INDEXED BY): preparing them fails if an index no longer fits.
      const repo = new RequestRepository(db);
      expect(() => repo.recentOf('agent-0', BASE)).not.toThrow();
      expect(() => repo.history(10)).not.toThrow();
      expect(
        plan(
          "SELECT id FROM requests r WHERE r.agent_id = ? AND r.state = 'denied' AND r.state <> 'pending' AND r.decided_at = ? AND r.reasons = ? ORDER BY r.created_at, r.id",
          ['a', 1, '[]'],
        ).join(' | '),
      ).toMatch(/requests_decided_by_agent/);
    } finally {
      db.close();
    }
  });

  it("reads the desk's recent requests newest recorded first, backwards through the table and stopping at the limit, never sorting every request", () => {
    const dir = tempDir();
    dirs.push(dir);
    const file = join(dir, 'countersign.db');
    writeOldDatabase(file);
    const old = new Database(file, { readonly: true });
    const before = old
      .prepare<[], { id: string }>('SELECT id FROM requests ORDER BY created_at DESC, rowid DESC LIMIT 100')
      .all()
      .map((r) => r.id);
    old.close();
    const db = openStore(file);
    try {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN ${RECENT_REQUESTS}`)
        .all(100)
        .map((p) => (p as { detail: string }).detail)
        .join(' | ');
      // A sort of every request (the previous ORDER BY created_at) shows as a temporary B-tree.
      expect(plan).not.toMatch(/TEMP B-TREE/);
      expect(plan).toMatch(/SCAN r\b/);
      // The statement RequestRepository.recent runs (the fixture's calls are not whole calls, so
      // the ids are read without decoding the rows).
      const recent = (limit: number) =>
        db
          .prepare<[number], { id: string }>(RECENT_REQUESTS)
          .all(limit)
          .map((r) => r.id);
      // Rows written in time order (as the store writes them): the same answer as before.
      expect(recent(100)).toEqual(before);
      // A row written after the clock stepped back is the newest recorded, and listed first.
      const stepped = newRequestId(BASE - 5_000, randomBytes(16));
      db.prepare(
        `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash, determining_policies, reasons, obligation, risk, created_at, expires_at, decided_at, conflicted_approvers, group_id)
         VALUES (?, 'agent-0', 'k1', 'deploy.staging', '{}', 'x', 'n-stepped', 'allowed', 'sha256:p', '["p"]', '["r"]', NULL, '{"score":5,"factors":[]}', ?, NULL, ?, '[]', NULL)`,
      ).run(stepped, BASE - 5_000, BASE - 5_000);
      expect(recent(3)).toEqual([stepped, ...before.slice(0, 2)]);
    } finally {
      db.close();
    }
  });

  it('an automatically allowed decision writes no page of the indexes that went, nor of the partial ones', async () => {
    harness = await startHarness({ config: { risk: { enabled: false } } });
    const key = await harness.enroll('finance-bot');
    const client = harness.client('finance-bot', key);
    await client.connect();
    const file = join(harness.dataDir, 'countersign.db');
    // A few decisions first, so that the tables are past their first pages.
    for (let i = 0; i < 20; i++) expect((await client.submit(transferCall(`${10 + i}.00`))).state).toBe('allowed');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const written = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const before = walPages(file);
      expect((await client.submit(transferCall(`${50 + i}.00`))).state).toBe('allowed');
      const after = walPages(file);
      const fresh = after.length >= before.length && before.every((p, j) => after[j] === p) ? after.slice(before.length) : after;
      const name = treeOfPage(file);
      for (const page of fresh) written.add(name(page));
    }
    // Its own rows are in the WAL (the probe sees the commit) ...
    expect([...written]).toEqual(expect.arrayContaining(['requests', 'requests_decided_by_agent', 'tokens', 'seen_nonces', 'audit_log']));
    // ... and none of these B-trees is written.
    for (const gone of ['requests_by_agent', 'requests_decided', 'requests_decided_out_of_order', 'requests_held_decided'])
      expect([...written], gone).not.toContain(gone);
  });
});
