/**
 * `--stage-timings` reports each decision stage's distribution beside its total, so an open
 * loop's tail can be traced to the stage that holds it (issue #12), and each report starts afresh.
 */
import { describe, expect, it } from 'vitest';
import { StageTimings, recordGarbageCollections } from '../../main/cli/stage-timings.js';

describe('stage timings', () => {
  it('reports total, count, p50, p99 and max per stage, and forgets them once reported', () => {
    const timings = new StageTimings();
    // 100 store samples: 1..99 ms and one 500 ms stall.
    for (let i = 1; i < 100; i++) timings.record('store', i);
    timings.record('store', 500);
    timings.record('policy', 0.25);
    const report = timings.report();
    expect(report.store).toEqual({ ms: 4950 + 500, n: 100, p50Ms: 51, p99Ms: 500, maxMs: 500 });
    expect(report.policy).toEqual({ ms: 0.25, n: 1, p50Ms: 0.25, p99Ms: 0.25, maxMs: 0.25 });
    expect(timings.report()).toEqual({});
  });

  it("records the event loop's young-generation collections as gc-scavenge, and nothing once stopped", async () => {
    const timings = new StageTimings();
    const stop = recordGarbageCollections(timings);
    // Short-lived garbage, far more than a young generation holds (at most 16 MiB a semi-space).
    const garbage = (): void => {
      const held: unknown[] = [];
      for (let i = 0; i < 2_000_000; i++) {
        held.push({ i });
        if (held.length > 1000) held.length = 0;
      }
    };
    garbage();
    // Performance entries are delivered to the observer asynchronously.
    await new Promise((r) => setTimeout(r, 50));
    const report = timings.report();
    expect(report['gc-scavenge']?.n).toBeGreaterThan(0);
    expect(report['gc-scavenge']?.maxMs).toBeGreaterThanOrEqual(0);
    stop();
    garbage();
    await new Promise((r) => setTimeout(r, 50));
    expect(timings.report()).toEqual({});
  });
});
