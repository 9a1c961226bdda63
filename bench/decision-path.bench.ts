/**
 * Decision-path benchmark (issue #12: decisions at machine speed whatever the size of the directory).
 *
 * The product as users run it: the demo pack (finance transfers and production changes together)
 * with `BENCH_LOOKUP_ENTITIES` (100,000) known payees as lookup entities, risk scoring ON, 10,000
 * enrolled agents (half finance, half deploy), and a varied call mix (transfers of every tier to
 * known and unknown payees, staging and production deploys, a few jurisdictions): never one
 * repeated call, which the risk scorer rightly treats as a loop. Calls come from 1,000 connected
 * agents (real SDK clients over real WebSockets), 50 in flight at a time, in a closed loop,
 * against (a) the baseline server — same protocol, strict parsing, schema check and
 * agent-signature verification, no policy, no risk, no token signing, no storage — and (b) the
 * real core. Both servers run in their own child process; the load generator runs here. Reports
 * decisions/s and their ratio, server CPU per decision (process CPU time, all threads: the figure
 * that survives a shared machine) beside the baseline's, where the core's time goes, the
 * open-loop latency and the core's resident memory with 1,000 connected agents and the lookup
 * entities loaded.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Pkcs11Token } from '../main/core/custody/pkcs11-token.js';
import { readPin } from '../main/core/custody/pin-source.js';
import { parseStrictJson } from '../shared/canonical-json.js';
import { benchToken } from './pkcs11-setup.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { openDataDir, REPO_ROOT, startCountersign } from '../main/core/app.js';
import { prepareDirectEnrollment } from '../test/helpers/direct-enrollment.js';
import { SIGNED_TYPES, type CallPayload, type ToolCall } from '../shared/protocol.js';
import { prng } from '../test/helpers/prng.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey, publicPart, signCanonical, type AgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { schedOf, startChild, type ChildServer, type Sched, type StageTiming } from './child-server.js';

export interface LoadResult {
  decisions: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
  /** Answers by outcome (the baseline answers every call `allow`). */
  outcomes: Record<string, number>;
}

type BenchAgent = { id: string; key: AgentKey; kind: 'finance' | 'deploy' };

const webSocket = (url: string, protocols: string[]) =>
  new WebSocket(url, protocols, { perMessageDeflate: false }) as unknown as WebSocketLike;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * A held call refused because its agent already has the most calls waiting for approval
 * (`pending_queue_full`, a product limit, docs/errors.md) is an answer, not a failure of the run:
 * counted as its own outcome. The small runs (the bench smoke test: six agents, every phase on
 * one data directory) fill an agent's queue; the full bench's 1,000 agents do not.
 */
function refusalOutcome(error: unknown): string | undefined {
  return (error as { code?: unknown } | null)?.code === 'pending_queue_full' ? 'refused_pending_queue_full' : undefined;
}

/**
 * One call of the mix, for an agent of the given kind. Finance: mostly small transfers to a
 * known payee (automatic), some larger or to a new supplier (one or two approvers), a few from
 * GB; deploy: mostly staging deploys of one of many services (automatic), a few production
 * deploys (two-person rule) and a few without a change id (denied). Amounts, payees, memos,
 * services and diffs vary call to call, as they do in use.
 */
export function mixedCall(kind: 'finance' | 'deploy', rng: () => number, payees: number): ToolCall {
  const r = rng();
  if (kind === 'finance') {
    const cents = String(Math.floor(rng() * 100)).padStart(2, '0');
    const amount =
      r < 0.85
        ? `${1 + Math.floor(rng() * 998)}.${cents}`
        : r < 0.95
          ? `${1000 + Math.floor(rng() * 9000)}.${cents}`
          : `${10_001 + Math.floor(rng() * 90_000)}.00`;
    const payee =
      rng() < 0.9
        ? payees <= 1
          ? 'Acme Ltd'
          : `Vendor ${1 + Math.floor(rng() * (payees - 1))}`
        : `New Supplier ${Math.floor(rng() * 1e6)}`;
    return {
      tool: 'payments.transfer',
      params: { amount, currency: 'USD', payee, memo: `invoice ${Math.floor(rng() * 1e6)}` },
      dataClass: 'financial',
      jurisdiction: rng() < 0.8 ? 'US' : 'GB',
      provenance: ['user'],
    };
  }
  const service = `service-${Math.floor(rng() * 200)}`;
  const diff = `diff --git a/${service}/config.yaml b/${service}/config.yaml\n-replicas: ${Math.floor(rng() * 9)}\n+replicas: ${Math.floor(rng() * 9)}`;
  if (r < 0.94)
    return { tool: 'deploy.staging', params: { service, diff }, dataClass: 'source-code', jurisdiction: 'US', provenance: ['user'] };
  return {
    tool: 'deploy.production',
    params: { service, environment: 'production', changeId: r < 0.97 ? `CHG-${Math.floor(rng() * 1e5)}` : '', diff },
    dataClass: 'source-code',
    jurisdiction: 'US',
    provenance: ['user'],
  };
}

export async function connectAll(
  port: number,
  agents: BenchAgent[],
  batch = 50,
): Promise<Array<{ client: AgentClient; kind: BenchAgent['kind'] }>> {
  const clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }> = [];
  for (let i = 0; i < agents.length; i += batch) {
    const slice = agents.slice(i, i + batch).map((a) => ({
      kind: a.kind,
      client: new AgentClient({
        url: `ws://127.0.0.1:${port}`,
        agentId: a.id,
        key: a.key,
        webSocket,
        reconnect: false,
        requestTimeoutMs: 30_000,
      }),
    }));
    await Promise.all(slice.map((c) => c.client.connect()));
    clients.push(...slice);
  }
  return clients;
}

function summarise(latencies: number[], errors: number, outcomes: Record<string, number>, startMs: number): LoadResult {
  const elapsed = (performance.now() - startMs) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    decisions: latencies.length,
    seconds: elapsed,
    perSecond: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    errors,
    outcomes,
  };
}

/**
 * Closed loop: `concurrency` calls in flight at all times, each from the next connected agent in
 * turn (so every agent calls at a human-plausible rate, and no agent is a loop to the scorer).
 * Every answer counts as a decision (allow, pending or deny: the policy decided it); an error
 * does not.
 */
export async function closedLoop(
  clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }>,
  seconds: number,
  concurrency: number,
  payees: number,
  seed: number,
): Promise<LoadResult> {
  const latencies: number[] = [];
  const outcomes: Record<string, number> = {};
  let errors = 0;
  const rng = prng(seed);
  let turn = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const { client, kind } = clients[turn++ % clients.length]!;
        const call = mixedCall(kind, rng, payees);
        const t0 = performance.now();
        try {
          const r = await client.submit(call);
          latencies.push(performance.now() - t0);
          outcomes[r.decision] = (outcomes[r.decision] ?? 0) + 1;
        } catch (error) {
          const refused = refusalOutcome(error);
          if (refused === undefined) errors++;
          else outcomes[refused] = (outcomes[refused] ?? 0) + 1;
        }
      }
    }),
  );
  return summarise(latencies, errors, outcomes, start);
}

/**
 * Open loop: calls are offered at a fixed total rate whatever the answers, spread over the
 * connected agents, so latency is measured at a stated offered load instead of at saturation
 * (where, by Little's law, a closed loop's latency is just concurrency / throughput). Each call's
 * latency counts from the moment it was due, not from when this process got round to sending it:
 * a generator stalled by a busy machine would otherwise leave out exactly the wait it imposed on
 * the calls behind the stall (coordinated omission). How late the sends were is reported too.
 */
export async function openLoop(
  clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }>,
  seconds: number,
  totalPerSecond: number,
  payees: number,
  seed: number,
): Promise<LoadResult & { sendLateP99Ms: number; sendLateMaxMs: number }> {
  const latencies: number[] = [];
  const late: number[] = [];
  const outcomes: Record<string, number> = {};
  let errors = 0;
  const rng = prng(seed);
  const intervalMs = 1000 / totalPerSecond;
  const start = performance.now();
  const end = start + seconds * 1000;
  const inflight: Array<Promise<void>> = [];
  let due = start;
  for (let turn = 0; due < end; turn++, due += intervalMs) {
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const { client, kind } = clients[turn % clients.length]!;
    const dueAt = due;
    late.push(Math.max(0, performance.now() - dueAt));
    inflight.push(
      client.submit(mixedCall(kind, rng, payees)).then(
        (r) => {
          latencies.push(performance.now() - dueAt);
          outcomes[r.decision] = (outcomes[r.decision] ?? 0) + 1;
        },
        (error: unknown) => {
          const refused = refusalOutcome(error);
          if (refused === undefined) errors++;
          else outcomes[refused] = (outcomes[refused] ?? 0) + 1;
        },
      ),
    );
  }
  await Promise.all(inflight);
  late.sort((a, b) => a - b);
  return {
    ...summarise(latencies, errors, outcomes, start),
    sendLateP99Ms: +percentile(late, 99).toFixed(3),
    sendLateMaxMs: +(late[late.length - 1] ?? 0).toFixed(3),
  };
}

/**
 * Where a process's threads spent a phase (from /proc schedstat): the event-loop thread's share of
 * the wall clock on a CPU, and how long it sat runnable waiting for a CPU, in all and per decision.
 * A thread that waits for a CPU delays every answer queued behind it, whatever the code does. On
 * Linux with autogroup scheduling (kernel.sched_autogroup_enabled=1, as on the shared development
 * VM) the CPU is shared between sessions, not threads: this bench (generator and servers, one
 * session) gets about 2/N cores while N sessions are busy, whatever the load average says. Under
 * that share the core's event-loop thread waited 750-820 ms of every second of the open loop at
 * 250/s (load 19-25); with its session given the CPU first it waited 175-185 ms and served 250/s
 * at p50 10 ms (issue #12).
 */
function schedFigures(before: Sched, after: Sched, wallMs: number, decisions: number): Record<string, number> {
  const n = Math.max(1, decisions);
  return {
    mainThreadBusyShare: +((after.mainRunMs - before.mainRunMs) / wallMs).toFixed(3),
    mainThreadRunqueueWaitMsPerSecond: +(((after.mainWaitMs - before.mainWaitMs) / wallMs) * 1000).toFixed(1),
    mainThreadRunqueueWaitMsPerDecision: +((after.mainWaitMs - before.mainWaitMs) / n).toFixed(3),
    allThreadsCpuMsPerDecision: +((after.allRunMs - before.allRunMs) / n).toFixed(3),
    allThreadsRunqueueWaitMsPerDecision: +((after.allWaitMs - before.allWaitMs) / n).toFixed(3),
  };
}

/** An open loop with the server's (and this generator's) scheduler figures beside its latency. */
async function measuredOpenLoop(
  server: ChildServer,
  clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }>,
  seconds: number,
  totalPerSecond: number,
  payees: number,
  seed: number,
): Promise<{ figures: Record<string, unknown>; p99: number; decisions: number }> {
  const server0 = server.sched();
  const generator0 = schedOf(process.pid);
  const t0 = performance.now();
  const r = await openLoop(clients, seconds, totalPerSecond, payees, seed);
  const wallMs = performance.now() - t0;
  const generator = schedOf(process.pid);
  return {
    p99: r.p99,
    decisions: r.decisions,
    figures: {
      ...loadFigures(r),
      sendLateP99Ms: r.sendLateP99Ms,
      sendLateMaxMs: r.sendLateMaxMs,
      server: schedFigures(server0, server.sched(), wallMs, r.decisions),
      generatorMainThreadRunqueueWaitMsPerSecond: +(((generator.mainWaitMs - generator0.mainWaitMs) / wallMs) * 1000).toFixed(1),
    },
  };
}

/**
 * Each stage's own cost: the same mix submitted one decision at a time, in process, with Cedar in
 * the calling thread and risk on, so no stage's figure includes waiting for another decision.
 * Also the process CPU per decision, for the share of each stage in it.
 */
async function stageCostsAlone(dataDir: string, agents: BenchAgent[], count: number, payees: number): Promise<Record<string, unknown>> {
  const totals: Record<string, { ms: number; n: number }> = {};
  const app = await startCountersign({
    dataDir,
    log: () => undefined,
    policyWorker: false,
    onTiming: (stage, ms) => {
      const t = (totals[stage] ??= { ms: 0, n: 0 });
      t.ms += ms;
      t.n++;
    },
  });
  const rng = prng(0x57a9e);
  const outcomes: Record<string, number> = {};
  let cpu0 = process.cpuUsage();
  let measured = 0;
  try {
    for (let i = 0; i < count; i++) {
      if (i === Math.floor(count / 5)) {
        // warm-up ends
        for (const k of Object.keys(totals)) delete totals[k];
        cpu0 = process.cpuUsage();
        measured = 0;
      }
      const agent = agents[i % agents.length]!;
      const payload: CallPayload = {
        typ: SIGNED_TYPES.call,
        agentId: agent.id,
        kid: agent.key.kid,
        nonce: `stage-${i}-${Math.random()}`,
        timestamp: Date.now(),
        call: mixedCall(agent.kind, rng, payees),
      };
      let outcome: string;
      try {
        const result = await app.decisions.submit(
          { agentId: agent.id, kid: agent.key.kid },
          { payload, signature: await signCanonical(agent.key, payload) },
        );
        outcome = result.decision;
      } catch (error) {
        const refused = refusalOutcome(error);
        if (refused === undefined) throw error;
        outcome = refused;
      }
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      measured++;
    }
  } finally {
    await app.close();
  }
  const cpu = process.cpuUsage(cpu0);
  // The group-commit phases are per group and inside `store`: shown, not counted in the shares.
  const stageSum = Object.entries(totals).reduce((sum, [stage, t]) => (isGroupPhase(stage) ? sum : sum + t.ms / t.n), 0);
  return {
    // Includes the in-process client's signing of each envelope (about the cost of verifying one).
    processCpuPerDecisionMs: +((cpu.user + cpu.system) / 1000 / measured).toFixed(3),
    stageMeanMs: Object.fromEntries(Object.entries(totals).map(([stage, t]) => [stage, +(t.ms / t.n).toFixed(4)])),
    stageShare: Object.fromEntries(
      Object.entries(totals)
        .filter(([stage]) => !isGroupPhase(stage))
        .map(([stage, t]) => [stage, `${((t.ms / t.n / stageSum) * 100).toFixed(1)}%`]),
    ),
    outcomes,
  };
}

function cpuPerDecision(
  before: { user: number; system: number },
  after: { user: number; system: number },
  load: Pick<LoadResult, 'decisions'>,
): { totalMs: number; userMs: number; systemMs: number } {
  const n = Math.max(1, load.decisions);
  const userMs = ((after.user - before.user) * 1000) / n;
  const systemMs = ((after.system - before.system) * 1000) / n;
  return { totalMs: +(userMs + systemMs).toFixed(3), userMs: +userMs.toFixed(3), systemMs: +systemMs.toFixed(3) };
}

function loadFigures(r: LoadResult): Record<string, unknown> {
  return { perSecond: Math.round(r.perSecond), p50Ms: +r.p50.toFixed(3), p99Ms: +r.p99.toFixed(3), errors: r.errors, outcomes: r.outcomes };
}

/**
 * The group commit's own phases (group-commit, group-sync: per group, inside the store stage) and
 * the audit checkpoint row's durable COMMIT (checkpoint-commit: per checkpoint, outside any
 * decision's stages, holding the event loop for one fsync): counted, not shares of a decision.
 */
const isGroupPhase = (stage: string) => stage.startsWith('group-') || stage === 'checkpoint-commit' || stage.startsWith('gc-');

/**
 * The core's event-loop garbage collections during a load (the `gc-*` entries of its stage
 * timings): young-generation scavenges per decision and their pauses, and every collection's
 * pause per decision. Allocation per decision shows here: each scavenge runs when the young
 * generation fills, and lands on the call being decided at that moment.
 */
function gcFigures(timings: Record<string, StageTiming>, load: Pick<LoadResult, 'decisions'>): Record<string, number> {
  const n = Math.max(1, load.decisions);
  const scavenge = timings['gc-scavenge'];
  const allMs = Object.entries(timings).reduce((sum, [stage, t]) => (stage.startsWith('gc-') ? sum + t.ms : sum), 0);
  return {
    scavengesPerDecision: +((scavenge?.n ?? 0) / n).toFixed(4),
    decisionsPerScavenge: scavenge === undefined ? NaN : +(n / scavenge.n).toFixed(1),
    scavengeMeanMs: scavenge === undefined ? NaN : +(scavenge.ms / scavenge.n).toFixed(3),
    scavengeP99Ms: scavenge?.p99Ms ?? NaN,
    gcMsPerDecision: +(allMs / n).toFixed(4),
  };
}

function stageFigures(timings: Record<string, StageTiming>): Record<string, Record<string, number | string>> {
  const total = Object.entries(timings).reduce((s, [stage, t]) => (isGroupPhase(stage) ? s : s + t.ms / t.n), 0);
  return Object.fromEntries(
    Object.entries(timings).map(([stage, t]) => [
      stage,
      {
        meanMs: +(t.ms / t.n).toFixed(4),
        ...(isGroupPhase(stage) ? { groups: t.n } : { share: `${((t.ms / t.n / total) * 100).toFixed(1)}%` }),
        ...(t.p50Ms === undefined ? {} : { p50Ms: t.p50Ms, p99Ms: t.p99Ms ?? NaN, maxMs: t.maxMs ?? NaN }),
      },
    ]),
  );
}

/**
 * A copy of the data dir (made before any load, so both cores start from the same rows) whose
 * production key is a fresh ES256 key in the SoftHSM token.
 */
async function pkcs11Copy(dataDir: string): Promise<string> {
  const { config: pkcs11 } = benchToken();
  const hsmDir = `${dataDir}-pkcs11`;
  cpSync(dataDir, hsmDir, { recursive: true });
  const config = parseStrictJson(readFileSync(join(dataDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(hsmDir, 'config.json'), JSON.stringify({ ...config, custody: { requireHardware: true, pkcs11 } }));
  const token = await Pkcs11Token.open(pkcs11, { readPin: () => readPin(pkcs11.pin) });
  try {
    const label = `bench-decisions-${Date.now()}`;
    const publicJwk = await token.generateSigningKey({ label, id: 'bb01', algorithm: 'ES256' });
    const { signingKeys, db } = openDataDir(hsmDir);
    signingKeys.activate(
      { domain: 'production', custody: 'pkcs11', publicJwk, tokenLabel: pkcs11.tokenLabel ?? '', keyLabel: label, keyId: 'bb01' },
      Date.now(),
      0,
    );
    db.close();
  } finally {
    await token.close();
  }
  return hsmDir;
}

/**
 * The PKCS#11 core against the software-signed core, in turns (software, token, token, software)
 * while both run, so the ratio compares the two under the same machine load. It used to divide a
 * token run by the software run made a minute earlier in a quieter moment; and the software core
 * then got three times faster (265 -> 779/s) while the token core did 230 -> 278/s, so the old
 * ratio fell from 0.87 to 0.357 with nothing on the token path changed.
 */
async function pkcs11Phase(
  software: { server: ChildServer; clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }> },
  hsmDir: string,
  clientsFor: (port: number) => Promise<Array<{ client: AgentClient; kind: BenchAgent['kind'] }>>,
  load: (clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }>, seconds: number, seed: number) => Promise<LoadResult>,
  seconds: number,
  warmup: number,
): Promise<Record<string, unknown>> {
  const core = await startChild('core', hsmDir);
  try {
    const clients = await clientsFor(core.port);
    await load(clients, warmup, 3);
    await core.timings();
    const soft1 = await load(software.clients, seconds, 3);
    const hsm1 = await load(clients, seconds, 3);
    const hsm2 = await load(clients, seconds, 4);
    const timings = await core.timings();
    const soft2 = await load(software.clients, seconds, 4);
    for (const c of clients) c.client.close();
    const rate = (a: LoadResult, b: LoadResult) => (a.decisions + b.decisions) / (a.seconds + b.seconds);
    const allowShare = (a: LoadResult, b: LoadResult) =>
      ((a.outcomes.allow ?? 0) + (b.outcomes.allow ?? 0)) / Math.max(1, a.decisions + b.decisions);
    return {
      sessions: benchToken().config.sessions,
      core: { ...loadFigures(hsm1), second: loadFigures(hsm2) },
      softwareSignerInTurn: { ...loadFigures(soft1), second: loadFigures(soft2) },
      ratioToSoftwareSigner: +(rate(hsm1, hsm2) / rate(soft1, soft2)).toFixed(3),
      // Tokens signed per second by the token core: each allow is one C_Sign (and its verify).
      tokenSignaturesPerSecond: Math.round(rate(hsm1, hsm2) * allowShare(hsm1, hsm2)),
      stagesUnderLoad: stageFigures(timings),
    };
  } finally {
    await core.stop();
  }
}

/** The demo pack with `payees` known payees (one Payee entity each, in PayeeList::"known"). */
export function demoPackWith(payees: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-bench-pack-'));
  cpSync(join(REPO_ROOT, 'examples', 'demo'), dir, { recursive: true, dereference: true });
  const entities = parseStrictJson(readFileSync(join(dir, 'entities.json'), 'utf8')) as unknown as unknown[];
  for (let i = 1; i < payees; i++)
    entities.push({
      uid: { type: 'Countersign::Payee', id: `Vendor ${i}` },
      attrs: {},
      parents: [{ type: 'Countersign::PayeeList', id: 'known' }],
    });
  writeFileSync(join(dir, 'entities.json'), JSON.stringify(entities));
  return dir;
}

export interface DecisionPathOptions {
  /** Calls in flight at once in the closed loop. */
  concurrency: number;
  seconds: number;
  /** Agents connected during the load phases and the memory reading. */
  memoryAgents: number;
  /** Agents enrolled (the directory the registry holds). */
  enrolledAgents: number;
  /** Known payees loaded as lookup entities. */
  lookupEntities: number;
  openLoopPerSecond: number;
  stageDecisions?: number;
}

export async function runDecisionPathBench(options: DecisionPathOptions): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-'));
  const policyDir = demoPackWith(options.lookupEntities);
  const connected = Math.max(options.concurrency, options.memoryAgents);
  const total = Math.max(connected, options.enrolledAgents);
  writeFileSync(
    join(dataDir, 'config.json'),
    JSON.stringify({
      policyDir,
      // Risk scoring stays on (the default): the mix varies calls as real agents do.
      gateway: {
        port: 0,
        maxConnections: connected + 100,
        maxUnauthenticated: connected + 100,
        ratePerSecond: 100_000,
        rateBurst: 100_000,
        handshakeTimeoutMs: 60_000,
      },
    }),
  );
  // Enroll every agent once (real enrollment requests, proof of possession checked).
  const enrollStart = performance.now();
  const store = openDataDir(dataDir);
  const { registry, db } = store;
  await prepareDirectEnrollment(store, policyDir, ['dana@example.com', 'sam@example.com']);
  const agents: BenchAgent[] = [];
  const baselineKeys: unknown[] = [];
  for (let i = 0; i < total; i++) {
    const kind = i % 2 === 0 ? 'finance' : 'deploy';
    const id = `bench-${kind}-${i}`;
    const jwk = await generateAgentKey('EdDSA');
    const key = await importAgentKey(jwk);
    registry.enroll(
      await verifyEnrollmentRequest(await createEnrollmentRequest(key, id, id)),
      kind === 'finance'
        ? {
            owner: 'dana@example.com',
            group: 'finance-agents',
            allowedTools: ['payments.transfer'],
            dataClasses: ['financial'],
            jurisdictions: ['US', 'GB'],
          }
        : {
            owner: 'sam@example.com',
            group: 'deploy-agents',
            allowedTools: ['deploy.staging', 'deploy.production'],
            dataClasses: ['source-code'],
            jurisdictions: ['US'],
          },
    );
    agents.push({ id, key, kind });
    baselineKeys.push({ ...publicPart(jwk), agentId: id });
  }
  db.close();
  const enrollSeconds = (performance.now() - enrollStart) / 1000;
  const keysFile = join(dataDir, 'baseline-keys.json');
  writeFileSync(keysFile, JSON.stringify(baselineKeys));
  const loadAgents = agents.slice(0, connected);
  const warmup = Math.min(2, options.seconds / 2);
  const payees = options.lookupEntities;
  const closed = (clients: Array<{ client: AgentClient; kind: BenchAgent['kind'] }>, seconds: number, seed = 1) =>
    closedLoop(clients, seconds, options.concurrency, payees, seed);

  try {
    // (a) baseline
    const baseline = await startChild('baseline', keysFile);
    let clients = await connectAll(baseline.port, loadAgents);
    await closed(clients, warmup, 7);
    const baseCpu0 = baseline.cpu();
    const base = await closed(clients, options.seconds);
    const baseCpu = cpuPerDecision(baseCpu0, baseline.cpu(), base);
    const baseOpen = await measuredOpenLoop(baseline, clients, options.seconds, options.openLoopPerSecond, payees, 2);
    for (const c of clients) c.client.close();
    await baseline.stop();

    // The PKCS#11 core's data dir, copied before the software core adds any rows.
    const hsmDir = await pkcs11Copy(dataDir);

    // (b) the real core; its memory is read idle, with every agent connected, and after the load
    const loadStart = performance.now();
    const core = await startChild('core', dataDir);
    const startSeconds = (performance.now() - loadStart) / 1000;
    // Settle first: the load's entity-check worker and its garbage are released over a few seconds.
    await new Promise((r) => setTimeout(r, 3_000));
    const idleRss = core.rss();
    clients = await connectAll(core.port, loadAgents);
    await new Promise((r) => setTimeout(r, 1_000));
    const connectedRss = core.rss();
    await closed(clients, warmup, 7); // same warm-up calls as the baseline's (different nonces)
    await core.timings(); // discard warmup timings
    const coreCpu0 = core.cpu();
    const real = await closed(clients, options.seconds);
    const coreCpu = cpuPerDecision(coreCpu0, core.cpu(), real);
    const timings = await core.timings();
    const openCpu0 = core.cpu();
    const realOpen = await measuredOpenLoop(core, clients, options.seconds, options.openLoopPerSecond, payees, 2);
    const openCpu = cpuPerDecision(openCpu0, core.cpu(), realOpen);
    const openTimings = await core.timings();
    const afterLoadRss = core.rss();

    // (c) the core with tokens signed in the SoftHSM2 token through PKCS#11, in turns with (b)
    let hsm: Record<string, unknown>;
    try {
      hsm = await pkcs11Phase(
        { server: core, clients },
        hsmDir,
        (port) => connectAll(port, loadAgents),
        (c, s, seed) => closed(c, s, seed),
        options.seconds,
        warmup,
      );
    } finally {
      for (const c of clients) c.client.close();
      await core.stop();
      rmSync(hsmDir, { recursive: true, force: true });
    }

    const alone = await stageCostsAlone(dataDir, agents.slice(0, 500), options.stageDecisions ?? 2_500, payees);

    const ratio = real.perSecond / base.perSecond;
    return {
      setup: {
        concurrency: options.concurrency,
        seconds: options.seconds,
        connectedAgents: connected,
        enrolledAgents: total,
        lookupEntities: payees,
        risk: 'on',
        pack: 'examples/demo (finance + production)',
        enrollSeconds: +enrollSeconds.toFixed(1),
        coreStartSeconds: +startSeconds.toFixed(1),
      },
      closedLoop: {
        baseline: loadFigures(base),
        core: loadFigures(real),
        throughputRatio: +ratio.toFixed(3),
      },
      // Server CPU per decision (process CPU time, every thread: /proc/<pid>/stat), closed loop.
      serverCpuPerDecisionMs: {
        baseline: baseCpu,
        core: coreCpu,
        coreToBaseline: +(coreCpu.totalMs / Math.max(0.001, baseCpu.totalMs)).toFixed(2),
        coreOpenLoop: openCpu,
      },
      // Wall time per stage under load (includes queueing behind other decisions: the policy
      // stage waits for the Cedar worker, the store stage for its group commit).
      coreStageBreakdownUnderLoad: { closedLoop: stageFigures(timings), openLoop: stageFigures(openTimings) },
      // The core's event-loop garbage collections per decision (its --stage-timings gc-* entries).
      coreGcUnderLoad: { closedLoop: gcFigures(timings, real), openLoop: gcFigures(openTimings, realOpen) },
      // Each stage's own cost, one decision at a time, Cedar in-thread, unbatched commits.
      coreStageCostAlone: alone,
      // Latency counted from each call's due time. `server`: the server's event-loop thread on a
      // CPU (busyShare) and runnable but waiting for one (runqueue wait), from /proc schedstat.
      openLoop: {
        offeredPerSecond: options.openLoopPerSecond,
        baseline: baseOpen.figures,
        core: realOpen.figures,
      },
      pkcs11: hsm,
      // The condition is a server holding the 100,000 lookup entities with the 1,000 agents
      // connected. It holds that both before the agents call (connected) and after they did (after
      // load: the same agents, still connected, after the closed and open loops, with their risk
      // profiles cached and the heap and allocator grown by the work): the target is met only when
      // both are under it, so `targetRssMiB` is the larger.
      memory: {
        connectedAgents: connected,
        lookupEntities: payees,
        idleRssMiB: +(idleRss / 2 ** 20).toFixed(1),
        connectedRssMiB: +(connectedRss / 2 ** 20).toFixed(1),
        afterLoadRssMiB: +(afterLoadRss / 2 ** 20).toFixed(1),
        targetRssMiB: +(Math.max(connectedRss, afterLoadRss) / 2 ** 20).toFixed(1),
        perConnectionKiB: +((connectedRss - idleRss) / connected / 1024).toFixed(1),
      },
      targets: {
        throughputRatioAtLeast: 0.5,
        throughputRatioMet: ratio >= 0.5,
        openLoopP99MsBelow: 5,
        openLoopP99Met: realOpen.p99 < 5,
        memoryMiBBelow: 300,
        // Connected and after the load (memory.targetRssMiB): both are the condition.
        memoryMet: Math.max(connectedRss, afterLoadRss) / 2 ** 20 < 300,
      },
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(policyDir, { recursive: true, force: true });
  }
}
