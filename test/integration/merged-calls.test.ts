/**
 * Identical held calls merged into one approval prompt, end to end on a real core (SQLite, Cedar,
 * software signer, WebSocket gateway, real agent clients): the agent makes the same 48,000.00 USD
 * transfer five times; approvers see one pending request with a count of 5 and tap once each; every
 * caller is answered over its own connection with its own token, bound to its own request id, that
 * the shared token verifier and the shared approvals verifier accept.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_POLICY_DIR, startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import {
  ApprovalService,
  type ApprovalOutcome,
  type ApprovalPolicyHook,
  type ApprovalVerdict,
} from '../../main/core/approvals/approval-service.js';
import { tokenMinter, type ApprovedMinter } from '../../main/core/tokens/token-minter.js';
import { MAX_GROUP_FOLLOWERS, approvalAssertionSchema } from '../../shared/approvals.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { satisfiesQuorum, verifyApprovals } from '../../shared/verify-approvals.js';
import type { AgentClient } from '../../shared/agent-client.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { CountersignError } from '../../shared/errors.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { inProcessBridge } from '../../main/core/ui/bridge-routes.js';

const RP_ID = 'localhost';
const NORTHWIND = transferCall('48000.00', 'Northwind Traders');

interface World {
  h: Harness;
  /** Five callers: one agent, five connections (as five retries or five workers would be). */
  callers: AgentClient[];
  other: AgentClient;
  authenticators: VirtualAuthenticator[];
}

async function world(): Promise<World> {
  const h = await startHarness({ config: { domain: 'test' } });
  const key = await h.enroll('finance-bot');
  const callers = Array.from({ length: 5 }, () => h.client('finance-bot', key));
  const otherKey = await h.enroll('treasury-bot');
  const other = h.client('treasury-bot', otherKey);
  const w: World = { h, callers, other, authenticators: [] };
  for (const [id, groups] of [
    ['alice', ['finance-approvers']],
    ['bob', ['finance-approvers']],
    ['carol', ['finance-approvers']],
  ] as const) {
    h.app.approvers.addApprover({ id, displayName: `${id[0]!.toUpperCase()}${id.slice(1)} Example`, groups: [...groups], virtual: true });
    const options = await h.app.approvers.beginRegistration(id, h.app.approvers.issueRegistrationCode(id, 'test-admin').code);
    const authenticator = new VirtualAuthenticator();
    w.authenticators.push(authenticator);
    await h.app.approvers.finishRegistration(
      id,
      authenticator.createCredential({
        rpId: RP_ID,
        origin: h.app.approvers.origins[0]!,
        challenge: options.challenge,
        user: options.user,
        userVerification: 'required',
        excludeCredentials: [],
      }),
    );
  }
  return w;
}

async function decide(
  w: World,
  requestId: string,
  approverId: string,
  verdict: ApprovalVerdict = 'approve',
  reason?: string,
  service = w.h.app.approvals,
): Promise<ApprovalOutcome> {
  const started = await service.startCeremony({ requestId, approverId, verdict });
  const allow = (started.options.allowCredentials ?? []).map((c) => c.id);
  const authenticator = w.authenticators.find((a) => a.hasCredential(allow[0]!))!;
  const response = authenticator.getAssertion({
    rpId: RP_ID,
    origin: w.h.app.approvers.origins[0]!,
    challenge: started.options.challenge,
    allowCredentials: allow,
    userVerification: 'required',
  });
  return service.submitCeremony({ requestId, approverId, response, verdict, ...(reason === undefined ? {} : { reason }) });
}

/** An approval service over the same core with one part replaced (to inject a fault the real part cannot produce). */
function serviceWith(
  w: World,
  decided: DecisionResult[],
  extra: { minter?: ApprovedMinter; policy?: ApprovalPolicyHook },
): ApprovalService {
  const { app } = w.h;
  return new ApprovalService({
    db: app.db,
    audit: app.audit,
    directory: app.approvers,
    minter: extra.minter ?? tokenMinter(app.issuer),
    audienceOf: (tool) => app.policy.tool(tool)?.audience,
    ceremonyTimeoutMs: 60_000,
    onDecided: (_agent, result) => decided.push(result),
    ...(extra.policy === undefined ? {} : { policy: extra.policy }),
  });
}

/** Each caller submits the same call once; all are held. */
async function holdFive(w: World, call = NORTHWIND): Promise<DecisionResult[]> {
  const held = await Promise.all(w.callers.map((c) => c.submit(call)));
  for (const r of held) expect(r.state).toBe('pending');
  return held;
}

const rows = (w: World, sql: string, ...args: unknown[]) => w.h.app.db.prepare(sql).all(...args) as Array<Record<string, unknown>>;
const auditOf = (w: World, kind: string) =>
  rows(w, 'SELECT record FROM audit_log WHERE kind = ? ORDER BY seq', kind).map(
    (r) => JSON.parse(r.record as string) as Record<string, unknown>,
  );

async function verifyAsToolServer(w: World, token: string) {
  const keys = { keys: w.h.app.signingKeys.published('test', Date.now()) };
  const claims = await verifyApprovalToken(token, {
    call: { tool: NORTHWIND.tool, params: NORTHWIND.params },
    audience: 'payments-service',
    keys,
    jtiStore: new MemoryJtiStore(),
    domain: 'test',
  });
  const set = await verifyApprovals(claims.approvals, {
    directory: w.h.app.approvers.published(),
    requestId: claims.decision.id,
    callSha256: claims.call_sha256,
    policyHash: claims.decision.policy_hash,
    allowVirtual: true,
  });
  return { claims, set };
}

describe('identical held calls', () => {
  let w: World;
  beforeEach(async () => {
    w = await world();
  });
  afterEach(async () => w.h.close());

  it('become one pending request with a count of 5, each caller keeping its own request id', async () => {
    const held = await holdFive(w);
    const ids = held.map((r) => r.requestId);
    expect(new Set(ids).size).toBe(5);
    // Every follower shares the group's deadline.
    expect(new Set(held.map((r) => r.approval!.expiresAt)).size).toBe(1);

    const pending = await w.h.app.approvals.listPending();
    expect(pending).toHaveLength(1);
    const [group] = pending;
    expect(ids).toContain(group!.requestId);
    expect(group!.count).toBe(5);
    expect(group!.followers).toEqual(ids.filter((id) => id !== group!.requestId).sort());
    expect(await w.h.app.approvals.countPending()).toBe(1);
    // A follower's id opens the same prompt.
    expect(await w.h.app.approvals.getPending(group!.followers[0]!)).toMatchObject({ requestId: group!.requestId, count: 5 });
    // Both bridges (the local HTTP API the browser uses, the in-process one Electron uses) carry the count through their strict schemas.
    const http = createHttpBridge({ baseUrl: `http://127.0.0.1:${w.h.app.port}`, sessionSecret: w.h.app.uiSessionSecret });
    const ui = inProcessBridge(w.h.app.ui, w.h.app.bridgeEvents);
    for (const bridge of [http, ui]) {
      expect((await bridge.listPendingApprovals()).pending.map((p) => [p.requestId, p.count, p.followers])).toEqual([
        [group!.requestId, 5, group!.followers],
      ]);
    }
    // The audit log records each follower's own held decision and the group it joined.
    const held5 = auditOf(w, 'decision.pending');
    expect(held5.map((e) => e.requestId).sort()).toEqual([...ids].sort());
    expect(held5.filter((e) => e.mergedInto !== undefined).map((e) => (e.mergedInto as { requestId: string }).requestId)).toEqual(
      Array(4).fill(group!.requestId),
    );
  });

  it('approved by the quorum: five tokens, each bound to its own request id, each verifying with the shared verifiers, every caller answered', async () => {
    const held = await holdFive(w);
    const primary = (await w.h.app.approvals.listPending())[0]!.requestId;
    const answers = held.map((r, i) => w.callers[i]!.waitForDecision(r.requestId, { timeoutMs: 10_000 }));

    // The approver signs for the primary and names every follower.
    const first = await decide(w, primary, 'alice');
    expect(first.state).toBe('pending');
    const second = await decide(w, primary, 'bob');
    expect(second.state).toBe('approved');

    const decided = await Promise.all(answers);
    const jtis = new Set<string>();
    for (const [i, result] of decided.entries()) {
      expect(result).toMatchObject({ requestId: held[i]!.requestId, state: 'approved', decision: 'allow' });
      const { claims, set } = await verifyAsToolServer(w, result.token!);
      expect(claims.decision).toMatchObject({ id: held[i]!.requestId, mode: 'approved' });
      expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })).toBe(true);
      expect(set.approvers.map((a) => a.approverId)).toEqual(['alice', 'bob']);
      for (const raw of claims.approvals!) {
        const { record } = approvalAssertionSchema.parse(raw);
        expect(record.requestId).toBe(primary);
        expect([record.requestId, ...(record.followers ?? [])].sort()).toEqual(held.map((r) => r.requestId).sort());
      }
      jtis.add(claims.jti);
    }
    expect(jtis.size).toBe(5);

    const tokenRows = rows(w, 'SELECT request_id, jti FROM tokens ORDER BY request_id');
    expect(tokenRows.map((r) => r.request_id)).toEqual(held.map((r) => r.requestId).sort());
    expect(new Set(tokenRows.map((r) => r.jti)).size).toBe(5);
    for (const r of held) await expect(w.callers[0]!.getRequest(r.requestId)).resolves.toMatchObject({ state: 'approved' });

    const approvedAudit = auditOf(w, 'decision.approved');
    expect(approvedAudit.map((e) => e.requestId).sort()).toEqual(held.map((r) => r.requestId).sort());
    expect(approvedAudit.filter((e) => e.groupOf === primary)).toHaveLength(4);
    expect(await w.h.app.approvals.listPending()).toHaveLength(0);
    expect(await w.h.app.approvals.history(10)).toMatchObject([{ requestId: primary, state: 'approved', count: 5 }]);
    expect(w.h.app.audit.verify().ok).toBe(true);
  });

  it('denied: every caller is denied with the reason, and no token exists', async () => {
    const held = await holdFive(w);
    const answers = held.map((r, i) => w.callers[i]!.waitForDecision(r.requestId, { timeoutMs: 10_000 }));
    const follower = (await w.h.app.approvals.listPending())[0]!.followers[2]!;
    // Deciding through a follower's id decides the whole group.
    const outcome = await decide(w, follower, 'carol', 'deny', 'duplicate payment');
    expect(outcome.state).toBe('denied');
    for (const result of await Promise.all(answers)) {
      expect(result).toMatchObject({ state: 'denied', decision: 'deny', reasons: ['denied by Carol Example: duplicate payment'] });
      expect(result.token).toBeUndefined();
    }
    expect(rows(w, 'SELECT * FROM tokens')).toHaveLength(0);
    expect(
      auditOf(w, 'decision.deny')
        .map((e) => e.requestId)
        .sort(),
    ).toEqual(held.map((r) => r.requestId).sort());
  });

  it('let exactly one of two racing final approvals decide the group: five tokens, not ten', async () => {
    const held = await holdFive(w);
    const primary = (await w.h.app.approvals.listPending())[0]!.requestId;
    await decide(w, primary, 'alice');
    const raced = await Promise.allSettled([decide(w, primary, 'bob'), decide(w, held[3]!.requestId, 'carol')]);
    const approved = raced.filter((r) => r.status === 'fulfilled' && r.value.state === 'approved');
    expect(approved).toHaveLength(1);
    for (const r of raced) {
      if (r.status === 'rejected') expect(['request_not_pending', 'approver_not_eligible']).toContain((r.reason as { code?: string }).code);
    }
    expect(
      rows(w, 'SELECT request_id FROM tokens')
        .map((r) => r.request_id)
        .sort(),
    ).toEqual(held.map((r) => r.requestId).sort());
    expect(auditOf(w, 'decision.approved')).toHaveLength(5);
  });

  it('expire together: every member of the group expires at the deadline', async () => {
    const held = await holdFive(w);
    const expired = await w.h.app.decisions.expireDue(held[0]!.approval!.expiresAt);
    expect(expired.map((e) => e.result.requestId).sort()).toEqual(held.map((r) => r.requestId).sort());
    expect(expired.every((e) => e.result.state === 'expired')).toBe(true);
    expect(auditOf(w, 'decision.expired')).toHaveLength(5);
  });

  it('keep a call differing in one parameter byte as a separate request', async () => {
    await w.callers[0]!.submit(NORTHWIND);
    await w.callers[1]!.submit(NORTHWIND);
    await w.callers[2]!.submit({ ...NORTHWIND, params: { ...NORTHWIND.params, memo: 'tesu' } });
    expect((await w.h.app.approvals.listPending()).map((p) => p.count)).toEqual([2, 1]);
  });

  it('keep the same call from a different agent as a separate request', async () => {
    await w.callers[0]!.submit(NORTHWIND);
    await w.other.submit(NORTHWIND);
    await w.callers[1]!.submit(NORTHWIND);
    const pending = await w.h.app.approvals.listPending();
    expect(pending.map((p) => [p.agentId, p.count])).toEqual([
      ['finance-bot', 2],
      ['treasury-bot', 1],
    ]);
  });

  it('start a new request for a call arriving once an approver began deciding, and the first group approval does not answer it', async () => {
    const first = await w.callers[0]!.submit(NORTHWIND);
    await decide(w, first.requestId, 'alice');
    const late = await w.callers[1]!.submit(NORTHWIND);
    expect((await w.h.app.approvals.listPending()).map((p) => [p.requestId, p.count])).toEqual([
      [first.requestId, 1],
      [late.requestId, 1],
    ]);

    const done = await decide(w, first.requestId, 'bob');
    expect(done.state).toBe('approved');
    // The late call's token would need approvals that name it: none did.
    const { claims } = await verifyAsToolServer(w, done.token!);
    for (const raw of claims.approvals!) expect(approvalAssertionSchema.parse(raw).record.followers).toBeUndefined();
    await expect(w.callers[1]!.getRequest(late.requestId)).resolves.toMatchObject({ state: 'pending' });
    // A call arriving after the group was decided is not part of it: it joins the open group of the late call.
    const after = await w.callers[2]!.submit(NORTHWIND);
    expect((await w.h.app.approvals.listPending()).map((p) => [p.requestId, p.count, p.followers])).toEqual([
      [late.requestId, 2, [after.requestId]],
    ]);
    expect(rows(w, 'SELECT request_id FROM tokens').map((r) => r.request_id)).toEqual([first.requestId]);
  });

  it('are scored and decided one by one first: repeats the risk factors escalate to a stricter obligation form their own group, and a group shows its riskiest member', async () => {
    const call = transferCall('5000.00', 'Northwind Traders');
    const held: DecisionResult[] = [];
    for (let i = 0; i < 8; i++) held.push(await w.callers[0]!.submit(call));
    const scores = held.map(
      (r) => JSON.parse(rows(w, 'SELECT risk FROM requests WHERE id = ?', r.requestId)[0]!.risk as string) as { score: number },
    );
    // The repeated-call factor raises the score; at 60 the policy asks for two approvers instead of one.
    const one = held.filter((r) => r.approval!.approvals === 1).map((r) => r.requestId);
    const two = held.filter((r) => r.approval!.approvals === 2).map((r) => r.requestId);
    expect(one.length).toBeGreaterThan(0);
    expect(two.length).toBeGreaterThan(0);
    const pending = await w.h.app.approvals.listPending();
    expect(pending.map((p) => [p.obligation.approvals, p.count])).toEqual([
      [1, one.length],
      [2, two.length],
    ]);
    for (const [p, members] of [
      [pending[0]!, one],
      [pending[1]!, two],
    ] as const) {
      expect([p.requestId, ...p.followers].sort()).toEqual([...members].sort());
      const memberScores = members.map((id) => scores[held.findIndex((r) => r.requestId === id)]!.score);
      expect(p.risk.score).toBe(Math.max(...memberScores));
    }
    expect(pending[0]!.risk.score).toBeGreaterThan(scores[0]!.score);
  });

  it('still deny a runaway loop by its risk: denied repeats never join the group', async () => {
    const results: DecisionResult[] = [];
    for (let i = 0; i < 16; i++) results.push(await w.callers[0]!.submit(NORTHWIND));
    const held = results.filter((r) => r.state === 'pending');
    const denied = results.filter((r) => r.state === 'denied');
    expect(held.length).toBeGreaterThan(1);
    expect(denied.length).toBeGreaterThan(0);
    // The loop is held first, then denied for its risk: no held call comes after a denied one.
    expect(results.findIndex((r) => r.state === 'denied')).toBe(held.length);
    for (const r of denied) expect(r.determiningPolicies).toContain('finance-guardrails:high-risk');
    const pending = await w.h.app.approvals.listPending();
    expect(pending.map((p) => p.count)).toEqual([held.length]);
    expect(rows(w, "SELECT id FROM requests WHERE state = 'denied' AND group_id IS NOT NULL")).toHaveLength(0);
  });

  it('start a new group once one holds its maximum of identical calls', async () => {
    await w.h.close();
    // The demo policy with the repeat-sensitive risk factors off, so 34 identical calls are all held.
    const policyDir = tempDir('countersign-merge-policy-');
    cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true });
    const risk = JSON.parse(readFileSync(join(policyDir, 'risk.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(
      join(policyDir, 'risk.json'),
      JSON.stringify({ ...risk, factors: { call_rate: { weight: 0 }, repeated_call: { weight: 0 }, call_depth: { weight: 0 } } }),
    );
    const h = await startHarness({ config: { domain: 'test' }, policyDir });
    w = { ...w, h };
    const caller = h.client('finance-bot', await h.enroll('finance-bot'));
    const results: DecisionResult[] = [];
    for (let i = 0; i < MAX_GROUP_FOLLOWERS + 3; i++) results.push(await caller.submit(NORTHWIND));
    expect(results.every((r) => r.state === 'pending')).toBe(true);
    // The calls after a full group join the next group, not each a prompt of its own.
    expect((await h.app.approvals.listPending()).map((p) => p.count)).toEqual([MAX_GROUP_FOLLOWERS + 1, 2]);
    rmSync(policyDir, { recursive: true, force: true });
  });

  it('lose nothing when minting a follower token fails: no token, no approval recorded, every member still pending, and the quorum can complete later', async () => {
    const held = await holdFive(w);
    const primary = (await w.h.app.approvals.listPending())[0]!.requestId;
    await decide(w, primary, 'alice');
    // Fault injection: the signer fails on the third token of the group (a real signer cannot be made to).
    const real = tokenMinter(w.h.app.issuer);
    let minted = 0;
    const failing: ApprovedMinter = {
      async mint(input) {
        minted += 1;
        if (minted === 3) throw new CountersignError('signer_failed', 'the signing key is unavailable');
        return real.mint(input);
      },
    };
    const decided: DecisionResult[] = [];
    await expect(decide(w, primary, 'bob', 'approve', undefined, serviceWith(w, decided, { minter: failing }))).rejects.toMatchObject({
      code: 'signer_failed',
    });
    expect(rows(w, 'SELECT * FROM tokens')).toHaveLength(0);
    expect(rows(w, "SELECT * FROM requests WHERE state <> 'pending'")).toHaveLength(0);
    expect(rows(w, 'SELECT approver_id FROM approvals').map((r) => r.approver_id)).toEqual(['alice']);
    expect(auditOf(w, 'decision.approved')).toHaveLength(0);
    expect(decided).toHaveLength(0);
    // The same approver taps again with a working signer: every member is approved.
    const done = await decide(w, primary, 'bob');
    expect(done.state).toBe('approved');
    expect(
      rows(w, 'SELECT request_id FROM tokens')
        .map((r) => r.request_id)
        .sort(),
    ).toEqual(held.map((r) => r.requestId).sort());
  });

  it('deny every member when the current policy denies the call at completion', async () => {
    const held = await holdFive(w);
    const primary = (await w.h.app.approvals.listPending())[0]!.requestId;
    const denyNow: ApprovalPolicyHook = {
      reevaluate: () => ({
        outcome: 'deny',
        policyHash: 'sha256:new',
        reasons: ['the payee is now blocked'],
        determiningPolicies: ['guardrails:blocked-payee'],
      }),
    };
    const decided: DecisionResult[] = [];
    const service = serviceWith(w, decided, { policy: denyNow });
    await decide(w, primary, 'alice', 'approve', undefined, service);
    const outcome = await decide(w, primary, 'bob', 'approve', undefined, service);
    expect(outcome).toMatchObject({ state: 'denied', reasons: ['the payee is now blocked'] });
    expect(decided.map((r) => r.requestId).sort()).toEqual(held.map((r) => r.requestId).sort());
    for (const r of decided)
      expect(r).toMatchObject({ state: 'denied', policyHash: 'sha256:new', determiningPolicies: ['guardrails:blocked-payee'] });
    expect(rows(w, "SELECT * FROM requests WHERE state = 'denied'")).toHaveLength(5);
    expect(rows(w, 'SELECT * FROM tokens')).toHaveLength(0);
  });

  it('refuse an approval assertion of the group presented for a request outside it', async () => {
    await holdFive(w);
    const primary = (await w.h.app.approvals.listPending())[0]!.requestId;
    await decide(w, primary, 'alice');
    const done = await decide(w, primary, 'bob');
    const { claims } = await verifyAsToolServer(w, done.token!);
    await expect(
      verifyApprovals(claims.approvals, {
        directory: w.h.app.approvers.published(),
        requestId: 'req_not_in_the_group',
        callSha256: claims.call_sha256,
        policyHash: claims.decision.policy_hash,
        allowVirtual: true,
      }),
    ).rejects.toMatchObject({ code: 'approval_invalid', details: { reason: 'request mismatch' } });
  });
});
