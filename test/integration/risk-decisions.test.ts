/**
 * The risk scorer in the real decision path: its score and factor names reach Cedar and change
 * the decision, its sentences reach approvers and the audit log, it learns only from executed
 * calls (an approval included), its recent window survives a restart, and a scorer fault is
 * maximum risk, recorded, never a lost decision.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_POLICY_DIR, nodeWebSocket, startHarness, tempDir, transferCall, type Harness, ensurePeople } from '../helpers/harness.js';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { parseStoredRisk, type RiskAssessment } from '../../shared/risk.js';
import type { RiskScorer } from '../../main/core/risk/risk-ports.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(options: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const h = await startHarness(options);
  cleanups.push(() => h.close());
  return h;
}

function storedRisk(app: RunningCountersign, requestId: string): RiskAssessment {
  return parseStoredRisk(app.db.prepare<[string], { risk: string }>('SELECT risk FROM requests WHERE id = ?').get(requestId)!.risk);
}

function auditEvent(app: RunningCountersign, requestId: string): Record<string, unknown> {
  const rows = app.db.prepare<[], { record: string }>("SELECT record FROM audit_log WHERE kind LIKE 'decision.%' ORDER BY seq").all();
  const match = rows.map((r) => JSON.parse(r.record) as Record<string, unknown>).find((e) => e.requestId === requestId);
  if (!match) throw new Error(`no audit event for ${requestId}`);
  return match;
}

describe('risk in the decision path', () => {
  it('an external email as provenance turns an automatic transfer into one held for an approver, and says why', async () => {
    const h = await harness();
    const key = await h.enroll('ap-agent');
    const client = h.client('ap-agent', key);
    await client.connect();

    const fromUser = await client.submit(transferCall('250.00'));
    expect(fromUser).toMatchObject({ decision: 'allow', determiningPolicies: ['finance-transfers:small-known-payee'] });

    const fromEmail = await client.submit({
      ...transferCall('250.00'),
      params: { amount: '250.00', currency: 'USD', payee: 'Acme Ltd', memo: 'as the email asked' },
      provenance: ['email:external'],
    });
    expect(fromEmail).toMatchObject({
      decision: 'pending',
      determiningPolicies: ['finance-transfers:one-approver'],
      approval: { approvals: 1 },
    });

    const risk = storedRisk(h.app, fromEmail.requestId);
    expect(risk.score).toBeGreaterThanOrEqual(40);
    expect(risk.factors).toContainEqual(
      expect.objectContaining({
        name: 'untrusted_provenance',
        points: 45,
        explanation: 'the input that led to this call came from "email:external"',
      }),
    );
    // What approvers see, and what the audit log keeps.
    const view = await h.app.approvals.getPending(fromEmail.requestId);
    expect(view.risk.factors.map((f) => f.explanation)).toContain('the input that led to this call came from "email:external"');
    expect(auditEvent(h.app, fromEmail.requestId)).toMatchObject({
      risk: { score: risk.score, factors: expect.arrayContaining([expect.objectContaining({ name: 'untrusted_provenance' })]) as unknown },
    });
  });

  it('Cedar sees the factor names: a policy can match on one', async () => {
    const policyDir = tempDir();
    cleanups.push(() => rmSync(policyDir, { recursive: true, force: true }));
    cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true, dereference: true });
    writeFileSync(
      join(policyDir, 'no-version-drift.cedar'),
      `
@id("version-drift")
@reason("calls from another model than the enrolled one are refused")
forbid (principal, action, resource)
when { context.risk.factors.contains("agent_version") };
`,
    );
    const h = await harness({ policyDir });
    const key = await h.enroll('ap-agent', { model: 'model-a' });
    const client = h.client('ap-agent', key);
    await client.connect();
    const first = await client.submit({ ...transferCall('250.00'), model: 'model-a' });
    expect(first, JSON.stringify(first.reasons)).toMatchObject({ decision: 'allow' });
    const drifted = await client.submit({ ...transferCall('251.00'), model: 'model-b' });
    expect(drifted).toMatchObject({
      decision: 'deny',
      determiningPolicies: ['no-version-drift:version-drift'],
      reasons: ['calls from another model than the enrolled one are refused'],
    });
    expect(storedRisk(h.app, drifted.requestId).factors).toContainEqual(
      expect.objectContaining({
        name: 'agent_version',
        explanation: 'the call comes from model "model-b"; the agent was enrolled with "model-a"',
      }) as unknown,
    );
  });

  it('a scorer that throws is maximum risk: the call is denied and the fault recorded (injected fault)', async () => {
    // Fault injection: the real scorer cannot be made to throw on demand.
    const broken: RiskScorer = {
      score: () => {
        throw new Error('baseline exploded');
      },
    };
    const h = await harness({ start: { risk: broken } });
    const key = await h.enroll('ap-agent');
    const client = h.client('ap-agent', key);
    await client.connect();
    const result = await client.submit(transferCall('250.00'));
    expect(result).toMatchObject({
      decision: 'deny',
      determiningPolicies: expect.arrayContaining(['finance-guardrails:high-risk']) as unknown,
    });
    expect(result.token).toBeUndefined();
    const risk = storedRisk(h.app, result.requestId);
    expect(risk).toMatchObject({ score: 100, factors: [{ name: 'scorer_fault', points: 100 }] });
    expect(risk.factors[0]!.explanation).toContain('baseline exploded');
    expect(auditEvent(h.app, result.requestId)).toMatchObject({
      risk: { score: 100, factors: [expect.objectContaining({ name: 'scorer_fault' }) as unknown] },
    });
  });

  it('a missing baseline store is maximum risk, and the decision is still recorded', async () => {
    const h = await harness();
    const key = await h.enroll('ap-agent');
    const client = h.client('ap-agent', key);
    await client.connect();
    h.app.db.exec('DROP TABLE risk_counts');
    const result = await client.submit(transferCall('250.00'));
    expect(result).toMatchObject({
      decision: 'deny',
      state: 'denied',
      determiningPolicies: expect.arrayContaining(['finance-guardrails:high-risk']) as unknown,
    });
    expect(storedRisk(h.app, result.requestId)).toMatchObject({ score: 100, factors: [{ name: 'scorer_fault' }] });
    expect(auditEvent(h.app, result.requestId)).toMatchObject({ riskLearningFault: expect.stringContaining('no such table') as unknown });
    // The gateway keeps answering.
    expect((await client.submit(transferCall('251.00'))).decision).toBe('deny');
  });

  it('learns from executed calls only: an allowed one and an approved one, never a denied one', async () => {
    const policyDir = tempDir();
    cleanups.push(() => rmSync(policyDir, { recursive: true, force: true }));
    cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true, dereference: true });
    const h = await harness({ policyDir, config: { domain: 'test' } });
    const key = await h.enroll('ap-agent');
    const client = h.client('ap-agent', key);
    await client.connect();
    const known = () =>
      h.app.db
        .prepare<[], { value: string }>("SELECT value FROM risk_known WHERE agent_id = 'ap-agent' AND kind = 'payee' ORDER BY value")
        .all()
        .map((r) => r.value);

    expect((await client.submit(transferCall('250.00', 'Acme Ltd'))).decision).toBe('allow');
    expect((await client.submit(transferCall('900.00', 'Pyongyang Trading', 'KP'))).decision).toBe('deny');
    const held = await client.submit(transferCall('4200.00', 'Globex Corporation'));
    expect(held.decision).toBe('pending');
    expect(known()).toEqual(['Acme Ltd']);

    const post = (path: string, body: unknown) =>
      fetch(`http://127.0.0.1:${h.app.port}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect(
      (await post('/api/automation/virtual-approvers', { id: 'vera', displayName: 'Vera', groups: ['finance-approvers'] })).status,
    ).toBe(200);
    const decided = await post(`/api/automation/requests/${held.requestId}/decide`, { approverId: 'vera', verdict: 'approve' });
    expect(decided.status).toBe(200);
    expect(known()).toEqual(['Acme Ltd', 'Globex Corporation']);
    const executed = h.app.db
      .prepare<[], { count: number }>("SELECT count FROM risk_counts WHERE agent_id = 'ap-agent' AND kind = 'total'")
      .get();
    expect(executed).toEqual({ count: 2 });
  });
});

describe('risk across a restart', () => {
  it('rebuilds the recent window from stored requests: a loop is still a loop after a restart', async () => {
    const dataDir = tempDir();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR }));
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    const call = transferCall('250.00');
    const submitTwice = async (app: RunningCountersign) => {
      const client = new AgentClient({ url: app.url, agentId: 'ap-agent', key, webSocket: nodeWebSocket, reconnect: false });
      await client.connect();
      const results = [await client.submit(call), await client.submit(call)];
      client.close();
      return results;
    };
    let app = await startCountersign({ dataDir, log: () => undefined });
    ensurePeople(app, 'dana@example.com');
    app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'ap-agent', 'ap-agent')), {
      owner: 'dana@example.com',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US'],
    });
    await submitTwice(app);
    await app.close();
    app = await startCountersign({ dataDir, log: () => undefined });
    try {
      const [third, fourth] = await submitTwice(app);
      expect(storedRisk(app, third!.requestId).factors).toContainEqual(
        expect.objectContaining({ name: 'repeated_call', observed: { identical: 2, similar: 0 } }) as unknown,
      );
      expect(storedRisk(app, fourth!.requestId).factors).toContainEqual(
        expect.objectContaining({ name: 'repeated_call', observed: { identical: 3, similar: 0 } }) as unknown,
      );
      expect(third!.decision).toBe('pending'); // 30 (loop) + 10 (learning) ≥ 40: no longer automatic
    } finally {
      await app.close();
    }
  });
});

describe('risk settings at start', () => {
  it('refuses to start on an invalid risk.json beside the policies, naming the problem', async () => {
    const policyDir = tempDir();
    cleanups.push(() => rmSync(policyDir, { recursive: true, force: true }));
    cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true, dereference: true });
    writeFileSync(join(policyDir, 'risk.json'), JSON.stringify({ factors: { new_destination: { weight: 30, typo: true } } }));
    await expect(startHarness({ policyDir })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('"factors.new_destination"') as unknown,
    });
    writeFileSync(join(policyDir, 'risk.json'), '{ "reportThreshold": 60, "reportThreshold": 61 }');
    await expect(startHarness({ policyDir })).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('is not valid JSON') as unknown,
    });
  });

  it('refuses to start when the configured risk file does not exist', async () => {
    await expect(startHarness({ config: { risk: { file: '/nonexistent/risk.json' } } })).rejects.toMatchObject({
      code: 'file_not_found',
      message: expect.stringContaining('does not exist') as unknown,
    });
  });

  it('with risk scoring turned off, every call says so and nothing is learned', async () => {
    const h = await harness({ config: { risk: { enabled: false } } });
    const key = await h.enroll('ap-agent');
    const client = h.client('ap-agent', key);
    await client.connect();
    const result = await client.submit(transferCall('250.00'));
    expect(result.decision).toBe('allow');
    expect(storedRisk(h.app, result.requestId)).toEqual({
      score: 0,
      factors: [{ name: 'unscored', points: 0, weight: 0, observed: {}, explanation: 'risk scoring is turned off' }],
    });
    expect(h.app.riskEngine).toBeUndefined();
    expect(h.app.db.prepare('SELECT COUNT(*) AS n FROM risk_counts').get()).toEqual({ n: 0 });
  });
});
