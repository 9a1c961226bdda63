/**
 * Team engine bench (BENCH_ONLY=team-engine, issue #15's performance section through the whole
 * engine): (a) a fixed workload (BENCH_TEAM_CALLS calls of the seeded demo finance mix, each
 * agent's calls in order, risk scoring off) from real SDK agents on real WebSockets to the
 * embedded engine on SQLite, then (b) the same workload spread over two whole hubs (gateway,
 * decision service, PostgreSQL store, audit leader) on one real PostgreSQL 15 cluster, in the
 * same run: decisions/s, p50 and p99 of each and their ratio (target: PostgreSQL at least half of
 * SQLite), and the CPU each engine spent per decision (this process, and the PostgreSQL cluster's
 * processes). The bench fails when the two engines' allow / hold / deny counts differ or any call
 * failed, so both figures measure the same work. The hubs reach the database over its Unix socket
 * (BENCH_TEAM_DB=tcp: loopback TCP); BENCH_TEAM_CPU_PROF=<prefix> writes a CPU profile of this
 * process's main thread over each engine's measured workload. (c) the latency from the last tap on hub A
 * (software authenticator, the real approval service) to the token at an agent connected to hub
 * B; (d) failover: a hub started by the real CLI leads the team audit log, kill -9, time until
 * an in-process hub leads (target under 5 s). Engines and load generator share this process
 * (the failover's leader is its own process).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { REPO_ROOT, type RunningCountersign } from '../main/core/app.js';
import type { ToolCall } from '../shared/protocol.js';
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
const RISK_OFF = { risk: { enabled: false } };

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
 * The fixed workload: `calls` calls of the demo finance mix from decision-path.bench.ts (seeded),
 * dealt to the agents in turn, each agent's share in a fixed order. With risk scoring off the
 * policy alone decides each call, so the same workload gives the same allow / hold / deny counts
 * on every engine and in every run, whatever the timing.
 */
function workload(agents: number, calls: number, seed: number): ToolCall[][] {
  const rng = prng(seed);
  const perAgent: ToolCall[][] = Array.from({ length: agents }, () => []);
  for (let i = 0; i < calls; i++) perAgent[i % agents]!.push(mixedCall('finance', rng, 1));
  return perAgent;
}

/**
 * Run the workload with `concurrency` calls in flight: worker w submits for the agents w,
 * w + concurrency, ... one call at a time, so each agent's calls keep their order. Every answer
 * (allow, pending, deny) is a decision; an error is not, and is counted by its code.
 */
async function runWorkload(clients: AgentClient[], work: ToolCall[][], concurrency: number) {
  const latencies: number[] = [];
  const outcomes: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const start = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, clients.length) }, async (_, w) => {
      const mine = clients.map((_c, k) => k).filter((k) => k % concurrency === w);
      const next = new Map(mine.map((k) => [k, 0]));
      for (let busy = true; busy;) {
        busy = false;
        for (const k of mine) {
          const call = work[k]![next.get(k)!];
          if (call === undefined) continue;
          busy = true;
          next.set(k, next.get(k)! + 1);
          const t0 = performance.now();
          try {
            const result = await clients[k]!.submit(call);
            latencies.push(performance.now() - t0);
            outcomes[result.decision] = (outcomes[result.decision] ?? 0) + 1;
          } catch (error) {
            // By code, so a refusal under load (a rate limit, store_unavailable) shows as what it is.
            const code = (error as { code?: string }).code ?? (error as Error).message;
            errors[code] = (errors[code] ?? 0) + 1;
          }
        }
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((x, y) => x - y);
  return {
    calls: latencies.length + Object.values(errors).reduce((n, e) => n + e, 0),
    seconds: +elapsed.toFixed(2),
    decisionsPerSecond: Math.round(latencies.length / elapsed),
    p50Ms: +pct(latencies, 0.5).toFixed(2),
    p99Ms: +pct(latencies, 0.99).toFixed(2),
    outcomes,
    errors,
  };
}

/** CPU seconds used so far by the PostgreSQL cluster: the postmaster, its live backends, and the backends that exited (its children's time). */
function clusterCpuSeconds(dataDir: string | undefined): number {
  if (dataDir === undefined) return 0;
  const ticks = 100; // USER_HZ: /proc reports CPU time in 1/100 s on Linux
  const stat = (pid: string) => {
    try {
      // Fields after the command's closing parenthesis: state is 3rd, ppid 4th, utime 14th ... cstime 17th.
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return text.slice(text.lastIndexOf(')') + 2).split(' ');
    } catch {
      return undefined; // exited in between
    }
  };
  const postmaster = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim();
  const own = stat(postmaster);
  if (own === undefined) return 0;
  let total = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || pid === postmaster) continue;
    const fields = stat(pid);
    if (fields?.[1] === postmaster) total += Number(fields[11]) + Number(fields[12]);
  }
  return total / ticks;
}

/**
 * CPU per decision while the measured workload ran: this process (hubs or the embedded engine,
 * their worker threads and the load generator, all threads) and the PostgreSQL cluster. It moves
 * much less with the load of other processes on the machine than decisions/s does, and says
 * where the cost is.
 */
function cpuMeter(pgDataDir?: string) {
  const node0 = process.cpuUsage();
  const pg0 = clusterCpuSeconds(pgDataDir);
  return (decisions: number) => {
    const node = process.cpuUsage(node0);
    const nodeMs = (node.user + node.system) / 1000 / Math.max(1, decisions);
    const pgMs = ((clusterCpuSeconds(pgDataDir) - pg0) * 1000) / Math.max(1, decisions);
    return { processMs: +nodeMs.toFixed(2), postgresMs: +pgMs.toFixed(2), totalMs: +(nodeMs + pgMs).toFixed(2) };
  };
}

async function measure(clients: AgentClient[], options: { calls: number; concurrency: number }, pgDataDir?: string, profile?: string) {
  await Promise.all(clients.map((c) => c.connect()));
  await runWorkload(clients, workload(clients.length, Math.min(options.calls, 20 * clients.length), 7), options.concurrency); // warm-up
  // BENCH_TEAM_CPU_PROF=<file>: a CPU profile of this process's main thread over the measured workload of that engine.
  const session = profile === undefined ? undefined : new Session();
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const cpu = cpuMeter(pgDataDir);
  const result = await runWorkload(clients, workload(clients.length, options.calls, 1), options.concurrency);
  const cpuPerDecision = cpu(result.calls);
  if (session) {
    const { profile: taken } = await session.post('Profiler.stop');
    writeFileSync(profile!, JSON.stringify(taken));
    session.disconnect();
  }
  for (const c of clients) c.close();
  return { ...result, cpuMsPerDecision: cpuPerDecision };
}

/** The bench's own check: both engines answered every call, with the same counts per outcome (else the figures compare different work). */
function assertSameOutcomes(sqlite: Awaited<ReturnType<typeof runWorkload>>, postgres: Awaited<ReturnType<typeof runWorkload>>): void {
  const sorted = (o: Record<string, number>) => JSON.stringify(Object.entries(o).sort(([x], [y]) => x.localeCompare(y)));
  if (
    Object.keys(sqlite.errors).length > 0 ||
    Object.keys(postgres.errors).length > 0 ||
    sorted(sqlite.outcomes) !== sorted(postgres.outcomes)
  )
    throw new Error(
      `team-engine: the fixed workload's outcomes differ (SQLite ${JSON.stringify(sqlite.outcomes)} errors ${JSON.stringify(sqlite.errors)}; ` +
        `PostgreSQL ${JSON.stringify(postgres.outcomes)} errors ${JSON.stringify(postgres.errors)}): the throughput figures would not compare the same work`,
    );
}

/**
 * Failover between whole hubs: a hub started by the real CLI (`countersign hub`, its own process)
 * leads the team audit log, an in-process hub follows; kill -9 the leader and time until the
 * follower leads (it logs so when it holds the leader lock and has taken over sequencing).
 */
async function measureFailover(databaseUrl: string, room: { dirs: string[]; hubs: RunningCountersign[] }): Promise<number> {
  const leaderDir = teamHubDir(room, 'hub-c', { gateway: GATEWAY, ...RISK_OFF });
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO_ROOT, 'main', 'cli', 'index.ts'),
      'hub',
      '--database',
      databaseUrl,
      '--name',
      'hub-c',
      '--data-dir',
      leaderDir,
      '--domain',
      'test',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  try {
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`hub-c did not lead: ${stderr}`)), 120_000);
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes('hub hub-c leads the team audit log')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`hub-c exited (${code}): ${stderr}`)));
    });
    let tookOver: () => void = () => undefined;
    const led = new Promise<void>((resolve) => (tookOver = resolve));
    await startTeamHub(room, 'hub-d', databaseUrl, teamHubDir(room, 'hub-d', { gateway: GATEWAY, ...RISK_OFF }), (line) => {
      if (line.includes('hub hub-d leads the team audit log')) tookOver();
    });
    const killed = performance.now();
    child.kill('SIGKILL');
    await led;
    return Math.round(performance.now() - killed);
  } finally {
    child.kill('SIGKILL');
  }
}

export async function runTeamEngineBench(options: {
  calls: number;
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
    const embedded = await startHarness({ config: { serverId: 'embedded', domain: 'test', gateway: GATEWAY, ...RISK_OFF } });
    ensurePeople(embedded.app, FINANCE_SCOPE.owner);
    for (const agent of agents) embedded.app.registry.enroll(agent.enrollment, FINANCE_SCOPE);
    const profile = process.env.BENCH_TEAM_CPU_PROF;
    const sqlite = await measure(
      agents.map((agent) => connect(embedded.app.url, agent)),
      options,
      undefined,
      profile && `${profile}.sqlite.cpuprofile`,
    );
    await embedded.close();

    // (b) two whole hubs on one PostgreSQL database, agents enrolled once in the team directory.
    // The database is on this machine: the hubs reach it over its Unix socket (`?host=<dir>`, as a
    // deployment with a local database would); BENCH_TEAM_DB=tcp measures loopback TCP instead.
    const databaseUrl = process.env.BENCH_TEAM_DB === 'tcp' ? cluster.url : cluster.socketUrl;
    for (const name of ['hub-a', 'hub-b']) {
      // The product's checkpoint interval, not the team tests' 200 ms: the bench measures what a hub does.
      const dataDir = teamHubDir({ dirs }, name, { gateway: GATEWAY, ...RISK_OFF, team: { checkpointEveryMs: CHECKPOINT_EVERY_MS } });
      await ensureTeamPeople(await startTeamHub({ hubs }, name, databaseUrl, dataDir), FINANCE_SCOPE.owner);
    }
    const [a, b] = hubs as [RunningCountersign, RunningCountersign];
    const approvalAgent = await makeAgent('bench-approval-bot');
    for (const agent of [...agents, approvalAgent]) await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
    const postgres = await measure(
      agents.map((agent, i) => connect(hubs[i % 2]!.url, agent)),
      options,
      join(cluster.dir, 'data'),
      profile && `${profile}.postgres.cpuprofile`,
    );
    assertSameOutcomes(sqlite, postgres);

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

    // (d) failover: hubs A and B step away (a clean close hands the lock on), a CLI hub leads, kill -9 it.
    for (const hub of hubs.splice(0)) await hub.close();
    const failoverMs = await measureFailover(databaseUrl, { dirs, hubs });

    const ratio = postgres.decisionsPerSecond / Math.max(1, sqlite.decisionsPerSecond);
    return {
      setup: {
        calls: options.calls,
        concurrency: options.concurrency,
        agents: options.agents,
        hubs: 2,
        database: process.env.BENCH_TEAM_DB === 'tcp' ? 'loopback TCP' : 'Unix socket',
        // Off in both engines: the risk scorer's call-rate factor depends on timing, so with it on
        // the faster engine holds more calls and the counts (and the work) differ. Risk cost: decision-path and risk benches.
        risk: 'off',
      },
      sameOutcomesOnBoth: true,
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
      failoverKillNineToOtherHubLeadingMs: failoverMs,
      failoverTargetMs: 5_000,
      failoverTargetMet: failoverMs < 5_000,
    };
  } finally {
    for (const hub of hubs.reverse()) await hub.close().catch(() => undefined);
    cluster.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}
