/**
 * What `--stage-timings` reports at each SIGUSR2: per decision stage (verify, risk, policy, sign,
 * store) the total time and count since the last report, and the distribution (p50, p99, max).
 * A mean hides what an open loop's p99 is made of (issue #12): one stage that usually takes
 * 0.3 ms but now and then 300 ms has the same mean as one that always takes 3 ms.
 *
 * The event loop's garbage collections are reported beside them as `gc-scavenge` (young
 * generation) and `gc-mark-compact` (whole heap), each pause's duration: a scavenge lands on
 * whichever call is being decided, so the count per decision is what allocation costs the tail.
 */
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';

/** One stage since the last report: total milliseconds, count, and the distribution. */
export interface StageReport {
  ms: number;
  n: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/**
 * Samples kept per stage between two reports; beyond it the distribution is of the first ones
 * (the totals stay exact). A report every few seconds at thousands of decisions a second fits.
 */
const MAX_SAMPLES = 200_000;

export class StageTimings {
  private readonly stages = new Map<string, { ms: number; n: number; samples: number[] }>();

  record(stage: string, ms: number): void {
    let s = this.stages.get(stage);
    if (s === undefined) {
      s = { ms: 0, n: 0, samples: [] };
      this.stages.set(stage, s);
    }
    s.ms += ms;
    s.n++;
    if (s.samples.length < MAX_SAMPLES) s.samples.push(ms);
  }

  /** Everything since the last report, then starts afresh. */
  report(): Record<string, StageReport> {
    const out: Record<string, StageReport> = {};
    for (const [stage, { ms, n, samples }] of this.stages) {
      samples.sort((a, b) => a - b);
      const at = (p: number) => round(samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? 0);
      out[stage] = { ms, n, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(samples[samples.length - 1] ?? 0) };
    }
    this.stages.clear();
    return out;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The event loop thread's collections, by kind (Node's gc performance entries). */
const GC_STAGES: ReadonlyMap<number, string> = new Map([
  [constants.NODE_PERFORMANCE_GC_MINOR, 'gc-scavenge'],
  [constants.NODE_PERFORMANCE_GC_MAJOR, 'gc-mark-compact'],
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL, 'gc-incremental'],
  [constants.NODE_PERFORMANCE_GC_WEAKCB, 'gc-weak-callbacks'],
]);

/** Records every garbage collection of this thread into `timings` (see the file comment); returns the stop. */
export function recordGarbageCollections(timings: StageTimings): () => void {
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      timings.record((kind !== undefined && GC_STAGES.get(kind)) || 'gc-other', entry.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
