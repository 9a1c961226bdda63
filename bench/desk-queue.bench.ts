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
import { startDeskBenchCore, type DeskBenchCore } from './desk-core.js';
import type { RunningCountersign } from '../main/core/app.js';

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

interface FilledCore {
  size: number;
  app: RunningCountersign;
  core: DeskBenchCore;
}

async function filledCore(size: number): Promise<FilledCore> {
  const core = await startDeskBenchCore({ capacity: size });
  try {
    await core.fill(size);
  } catch (error) {
    await core.h.close();
    throw error;
  }
  return { size, app: core.h.app, core };
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
    for (const c of cores) await c.core.h.close();
  }
}
