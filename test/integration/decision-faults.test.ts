/**
 * Faults on the decision path fail closed and lose nothing: no token is released, no half-
 * written row is left, the envelope's nonce is not burned (the agent may retry the same
 * envelope once the fault clears), and the pending queue cap holds exactly.
 *
 * Fault injection: the audit write failure is a TEMP trigger that aborts inserts into the real
 * audit table (SQLite cannot be made to fail one table's writes otherwise); the store failure
 * is a real write lock held by a second connection past the busy timeout.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { RawClient, errorCode, signedEnvelope } from '../helpers/raw-client.js';
import type { AgentKey } from '../../shared/agent-keys.js';

let h: Harness;
let key: AgentKey;

function rows(): { requests: number; tokens: number; nonces: number } {
  const n = (t: string) => (h.app.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
  return { requests: n('requests'), tokens: n('tokens'), nonces: n('seen_nonces') };
}

async function authed(): Promise<RawClient> {
  const c = await RawClient.connect(h.app.url);
  expect((await c.authenticate('finance-bot', key)).result).toMatchObject({ agentId: 'finance-bot' });
  return c;
}

beforeEach(async () => {
  h = await startHarness({ config: { gateway: { maxPendingPerAgent: 2 } } });
  key = await h.enroll('finance-bot');
});
afterEach(async () => h.close());

describe('decision faults', () => {
  it('refuses the call when its audit record cannot be written, and the retry succeeds later', async () => {
    const c = await authed();
    const envelope = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
    const before = rows();
    h.app.db.exec(
      "CREATE TEMP TRIGGER fail_audit BEFORE INSERT ON main.audit_log BEGIN SELECT RAISE(ABORT, 'simulated audit device failure'); END",
    );
    const refused = await c.call('call.submit', { envelope });
    expect(errorCode(refused)).toBe('audit_write_failed');
    expect(refused.result).toBeUndefined();
    expect(rows()).toEqual(before);

    h.app.db.exec('DROP TRIGGER fail_audit');
    const retried = await c.call('call.submit', { envelope });
    expect(retried.result).toMatchObject({ decision: 'allow' });
    expect(rows()).toEqual({ requests: before.requests + 1, tokens: before.tokens + 1, nonces: before.nonces + 1 });
    expect(h.app.audit.verify()).toMatchObject({ ok: true });
    c.close();
  });

  it('answers store_failed while another writer holds the database, releasing no token', async () => {
    const c = await authed();
    const envelope = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
    const before = rows();
    h.app.db.pragma('busy_timeout = 100');
    const other = new Database(join(h.dataDir, 'countersign.db'));
    other.exec('BEGIN IMMEDIATE');
    try {
      const refused = await c.call('call.submit', { envelope });
      expect(errorCode(refused)).toBe('store_failed');
      expect(refused.result).toBeUndefined();
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(rows()).toEqual(before);
    const retried = await c.call('call.submit', { envelope });
    expect(retried.result).toMatchObject({ decision: 'allow' });
    c.close();
  });

  it('caps pending calls per agent exactly, even when they arrive together', async () => {
    const c = await authed();
    // Observed, not replaced: a refusal before anything was learned keeps the agent's baseline
    // (dropping it made every later call rebuild the agent's whole history).
    const forget = vi.spyOn(h.app.riskEngine!, 'forget');
    const envelopes = await Promise.all(
      [1, 2, 3, 4].map((i) => signedEnvelope(key, 'finance-bot', transferCall(`4800${i}.00`, 'Northwind Traders'))),
    );
    const answers = await Promise.all(envelopes.map((envelope) => c.call('call.submit', { envelope })));
    const decisions = answers.map((a) => (a.result as { decision?: string } | undefined)?.decision ?? errorCode(a));
    expect(decisions.filter((d) => d === 'pending')).toHaveLength(2);
    expect(decisions.filter((d) => d === 'pending_queue_full')).toHaveLength(2);
    expect(forget).not.toHaveBeenCalled();
    expect((h.app.db.prepare("SELECT COUNT(*) AS n FROM requests WHERE state = 'pending'").get() as { n: number }).n).toBe(2);
    // A call policy allows still goes through while the queue is full.
    const allowed = await c.call('call.submit', { envelope: await signedEnvelope(key, 'finance-bot', transferCall('250.00')) });
    expect(allowed.result).toMatchObject({ decision: 'allow' });
    c.close();
  });
});
