/**
 * The benchmarks' code paths stay runnable (their figures are never asserted here: they live in
 * `npm run bench`). Tiny runs of every benchmark `npm run bench` runs — the decision path with
 * its PKCS#11 phase (a data directory first run on the software key, moved to a SoftHSM2 key
 * with hardware custody required), custody, approvals, risk and audit — check what they report.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchToken } from '../../bench/pkcs11-setup.js';
import { runDecisionPathBench } from '../../bench/decision-path.bench.js';
import { runCustodyBench } from '../../bench/custody.bench.js';
import { runApprovalsBench } from '../../bench/approvals.bench.js';
import { runRiskBench } from '../../bench/risk.bench.js';
import { runAuditBench } from '../../bench/audit.bench.js';
import { runPolicyLookupsBench } from '../../bench/policy-lookups.bench.js';

// SoftHSM scans its tokens when the module first loads: the bench token comes first (as in bench/index.ts).
beforeAll(() => {
  benchToken();
});
afterAll(() => {
  benchToken().token.cleanup();
});

describe('bench smoke', () => {
  it('runs the decision-path benchmark end to end, its PKCS#11 phase included, with no errors', async () => {
    const result = await runDecisionPathBench({
      concurrency: 2,
      seconds: 0.5,
      memoryAgents: 4,
      enrolledAgents: 6,
      lookupEntities: 50,
      openLoopPerSecond: 20,
      stageDecisions: 20,
    });
    // The token core's two turns and the software core's two, run alternately (d585421).
    type Load = { perSecond: number; errors: number; second: { perSecond: number; errors: number } };
    const pkcs11 = result.pkcs11 as { core: Load; softwareSignerInTurn: Load; stagesUnderLoad: Record<string, number> };
    const closedLoop = result.closedLoop as { core: { errors: number; outcomes: Record<string, number> } };
    expect(closedLoop.core).toMatchObject({ errors: 0 });
    // Risk on and a varied mix: most calls are still decided automatically.
    expect(closedLoop.core.outcomes.allow).toBeGreaterThan(0);
    expect(result.coreStageBreakdownUnderLoad).toHaveProperty('closedLoop.risk');
    // The memory target is judged on the larger of the two readings of its condition (ADR 0021).
    const memory = result.memory as { connectedRssMiB: number; afterLoadRssMiB: number; targetRssMiB: number };
    expect(memory.targetRssMiB).toBe(Math.max(memory.connectedRssMiB, memory.afterLoadRssMiB));
    for (const turns of [pkcs11.core, pkcs11.softwareSignerInTurn]) {
      expect(turns.errors).toBe(0);
      expect(turns.second.errors).toBe(0);
      expect(turns.perSecond).toBeGreaterThan(0);
      expect(turns.second.perSecond).toBeGreaterThan(0);
    }
    expect(Object.keys(pkcs11.stagesUnderLoad).length).toBeGreaterThan(0);
  }, 300_000);

  it('runs the custody benchmark through the SoftHSM2 token for both algorithms', async () => {
    const result = await runCustodyBench({ seconds: 0.2 });
    expect(Object.keys(result).sort()).toEqual(['ES256', 'EdDSA']);
    expect(result.ES256).toHaveProperty('pkcs11SignaturesPerSecond32InFlight');
  }, 120_000);

  it('runs the approvals benchmark end to end on a few requests', async () => {
    const result = await runApprovalsBench({ requests: 3 });
    expect(result).toMatchObject({ requests: 3, automaticDecisionLatency: { n: 3 }, lastAssertionToTokenAtAgent: { n: 3 } });
    expect(result.approverApiWith1000Pending).toHaveProperty('listMs');
  }, 60_000);

  it('runs the risk benchmark end to end on a few agents, every measured call allowed', async () => {
    const result = await runRiskBench({ agents: 30, historyCalls: 3_000, loadAgents: 10, seconds: 1, openLoopPerSecond: 20 });
    expect(result).toMatchObject({ agents: 30, historicalCalls: 3_000, scoringInProcess: { maxScoreSeen: 0 } });
    const latency = result.decisionLatency as {
      scoringOn: { notAllowed: number; errors: number; perSecond: number };
      scoringOff: Array<{ notAllowed: number; errors: number }>;
    };
    expect(latency.scoringOn).toMatchObject({ notAllowed: 0, errors: 0 });
    expect(latency.scoringOn.perSecond).toBeGreaterThan(0);
    for (const off of latency.scoringOff) expect(off).toMatchObject({ notAllowed: 0, errors: 0 });
  }, 120_000);

  it('runs the audit benchmark end to end on a small log, and its export verifies', async () => {
    const result = await runAuditBench({ appends: 50, appendsEach: 20, batch: 10, rounds: 2, entries: 25_000 });
    expect(result).toMatchObject({ log: { entries: 25_000, checkpoints: 3 }, export: { entries: 25_000 } });
    expect(result.durableAppendsPerSecond).toHaveProperty('batched10PerCommit.cpuRatioPerRound');
    expect(
      (result.durableAppendsPerSecond as { batched10PerCommit: { cpuRatioPerRound: number[] } }).batched10PerCommit.cpuRatioPerRound,
    ).toHaveLength(2);
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
