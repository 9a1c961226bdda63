/**
 * The History search index filled outside the decision transaction (store/request-search-index.ts)
 * against a real core and real SQLite files: no trigger writes the index inside a decision; the
 * batch indexer finds a request decided a moment ago; a search finds a request even before the
 * indexer has run; a crash between a decision's commit and its indexing loses nothing (the next
 * start indexes what is missing); batches never index a row twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { HistoryReader, searchPhrase } from '../../main/core/ui/history-reader.js';
import { openStore } from '../../main/core/store/database.js';
import { RequestSearchIndex } from '../../main/core/store/request-search-index.js';
import type { Db } from '../../main/core/store/database.js';

let h: Harness;
let dataDir: string;

const indexed = (db: Db, text: string): number[] =>
  db
    .prepare<[string], { rowid: number }>('SELECT rowid FROM request_search WHERE request_search MATCH ?')
    .all(searchPhrase(text))
    .map((r) => r.rowid);

async function until<T>(what: string, check: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The History reader over a database (its pages need no audit proofs). */
const historyOf = (db: Db) =>
  new HistoryReader({
    db,
    proofs: {
      forRequest: () => {
        throw new Error('not used by pages');
      },
    },
    origin: 'countersign/test',
    noteKeys: () => [],
  });

beforeAll(async () => {
  dataDir = tempDir();
  h = await startHarness({ dataDir, config: { domain: 'test', risk: { enabled: false } } });
}, 60_000);

afterAll(async () => {
  await h?.app.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the request search index', () => {
  it('is written by no trigger inside the decision transaction', () => {
    const triggers = h.app.db
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'requests'")
      .all()
      .map((t) => t.name);
    expect(triggers).not.toContain('request_search_insert');
    expect(triggers.filter((t) => t.startsWith('request_search'))).toEqual([]);
  });

  it('indexes a request decided a moment ago, and History finds it by id, agent and payee', async () => {
    const agent = h.client('finance-bot', await h.enroll('finance-bot'));
    const answer = await agent.submit(transferCall('12.00', 'Acme Ltd'));
    expect(answer.decision).toBe('allow'); // History lists decided requests
    const { requestId } = answer;
    const rowid = (h.app.db.prepare('SELECT rowid FROM requests WHERE id = ?').get(requestId) as { rowid: number }).rowid;
    // The indexer runs shortly after the commit, on its own: no search is needed to fill the index.
    await until('the batch indexer', () => (indexed(h.app.db, requestId).includes(rowid) ? true : undefined));
    const history = historyOf(h.app.db);
    for (const text of [requestId.slice(3, 15), 'acme lt', 'finance-b'])
      expect((await history.page({ text })).rows.map((r) => r.requestId)).toContain(requestId);
  });

  it('finds a committed request the indexer has not reached yet (a search catches the index up first)', async () => {
    const db = openStore(join(tempDir(), 'c.db'));
    try {
      insertRequests(db, 'req_notyet', 3, 'Stark Industries');
      expect(indexed(db, 'stark ind')).toEqual([]); // no trigger indexed them
      expect((await historyOf(db).page({ text: 'stark ind' })).rows.map((r) => r.requestId).sort()).toEqual([
        'req_notyet0',
        'req_notyet1',
        'req_notyet2',
      ]);
      expect(indexed(db, 'stark ind')).toHaveLength(3);
    } finally {
      db.close();
    }
  });

  it('loses nothing to a crash between the commit and the indexing: the next start indexes what is missing', async () => {
    const agent = h.client('payments-bot', await h.enroll('payments-bot'));
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await agent.submit(transferCall(`2${i}.00`, 'Cyberdyne Systems'))).requestId);
    await h.app.close();
    // The state a crash right after the commits leaves: the requests are stored, the index lacks them.
    const db = openStore(join(dataDir, 'countersign.db'));
    const rowids = ids.map((id) => (db.prepare('SELECT rowid FROM requests WHERE id = ?').get(id) as { rowid: number }).rowid);
    db.prepare(`DELETE FROM request_search WHERE rowid IN (${rowids.join(',')})`).run();
    expect(indexed(db, 'cyberdyne')).toEqual([]);
    db.close();
    h = await startHarness({ dataDir, config: { domain: 'test', risk: { enabled: false } } });
    // Indexed by the start itself, before any search or new decision.
    expect(indexed(h.app.db, 'cyberdyne').sort((a, b) => a - b)).toEqual(rowids);
  }, 60_000);

  it('indexes in bounded batches, each row once, and a second catch-up finds nothing to do', () => {
    const db = openStore(join(tempDir(), 'c.db'));
    try {
      insertRequests(db, 'req_batch', 10, 'Initech');
      const index = new RequestSearchIndex(db, { batch: 3 });
      expect(index.catchUp()).toBe(10);
      expect(index.catchUp()).toBe(0);
      insertRequests(db, 'req_later', 2, 'Initech');
      expect(new RequestSearchIndex(db).catchUp()).toBe(2); // another instance starts from what the index holds
      expect(indexed(db, 'initech')).toHaveLength(12);
      // The connection is back at synchronous=FULL for every other writer.
      expect(db.pragma('synchronous', { simple: true })).toBe(2);
    } finally {
      db.close();
    }
  });
});

/** Decided request rows written straight to the table, as a decision's commit leaves them. */
function insertRequests(db: Db, prefix: string, n: number, payee: string): void {
  const insert = db.prepare(
    `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash, determining_policies, reasons, risk, created_at, decided_at, conflicted_approvers)
     VALUES (?, 'finance-bot', 'k1', 'payments.transfer', ?, 'sha', ?, 'allowed', 'ph', '[]', '[]', '{}', ?, ?, '[]')`,
  );
  for (let i = 0; i < n; i++)
    insert.run(
      `${prefix}${i}`,
      JSON.stringify({ tool: 'payments.transfer', params: { payee } }),
      `${prefix}-nonce-${i}`,
      1000 + i,
      1000 + i,
    );
}
