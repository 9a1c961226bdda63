/**
 * The benchmarks' code paths stay runnable (their figures are never asserted here: they live in
 * `npm run bench`). Tiny approvals, risk and audit runs check the structure of what they report.
 */
import { describe, expect, it } from 'vitest';
import { runApprovalsBench } from '../../bench/approvals.bench.js';
import { runRiskBench } from '../../bench/risk.bench.js';
import { runAuditBench } from '../../bench/audit.bench.js';
import { runPolicyLookupsBench } from '../../bench/policy-lookups.bench.js';

describe('bench smoke', () => {
  it('runs the approvals benchmark end to end on a few requests', async () => {
    const result = await runApprovalsBench({ requests: 3 });
    expect(result).toMatchObject({ requests: 3, automaticDecisionLatency: { n: 3 }, lastAssertionToTokenAtAgent: { n: 3 } });
    expect(result.approverApiWith1000Pending).toHaveProperty('listMs');
  }, 60_000);

  it('runs the risk benchmark end to end on a few agents, every measured call allowed', async () => {
    const result = await runRiskBench({ agents: 30, historyCalls: 3_000, loadAgents: 10, seconds: 1, openLoopPerSecond: 20 });
    expect(result).toMatchObject({ agents: 30, historicalCalls: 3_000, scoringInProcess: { maxScoreSeen: 0 } });
    const latency = result.decisionLatency as { scoringOn: { notAllowed: number; errors: number; perSecond: number }; scoringOff: Array<{ notAllowed: number; errors: number }> };
    expect(latency.scoringOn).toMatchObject({ notAllowed: 0, errors: 0 });
    expect(latency.scoringOn.perSecond).toBeGreaterThan(0);
    for (const off of latency.scoringOff) expect(off).toMatchObject({ notAllowed: 0, errors: 0 });
  }, 120_000);

  it('runs the audit benchmark end to end on a small log, and its export verifies', async () => {
    const result = await runAuditBench({ appends: 50, batch: 10, entries: 25_000 });
    expect(result).toMatchObject({ log: { entries: 25_000, checkpoints: 3 }, export: { entries: 25_000 } });
    expect(result.durableAppendsPerSecond).toHaveProperty('batched10PerCommit');
  }, 120_000);

  it('runs the policy lookups benchmark on small directories, deciding every tier with the slice and the old set style', async () => {
    const result = await runPolicyLookupsBench({ sizes: [10, 200], calls: 300, setStyleSizes: [10] });
    const rows = result.evaluationWithSlicing as Array<Record<string, number>>;
    expect(rows.map((r) => r.payees)).toEqual([10, 200]);
    for (const row of [...rows, ...(result.oldSetAttributeStyle as Array<Record<string, number>>)]) {
      expect(row.allow).toBeGreaterThan(0);
      expect(row.approval_required).toBeGreaterThan(0);
      expect(row.allow! + row.approval_required! + row.deny!).toBe(300);
    }
    expect(result.costRatioToSmallest).toHaveProperty('200');
  }, 120_000);
});
