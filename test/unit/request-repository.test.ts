/**
 * The request repository is the one codec for `requests` rows: what it writes reads back as the
 * same typed record, and a malformed JSON column is refused with internal_error naming the
 * request and the column (real SQLite file; the corruption is written with plain SQL, as a
 * damaged or hand-edited database would hold it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../main/core/store/database.js';
import { RequestRepository, rememberedDecodedChars, type NewRequest } from '../../main/core/store/request-repository.js';
import { canonicalize } from '../../shared/canonical-json.js';

let dir: string;
let db: Db;
let repo: RequestRepository;

const call = { tool: 'payments.transfer', params: { amount: '10.00' }, dataClass: 'internal', jurisdiction: 'EU', provenance: [] };
const pending: NewRequest = {
  id: 'req_1',
  agentId: 'bot',
  kid: 'k1',
  tool: 'payments.transfer',
  callJson: canonicalize(call),
  callSha256: 'a'.repeat(64),
  nonce: 'n1',
  state: 'pending',
  policyHash: 'p'.repeat(64),
  determiningPolicies: ['two-approvers'],
  reasons: ['needs two'],
  obligation: { approvals: 2, groups: [['finance']], ttlSeconds: 600, userVerification: 'required' },
  risk: { score: 10, factors: [] },
  createdAt: 1000,
  expiresAt: 601_000,
  decidedAt: null,
  conflicted: ['carol'],
  groupId: null,
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-requests-'));
  db = openStore(join(dir, 'c.db'));
  repo = new RequestRepository(db);
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('request repository', () => {
  it('reads back what it stored as one typed record', () => {
    repo.insert(pending);
    const record = repo.get('req_1')!;
    expect(record).toMatchObject({
      id: 'req_1',
      agentId: 'bot',
      state: 'pending',
      call,
      determiningPolicies: ['two-approvers'],
      reasons: ['needs two'],
      obligation: pending.obligation,
      conflictedApprovers: ['carol'],
      expiresAt: 601_000,
      groupId: null,
    });
    expect(repo.get('req_none')).toBeUndefined();
    expect(repo.finish('req_1', 'denied', 2000, ['no'])).toBe(true);
    expect(repo.finish('req_1', 'approved', 3000, ['yes'])).toBe(false);
    expect(repo.get('req_1')).toMatchObject({ state: 'denied', decidedAt: 2000, reasons: ['no'] });
  });

  it.each([
    ['obligation', '{"approvals":"two","groups":[],"ttlSeconds":1}', 'approval requirement'],
    ['conflicted_approvers', '"carol"', 'conflicted approver list'],
    ['reasons', '[1,2]', 'reason list'],
    ['determining_policies', 'not json', 'determining policy list'],
    ['call_json', '{"tool":"x"}', 'stored call'],
  ])('refuses a request whose %s column is malformed with internal_error naming it', (columnName, value, named) => {
    repo.insert(pending);
    db.prepare(`UPDATE requests SET ${columnName} = ? WHERE id = 'req_1'`).run(value);
    let caught: unknown;
    try {
      repo.get('req_1');
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'internal_error', message: `request "req_1" has a malformed ${named}` });
  });

  it('remembers a decoded column by its text, frozen, so no reader changes what the next one reads, and never remembers a refused text', () => {
    repo.insert(pending);
    repo.insert({ ...pending, id: 'req_2', nonce: 'n2' });
    const first = repo.get('req_1')!;
    const second = repo.get('req_2')!;
    // The same texts decode to one remembered value (the page's rows share a policy's reasons).
    expect(second.reasons).toBe(first.reasons);
    expect(second.call).toBe(first.call);
    expect(Object.isFrozen(first.call.params)).toBe(true);
    expect(() => {
      first.reasons.push('added by a reader');
    }).toThrow(TypeError);
    expect(() => {
      (first.call.params as Record<string, unknown>).amount = '99999.00';
    }).toThrow(TypeError);
    expect(repo.get('req_2')).toMatchObject({ reasons: ['needs two'], call });
    // A malformed text is refused at every read, not only the first.
    db.prepare(`UPDATE requests SET reasons = '[1]' WHERE id = 'req_2'`).run();
    for (let i = 0; i < 2; i++) expect(() => repo.get('req_2')).toThrow('request "req_2" has a malformed reason list');
  });

  it('remembers decoded texts within a size budget: a large call is decoded but never kept, and many calls keep at most the budget', () => {
    // 300 distinct 60,000-character calls (review4 finding 1: a count bound alone kept 1,024 of them, about 60 MiB).
    const big = (i: number) => ({ ...call, params: { amount: '10.00', memo: `${i} ${'x'.repeat(60_000)}` } });
    for (let i = 0; i < 300; i++) repo.insert({ ...pending, id: `big_${i}`, nonce: `b${i}`, callJson: canonicalize(big(i)) });
    const before = rememberedDecodedChars().call;
    for (let i = 0; i < 300; i++) expect(repo.get(`big_${i}`)?.call).toEqual(big(i));
    expect(rememberedDecodedChars().call).toBe(before);
    expect(Object.isFrozen(repo.get('big_0')!.call.params)).toBe(true);
    // Many small distinct calls: the oldest are forgotten once the budget is passed.
    const small = (i: number) => ({ ...call, params: { amount: '10.00', memo: `${i} ${'y'.repeat(3_000)}` } });
    for (let i = 0; i < 600; i++) repo.insert({ ...pending, id: `small_${i}`, nonce: `s${i}`, callJson: canonicalize(small(i)) });
    for (let i = 0; i < 600; i++) expect(repo.get(`small_${i}`)?.call).toEqual(small(i));
    const kept = rememberedDecodedChars().call;
    expect(kept).toBeGreaterThan(900_000);
    expect(kept).toBeLessThanOrEqual(1_048_576);
  });
});
