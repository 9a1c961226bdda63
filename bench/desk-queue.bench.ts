/**
 * Desk queue benchmark (issue #13): the first page of 50 of the desk's queue (GET /api/ui/queue,
 * the listQueue bridge row, over real HTTP with the session secret) with 10, 1,000 and 10,000
 * pending requests, as a ratio to 10 in the same run (target: 10,000 within 1.5x of 10). Each size
 * has its own running core, filled first; then the samples are taken in rounds that visit every
 * size in turn, so a change in the machine's load during the run weighs on every size alike
 * instead of on whichever size happened to be measured last. A page reads its 50 rows in index
 * order, counts from a kept count and resolves each person once (migration 16). The older
 * oldest-first listing (GET /api/approvals/pending?limit=50) is measured beside it. Real SQLite,
 * real WebSocket agent client, distinct calls (identical ones would merge).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { REPO_ROOT, startCountersign, type RunningCountersign } from '../main/core/app.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { ensurePeople } from '../test/helpers/harness.js';

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

interface FilledCore {
  size: number;
  app: RunningCountersign;
  client: AgentClient;
  dataDir: string;
}

async function filledCore(size: number): Promise<FilledCore> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-desk-queue-'));
  // Risk scoring off: thousands of held transfers from one agent would (rightly) score as a loop.
  writeFileSync(
    join(dataDir, 'config.json'),
    JSON.stringify({
      domain: 'test',
      policyDir: join(REPO_ROOT, 'examples', 'demo'),
      gateway: { port: 0, maxPendingPerAgent: size + 100, ratePerSecond: 100_000, rateBurst: 100_000 },
      risk: { enabled: false },
    }),
  );
  const app = await startCountersign({ dataDir, log: () => undefined });
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  ensurePeople(app, 'dana@example.com');
  app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot', 'finance-bot')), {
    owner: 'dana@example.com',
    group: 'finance-agents',
    allowedTools: ['payments.transfer'],
    dataClasses: ['financial'],
    jurisdictions: ['US'],
  });
  const client = new AgentClient({
    url: app.url,
    agentId: 'finance-bot',
    key,
    reconnect: false,
    requestTimeoutMs: 60_000,
    webSocket: (u, p) => new WebSocket(u, p) as unknown as WebSocketLike,
  });
  await client.connect();
  for (let submitted = 0; submitted < size;) {
    const batch = Math.min(100, size - submitted);
    await Promise.all(
      Array.from({ length: batch }, (_, i) =>
        client.submit({
          tool: 'payments.transfer',
          // Distinct amounts: identical calls would merge into one prompt.
          params: { amount: `${20_000 + submitted + i}.00`, currency: 'USD', payee: 'Northwind Traders', memo: 'bench' },
          dataClass: 'financial',
          jurisdiction: 'US',
          provenance: ['user'],
        }),
      ),
    );
    submitted += batch;
  }
  return { size, app, client, dataDir };
}

/** One timed page over HTTP (sent, answered, parsed), in ms. */
async function timedPage(core: FilledCore, path: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`http://127.0.0.1:${core.app.port}${path}`, { headers: { authorization: `Bearer ${core.app.uiSessionSecret}` } });
  const body = (await res.json()) as { pending?: unknown[] };
  const elapsed = performance.now() - t;
  if (res.status !== 200 || !Array.isArray(body.pending)) throw new Error(`${path} answered ${res.status}`);
  return elapsed;
}

export async function runDeskQueueBench(options: { sizes: number[]; samples: number }): Promise<Record<string, unknown>> {
  const sizes = [...options.sizes].sort((a, b) => a - b);
  const cores: FilledCore[] = [];
  try {
    for (const size of sizes) cores.push(await filledCore(size));
    const queue = new Map<number, number[]>(sizes.map((s) => [s, []]));
    const oldest = new Map<number, number[]>(sizes.map((s) => [s, []]));
    const core = new Map<number, number[]>(sizes.map((s) => [s, []]));
    // Warm every core's statements and JIT once before timing.
    for (const c of cores) for (let i = 0; i < 3; i++) await timedPage(c, '/api/ui/queue?limit=50');
    for (let round = 0; round < options.samples; round++) {
      for (const c of cores) {
        queue.get(c.size)!.push(await timedPage(c, '/api/ui/queue?limit=50'));
        oldest.get(c.size)!.push(await timedPage(c, '/api/approvals/pending?limit=50'));
        // The core's share alone (the bridge method in-process, no HTTP, no JSON): where the time goes.
        const t = performance.now();
        await c.app.ui.listQueue(50);
        core.get(c.size)!.push(performance.now() - t);
      }
    }
    const base = sizes[0]!;
    const figures: Record<
      string,
      { queueFirstPageMs: number; oldestFirstPageMs: number; coreOnlyMs: number; rowsOnPage: number; total: number }
    > = {};
    for (const c of cores) {
      figures[c.size] = {
        queueFirstPageMs: +median(queue.get(c.size)!).toFixed(3),
        oldestFirstPageMs: +median(oldest.get(c.size)!).toFixed(3),
        coreOnlyMs: +median(core.get(c.size)!).toFixed(3),
        rowsOnPage: (await c.app.ui.listQueue(50)).pending.length,
        total: await c.app.approvals.countPending(),
      };
    }
    const ratios: Record<string, number> = {};
    for (const size of sizes) {
      const f = figures[size]!;
      const b = figures[base]!;
      ratios[`queue${size}vs${base}`] = +(f.queueFirstPageMs / b.queueFirstPageMs).toFixed(2);
      ratios[`oldestFirst${size}vs${base}`] = +(f.oldestFirstPageMs / b.oldestFirstPageMs).toFixed(2);
      ratios[`coreOnly${size}vs${base}`] = +(f.coreOnlyMs / b.coreOnlyMs).toFixed(2);
    }
    // The smallest size shows fewer rows than a page; beside it, the ratio to the smallest size
    // whose first page is full separates what grows with the queue from what grows with the page.
    const fullPage = sizes.find((size) => size >= 50 && size > base);
    if (fullPage !== undefined)
      for (const size of sizes.filter((s) => s > fullPage)) {
        ratios[`queue${size}vs${fullPage}`] = +(figures[size]!.queueFirstPageMs / figures[fullPage]!.queueFirstPageMs).toFixed(2);
        ratios[`coreOnly${size}vs${fullPage}`] = +(figures[size]!.coreOnlyMs / figures[fullPage]!.coreOnlyMs).toFixed(2);
      }
    return {
      samples: options.samples,
      pending: figures,
      ratios,
      target: 'queue at the largest size within 1.5x of the smallest (the smallest shows fewer rows than a full page)',
    };
  } finally {
    for (const c of cores) {
      c.client.close();
      await c.app.close();
      rmSync(c.dataDir, { recursive: true, force: true });
    }
  }
}
