/**
 * Team risk baselines bench (BENCH_ONLY=team-risk): what the team's shared baselines
 * (risk/pg-risk-log.ts, risk/risk-engine.ts `prepare`) cost per decision as an agent's history
 * grows. Two whole hubs on one real PostgreSQL 15 cluster; for each history size (BENCH_TEAM_RISK_HISTORY,
 * default 1000,20000 events) a fresh agent gets that many executed calls in the team's risk log
 * (written straight into risk_log, a minute apart), then makes BENCH_TEAM_RISK_CALLS (200) sequential
 * calls alternating between hub A and hub B (so every call's hub reads the other hub's last event).
 * The history is then folded into the agent's snapshot (risk_baselines), as the hubs do every 500
 * events while a history grows (here in one go: `snapshotMs`, the cost of folding the whole history
 * once, which a running team spreads over its decisions).
 * Printed per size: the first call on each hub (it reads the snapshot and the events after it: the cold load), then per
 * decision the process CPU time (user + system, both hubs and the agent), the time inside
 * `prepare` (the read of what other hubs committed) and the wall p50. Flat per-decision figures
 * across sizes are the target, and so is a flat cold load.
 */
import { rmSync } from 'node:fs';
import type { RunningCountersign } from '../main/core/app.js';
import { AgentClient } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../test/helpers/harness.js';
import { startPostgres, testPool } from '../test/helpers/postgres.js';
import { ensureTeamPeople, startTeamHub, teamHubDir } from '../test/helpers/team-hubs.js';

/** Generous limits: the bench measures the baseline's cost, not the rate limiter or the pending cap (the burst is held). */
const GATEWAY = { port: 0, ratePerSecond: 100_000, rateBurst: 100_000, maxPendingPerAgent: 100_000 };
const median = (values: number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? NaN;
const round = (n: number, digits = 3) => +n.toFixed(digits);

export async function runTeamRiskBench(options: { histories: number[]; calls: number }): Promise<Record<string, unknown>> {
  const cluster = await startPostgres();
  const db = testPool(cluster.url);
  const room = { dirs: [] as string[], hubs: [] as RunningCountersign[] };
  const clients: AgentClient[] = [];
  try {
    const [a, b] = [
      await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a', { gateway: GATEWAY })),
      await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b', { gateway: GATEWAY })),
    ] as const;
    await ensureTeamPeople(a, FINANCE_SCOPE.owner);
    // Time spent reading the team's events, on both hubs (wrapped for the measurement only).
    let prepareMs = 0;
    for (const hub of [a, b]) {
      const engine = hub.riskEngine!;
      const prepare = engine.prepare.bind(engine);
      engine.prepare = async (agentId, now) => {
        const t0 = performance.now();
        try {
          await prepare(agentId, now);
        } finally {
          prepareMs += performance.now() - t0;
        }
      };
    }
    const results: Record<string, unknown>[] = [];
    for (const [n, history] of options.histories.entries()) {
      const agentId = `risk-bench-${n}`;
      const key = await importAgentKey(await generateAgentKey('EdDSA'));
      await a.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, agentId, agentId)), FINANCE_SCOPE);
      await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
      const now = Date.now();
      await db.query(
        `INSERT INTO risk_log (agent_id, hub, event)
         SELECT $1, 'bench', json_build_object('kind', 'submitted', 'requestId', 'history-' || g,
           'call', json_build_object('tool', 'payments.transfer',
             'params', json_build_object('amount', (10 + g % 90) || '.00', 'currency', 'USD', 'payee', 'Payee ' || (g % 50), 'memo', 'bench'),
             'dataClass', 'financial', 'jurisdiction', 'US', 'provenance', json_build_array('user')),
           'callSha256', 'history-' || g, 'at', $2::bigint - ($3::bigint - g + 120) * 60000, 'state', 'allowed')::text
         FROM generate_series(1, $3) AS g`,
        [agentId, now, history],
      );
      const folding = performance.now();
      if (!(await a.riskEngine!.snapshot(agentId))) throw new Error('the bench history was not snapshotted');
      const snapshotMs = performance.now() - folding;
      const onHub = [a, b].map((hub) => {
        const client = new AgentClient({
          url: hub.url,
          agentId,
          key,
          webSocket: nodeWebSocket,
          reconnect: false,
          requestTimeoutMs: 30_000,
        });
        clients.push(client);
        return client;
      });
      await Promise.all(onHub.map((c) => c.connect()));
      // The first call on each hub reads the agent's snapshot and the events after it (the cold load).
      const cold: number[] = [];
      for (const client of onHub) {
        const t0 = performance.now();
        await client.submit(transferCall('12.00', 'Payee 1'));
        cold.push(performance.now() - t0);
      }
      prepareMs = 0;
      const wall: number[] = [];
      const cpu = process.cpuUsage();
      for (let i = 0; i < options.calls; i++) {
        const t0 = performance.now();
        await onHub[i % 2]!.submit(transferCall(`${10 + (i % 40)}.00`, `Payee ${i % 50}`));
        wall.push(performance.now() - t0);
      }
      const used = process.cpuUsage(cpu);
      results.push({
        history,
        snapshotMs: round(snapshotMs, 1),
        coldFirstCallMs: cold.map((ms) => round(ms, 1)),
        cpuPerDecisionMs: round((used.user + used.system) / 1000 / options.calls),
        prepareMsPerDecision: round(prepareMs / options.calls),
        wallP50Ms: round(median(wall), 2),
      });
      for (const c of onHub) c.close();
    }
    const first = results[0] as { cpuPerDecisionMs: number; prepareMsPerDecision: number };
    const last = results.at(-1) as { cpuPerDecisionMs: number; prepareMsPerDecision: number };
    return {
      calls: options.calls,
      sizes: results,
      cpuRatioLargestToSmallest: round(last.cpuPerDecisionMs / first.cpuPerDecisionMs, 2),
      prepareRatioLargestToSmallest: round(last.prepareMsPerDecision / first.prepareMsPerDecision, 2),
    };
  } finally {
    for (const c of clients) c.close();
    for (const hub of room.hubs.reverse()) await hub.close().catch(() => undefined);
    await db.end();
    cluster.destroy();
    for (const dir of room.dirs) rmSync(dir, { recursive: true, force: true });
  }
}
