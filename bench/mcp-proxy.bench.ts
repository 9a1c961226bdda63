/**
 * MCP proxy benchmark (issue #14): the latency the proxy adds to an automatically allowed
 * tools/call, beside a direct client-to-server call to the same kind of server in the same run,
 * and the calls per second through the proxy. Real parts: the reference `server-everything`
 * (stdio child processes), the MCP SDK client, a real Countersign (SQLite, Cedar, software
 * signer, WebSocket gateway). The host talks to the proxy over the SDK's in-memory transport, so
 * the figure is the proxy's own cost (decision round trip, token check, forwarding), not a pipe.
 * Also reports the bare Countersign decision (agent SDK submit) so the proxy's share is visible:
 * once signed as the proxy signs (node:crypto, `nodeAgentKey`), which the proxy's share is
 * computed against, and once with the SDK's WebCrypto key, as an agent host has it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import Database from 'better-sqlite3';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { InMemoryTransport } from '@modelcontextprotocol/server';
import { REPO_ROOT, startCountersign } from '../main/core/app.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { McpProxy, type CallStage } from '../main/mcp/proxy.js';
import { nodeAgentKey } from '../main/mcp/node-signature.js';
import { mapCall, parseMapping } from '../main/mcp/mapping.js';
import { ensurePeople } from '../test/helpers/harness.js';

const EVERYTHING = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const stats = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50Ms: +percentile(sorted, 50).toFixed(3),
    p95Ms: +percentile(sorted, 95).toFixed(3),
    p99Ms: +percentile(sorted, 99).toFixed(3),
  };
};

export async function runMcpProxyBench(options: { calls: number; seconds: number; concurrency: number }): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-mcp-'));
  // Risk scoring is off: thousands of near-identical echo calls would (rightly) score as a loop.
  writeFileSync(
    join(dataDir, 'config.json'),
    JSON.stringify({
      domain: 'test',
      policyDir: join(REPO_ROOT, 'examples', 'mcp'),
      gateway: { port: 0, ratePerSecond: 100_000, rateBurst: 100_000 },
      risk: { enabled: false },
    }),
  );
  const app = await startCountersign({ dataDir, log: () => undefined });
  const privateJwk = await generateAgentKey('EdDSA');
  // The agent SDK's key (WebCrypto), as an agent host has it; the proxy's own (node:crypto,
  // synchronous), as `countersign mcp-proxy` loads it: the same key. The bare decision is timed
  // with each: the proxy's share (proxied - direct - decision) is taken against the one signed as
  // the proxy signs, or a WebCrypto round trip the proxy does not make would be counted against it.
  const key = await importAgentKey(privateJwk);
  const proxyKey = await nodeAgentKey(privateJwk);
  ensurePeople(app, 'olga@example.com');
  app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'mcp-bench', 'mcp-bench')), {
    owner: 'olga@example.com',
    group: 'mcp-agents',
    allowedTools: ['demo.echo'],
    dataClasses: ['unclassified'],
    jurisdictions: ['US'],
  });
  const mapping = parseMapping({ server: 'everything', audience: 'mcp:everything', tools: { echo: { tool: 'demo.echo' } } });
  const direct = new Client({ name: 'bench-direct', version: '1.0.0' });
  let proxy: McpProxy | undefined;
  const host = new Client({ name: 'bench-host', version: '1.0.0' });
  const agentWith = (signer: typeof key) =>
    new AgentClient({
      url: app.url,
      agentId: 'mcp-bench',
      key: signer,
      reconnect: false,
      requestTimeoutMs: 30_000,
      webSocket: (u, p) => new WebSocket(u, p) as unknown as WebSocketLike,
    });
  const agent = agentWith(proxyKey);
  const sdkAgent = agentWith(key);
  try {
    await direct.connect(new StdioClientTransport({ command: 'node', args: [EVERYTHING, 'stdio'], stderr: 'ignore' }));
    // Per-stage timers of the proxied call (the proxy reports each stage as it passes it).
    const marks: Partial<Record<CallStage, number>> = {};
    proxy = await McpProxy.start({
      onStage: (stage) => {
        marks[stage] = performance.now();
      },
      agentId: 'mcp-bench',
      key: proxyKey,
      countersignUrl: app.url,
      mapping,
      domain: 'test',
      downstream: { command: 'node', args: [EVERYTHING, 'stdio'] },
    });
    const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
    await proxy.createServer().connect(proxySide);
    await host.connect(hostSide);

    let n = 0;
    const echo = async (client: Client) => {
      const result = await client.callTool({ name: 'echo', arguments: { message: `bench ${n++}` } });
      if (result.isError) throw new Error(`echo failed: ${JSON.stringify(result.content)}`);
    };
    const decide = async (client: AgentClient) => {
      const call = mapCall(
        mapping,
        'echo',
        { message: `bench ${n++}` },
        { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      );
      const r = await client.submit({
        tool: call.tool,
        params: call.params,
        dataClass: call.dataClass,
        jurisdiction: call.jurisdiction,
        provenance: ['user'],
      });
      if (r.decision !== 'allow') throw new Error(`bench call not allowed: ${r.reasons.join('; ')}`);
    };
    // Warm up every path (JIT, SQLite caches, connections).
    for (let i = 0; i < 50; i++) {
      await echo(direct);
      await echo(host);
      await decide(agent);
      await decide(sdkAgent);
    }
    // Interleave the paths so load on the machine hits them alike.
    const directMs: number[] = [];
    const proxiedMs: number[] = [];
    const decisionMs: number[] = [];
    const sdkDecisionMs: number[] = [];
    // The floor under every decision: one durable commit (WAL, synchronous=FULL, as the store) of
    // one small row on the same disk, timed beside the other paths.
    const probe = new Database(join(dataDir, 'commit-probe.db'));
    probe.pragma('journal_mode = WAL');
    probe.pragma('synchronous = FULL');
    probe.exec('CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    const insert = probe.prepare('INSERT INTO probe (body) VALUES (?)');
    const commit = probe.transaction((body: string) => insert.run(body));
    const commitMs: number[] = [];
    const stageNames = [
      'hostToProxyHandler',
      'prepare',
      'decisionRoundTrip',
      'tokenVerify',
      'forwardToToolServer',
      'projectResult',
      'proxyHandlerToHost',
    ] as const;
    const stageMs: Record<(typeof stageNames)[number], number[]> = Object.fromEntries(stageNames.map((n) => [n, []])) as never;
    // CPU of this process per path (Countersign, the proxy and every client run here; the tool
    // servers are children): proxied minus direct minus decision is the proxy's own CPU per call,
    // a figure the machine's load does not inflate the way it inflates wall time.
    const cpuUs = { direct: 0, proxied: 0, decision: 0, sdkDecision: 0 };
    const cpuOf = () => {
      const u = process.cpuUsage();
      return u.user + u.system;
    };
    for (let i = 0; i < options.calls; i++) {
      let c0 = cpuOf();
      let t = performance.now();
      await echo(direct);
      directMs.push(performance.now() - t);
      cpuUs.direct += cpuOf() - c0;
      c0 = cpuOf();
      t = performance.now();
      await echo(host);
      const end = performance.now();
      proxiedMs.push(end - t);
      cpuUs.proxied += cpuOf() - c0;
      const at = [t, marks.received, marks.prepared, marks.decided, marks.verified, marks.forwarded, marks.answered, end];
      stageNames.forEach((name, k) => stageMs[name].push((at[k + 1] ?? NaN) - (at[k] ?? NaN)));
      // The two bare decisions take turns going first (the second slot reads a little slower by order alone).
      for (const signer of i % 2 === 0 ? (['node', 'sdk'] as const) : (['sdk', 'node'] as const)) {
        c0 = cpuOf();
        t = performance.now();
        await decide(signer === 'node' ? agent : sdkAgent);
        (signer === 'node' ? decisionMs : sdkDecisionMs).push(performance.now() - t);
        cpuUs[signer === 'node' ? 'decision' : 'sdkDecision'] += cpuOf() - c0;
      }
      t = performance.now();
      commit(`probe ${i}`);
      commitMs.push(performance.now() - t);
    }
    probe.close();
    const perCallMs = (us: number) => +(us / options.calls / 1000).toFixed(3);
    const d = stats(directMs);
    const p = stats(proxiedMs);
    const c = stats(decisionMs);
    const w = stats(sdkDecisionMs);

    // Throughput: `concurrency` host calls in flight for `seconds`.
    let done = 0;
    const deadline = performance.now() + options.seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (performance.now() < deadline) {
          await echo(host);
          done++;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    return {
      directCall: d,
      proxiedCall: p,
      // Signed with node:crypto in the calling thread, as the proxy signs its call envelopes.
      countersignDecisionOnly: c,
      // Signed with the agent SDK's WebCrypto key (a thread-pool round trip per sign), as an agent host.
      countersignDecisionOnlySdkWebCrypto: w,
      durableCommitOnly: stats(commitMs),
      addedLatencyP50Ms: +(p.p50Ms - d.p50Ms).toFixed(3),
      proxyOwnShareP50Ms: +(p.p50Ms - d.p50Ms - c.p50Ms).toFixed(3),
      // Against the WebCrypto-signed decision, as this bench computed it before (understated by the signing difference).
      proxyOwnShareVsSdkDecisionP50Ms: +(p.p50Ms - d.p50Ms - w.p50Ms).toFixed(3),
      targetAddedP50Ms: 1,
      proxiedOverDirectP50Ratio: +(p.p50Ms / d.p50Ms).toFixed(2),
      // p50 of each stage of the proxied call; forwardToToolServer holds a whole direct call.
      proxiedStagesP50Ms: Object.fromEntries(stageNames.map((n) => [n, stats(stageMs[n]).p50Ms])),
      cpuPerCallMs: {
        direct: perCallMs(cpuUs.direct),
        proxied: perCallMs(cpuUs.proxied),
        decisionOnly: perCallMs(cpuUs.decision),
        decisionOnlySdkWebCrypto: perCallMs(cpuUs.sdkDecision),
      },
      proxyOwnCpuPerCallMs: perCallMs(cpuUs.proxied - cpuUs.direct - cpuUs.decision),
      proxyOwnCpuVsSdkDecisionPerCallMs: perCallMs(cpuUs.proxied - cpuUs.direct - cpuUs.sdkDecision),
      throughput: {
        concurrency: options.concurrency,
        seconds: +elapsed.toFixed(2),
        calls: done,
        callsPerSecond: Math.round(done / elapsed),
      },
      downstreamProtocol: proxy.downstreamProtocolVersion,
    };
  } finally {
    agent.close();
    sdkAgent.close();
    await host.close().catch(() => undefined);
    await proxy?.close();
    await direct.close().catch(() => undefined);
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
