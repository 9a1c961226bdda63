/**
 * Risk scorer benchmark (issue: explainable risk scorer).
 *
 * 10,000 enrolled agents with 1,000,000 historical executed calls learned into their baselines
 * (through the real engine and SQLite tables). Then, in the same run:
 *  - scoring cost per call in process: cold (profile loaded from the database) and warm
 *    (profile in memory), and the memory the baselines hold per agent;
 *  - the automatic decision latency of the real core (child process, real WebSocket clients,
 *    open loop at a fixed offered rate) with scoring off, on, and off again — the ratio is
 *    what scoring adds.
 * Target: scoring adds under 10% to the automatic decision latency.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket } from 'ws';
import { DEFAULT_POLICY_PACK, openDataDir } from '../main/core/app.js';
import { prepareDirectEnrollment } from '../test/helpers/direct-enrollment.js';
import { loadRiskConfig } from '../main/core/risk/risk-config.js';
import { RiskEngine } from '../main/core/risk/risk-engine.js';
import { callDigest } from '../main/core/tokens/call-digest.js';
import type { ToolCall } from '../shared/protocol.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { startChild } from './child-server.js';
import { prng } from '../test/helpers/prng.js';

const DAY = 24 * 3600 * 1000;
const KNOWN_PAYEES = ['Acme Ltd', 'Globex Corporation', 'Initech LLC', 'Umbrella Supplies'];
const webSocket = (url: string, protocols: string[]) =>
  new WebSocket(url, protocols, { perMessageDeflate: false }) as unknown as WebSocketLike;

/** Each agent's usual amount (USD, under the automatic limit of the demo policy). */
function medianOf(agentIndex: number): number {
  return 200 + ((agentIndex * 7919) % 400);
}

function transfer(amount: number, payee: string): ToolCall {
  return {
    tool: 'payments.transfer',
    params: { amount: amount.toFixed(2), currency: 'USD', payee, memo: 'bench' },
    dataClass: 'financial',
    jurisdiction: 'US',
    provenance: ['user'],
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

interface OpenLoopResult {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  notAllowed: number;
  errors: number;
  cpuPerDecisionMs: number;
}

/** Every client submits at a fixed rate whatever the answers; latency at a stated offered load. */
async function openLoop(
  clients: Array<{ client: AgentClient; index: number }>,
  seconds: number,
  totalPerSecond: number,
  cpu: () => { user: number; system: number },
  random: () => number,
): Promise<OpenLoopResult> {
  const latencies: number[] = [];
  let notAllowed = 0;
  let errors = 0;
  const intervalMs = (1000 * clients.length) / totalPerSecond;
  const cpu0 = cpu();
  const start = performance.now();
  const end = start + seconds * 1000;
  const inflight: Array<Promise<void>> = [];
  await Promise.all(
    clients.map(async ({ client, index }, i) => {
      let next = start + (intervalMs * i) / clients.length;
      while (next < end) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const call = transfer(medianOf(index) * (0.2 + random() * 0.3), KNOWN_PAYEES[Math.floor(random() * KNOWN_PAYEES.length)]!);
        const t0 = performance.now();
        inflight.push(
          client.submit(call).then(
            (r) => {
              if (r.decision === 'allow') latencies.push(performance.now() - t0);
              else notAllowed++;
            },
            () => {
              errors++;
            },
          ),
        );
        next += intervalMs;
      }
    }),
  );
  await Promise.all(inflight);
  const cpu1 = cpu();
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const n = Math.max(1, latencies.length + notAllowed);
  return {
    perSecond: Math.round(latencies.length / elapsed),
    p50Ms: +percentile(latencies, 50).toFixed(3),
    p99Ms: +percentile(latencies, 99).toFixed(3),
    notAllowed,
    errors,
    cpuPerDecisionMs: +(((cpu1.user - cpu0.user + (cpu1.system - cpu0.system)) * 1000) / n).toFixed(3),
  };
}

export async function runRiskBench(options: {
  agents: number;
  historyCalls: number;
  loadAgents: number;
  seconds: number;
  openLoopPerSecond: number;
}): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-risk-'));
  const writeConfig = (enabled: boolean) =>
    writeFileSync(
      join(dataDir, 'config.json'),
      JSON.stringify({
        policyDir: DEFAULT_POLICY_PACK,
        gateway: {
          port: 0,
          maxConnections: options.loadAgents + 100,
          maxUnauthenticated: options.loadAgents + 100,
          ratePerSecond: 100_000,
          rateBurst: 100_000,
          handshakeTimeoutMs: 60_000,
        },
        risk: { enabled },
      }),
    );
  const random = prng(5);
  const riskConfig = loadRiskConfig(join(DEFAULT_POLICY_PACK, 'risk.json'), true);
  try {
    // Enrollment: real requests, proof of possession checked.
    let t = performance.now();
    const store = openDataDir(dataDir);
    const { registry, db } = store;
    await prepareDirectEnrollment(store, DEFAULT_POLICY_PACK, ['bench@example.com']);
    const keys: AgentKey[] = [];
    for (let i = 0; i < options.agents; i++) {
      const id = `risk-agent-${i}`;
      const key = await importAgentKey(await generateAgentKey('EdDSA'));
      registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, id, id)), {
        owner: 'bench@example.com',
        group: 'finance-agents',
        allowedTools: ['payments.transfer'],
        dataClasses: ['financial'],
        jurisdictions: ['US'],
      });
      if (i < options.loadAgents) keys.push(key);
    }
    const enrollSeconds = (performance.now() - t) / 1000;

    // History: each agent's calls come in 10 sessions of back-to-back transfers, spread evenly
    // over the hours of the day across the last four weeks, at amounts around its own median.
    t = performance.now();
    const now = Date.now();
    const perAgent = Math.floor(options.historyCalls / options.agents);
    const seeder = new RiskEngine(db, riskConfig, { maxCachedAgents: 64 });
    const seed = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const agentId = `risk-agent-${i}`;
        const sessions = 10;
        for (let s = 0; s < sessions; s++) {
          const day = now - 28 * DAY + Math.floor((s * 27 * DAY) / sessions);
          let at = day - (day % DAY) + Math.floor(((s * 24) / sessions) * 3_600_000) + Math.floor(random() * 600_000);
          for (let k = 0; k < perAgent / sessions; k++) {
            at += 5_000 + Math.floor(random() * 25_000);
            const call = transfer(
              medianOf(i) * Math.exp((random() - 0.5) * 0.6),
              KNOWN_PAYEES[Math.floor(random() * KNOWN_PAYEES.length)]!,
            );
            seeder.submitted(agentId, `seed-${i}-${s}-${k}`, call, callDigest(call.tool, call.params), at, 'allowed');
          }
        }
      }
    });
    for (let i = 0; i < options.agents; i += 500) seed.immediate(i, Math.min(options.agents, i + 500));
    const seedSeconds = (performance.now() - t) / 1000;
    const rows = db
      .prepare<[], { n: number }>(
        'SELECT (SELECT COUNT(*) FROM risk_amounts) + (SELECT COUNT(*) FROM risk_counts) + (SELECT COUNT(*) FROM risk_known) AS n',
      )
      .get()!.n;

    // Scoring cost in process, and the memory baselines hold.
    const engine = new RiskEngine(db, riskConfig, { maxCachedAgents: options.agents + 1 });
    const agentRecord = (i: number) => ({ id: `risk-agent-${i}`, dataClasses: ['financial'], jurisdictions: ['US'] });
    collectGarbage();
    const heap0 = process.memoryUsage().heapUsed;
    t = performance.now();
    for (let i = 0; i < options.agents; i++) {
      const call = transfer(medianOf(i), KNOWN_PAYEES[0]!);
      engine.score({ agent: agentRecord(i), call, callSha256: callDigest(call.tool, call.params), now });
    }
    const coldMicros = ((performance.now() - t) * 1000) / options.agents;
    collectGarbage();
    const heap1 = process.memoryUsage().heapUsed;
    const warmCalls = Array.from({ length: 2_000 }, (_, j) => {
      const i = Math.floor(random() * options.agents);
      const call = transfer(medianOf(i) * (0.5 + random()), KNOWN_PAYEES[j % KNOWN_PAYEES.length]!);
      return { i, call, digest: callDigest(call.tool, call.params) };
    });
    const warmTimes: number[] = [];
    let maxScore = 0;
    for (let round = 0; round < 10; round++) {
      for (const w of warmCalls) {
        // A fresh call object each time, as on the decision path (features are cached per object).
        const call = { ...w.call, params: { ...w.call.params } };
        const t0 = performance.now();
        const r = engine.score({ agent: agentRecord(w.i), call, callSha256: w.digest, now });
        warmTimes.push(performance.now() - t0);
        maxScore = Math.max(maxScore, r.score);
      }
    }
    warmTimes.sort((a, b) => a - b);

    // Data flow (session.report): 500 sessions that each read a ~2 KB e-mail naming an account,
    // then a call in that session to that account (the strong-taint check runs in full).
    const email = (j: number) =>
      `From: billing@supplier-${j}.example\nDear customer, ${'our invoice details follow. '.repeat(60)}Please pay to account GB${String(10 + (j % 89))}BANK${String(j).padStart(14, '0')} by Friday. Regards, Accounts`;
    const flows = Array.from({ length: 500 }, (_, j) => ({ i: Math.floor(random() * options.agents), j }));
    t = performance.now();
    db.transaction(() => {
      for (const { i, j } of flows)
        engine.reported(
          `risk-agent-${i}`,
          `flow-${j}`,
          [
            { source: 'user', trust: 'trusted', content: 'Pay the invoice that came in today.' },
            { source: 'email', trust: 'untrusted', content: email(j) },
          ],
          now - 60_000,
        );
    })();
    const reportMicros = ((performance.now() - t) * 1000) / flows.length;
    const flowTimes: number[] = [];
    for (const { i, j } of flows) {
      const call = { ...transfer(medianOf(i), KNOWN_PAYEES[0]!), session: { id: `flow-${j}`, depth: 1 } };
      call.params = { ...call.params, account: `GB${String(10 + (j % 89))}BANK${String(j).padStart(14, '0')}` };
      const t0 = performance.now();
      const r = engine.score({ agent: agentRecord(i), call, callSha256: callDigest(call.tool, call.params), now });
      flowTimes.push(performance.now() - t0);
      if (!r.factors.some((f) => f.name === 'data_flow')) throw new Error('the data-flow bench call did not raise data_flow');
    }
    flowTimes.sort((a, b) => a - b);
    db.close();

    // Decision latency with and without scoring, same data, same offered load.
    const phase = async (enabled: boolean): Promise<OpenLoopResult> => {
      writeConfig(enabled);
      const core = await startChild('core', dataDir);
      try {
        const clients: Array<{ client: AgentClient; index: number }> = [];
        for (let i = 0; i < keys.length; i += 50) {
          const batch = keys.slice(i, i + 50).map((key, j) => ({
            client: new AgentClient({
              url: `ws://127.0.0.1:${core.port}`,
              agentId: `risk-agent-${i + j}`,
              key,
              webSocket,
              reconnect: false,
              requestTimeoutMs: 30_000,
            }),
            index: i + j,
          }));
          await Promise.all(batch.map((c) => c.client.connect()));
          clients.push(...batch);
        }
        // Warm-up: every agent's first call (loads its profile), then a short run.
        await Promise.all(
          clients.map(({ client, index }) => client.submit(transfer(medianOf(index) * 0.3, KNOWN_PAYEES[0]!)).catch(() => undefined)),
        );
        await openLoop(clients, Math.min(2, options.seconds), options.openLoopPerSecond, () => core.cpu(), random);
        const result = await openLoop(clients, options.seconds, options.openLoopPerSecond, () => core.cpu(), random);
        for (const { client } of clients) client.close();
        return result;
      } finally {
        await core.stop();
      }
    };
    const off1 = await phase(false);
    const on = await phase(true);
    const off2 = await phase(false);
    const offP50 = (off1.p50Ms + off2.p50Ms) / 2;
    const offP99 = (off1.p99Ms + off2.p99Ms) / 2;
    const offCpu = (off1.cpuPerDecisionMs + off2.cpuPerDecisionMs) / 2;
    const added = (on.p50Ms - offP50) / offP50;

    return {
      agents: options.agents,
      historicalCalls: perAgent * options.agents,
      baselineRows: rows,
      setup: {
        enrollSeconds: +enrollSeconds.toFixed(1),
        learnSeconds: +seedSeconds.toFixed(1),
        learnMicrosPerCall: +((seedSeconds * 1e6) / (perAgent * options.agents)).toFixed(1),
      },
      scoringInProcess: {
        coldMicrosPerCall: +coldMicros.toFixed(1),
        warmMicrosPerCall: {
          p50: +(percentile(warmTimes, 50) * 1000).toFixed(1),
          p99: +(percentile(warmTimes, 99) * 1000).toFixed(1),
          mean: +((warmTimes.reduce((s, x) => s + x, 0) / warmTimes.length) * 1000).toFixed(1),
        },
        maxScoreSeen: maxScore,
        dataFlow: {
          reportMicrosPerSession: +reportMicros.toFixed(1),
          scoreMicrosPerCall: { p50: +(percentile(flowTimes, 50) * 1000).toFixed(1), p99: +(percentile(flowTimes, 99) * 1000).toFixed(1) },
        },
        baselineMemoryPerAgentKiB: +((heap1 - heap0) / options.agents / 1024).toFixed(2),
      },
      decisionLatency: {
        offeredPerSecond: options.openLoopPerSecond,
        connectedAgents: options.loadAgents,
        scoringOff: [off1, off2],
        scoringOn: on,
        addedToP50: `${(added * 100).toFixed(1)}%`,
        addedToP99: `${(((on.p99Ms - offP99) / offP99) * 100).toFixed(1)}%`,
        addedCpuPerDecisionMs: +(on.cpuPerDecisionMs - offCpu).toFixed(3),
      },
      targets: { addedLatencyBelow: '10%', met: added < 0.1 },
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
