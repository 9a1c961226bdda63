/**
 * Revoking an agent ends it everywhere at once: its requests waiting for approvers are denied
 * with the reason (audited, gone from the approvers' queue), its live connections are told of
 * each and then closed with 4004 — whether the revocation is made in the server's process or by
 * the CLI in another. A live session whose enrollment expires is closed the same way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { RawClient, errorCode, signedEnvelope, type RawMessage } from '../helpers/raw-client.js';
import type { AgentKey } from '../../shared/agent-keys.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { compiledCli } from '../helpers/compiled-script.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => h.close());

/** A raw connection of the agent with `n` calls held for approvers; returns their request ids. */
async function holding(agentId: string, key: AgentKey, n: number): Promise<{ c: RawClient; ids: string[] }> {
  const c = await RawClient.connect(h.app.url);
  expect((await c.authenticate(agentId, key)).result).toMatchObject({ agentId });
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const env = await signedEnvelope(key, agentId, transferCall(`${48_000 + i}.00`, 'Northwind Traders'));
    const answer = await c.call('call.submit', { envelope: env });
    expect(answer.result).toMatchObject({ state: 'pending' });
    ids.push(String(answer.result!.requestId));
  }
  return { c, ids };
}

const state = (id: string) =>
  h.app.db.prepare('SELECT state, reasons FROM requests WHERE id = ?').get(id) as { state: string; reasons: string };
const queued = async () => (await h.app.approvals.listPending()).map((p) => p.requestId);
const audited = (kind: string) =>
  (h.app.db.prepare('SELECT record FROM audit_log WHERE kind = ? ORDER BY seq').all(kind) as Array<{ record: string }>).map(
    (r) => JSON.parse(r.record) as Record<string, unknown>,
  );

/** Everything the connection received until it closed. */
async function untilClosed(c: RawClient): Promise<{ frames: RawMessage[]; closed: { code: number; reason: string } }> {
  const closed = await c.waitClosed(15_000);
  return { frames: c.messages.splice(0), closed };
}

describe('revoking an agent', () => {
  it('denies its pending requests with the reason, audits each, drops them from the queue, tells the live connection of each and closes it with 4004', async () => {
    const key = await h.enroll('compromised-bot');
    const otherKey = await h.enroll('bystander-bot');
    const { c, ids } = await holding('compromised-bot', key, 2);
    const bystander = await holding('bystander-bot', otherKey, 1);
    expect(await queued()).toEqual(expect.arrayContaining([...ids, ...bystander.ids]));

    const ended = h.app.registry.revoke('compromised-bot', 'host compromised');
    expect(ended.map((r) => r.requestId)).toEqual(ids);

    const reasons = ['agent revoked: host compromised'];
    for (const id of ids) expect(state(id)).toEqual({ state: 'denied', reasons: JSON.stringify(reasons) });
    for (const id of ids) expect(await queued()).not.toContain(id);
    expect(await queued()).toEqual(expect.arrayContaining(bystander.ids));
    expect(state(bystander.ids[0]!).state).toBe('pending');
    expect(audited('agent.revoked').find((e) => e.agentId === 'compromised-bot')).toMatchObject({
      reason: 'host compromised',
      endedRequests: ids,
    });
    expect(audited('decision.deny').filter((e) => e.agentId === 'compromised-bot')).toEqual(
      ids.map((requestId): unknown => expect.objectContaining({ requestId, reasons, endedBy: 'agent.revoked' })),
    );

    const { frames, closed } = await untilClosed(c);
    expect(frames.filter((f) => f.method === 'request.decided').map((f) => f.params)).toEqual(
      ids.map((requestId): unknown => expect.objectContaining({ requestId, state: 'denied', decision: 'deny', reasons })),
    );
    expect(errorCode(frames.at(-1)!)).toBe('agent_revoked');
    expect(closed).toEqual({ code: 4004, reason: 'agent_revoked' });
    // The bystander is untouched.
    expect(bystander.c.closed).toBeUndefined();
    bystander.c.close();

    // Revoking again changes nothing and ends nothing.
    expect(h.app.registry.revoke('compromised-bot', 'again')).toEqual([]);
  });

  it('still revokes and ends every pending request when one of them has a column that no longer decodes', async () => {
    const key = await h.enroll('corrupt-row-bot');
    const { c, ids } = await holding('corrupt-row-bot', key, 2);
    // A fault the schema rejects, in a column revocation does not use (the real SQLite file).
    h.app.db.prepare("UPDATE requests SET reasons = '{not a list' WHERE id = ?").run(ids[0]!);

    const ended = h.app.registry.revoke('corrupt-row-bot', 'host compromised');
    expect(ended.map((r) => r.requestId)).toEqual(ids);
    expect(h.app.db.prepare("SELECT status FROM agents WHERE id = 'corrupt-row-bot'").get()).toEqual({ status: 'revoked' });
    const reasons = JSON.stringify(['agent revoked: host compromised']);
    for (const id of ids) expect(state(id)).toEqual({ state: 'denied', reasons });
    expect(
      audited('decision.deny')
        .filter((e) => e.agentId === 'corrupt-row-bot')
        .map((e) => e.requestId),
    ).toEqual(ids);
    await untilClosed(c);
  });

  it('expires the other due requests, and the one whose stored call no longer decodes, recording a learning fault', async () => {
    const key = await h.enroll('expiring-corrupt-bot');
    const { c, ids } = await holding('expiring-corrupt-bot', key, 3);
    h.app.db.prepare("UPDATE requests SET reasons = '{not a list' WHERE id = ?").run(ids[0]!);
    h.app.db.prepare('UPDATE requests SET call_json = \'{"tool":1}\' WHERE id = ?').run(ids[1]!);
    const deadline = (
      h.app.db.prepare('SELECT MAX(expires_at) AS t FROM requests WHERE agent_id = ?').get('expiring-corrupt-bot') as { t: number }
    ).t;

    const expired = (await h.app.decisions.expireDue(deadline)).filter((e) => e.agentId === 'expiring-corrupt-bot');
    expect(expired.map((e) => e.result.requestId).sort()).toEqual([...ids].sort());
    for (const e of expired) expect(e.result).toMatchObject({ state: 'expired', decision: 'deny' });
    for (const id of ids) expect(state(id).state).toBe('expired');
    const events = audited('decision.expired').filter((e) => e.agentId === 'expiring-corrupt-bot');
    expect(events.map((e) => e.requestId).sort()).toEqual([...ids].sort());
    expect(events.find((e) => e.requestId === ids[1])?.riskLearningFault).toMatch(/stored call .* is malformed/);
    c.close();
  });

  it('tells an SDK client waiting for its decision that the request was denied by the revocation', async () => {
    const key = await h.enroll('sdk-bot');
    const pushed: DecisionResult[] = [];
    const client = h.client('sdk-bot', key, { onDecision: (r) => pushed.push(r) });
    const pending = await client.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(pending.state).toBe('pending');
    const waiting = client.waitForDecision(pending.requestId, { timeoutMs: 10_000 });
    await client.getRequest(pending.requestId); // replies come in order: the waiter is registered
    h.app.registry.revoke('sdk-bot', 'rotated out of service');
    expect(await waiting).toMatchObject({
      requestId: pending.requestId,
      state: 'denied',
      reasons: ['agent revoked: rotated out of service'],
    });
    expect(pushed.map((r) => r.requestId)).toEqual([pending.requestId]);
  });

  it("refuses an SDK client's later calls with agent_revoked once the server ended its session for the revocation, not as a closed client", async () => {
    const key = await h.enroll('ended-sdk-bot');
    let ended: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (ended = resolve));
    const client = h.client('ended-sdk-bot', key, { onStateChange: (state) => state === 'closed' && ended() });
    expect((await client.submit(transferCall('10.00'))).decision).toBe('allow');
    h.app.registry.revoke('ended-sdk-bot', 'host compromised');
    await closed; // the gateway closed the session with 4004 agent_revoked; the SDK does not reconnect
    // Before the fix: connection_closed, "the client was closed", though the agent never closed it.
    await expect(client.submit(transferCall('11.00'))).rejects.toMatchObject({ code: 'agent_revoked' });
    await expect(client.getRequest('req_any')).rejects.toMatchObject({ code: 'agent_revoked' });
    client.close();
    await expect(client.connect()).rejects.toMatchObject({ code: 'agent_revoked' });
  });

  it('reaches a connected agent when the CLI revokes it from another process while the server runs', async () => {
    const key = await h.enroll('cli-revoked-bot');
    const { c, ids } = await holding('cli-revoked-bot', key, 1);
    const r = spawnSync(
      process.execPath,
      [compiledCli(), 'agents', 'revoke', 'cli-revoked-bot', '--reason', 'left the company', '--data-dir', h.dataDir],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ revoked: 'cli-revoked-bot', endedRequests: ids });
    expect(await queued()).not.toContain(ids[0]);

    const { frames, closed } = await untilClosed(c);
    expect(frames.filter((f) => f.method === 'request.decided').map((f) => f.params)).toEqual([
      expect.objectContaining({ requestId: ids[0], state: 'denied', reasons: ['agent revoked: left the company'] }),
    ]);
    expect(closed).toEqual({ code: 4004, reason: 'agent_revoked' });
  }, 90_000);

  it('closes a live session with 4004 once its enrollment expires', async () => {
    const key = await h.enroll('short-lived-bot', { expiresAt: Date.now() + 1_000 });
    const c = await RawClient.connect(h.app.url);
    expect((await c.authenticate('short-lived-bot', key)).result).toMatchObject({ agentId: 'short-lived-bot' });
    const { frames, closed } = await untilClosed(c);
    expect(errorCode(frames.at(-1)!)).toBe('agent_expired');
    expect(closed).toEqual({ code: 4004, reason: 'agent_expired' });
  });
});

describe('an agent whose enrollment expires while its call waits', () => {
  let t: Harness;
  beforeAll(async () => {
    t = await startHarness({ config: { domain: 'test' } });
  });
  afterAll(async () => t.close());

  it('gets a denial, not a token, when approvers complete the quorum after the expiry', async () => {
    const key = await t.enroll('expiring-bot', { expiresAt: Date.now() + 3_600_000 });
    const client = t.client('expiring-bot', key);
    const pending = await client.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(pending.state).toBe('pending');
    for (const id of ['alice', 'bob']) await t.app.virtualApprovers!.create({ id, displayName: id, groups: ['finance-approvers'] });
    // The enrollment runs out while the call waits (moved instead of waited for).
    t.app.db.prepare("UPDATE agents SET expires_at = ? WHERE id = 'expiring-bot'").run(Date.now() - 1);

    await t.app.virtualApprovers!.decide({ requestId: pending.requestId, approverId: 'alice', verdict: 'approve' });
    const row = () =>
      t.app.db.prepare('SELECT state, reasons FROM requests WHERE id = ?').get(pending.requestId) as { state: string; reasons: string };
    if (row().state === 'pending')
      await t.app.virtualApprovers!.decide({ requestId: pending.requestId, approverId: 'bob', verdict: 'approve' });
    expect(row()).toEqual({ state: 'denied', reasons: JSON.stringify(["the agent's enrollment has expired"]) });
    expect(t.app.db.prepare('SELECT COUNT(*) AS n FROM tokens WHERE request_id = ?').get(pending.requestId)).toEqual({ n: 0 });
  });
});

describe('a revocation that lands while a call is being decided', () => {
  for (const amount of ['250.00', '48000.00']) {
    it(`stores nothing and issues no token for the call in flight (${amount === '250.00' ? 'an automatic allow' : 'a held call'})`, async () => {
      let revokeNow: (() => void) | undefined;
      // The decision path's stage hook runs after policy and before signing and the commit.
      const race = await startHarness({
        config: { risk: { enabled: false } },
        start: {
          onTiming: (stage) => {
            if (stage === 'policy' && revokeNow !== undefined) {
              const revoke = revokeNow;
              revokeNow = undefined;
              revoke();
            }
          },
        },
      });
      try {
        const key = await race.enroll('racing-bot');
        const c = await RawClient.connect(race.app.url);
        expect((await c.authenticate('racing-bot', key)).result).toMatchObject({ agentId: 'racing-bot' });
        revokeNow = () => race.app.registry.revoke('racing-bot', 'compromised');
        const answer = await c.call('call.submit', { envelope: await signedEnvelope(key, 'racing-bot', transferCall(amount)) });
        expect(revokeNow).toBeUndefined();
        expect(answer.result).toBeUndefined();
        expect(errorCode(answer)).toBe('agent_revoked');
        const n = (sql: string) => (race.app.db.prepare(sql).get() as { n: number }).n;
        expect(n("SELECT COUNT(*) AS n FROM requests WHERE agent_id = 'racing-bot'")).toBe(0);
        expect(n('SELECT COUNT(*) AS n FROM tokens')).toBe(0);
        expect((await c.waitClosed()).code).toBe(4004);
      } finally {
        await race.close();
      }
    });
  }
});
