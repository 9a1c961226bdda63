/**
 * The benchmarks' code paths stay runnable (their figures are never asserted here: they live in
 * `npm run bench`). A tiny approvals run checks the structure of what it reports.
 */
import { describe, expect, it } from 'vitest';
import { runApprovalsBench } from '../../bench/approvals.bench.js';

describe('bench smoke', () => {
  it('runs the approvals benchmark end to end on a few requests', async () => {
    const result = await runApprovalsBench({ requests: 3 });
    expect(result).toMatchObject({ requests: 3, automaticDecisionLatency: { n: 3 }, lastAssertionToTokenAtAgent: { n: 3 } });
    expect(result.approverApiWith1000Pending).toHaveProperty('listMs');
  }, 60_000);
});
