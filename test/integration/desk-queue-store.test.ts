/**
 * The desk queue's storage (migration 16): the number of waiting prompts is kept by triggers in
 * the request's own transaction and must always equal a recount, whatever mix of new requests,
 * merged followers, decisions and expiries happened; a database upgraded from version 15 starts
 * from the prompts it already holds; and a page of the queue reads its rows in index order and
 * stops (EXPLAIN QUERY PLAN: no sort of every pending row). Real SQLite files.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, type Db } from '../../main/core/store/database.js';
import { MIGRATIONS } from '../../main/core/store/migrations.js';
import { QUEUE_STATEMENTS, RequestRepository, type NewRequest } from '../../main/core/store/request-repository.js';
import { prng } from '../helpers/prng.js';
import { tempDir } from '../helpers/harness.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function freshFile(): string {
  const dir = tempDir('countersign-queue-store-');
  dirs.push(dir);
  return join(dir, 'countersign.db');
}

const T0 = 1_800_000_000_000;

function request(id: string, over: Partial<NewRequest> = {}): NewRequest {
  const call = {
    tool: 'payments.transfer',
    params: { amount: id, currency: 'USD', payee: 'Acme Ltd' },
    dataClass: 'financial',
    jurisdiction: 'US',
    provenance: ['user'],
  };
  return {
    id,
    agentId: 'finance-bot',
    kid: 'k1',
    tool: call.tool,
    callJson: JSON.stringify(call),
    callSha256: `sha-${id}`,
    nonce: `nonce-${id}`,
    state: 'pending',
    policyHash: 'p',
    determiningPolicies: ['permit-transfer'],
    reasons: [],
    obligation: { approvals: 2, groups: [['finance-approvers']], ttlSeconds: 900, userVerification: 'required' },
    risk: { score: 10, factors: [] },
    createdAt: T0,
    expiresAt: T0 + 900_000,
    decidedAt: null,
    conflicted: [],
    groupId: null,
    ...over,
  };
}

/** What the kept count must always equal: pending requests that are not followers. */
function recount(db: Db): number {
  return (db.prepare("SELECT COUNT(*) AS n FROM requests WHERE state = 'pending' AND group_id IS NULL").get() as { n: number }).n;
}

function kept(db: Db): number {
  return (db.prepare(QUEUE_STATEMENTS.keptCount).get() as { n: number }).n;
}

describe('the desk queue count and pages (migration 16)', () => {
  it('keeps the count of waiting prompts equal to a recount through inserts, followers, decisions, expiry, rollback and deletion', () => {
    const db = openStore(freshFile());
    try {
      const repo = new RequestRepository(db);
      const random = prng(13);
      const primaries: string[] = [];
      const live = new Set<string>();
      for (let i = 0; i < 400; i++) {
        const roll = random();
        if (roll < 0.45 || live.size === 0) {
          const id = `r-${i}`;
          repo.insert(request(id, { expiresAt: T0 + Math.floor(random() * 1_000_000) }));
          primaries.push(id);
          live.add(id);
        } else if (roll < 0.6) {
          // A merged identical call: pending, but a follower (never its own prompt).
          repo.insert(request(`f-${i}`, { groupId: primaries[Math.floor(random() * primaries.length)]! }));
        } else if (roll < 0.7) {
          repo.insert(request(`a-${i}`, { state: 'allowed', obligation: null, expiresAt: null, decidedAt: T0 }));
        } else {
          const id = [...live][Math.floor(random() * live.size)]!;
          const state = (['approved', 'denied', 'expired'] as const)[Math.floor(random() * 3)]!;
          expect(repo.finish(id, state, T0 + i, ['done'])).toBe(true);
          expect(repo.finish(id, 'approved', T0 + i, ['again'])).toBe(false);
          live.delete(id);
        }
        expect(kept(db), `after step ${i}`).toBe(recount(db));
      }
      expect(kept(db)).toBe(live.size);
      // The count shown leaves out the prompts already past expiry that no sweep has ended yet.
      const now = T0 + 500_000;
      const unexpired = (
        db.prepare("SELECT COUNT(*) AS n FROM requests WHERE state = 'pending' AND group_id IS NULL AND expires_at > ?").get(now) as {
          n: number;
        }
      ).n;
      expect(unexpired).toBeGreaterThan(0);
      expect(unexpired).toBeLessThan(live.size);
      expect(repo.countPending(now)).toBe(unexpired);
      // A failed transaction leaves the count as it was (the trigger's write rolls back with the row).
      const before = kept(db);
      expect(() =>
        db.transaction(() => {
          repo.insert(request('rolled-back'));
          throw new Error('abort');
        })(),
      ).toThrow('abort');
      expect(kept(db)).toBe(before);
      // Countersign never deletes a request, but a row removed by hand leaves the count right too.
      const removed = [...live][0]!;
      db.prepare('DELETE FROM requests WHERE id = ?').run(removed);
      expect(kept(db)).toBe(before - 1);
      expect(kept(db)).toBe(recount(db));
    } finally {
      db.close();
    }
  });

  it('starts from the prompts a version-15 database already holds', () => {
    const file = freshFile();
    const old = new Database(file);
    for (const step of MIGRATIONS.slice(0, 15)) old.exec(step);
    old.pragma('user_version = 15');
    const oldRepo = new RequestRepository15(old);
    oldRepo.insert('p-1', 'pending', null);
    oldRepo.insert('p-2', 'pending', null);
    oldRepo.insert('f-1', 'pending', 'p-1');
    oldRepo.insert('d-1', 'denied', null);
    old.close();

    const db = openStore(file);
    try {
      expect(kept(db)).toBe(2);
      const repo = new RequestRepository(db);
      expect(repo.countPending(T0)).toBe(2);
      expect(repo.listPendingByExpiry(T0, 50, 0).map((r) => r.id)).toEqual(['p-1', 'p-2']);
    } finally {
      db.close();
    }
  });

  it('reads a page of the queue in index order and stops: no sort, no scan of the table', () => {
    const db = openStore(freshFile());
    try {
      for (const [name, sql] of [
        ['byExpiry', QUEUE_STATEMENTS.byExpiry],
        ['byAge', QUEUE_STATEMENTS.byAge],
      ] as const) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(T0, 50, 0) as Array<{ detail: string }>).map((p) => p.detail);
        expect(plan.join(' | '), name).not.toMatch(/TEMP B-TREE/);
        expect(plan[0], name).toMatch(name === 'byExpiry' ? /USING INDEX requests_queue_by_expiry/ : /USING INDEX requests_queue_by_age/);
      }
      const stale = (db.prepare(`EXPLAIN QUERY PLAN ${QUEUE_STATEMENTS.staleCount}`).all(T0) as Array<{ detail: string }>).map(
        (p) => p.detail,
      );
      expect(stale.join(' | ')).toMatch(/SEARCH requests USING (COVERING )?INDEX requests_queue_by_expiry \(expires_at<\?\)/);

      // And the order is the queue's: soonest to expire first, ties by id; followers and decided rows never listed.
      const repo = new RequestRepository(db);
      repo.insert(request('c', { expiresAt: T0 + 3_000 }));
      repo.insert(request('b', { expiresAt: T0 + 2_000 }));
      repo.insert(request('a', { expiresAt: T0 + 2_000 }));
      repo.insert(request('gone', { expiresAt: T0 + 1_000 }));
      repo.insert(request('follower', { expiresAt: T0 + 1_000, groupId: 'c' }));
      repo.finish('gone', 'denied', T0, ['no']);
      expect(repo.listPendingByExpiry(T0, 50, 0).map((r) => r.id)).toEqual(['a', 'b', 'c']);
      expect(repo.listPendingByExpiry(T0, 1, 1).map((r) => r.id)).toEqual(['b']);
      expect(repo.listPendingByExpiry(T0 + 2_000, 50, 0).map((r) => r.id)).toEqual(['c']);
      expect(repo.countPending(T0 + 2_000)).toBe(1);
    } finally {
      db.close();
    }
  });
});

/** Rows as a version-15 database held them (before the count was kept). */
class RequestRepository15 {
  constructor(private readonly db: Database.Database) {}
  insert(id: string, state: string, groupId: string | null): void {
    const r = request(id);
    this.db
      .prepare(
        `INSERT INTO requests (id, agent_id, kid, tool, call_json, call_sha256, envelope_nonce, state, policy_hash, determining_policies, reasons, obligation, risk, created_at, expires_at, decided_at, conflicted_approvers, group_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', '[]', ?, ?, ?, ?, ?, '[]', ?)`,
      )
      .run(
        id,
        r.agentId,
        r.kid,
        r.tool,
        r.callJson,
        r.callSha256,
        r.nonce,
        state,
        r.policyHash,
        JSON.stringify(r.obligation),
        JSON.stringify(r.risk),
        r.createdAt,
        r.expiresAt! + (id === 'p-2' ? 1 : 0),
        state === 'pending' ? null : T0,
        groupId,
      );
  }
}
