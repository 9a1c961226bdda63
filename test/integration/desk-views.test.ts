/**
 * The History, Policies and Custody-and-health rows of the bridge against a real core (gateway,
 * SQLite, Cedar, software signer, the test key domain's virtual approvers): a decided request
 * with its approvals, token id and an audit proof that the shared verifier accepts and a changed
 * one it refuses; filters, search and keyed paging, each page planned over an index; the dry run
 * that decides without storing or auditing anything; a broken policy's file:line after a reload;
 * custody and an on-demand verification; and the stable codes of bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_POLICY_DIR, startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { callBridgeMethod, inProcessBridge } from '../../main/core/ui/bridge-routes.js';
import { windowCaller } from '../../main/core/ui/bridge-caller.js';
import { registerPerson, signInBridge } from '../helpers/desk-session.js';
import { historyPageStatement } from '../../main/core/ui/history-reader.js';
import { verifyHistoryEntryProof, type HistoryEntry, type HistoryPage } from '../../shared/desk-records.js';

let h: Harness;
let policyDir: string;
let approvedId: string;
let deniedId: string;
const autoIds: string[] = [];
// The desk these rows are called from, with a person signed in (testPolicyCall and verifyAuditNow need one).
const desk = windowCaller();

const count = (table: string): number => (h.app.db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;

beforeAll(async () => {
  policyDir = tempDir('countersign-policies-');
  cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true });
  h = await startHarness({ config: { domain: 'test', risk: { enabled: false } }, policyDir });
  for (const id of ['alice', 'bob']) await h.app.virtualApprovers!.create({ id, displayName: id, groups: ['finance-approvers'] });
  const finance = h.client('finance-bot', await h.enroll('finance-bot'));
  const approved = await finance.submit(transferCall('48000.00', 'Northwind Traders'));
  approvedId = approved.requestId;
  await h.app.virtualApprovers!.decide({ requestId: approvedId, approverId: 'alice', verdict: 'approve' });
  await h.app.virtualApprovers!.decide({ requestId: approvedId, approverId: 'bob', verdict: 'approve' });
  const denied = await finance.submit(transferCall('5000.00', 'Globex Corp'));
  deniedId = denied.requestId;
  await h.app.virtualApprovers!.decide({ requestId: deniedId, approverId: 'alice', verdict: 'deny', reason: 'unknown vendor' });
  const other = h.client('payments-bot', await h.enroll('payments-bot'));
  for (let i = 0; i < 5; i++) autoIds.push((await other.submit(transferCall(`1${i}.00`, 'Acme Ltd'))).requestId);
  const viewerKey = await registerPerson(h.app, 'viewer', ['sre']);
  await signInBridge(h.app, inProcessBridge(h.app.ui, h.app.bridgeEvents, desk), 'viewer', viewerKey);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

const ui = <T>(name: Parameters<typeof callBridgeMethod>[1], ...args: unknown[]): Promise<T> =>
  callBridgeMethod(h.app.ui, name, args, desk) as Promise<T>;

describe('the history rows', () => {
  it('list a decided request with its approvals, and give it in full with the keys that signed and its token id', async () => {
    const page = await ui<HistoryPage>('searchHistory', {});
    const row = page.rows.find((r) => r.requestId === approvedId)!;
    expect(row).toMatchObject({
      state: 'approved',
      agentId: 'finance-bot',
      tool: 'payments.transfer',
      payee: 'Northwind Traders',
      approvals: 2,
    });
    const entry = await ui<HistoryEntry>('getHistoryEntry', approvedId);
    expect(entry.approvals.map((a) => [a.approverId, a.verdict])).toEqual([
      ['alice', 'approve'],
      ['bob', 'approve'],
    ]);
    const stored = h.app.db.prepare('SELECT credential_id FROM approvals WHERE request_id = ? ORDER BY at, approver_id').all(approvedId);
    expect(entry.approvals.map((a) => ({ credential_id: a.credentialId }))).toEqual(stored);
    const token = h.app.db.prepare('SELECT jti FROM tokens WHERE request_id = ?').get(approvedId) as { jti: string };
    expect(entry.tokenId).toBe(token.jti);
    const denied = await ui<HistoryEntry>('getHistoryEntry', deniedId);
    expect(denied.approvals[0]).toMatchObject({ approverId: 'alice', verdict: 'deny', reason: 'unknown vendor' });
    expect(denied.tokenId).toBeNull();
  });

  it('carry an audit proof the shared verifier accepts against the signed checkpoint, and refuses once a record is changed', async () => {
    const entry = await ui<HistoryEntry>('getHistoryEntry', approvedId);
    const good = await verifyHistoryEntryProof(entry);
    expect(good).toMatchObject({ ok: true });
    expect(good.ok && good.entries).toBeGreaterThanOrEqual(3);
    const first = entry.proof!.entries[0]!;
    const changed = {
      ...entry,
      proof: { ...entry.proof!, entries: [{ ...first, record: first.record.replace('finance-bot', 'finance-bon') }] },
    };
    expect(await verifyHistoryEntryProof(changed)).toMatchObject({ ok: false, code: 'audit_proof_invalid' });
    const otherKey = { ...entry, noteKeys: [{ kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) }] };
    expect(await verifyHistoryEntryProof(otherKey)).toMatchObject({ ok: false, code: 'audit_checkpoint_invalid' });
  });

  it('filter by state, tool, agent and time, and search request id, agent and payee as substrings', async () => {
    const ids = async (q: object) => (await ui<HistoryPage>('searchHistory', q)).rows.map((r) => r.requestId).sort();
    expect(await ids({ states: ['denied'] })).toEqual([deniedId]);
    expect(await ids({ agentId: 'payments-bot' })).toEqual([...autoIds].sort());
    expect(await ids({ tool: 'deploy.production' })).toEqual([]);
    expect(await ids({ text: 'northwind' })).toEqual([approvedId]);
    expect(await ids({ text: 'GLOBEX' })).toEqual([deniedId]);
    expect(await ids({ text: approvedId.slice(2, 14) })).toEqual([approvedId]);
    expect(await ids({ text: 'payments-b', states: ['allowed'] })).toEqual([...autoIds].sort());
    expect(await ids({ text: '" OR "' })).toEqual([]);
    const decidedAt = (h.app.db.prepare('SELECT decided_at FROM requests WHERE id = ?').get(deniedId) as { decided_at: number }).decided_at;
    expect(await ids({ since: decidedAt, until: decidedAt, agentId: 'finance-bot' })).toEqual([deniedId]);
  });

  it('page by a cursor: pages are disjoint, newest decision first, and the last page has no cursor', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page: HistoryPage = await ui('searchHistory', cursor === undefined ? { limit: 2 } : { limit: 2, cursor });
      expect(page.rows.length).toBeLessThanOrEqual(2);
      seen.push(...page.rows.map((r) => r.requestId));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor !== undefined && pages < 20);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.sort()).toEqual([approvedId, deniedId, ...autoIds].sort());
  });

  it('plan every page over an index of decided requests or the search index, never a scan of the requests table', () => {
    const queries = [
      {},
      { states: ['approved' as const] },
      { tool: 'payments.transfer' },
      { agentId: 'finance-bot' },
      { since: 1, until: 2 },
      { text: 'acme' },
      { cursor: '1700000000000:r-1' },
    ];
    for (const query of queries) {
      const { sql, values } = historyPageStatement(query);
      const plan = (h.app.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...values) as Array<{ detail: string }>).map((p) => p.detail);
      const scans = plan.filter((d) => /^SCAN r\b/.test(d) && !/USING (COVERING )?INDEX/.test(d));
      expect(scans, `${JSON.stringify(query)}: ${plan.join(' | ')}`).toEqual([]);
      expect(plan.join(' | '), JSON.stringify(query)).toMatch(/requests_decided|request_search/);
    }
  });

  it('refuse bad input with stable codes', async () => {
    await expect(ui('getHistoryEntry', 'no-such-request')).rejects.toMatchObject({ code: 'history_request_unknown' });
    await expect(ui('searchHistory', { cursor: '99999999999999999:x' })).rejects.toMatchObject({ code: 'schema_invalid' });
    await expect(ui('searchHistory', { cursor: '9999999999999999:x' })).rejects.toMatchObject({ code: 'history_cursor_invalid' });
    await expect(ui('searchHistory', { since: 5, until: 4 })).rejects.toMatchObject({ code: 'schema_invalid' });
    await expect(ui('searchHistory', { states: ['pending'] })).rejects.toMatchObject({ code: 'schema_invalid' });
    await expect(ui('searchHistory', { limit: 101 })).rejects.toMatchObject({ code: 'schema_invalid' });
    await expect(ui('searchHistory', { sort: 'id' })).rejects.toMatchObject({ code: 'schema_invalid' });
  });
});

describe('the policies rows', () => {
  it('show the active set with its hash, files and policies with file:line', async () => {
    const overview = await ui<{
      hash: string;
      files: Array<{ file: string; text: string }>;
      policies: Array<{ id: string; file: string; line: number }>;
    }>('getPolicyOverview');
    expect(overview.hash).toBe(h.app.policy.hash);
    expect(overview.files.map((f) => f.file)).toContain('finance-transfers.cedar');
    expect(overview.policies.find((p) => p.id === 'finance-transfers:one-approver')).toMatchObject({ file: 'finance-transfers.cedar' });
  });

  it('test a call as a dry run: the decision and the approvals it needs, with nothing stored, audited or signed', async () => {
    const before = { requests: count('requests'), audit: count('audit_log'), tokens: count('tokens') };
    const result = await ui<{
      outcome: string;
      obligation: { approvals: number; groups: string[][] } | null;
      determiningPolicies: string[];
    }>('testPolicyCall', 'finance-bot', transferCall('48000.00', 'Northwind Traders'));
    expect(result.outcome).toBe('approval_required');
    expect(result.obligation).toMatchObject({ approvals: 2, groups: [['finance-approvers']] });
    expect(result.determiningPolicies.length).toBeGreaterThan(0);
    const small = await ui<{ outcome: string }>('testPolicyCall', 'payments-bot', transferCall('10.00', 'Acme Ltd'));
    expect(small.outcome).toBe('allow');
    expect({ requests: count('requests'), audit: count('audit_log'), tokens: count('tokens') }).toEqual(before);
  });

  it('refuse an unknown agent, an unknown tool and a malformed call with stable codes', async () => {
    await expect(ui('testPolicyCall', 'nobody', transferCall('1.00'))).rejects.toMatchObject({ code: 'agent_unknown' });
    await expect(ui('testPolicyCall', 'finance-bot', { ...transferCall('1.00'), tool: 'no.such_tool' })).rejects.toMatchObject({
      code: 'unknown_tool',
    });
    await expect(ui('testPolicyCall', 'finance-bot', { tool: 'payments.transfer' })).rejects.toMatchObject({ code: 'schema_invalid' });
  });

  it("report a broken policy's file:line after a reload, keeping the set in force", async () => {
    const hash = h.app.policy.hash;
    writeFileSync(
      join(policyDir, 'broken.cedar'),
      '// a broken policy: the syntax error is on line 4\n\n@id("oops")\npermit (principal, action, resource) when { context.nope ==  };\n',
    );
    let overview: {
      hash: string;
      lastReload: { ok: boolean; errors: Array<{ file: string | null; line: number | null; message: string }> } | null;
    };
    const until = Date.now() + 30_000;
    do {
      await new Promise((r) => setTimeout(r, 100));
      overview = await ui('getPolicyOverview');
    } while ((overview.lastReload === null || overview.lastReload.ok) && Date.now() < until);
    expect(overview.hash).toBe(hash);
    expect(overview.lastReload?.ok).toBe(false);
    expect(overview.lastReload?.errors[0]).toMatchObject({ file: 'broken.cedar', line: 4 });
  });
});

describe('the custody and health rows', () => {
  it('show software custody with the active key, the checkpoint, and verify the log on demand', async () => {
    const health = await ui<{
      custody: string;
      kid: string;
      keys: Array<{ kid: string; status: string }>;
      rotation: string;
      audit: { entries: number; checkpoint: { treeSize: number } | null };
      alarm: unknown;
    }>('getCustodyHealth');
    expect(health.custody).toBe('software');
    expect(health.keys.find((k) => k.kid === health.kid)?.status).toBe('active');
    expect(health.rotation).toBe('steady');
    expect(health.audit.checkpoint?.treeSize).toBeGreaterThan(0);
    expect(health.alarm).toBeNull();
    const run = await ui<{ ok: boolean; entries: number; alarmId: number | null }>('verifyAuditNow');
    expect(run).toMatchObject({ ok: true, alarmId: null });
    expect(run.entries).toBeGreaterThan(0);
  });
});
