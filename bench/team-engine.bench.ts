/**
 * Team engine bench (BENCH_ONLY=team-engine, issue #15's performance section through the whole
 * engine): decisions/s and p99 from real SDK agents on real WebSockets, (a) to the embedded engine
 * on SQLite and (b) spread over two whole hubs (gateway, decision service, PostgreSQL store, audit
 * leader) on one real PostgreSQL 15 cluster, with the same agents, the same calls and the same
 * concurrency in the same run, and their ratio (target: PostgreSQL at least half of SQLite); then
 * the approval latency from the last tap on hub A (software authenticator, the real approval
 * service) to the token at an agent connected to hub B. The store-level figures and failover time
 * stay in team-store.bench.ts and test/integration/team-hub-faults.test.ts. Everything runs in
 * this process (engines and load generator share the CPU alike in both runs).
 */
import { rmSync } from 'node:fs';
import type { RunningCountersign } from '../main/core/app.js';
import { parseConfig } from '../main/core/config.js';
import { AgentClient } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest, type EnrollmentPayload } from '../shared/enrollment.js';
import { FINANCE_SCOPE, ensurePeople, nodeWebSocket, startHarness } from '../test/helpers/harness.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { prng } from '../test/helpers/prng.js';
import { ensureTeamPeople, registerApprovers, startTeamHub, tapOn, teamHubDir } from '../test/helpers/team-hubs.js';
import { mixedCall } from './decision-path.bench.js';

const APPROVERS = ['alice', 'bob'] as const;
/** Generous gateway limits: the bench measures the engine, not the per-agent rate limiter. */
const GATEWAY = { port: 0, ratePerSecond: 100_000, rateBurst: 100_000 };
const CHECKPOINT_EVERY_MS = parseConfig({}).team.checkpointEveryMs;

type Agent = { id: string; key: AgentKey; enrollment: EnrollmentPayload };

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;

async function makeAgent(id: string): Promise<Agent> {
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  return { id, key, enrollment: await verifyEnrollmentRequest(await createEnrollmentRequest(key, id, id)) };
}

function connect(url: string, agent: Agent): AgentClient {
  return new AgentClient({ url, agentId: agent.id, key: agent.key, webSocket: nodeWebSocket, reconnect: false, requestTimeoutMs: 30_000 });
}

/**
 * Closed loop: `concurrency` calls in flight, each from the next client in turn, the demo finance
 * mix from decision-path.bench.ts (seeded, so both engines get the same calls). Every answer
 * (allow, pending, deny) is a decision; an error is not, and is counted by its code.
 */
async function closedLoop(clients: AgentClient[], seconds: number, concurrency: number, seed: number) {
  const latencies: number[] = [];
  const outcomes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let turn = 0;
  const rng = prng(seed);
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const client = clients[turn++ % clients.length]!;
        const t0 = performance.now();
        try {
          const result = await client.submit(mixedCall('finance', rng, 1));
          latencies.push(performance.now() - t0);
          outcomes[result.decision] = (outcomes[result.decision] ?? 0) + 1;
        } catch (error) {
          // By code, so a refusal under load (a rate limit, store_unavailable) shows as what it is.
          const code = (error as { code?: string }).code ?? (error as Error).message;
          errors[code] = (errors[code] ?? 0) + 1;
        }
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((x, y) => x - y);
  return {
    decisionsPerSecond: Math.round(latencies.length / elapsed),
    p50Ms: +pct(latencies, 0.5).toFixed(2),
    p99Ms: +pct(latencies, 0.99).toFixed(2),
    errors,
    outcomes,
  };
}

async function measure(clients: AgentClient[], options: { seconds: number; concurrency: number }) {
  await Promise.all(clients.map((c) => c.connect()));
  await closedLoop(clients, Math.min(1, options.seconds), options.concurrency, 7); // warm-up
  const result = await closedLoop(clients, options.seconds, options.concurrency, 1);
  for (const c of clients) c.close();
  return result;
}

export async function runTeamEngineBench(options: {
  seconds: number;
  concurrency: number;
  agents: number;
  approvals: number;
}): Promise<Record<string, unknown>> {
  const agents = await Promise.all(Array.from({ length: options.agents }, (_, i) => makeAgent(`bench-finance-${i}`)));
  const cluster = await startPostgres();
  const hubs: RunningCountersign[] = [];
  const dirs: string[] = [];
  try {
    // (a) the embedded engine on SQLite
    const embedded = await startHarness({ config: { serverId: 'embedded', domain: 'test', gateway: GATEWAY } });
    ensurePeople(embedded.app, FINANCE_SCOPE.owner);
    for (const agent of agents) embedded.app.registry.enroll(agent.enrollment, FINANCE_SCOPE);
    const sqlite = await measure(
      agents.map((agent) => connect(embedded.app.url, agent)),
      options,
    );
    await embedded.close();

    // (b) two whole hubs on one PostgreSQL database, agents enrolled once in the team directory
    for (const name of ['hub-a', 'hub-b']) {
      // The product's checkpoint interval, not the team tests' 200 ms: the bench measures what a hub does.
      const dataDir = teamHubDir({ dirs }, name, { gateway: GATEWAY, team: { checkpointEveryMs: CHECKPOINT_EVERY_MS } });
      await ensureTeamPeople(await startTeamHub({ hubs }, name, cluster.url, dataDir), FINANCE_SCOPE.owner);
    }
    const [a, b] = hubs as [RunningCountersign, RunningCountersign];
    const approvalAgent = await makeAgent('bench-approval-bot');
    for (const agent of [...agents, approvalAgent]) await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
    const postgres = await measure(
      agents.map((agent, i) => connect(hubs[i % 2]!.url, agent)),
      options,
    );

    // (c) approval latency: held on hub B, first tap on hub A, last tap on hub A, token at the agent on B
    const keysOnA = await registerApprovers(a, APPROVERS);
    const agentOnB = connect(b.url, approvalAgent);
    await agentOnB.connect();
    const approvalMs: number[] = [];
    for (let i = 0; i < options.approvals; i++) {
      const held = await agentOnB.submit({
        tool: 'payments.transfer',
        params: { amount: '48000.00', currency: 'USD', payee: 'Northwind Traders', memo: `bench approval ${i}` },
        dataClass: 'financial',
        jurisdiction: 'US',
        provenance: ['user'],
      });
      if (held.decision !== 'pending') throw new Error(`bench transfer was not held: ${held.decision}`);
      await a.approvals.submitCeremony(await tapOn(a, keysOnA.get('alice')!, held.requestId, 'alice'));
      const lastTap = await tapOn(a, keysOnA.get('bob')!, held.requestId, 'bob');
      const answer = agentOnB.waitForDecision(held.requestId, { timeoutMs: 30_000 });
      const tapped = performance.now();
      await a.approvals.submitCeremony(lastTap);
      const result = await answer;
      approvalMs.push(performance.now() - tapped);
      if (result.state !== 'approved' || result.token === undefined) throw new Error(`bench approval ended ${result.state}`);
    }
    agentOnB.close();
    approvalMs.sort((x, y) => x - y);

    const ratio = postgres.decisionsPerSecond / Math.max(1, sqlite.decisionsPerSecond);
    return {
      setup: { seconds: options.seconds, concurrency: options.concurrency, agents: options.agents, hubs: 2, risk: 'on' },
      embeddedSqlite: sqlite,
      postgresTwoHubs: postgres,
      pgToSqliteThroughput: +ratio.toFixed(2),
      targetRatio: 0.5,
      targetMet: ratio >= 0.5,
      approvalLastTapOnHubAToTokenOnHubB: {
        requests: approvalMs.length,
        p50Ms: +pct(approvalMs, 0.5).toFixed(1),
        p99Ms: +pct(approvalMs, 0.99).toFixed(1),
      },
    };
  } finally {
    for (const hub of hubs.reverse()) await hub.close().catch(() => undefined);
    cluster.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}
