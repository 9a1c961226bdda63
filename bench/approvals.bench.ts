/**
 * Approvals benchmark (issue: human approvals): the time from the last approver's assertion
 * arriving at the core to the co-signed token reaching the agent over its WebSocket, beside the
 * automatic decision latency in the same run; and the approver API with 1,000 pending requests
 * beside 10. Real WebAuthn structures and P-256 signatures (the project's virtual authenticator),
 * real SQLite, real WebSocket agent client.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { REPO_ROOT, startCountersign, type RunningCountersign } from '../main/core/app.js';
import { VirtualAuthenticator } from '../main/core/testing/virtual-authenticator.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import type { DecisionResult } from '../shared/protocol.js';
import { ensurePeople } from '../test/helpers/harness.js';

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const stats = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { n: sorted.length, p50Ms: +percentile(sorted, 50).toFixed(3), p99Ms: +percentile(sorted, 99).toFixed(3) };
};

async function registerVirtual(app: RunningCountersign, id: string): Promise<VirtualAuthenticator> {
  app.approvers.addApprover({ id, displayName: id, groups: ['finance-approvers'], virtual: true });
  const authenticator = new VirtualAuthenticator();
  const { code } = app.approvers.issueRegistrationCode(id, 'bench');
  const options = await app.approvers.beginRegistration(id, code);
  await app.approvers.finishRegistration(
    id,
    authenticator.createCredential({
      rpId: app.approvers.rpId,
      origin: app.approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  return authenticator;
}

async function assertion(app: RunningCountersign, authenticator: VirtualAuthenticator, requestId: string, approverId: string) {
  const { options } = await app.approvals.startCeremony({ requestId, approverId, verdict: 'approve' });
  return authenticator.getAssertion({
    rpId: options.rpId ?? app.approvers.rpId,
    origin: app.approvers.origins[0]!,
    challenge: options.challenge,
    allowCredentials: (options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
}

export async function runApprovalsBench(options: { requests: number }): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-approvals-'));
  // Risk scoring is off here: this bench isolates the approval path, and its 1,000 identical held
  // transfers would (rightly) score as a loop and be forbidden. The risk bench measures scoring.
  writeFileSync(
    join(dataDir, 'config.json'),
    JSON.stringify({
      domain: 'test',
      policyDir: join(REPO_ROOT, 'examples', 'demo'),
      gateway: { port: 0, maxPendingPerAgent: 5_000, ratePerSecond: 100_000, rateBurst: 100_000 },
      risk: { enabled: false },
    }),
  );
  const app = await startCountersign({ dataDir, log: () => undefined });
  try {
    const alice = await registerVirtual(app, 'alice');
    const bob = await registerVirtual(app, 'bob');
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    ensurePeople(app, 'dana@example.com');
    app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot', 'finance-bot')), {
      owner: 'dana@example.com',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US'],
    });
    const arrivals = new Map<string, (r: DecisionResult) => void>();
    const client = new AgentClient({
      url: app.url,
      agentId: 'finance-bot',
      key,
      reconnect: false,
      requestTimeoutMs: 30_000,
      webSocket: (u, p) => new WebSocket(u, p) as unknown as WebSocketLike,
      onDecision: (r) => arrivals.get(r.requestId)?.(r),
    });
    await client.connect();
    const call = (amount: string, payee: string) => ({
      tool: 'payments.transfer',
      params: { amount, currency: 'USD', payee, memo: 'bench' },
      dataClass: 'financial',
      jurisdiction: 'US',
      provenance: ['user'],
    });

    // Automatic decisions, one at a time (latency, not throughput), after a warm-up.
    for (let i = 0; i < 50; i++) await client.submit(call('250.00', 'Acme Ltd'));
    const automatic: number[] = [];
    for (let i = 0; i < options.requests; i++) {
      const t0 = performance.now();
      const r = await client.submit(call('250.00', 'Acme Ltd'));
      if (r.decision !== 'allow') throw new Error('expected an automatic allow');
      automatic.push(performance.now() - t0);
    }

    // Approved decisions: the clock starts when the final assertion reaches the core.
    const approved: number[] = [];
    for (let i = 0; i < options.requests; i++) {
      const pending = await client.submit(call('48000.00', 'Northwind Traders'));
      await app.approvals.submitCeremony({
        requestId: pending.requestId,
        approverId: 'alice',
        response: await assertion(app, alice, pending.requestId, 'alice'),
      });
      const last = await assertion(app, bob, pending.requestId, 'bob');
      const arrived = new Promise<number>((resolve) =>
        arrivals.set(pending.requestId, (r) => {
          if (r.state === 'approved' && r.token !== undefined) resolve(performance.now());
        }),
      );
      const t0 = performance.now();
      await app.approvals.submitCeremony({ requestId: pending.requestId, approverId: 'bob', response: last });
      approved.push((await arrived) - t0);
      arrivals.delete(pending.requestId);
    }

    // The approver API with 10 and with 1,000 pending requests.
    const apiTimes = async (): Promise<{ listMs: number; firstPageOf50Ms: number; ceremonyMs: number }> => {
      const list: number[] = [];
      const page: number[] = [];
      const ceremony: number[] = [];
      const someId = (await app.approvals.listPending())[0]?.requestId ?? '';
      for (let i = 0; i < 20; i++) {
        let t = performance.now();
        const res = await fetch(`http://127.0.0.1:${app.port}/api/approvals/pending`, {
          headers: { authorization: `Bearer ${app.uiSessionSecret}` },
        });
        await res.json();
        list.push(performance.now() - t);
        t = performance.now();
        const paged = await fetch(`http://127.0.0.1:${app.port}/api/approvals/pending?limit=50`, {
          headers: { authorization: `Bearer ${app.uiSessionSecret}` },
        });
        await paged.json();
        page.push(performance.now() - t);
        t = performance.now();
        await app.approvals.startCeremony({ requestId: someId, approverId: 'alice', verdict: 'approve' });
        ceremony.push(performance.now() - t);
      }
      return { listMs: stats(list).p50Ms, firstPageOf50Ms: stats(page).p50Ms, ceremonyMs: stats(ceremony).p50Ms };
    };
    for (let i = 0; i < 10; i++) await client.submit(call('48000.00', 'Northwind Traders'));
    const with10 = await apiTimes();
    for (let i = 10; i < 1_000; i++) await client.submit(call('48000.00', 'Northwind Traders'));
    const with1000 = await apiTimes();
    client.close();

    return {
      requests: options.requests,
      automaticDecisionLatency: stats(automatic),
      lastAssertionToTokenAtAgent: stats(approved),
      approverApiWith10Pending: with10,
      approverApiWith1000Pending: with1000,
      listSlowdown1000vs10: +(with1000.listMs / with10.listMs).toFixed(2),
      firstPageSlowdown1000vs10: +(with1000.firstPageOf50Ms / with10.firstPageOf50Ms).toFixed(2),
      ceremonyStartSlowdown1000vs10: +(with1000.ceremonyMs / with10.ceremonyMs).toFixed(2),
    };
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
