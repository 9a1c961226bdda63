/**
 * `npm run bench`: performance figures live here, never as timed assertions in tests. Each
 * benchmark measures against a baseline run in the same invocation and prints ratios.
 * Environment: BENCH_SECONDS (default 5), BENCH_CONCURRENCY (50), BENCH_MEMORY_AGENTS (1000 connected
 * in the decision-path load and memory phases), BENCH_ENROLLED_AGENTS (10000), BENCH_LOOKUP_ENTITIES
 * (100000 known payees in the decision-path pack),
 * BENCH_OPEN_LOOP_RATE (250 calls/s offered in the open-loop latency phase),
 * BENCH_RISK_AGENTS (10000 enrolled agents), BENCH_RISK_HISTORY (1000000 historical calls),
 * BENCH_RISK_LOAD_AGENTS (1000 connected in the risk latency phase), BENCH_AUDIT_APPENDS (20000 durable
 * appends per batched phase), BENCH_AUDIT_APPENDS_EACH (2000 with one commit per row), BENCH_AUDIT_BATCH (100 per commit), BENCH_AUDIT_ROUNDS (3 alternating rounds of the batched pair), BENCH_AUDIT_ENTRIES (1000000 in the
 * proof and export phases), BENCH_LOOKUP_SIZES (10,1000,10000,100000 payees in the policy-lookups
 * phase), BENCH_LOOKUP_CALLS (5000 evaluations per size), BENCH_MCP_CALLS (1000 sequential calls per
 * path) and BENCH_MCP_CONCURRENCY (20) for the MCP proxy, BENCH_DESK_QUEUE_SIZES (10,50,1000,10000 pending) and
 * BENCH_DESK_QUEUE_SAMPLES (30 pages per size) for the desk queue, BENCH_DESK_PENDING (1000 waiting)
 * and BENCH_DESK_TAPS (200 last taps) for the desk's last tap to the token, BENCH_DESK_PAINT_SAMPLES (9
 * page loads, cold and warm) for the queue's first paint in Chromium, BENCH_TEAM_CONCURRENCY (32 calls in
 * flight), BENCH_TEAM_AGENTS (32 agents over two hubs), BENCH_TEAM_CALLS (4000 calls in the fixed
 * workload), BENCH_TEAM_APPROVALS (10 approvals), BENCH_TEAM_DB (socket, or tcp) and BENCH_TEAM_CPU_PROF
 * (a file prefix: main-thread CPU profiles of each engine's measured run) for team-engine, BENCH_TEAM_RISK_HISTORY (1000,20000
 * events) and BENCH_TEAM_RISK_CALLS (200) for team-risk, BENCH_ONLY (comma-separated names).
 * Profiling the decision path's server: BENCH_CPU_PROF=<dir> (node --cpu-prof of the core child, every
 * thread) and BENCH_POLICY_WORKER=0 (the core's Cedar in its event loop's thread, not the worker).
 */
import { runDecisionPathBench } from './decision-path.bench.js';
import { runCustodyBench } from './custody.bench.js';
import { runApprovalsBench } from './approvals.bench.js';
import { runRiskBench } from './risk.bench.js';
import { runAuditBench } from './audit.bench.js';
import { runPolicyLookupsBench } from './policy-lookups.bench.js';
import { runMcpProxyBench } from './mcp-proxy.bench.js';
import { runTeamStoreBench } from './team-store.bench.js';
import { runTeamEngineBench } from './team-engine.bench.js';
import { runTeamRiskBench } from './team-risk.bench.js';
import { runDeskQueueBench } from './desk-queue.bench.js';
import { runDeskApprovalBench } from './desk-approval.bench.js';
import { runDeskPaintBench } from './desk-paint.bench.js';
import { benchToken } from './pkcs11-setup.js';
import { availableParallelism, loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../main/core/app.js';

// SoftHSM scans its tokens when the module first loads: make the bench token before anything.
benchToken();
// The core under test is the built `countersign` command (bench/child-server.ts): build it now if
// the sources are newer, so no measured start-up includes a build.
if (spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'build-server.mjs'), '--if-stale'], { stdio: 'inherit' }).status !== 0)
  throw new Error('npm run build:server failed');

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const only = process.env.BENCH_ONLY?.split(',');
const benches: Record<string, () => Promise<Record<string, unknown>>> = {
  'decision-path': () =>
    runDecisionPathBench({
      concurrency: Number(process.env.BENCH_CONCURRENCY ?? 50),
      seconds,
      memoryAgents: Number(process.env.BENCH_MEMORY_AGENTS ?? 1000),
      enrolledAgents: Number(process.env.BENCH_ENROLLED_AGENTS ?? 10_000),
      lookupEntities: Number(process.env.BENCH_LOOKUP_ENTITIES ?? 100_000),
      openLoopPerSecond: Number(process.env.BENCH_OPEN_LOOP_RATE ?? 250),
    }),
  custody: () => runCustodyBench({ seconds: Math.min(seconds, 3) }),
  approvals: () => runApprovalsBench({ requests: Number(process.env.BENCH_APPROVALS ?? 200) }),
  risk: () =>
    runRiskBench({
      agents: Number(process.env.BENCH_RISK_AGENTS ?? 10_000),
      historyCalls: Number(process.env.BENCH_RISK_HISTORY ?? 1_000_000),
      loadAgents: Number(process.env.BENCH_RISK_LOAD_AGENTS ?? 1_000),
      seconds,
      openLoopPerSecond: Number(process.env.BENCH_OPEN_LOOP_RATE ?? 250),
    }),
  audit: () =>
    runAuditBench({
      appends: Number(process.env.BENCH_AUDIT_APPENDS ?? 20_000),
      appendsEach: Number(process.env.BENCH_AUDIT_APPENDS_EACH ?? 2_000),
      batch: Number(process.env.BENCH_AUDIT_BATCH ?? 100),
      rounds: Number(process.env.BENCH_AUDIT_ROUNDS ?? 3),
      entries: Number(process.env.BENCH_AUDIT_ENTRIES ?? 1_000_000),
    }),
  'policy-lookups': () =>
    runPolicyLookupsBench({
      sizes: (process.env.BENCH_LOOKUP_SIZES ?? '10,1000,10000,100000').split(',').map(Number),
      calls: Number(process.env.BENCH_LOOKUP_CALLS ?? 5_000),
      setStyleSizes: [10, 1_000, 10_000],
    }),
  'mcp-proxy': () =>
    runMcpProxyBench({
      calls: Number(process.env.BENCH_MCP_CALLS ?? 1_000),
      seconds: Math.min(seconds, 5),
      concurrency: Number(process.env.BENCH_MCP_CONCURRENCY ?? 20),
    }),
  'team-store': () => runTeamStoreBench({ seconds: Math.min(seconds, 5), concurrency: Number(process.env.BENCH_TEAM_CONCURRENCY ?? 32) }),
  'team-engine': () =>
    runTeamEngineBench({
      calls: Number(process.env.BENCH_TEAM_CALLS ?? 4_000),
      concurrency: Number(process.env.BENCH_TEAM_CONCURRENCY ?? 32),
      agents: Number(process.env.BENCH_TEAM_AGENTS ?? 32),
      approvals: Number(process.env.BENCH_TEAM_APPROVALS ?? 10),
    }),
  'team-risk': () =>
    runTeamRiskBench({
      histories: (process.env.BENCH_TEAM_RISK_HISTORY ?? '1000,20000').split(',').map(Number),
      calls: Number(process.env.BENCH_TEAM_RISK_CALLS ?? 200),
    }),
  'desk-queue': () =>
    runDeskQueueBench({
      sizes: (process.env.BENCH_DESK_QUEUE_SIZES ?? '10,50,1000,10000').split(',').map(Number),
      samples: Number(process.env.BENCH_DESK_QUEUE_SAMPLES ?? 30),
    }),
  'desk-approval': () =>
    runDeskApprovalBench({
      pending: Number(process.env.BENCH_DESK_PENDING ?? 1_000),
      taps: Number(process.env.BENCH_DESK_TAPS ?? 200),
    }),
  'desk-paint': () =>
    runDeskPaintBench({
      pending: Number(process.env.BENCH_DESK_PENDING ?? 1_000),
      samples: Number(process.env.BENCH_DESK_PAINT_SAMPLES ?? 9),
    }),
};

for (const [name, run] of Object.entries(benches)) {
  if (only && !only.includes(name)) continue;
  process.stdout.write(`\n== ${name} ==\n`);
  // The machine's load average beside every figure: on a shared machine a ratio means little without it.
  const loadBefore = loadavg().map((l) => +l.toFixed(2));
  const result = await run();
  const loadAverage = { before: loadBefore, after: loadavg().map((l) => +l.toFixed(2)), cpus: availableParallelism() };
  process.stdout.write(`${JSON.stringify({ loadAverage, ...result }, null, 2)}\n`);
}

benchToken().token.cleanup();
