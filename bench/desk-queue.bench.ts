/**
 * Desk queue benchmark (issue #13): the first page of 50 of the desk's queue (GET /api/ui/queue,
 * the listQueue bridge row, over real HTTP with the session secret) with 10, 1,000 and 10,000
 * pending requests, as a ratio to 10 in the same run (target: 10,000 within 1.5x of 10). A page
 * costs a fixed number of statements (the page, its approvals, its followers), never one per
 * request. The older oldest-first listing (GET /api/approvals/pending?limit=50) is measured
 * beside it. Real SQLite, real WebSocket agent client, distinct calls (identical ones would merge).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { REPO_ROOT, startCountersign } from '../main/core/app.js';
import { AgentClient, type WebSocketLike } from '../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { ensurePeople } from '../test/helpers/harness.js';

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

export async function runDeskQueueBench(options: { sizes: number[]; samples: number }): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'countersign-bench-desk-queue-'));
  const largest = Math.max(...options.sizes);
  // Risk scoring off: thousands of held transfers from one agent would (rightly) score as a loop.
  writeFileSync(
    join(dataDir, 'config.json'),
    JSON.stringify({
      domain: 'test',
      policyDir: join(REPO_ROOT, 'examples', 'demo'),
      gateway: { port: 0, maxPendingPerAgent: largest + 100, ratePerSecond: 100_000, rateBurst: 100_000 },
      risk: { enabled: false },
    }),
  );
  const app = await startCountersign({ dataDir, log: () => undefined });
  try {
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
    let submitted = 0;
    const fillTo = async (n: number) => {
      while (submitted < n) {
        const batch = Math.min(100, n - submitted);
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
    };
    const page = async (path: string): Promise<number> => {
      const times: number[] = [];
      for (let i = 0; i < options.samples; i++) {
        const t = performance.now();
        const res = await fetch(`http://127.0.0.1:${app.port}${path}`, { headers: { authorization: `Bearer ${app.uiSessionSecret}` } });
        const body = (await res.json()) as { pending?: unknown[] };
        if (res.status !== 200 || !Array.isArray(body.pending)) throw new Error(`${path} answered ${res.status}`);
        times.push(performance.now() - t);
      }
      return +median(times).toFixed(3);
    };
    const figures: Record<string, { queueFirstPageMs: number; oldestFirstPageMs: number; total: number }> = {};
    for (const size of [...options.sizes].sort((a, b) => a - b)) {
      await fillTo(size);
      // Warm the statements once before timing.
      await page('/api/ui/queue?limit=50');
      figures[size] = {
        queueFirstPageMs: await page('/api/ui/queue?limit=50'),
        oldestFirstPageMs: await page('/api/approvals/pending?limit=50'),
        total: app.approvals.countPending(),
      };
    }
    client.close();
    const base = figures[Math.min(...options.sizes)]!;
    const ratios: Record<string, number> = {};
    for (const [size, f] of Object.entries(figures)) {
      ratios[`queue${size}vs${Math.min(...options.sizes)}`] = +(f.queueFirstPageMs / base.queueFirstPageMs).toFixed(2);
      ratios[`oldestFirst${size}vs${Math.min(...options.sizes)}`] = +(f.oldestFirstPageMs / base.oldestFirstPageMs).toFixed(2);
    }
    return { samples: options.samples, pending: figures, ratios, target: 'queue at the largest size within 1.5x of the smallest' };
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
