/**
 * Decision-path benchmark (issue: headless decision path).
 *
 * N concurrent agent connections (real SDK clients over real WebSockets) submit calls that
 * policy allows, in a closed loop, against (a) the baseline server — same protocol, strict
 * parsing, schema check and agent-signature verification, no policy, no token signing, no
 * storage — and (b) the real core. Both servers run in their own child process; the load
 * generator runs here. Reports decisions/s, p50/p99 latency, their ratio, where the core's
 * time goes, and the core's resident memory with 1,000 connected agents.
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
import { SIGNED_TYPES, type CallPayload } from '../shared/protocol.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey, publicPart, signCanonical, type AgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { startChild } from './child-server.js';

export interface LoadResult {
  decisions: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

const webSocket = (url: string, protocols: string[]) => new WebSocket(url, protocols, { perMessageDeflate: false }) as unknown as WebSocketLike;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function connectAll(port: number, agents: Array<{ id: string; key: AgentKey }>, batch = 50): Promise<AgentClient[]> {
  const clients: AgentClient[] = [];
  for (let i = 0; i < agents.length; i += batch) {
    const slice = agents.slice(i, i + batch).map((a) => new AgentClient({ url: `ws://127.0.0.1:${port}`, agentId: a.id, key: a.key, webSocket, reconnect: false, requestTimeoutMs: 30_000 }));
    await Promise.all(slice.map((c) => c.connect()));
    clients.push(...slice);
  }
  return clients;
}

async function closedLoop(clients: AgentClient[], seconds: number): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const call = { tool: 'payments.transfer', params: { amount: '250.00', currency: 'USD', payee: 'Acme Ltd', memo: 'bench' }, dataClass: 'financial', jurisdiction: 'US', provenance: ['user'] };
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(clients.map(async (client) => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        const r = await client.submit(call);
        if (r.decision !== 'allow') errors++;
        else latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { decisions: latencies.length, seconds: elapsed, perSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

/**
 * Open loop: every client submits at a fixed rate whatever the answers, so latency is measured
 * at a stated offered load instead of at saturation (where, by Little's law, a closed loop's
 * latency is just concurrency / throughput).
 */
async function openLoop(clients: AgentClient[], seconds: number, totalPerSecond: number): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const call = { tool: 'payments.transfer', params: { amount: '250.00', currency: 'USD', payee: 'Acme Ltd', memo: 'bench' }, dataClass: 'financial', jurisdiction: 'US', provenance: ['user'] };
  const intervalMs = (1000 * clients.length) / totalPerSecond;
  const start = performance.now();
  const end = start + seconds * 1000;
  const inflight: Array<Promise<void>> = [];
  await Promise.all(clients.map(async (client, i) => {
    let next = start + (intervalMs * i) / clients.length; // spread the clients' phases
    while (next < end) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      inflight.push(client.submit(call).then(
        (r) => { if (r.decision === 'allow') latencies.push(performance.now() - t0); else errors++; },
        () => { errors++; },
      ));
      next += intervalMs;
    }
  }));
  await Promise.all(inflight);
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { decisions: latencies.length, seconds: elapsed, perSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

/**
 * Each stage's own cost: decisions submitted one at a time, in process, with Cedar in the
 * calling thread, so no stage's figure includes waiting for another decision.
 */
async function stageCostsAlone(dataDir: string, agent: { id: string; key: AgentKey }, count: number): Promise<Record<string, number>> {
  const totals: Record<string, { ms: number; n: number }> = {};
  const app = await startCountersign({
    dataDir, log: () => undefined, policyWorker: false,
    onTiming: (stage, ms) => {
      const t = (totals[stage] ??= { ms: 0, n: 0 });
      t.ms += ms;
      t.n++;
    },
  });
  try {
    const call = { tool: 'payments.transfer', params: { amount: '250.00', currency: 'USD', payee: 'Acme Ltd', memo: 'bench' }, dataClass: 'financial', jurisdiction: 'US', provenance: ['user'] };
    const session = { agentId: agent.id, kid: agent.key.kid };
    for (let i = 0; i < count; i++) {
      if (i === Math.floor(count / 5)) for (const k of Object.keys(totals)) delete totals[k]; // warm-up
      const payload: CallPayload = { typ: SIGNED_TYPES.call, agentId: agent.id, kid: agent.key.kid, nonce: `stage-${i}-${Math.random()}`, timestamp: Date.now(), call };
      const result = await app.decisions.submit(session, { payload, signature: await signCanonical(agent.key, payload) });
      if (result.decision !== 'allow') throw new Error(`stage bench expected allow, got ${result.decision}`);
    }
  } finally {
    await app.close();
  }
  return Object.fromEntries(Object.entries(totals).map(([stage, t]) => [`${stage}Ms`, +(t.ms / t.n).toFixed(4)]));
}

function cpuPerDecision(before: { user: number; system: number }, after: { user: number; system: number }, load: LoadResult): { userMs: number; systemMs: number } {
  const n = Math.max(1, load.decisions);
  return { userMs: +(((after.user - before.user) * 1000) / n).toFixed(3), systemMs: +(((after.system - before.system) * 1000) / n).toFixed(3) };
}

/** A copy of the data dir whose production key is a fresh ES256 key in the SoftHSM token. */
async function pkcs11Phase(dataDir: string, loadAgents: Array<{ id: string; key: AgentKey }>, seconds: number, warmup: number): Promise<LoadResult & { stageMeanMs: Record<string, number> }> {
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
    signingKeys.activate({ domain: 'production', custody: 'pkcs11', publicJwk, tokenLabel: pkcs11.tokenLabel ?? '', keyLabel: label, keyId: 'bb01' }, Date.now(), 0);
    db.close();
  } finally {
    await token.close();
  }
  try {
    const core = await startChild('core', hsmDir);
    const clients = await connectAll(core.port, loadAgents);
    await closedLoop(clients, warmup);
    await core.timings();
    const result = await closedLoop(clients, seconds);
    const timings = await core.timings();
    for (const c of clients) c.close();
    await core.stop();
    return { ...result, stageMeanMs: Object.fromEntries(Object.entries(timings).map(([stage, t]) => [stage, +(t.ms / t.n).toFixed(3)])) };
  } finally {
    rmSync(hsmDir, { recursive: true, force: true });
  }
}

export async function runDecisionPathBench(options: { concurrency: number; seconds: number; memoryAgents: number; openLoopPerSecond: number; stageDecisions?: number }): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-'));
  const total = Math.max(options.concurrency, options.memoryAgents);
  writeFileSync(join(dataDir, 'config.json'), JSON.stringify({
    policyDir: join(REPO_ROOT, 'examples', 'demo'),
    // 50 agents each sending the same transfer ~35 times a second is, to the risk scorer, a
    // loop and a burst (it would hold them). This bench measures the decision path at
    // saturation without scoring; the risk bench measures scoring's cost at a realistic load.
    risk: { enabled: false },
    gateway: { port: 0, maxConnections: total + 100, maxUnauthenticated: total + 100, ratePerSecond: 100_000, rateBurst: 100_000, handshakeTimeoutMs: 60_000 },
  }));
  // Enroll every agent once (real enrollment requests, proof of possession checked).
  const store = openDataDir(dataDir);
  const { registry, db } = store;
  await prepareDirectEnrollment(store, join(REPO_ROOT, 'examples', 'demo'), ['bench@example.com']);
  const agents: Array<{ id: string; key: AgentKey }> = [];
  const baselineKeys: unknown[] = [];
  for (let i = 0; i < total; i++) {
    const id = `bench-agent-${i}`;
    const jwk = await generateAgentKey('EdDSA');
    const key = await importAgentKey(jwk);
    registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, id, id)), {
      owner: 'bench@example.com', group: 'finance-agents', allowedTools: ['payments.transfer'], dataClasses: ['financial'], jurisdictions: ['US'],
    });
    agents.push({ id, key });
    baselineKeys.push({ ...publicPart(jwk), agentId: id });
  }
  db.close();
  const keysFile = join(dataDir, 'baseline-keys.json');
  writeFileSync(keysFile, JSON.stringify(baselineKeys));
  const loadAgents = agents.slice(0, options.concurrency);
  const warmup = Math.min(2, options.seconds / 2);

  try {
    // (a) baseline
    const baseline = await startChild('baseline', keysFile);
    let clients = await connectAll(baseline.port, loadAgents);
    await closedLoop(clients, warmup);
    const baseCpu0 = baseline.cpu();
    const base = await closedLoop(clients, options.seconds);
    const baseCpu = cpuPerDecision(baseCpu0, baseline.cpu(), base);
    const baseOpen = await openLoop(clients, options.seconds, options.openLoopPerSecond);
    for (const c of clients) c.close();
    await baseline.stop();

    // (b) the real core
    const core = await startChild('core', dataDir);
    clients = await connectAll(core.port, loadAgents);
    await closedLoop(clients, warmup);
    await core.timings(); // discard warmup timings
    const coreCpu0 = core.cpu();
    const real = await closedLoop(clients, options.seconds);
    const coreCpu = cpuPerDecision(coreCpu0, core.cpu(), real);
    const timings = await core.timings();
    const realOpen = await openLoop(clients, options.seconds, options.openLoopPerSecond);
    for (const c of clients) c.close();
    await core.stop();

    // (c) memory with many connected, authenticated agents
    const memCore = await startChild('core', dataDir);
    await new Promise((r) => setTimeout(r, 500));
    const idleRss = memCore.rss();
    const many = await connectAll(memCore.port, agents.slice(0, options.memoryAgents));
    await new Promise((r) => setTimeout(r, 1_000));
    const connectedRss = memCore.rss();
    for (const c of many) c.close();
    await memCore.stop();

    // (c) the real core again, tokens signed in the SoftHSM2 token through PKCS#11
    const hsm = await pkcs11Phase(dataDir, loadAgents, options.seconds, warmup);

    const alone = await stageCostsAlone(dataDir, agents[0]!, options.stageDecisions ?? 2_500);

    const stageTotal = Object.values(timings).reduce((s, t) => s + t.ms, 0);
    const breakdown = Object.fromEntries(Object.entries(timings).map(([stage, t]) => [stage, { meanMs: +(t.ms / t.n).toFixed(4), share: `${((t.ms / stageTotal) * 100).toFixed(1)}%` }]));
    return {
      concurrency: options.concurrency,
      seconds: options.seconds,
      baseline: { perSecond: Math.round(base.perSecond), p50Ms: +base.p50.toFixed(3), p99Ms: +base.p99.toFixed(3), errors: base.errors },
      core: { perSecond: Math.round(real.perSecond), p50Ms: +real.p50.toFixed(3), p99Ms: +real.p99.toFixed(3), errors: real.errors },
      throughputRatio: +(real.perSecond / base.perSecond).toFixed(3),
      // Server CPU per decision in the closed loop (all threads of the server process).
      serverCpuPerDecisionMs: { baseline: baseCpu, core: coreCpu },
      pkcs11: {
        perSecond: Math.round(hsm.perSecond), p50Ms: +hsm.p50.toFixed(3), p99Ms: +hsm.p99.toFixed(3), errors: hsm.errors,
        ratioToSoftwareSigner: +(hsm.perSecond / real.perSecond).toFixed(3),
        stageMeanMsUnderLoad: hsm.stageMeanMs,
      },
      openLoop: {
        offeredPerSecond: options.openLoopPerSecond,
        baseline: { perSecond: Math.round(baseOpen.perSecond), p50Ms: +baseOpen.p50.toFixed(3), p99Ms: +baseOpen.p99.toFixed(3), errors: baseOpen.errors },
        core: { perSecond: Math.round(realOpen.perSecond), p50Ms: +realOpen.p50.toFixed(3), p99Ms: +realOpen.p99.toFixed(3), errors: realOpen.errors },
      },
      targets: {
        throughputRatioAtLeast: 0.333,
        throughputRatioMet: real.perSecond / base.perSecond >= 1 / 3,
        openLoopP99MsBelow: 10,
        openLoopP99Met: realOpen.p99 < 10,
      },
      // Wall time per stage under load (includes queueing behind other decisions: the policy
      // stage waits for the Cedar worker, the store stage for its group commit).
      coreStageBreakdownUnderLoad: breakdown,
      // Each stage's own cost, one decision at a time, Cedar in-thread, unbatched commits.
      coreStageCostAlone: alone,
      memory: {
        agents: options.memoryAgents,
        idleRssMiB: +(idleRss / 2 ** 20).toFixed(1),
        connectedRssMiB: +(connectedRss / 2 ** 20).toFixed(1),
        perConnectionKiB: +((connectedRss - idleRss) / options.memoryAgents / 1024).toFixed(1),
      },
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
