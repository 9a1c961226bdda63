/**
 * Per-tool policy subsets never change a decision: every example test case and thousands of
 * generated calls across every tool of the demo pack (finance and production together), decided
 * with each tool's subset and with the whole set, must agree exactly (outcome, determining
 * policies, errors, obligation, reasons, refusals). Also: what a subset holds (action groups
 * included), and the load-time self-check that turns the subsets off on a disagreement.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, type PolicyRequest } from '../../main/core/policy/policy-engine.js';
import { loadPolicyDirectory } from '../../main/core/policy/policy-set.js';
import { actionScopeOf, actionSubsets } from '../../main/core/policy/action-subsets.js';
import { packTestRequests } from '../../main/core/policy/fast-path-cases.js';
import { readPolicyTestFile } from '../../main/core/policy/policy-tests.js';
import { isCountersignError } from '../../shared/errors.js';
import { prng } from '../helpers/prng.js';

const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples');

function decide(engine: PolicyEngine, request: PolicyRequest): unknown {
  try {
    return engine.evaluate(request);
  } catch (error) {
    if (isCountersignError(error)) return { error: error.code, message: error.message };
    throw error;
  }
}

async function engines(dir: string): Promise<{ fast: PolicyEngine; whole: PolicyEngine }> {
  const set = await loadPolicyDirectory(dir);
  return { fast: new PolicyEngine(set), whole: new PolicyEngine(set, { policySubsets: false }) };
}

describe('what a subset holds', () => {
  it('keeps unconstrained guardrails for every tool and leaves out policies scoped to other tools', async () => {
    const set = await loadPolicyDirectory(join(EXAMPLES, 'demo'));
    const subsets = actionSubsets(set.schemaJson, set.policyTexts, set.toolEntities.keys());
    const transfer = subsets.get('payments.transfer')!;
    const staging = subsets.get('deploy.staging')!;
    expect(transfer).toContain('finance-guardrails:high-risk');
    expect(transfer).toContain('finance-transfers:small-known-payee');
    expect(transfer).not.toContain('production-deploys:staging-auto');
    expect(staging).toContain('production-deploys:staging-auto');
    expect(staging).not.toContain('finance-transfers:one-approver');
    expect(staging).not.toContain('production-deploys:production-two-person');
    expect(transfer.length).toBeLessThan(Object.keys(set.policyTexts).length);
  });

  it('keeps a policy scoped to an action group for every member of the group, transitively', () => {
    const schemaJson = {
      Countersign: {
        entityTypes: {},
        actions: {
          'deploy.all': {},
          'deploy.prod': { memberOf: [{ id: 'deploy.risky' }] },
          'deploy.risky': { memberOf: [{ id: 'deploy.all' }] },
          'deploy.staging': {},
        },
      },
    };
    const policies = {
      'p:group': 'permit (principal, action in Countersign::Action::"deploy.all", resource);',
      'p:list': 'permit (principal, action in [Countersign::Action::"deploy.staging", Countersign::Action::"x"], resource);',
      'p:eq': 'permit (principal, action == Countersign::Action::"deploy.prod", resource);',
      'p:any': 'forbid (principal, action, resource) when { context.risk.score > 90 };',
    };
    const subsets = actionSubsets(schemaJson, policies, ['deploy.prod', 'deploy.staging']);
    expect(subsets.get('deploy.prod')).toEqual(['p:group', 'p:eq', 'p:any']);
    expect(subsets.get('deploy.staging')).toEqual(['p:list', 'p:any']);
  });

  it('treats a policy it cannot read as matching every action', () => {
    expect(actionScopeOf('this is not cedar')).toEqual({ kind: 'all' });
    expect(actionScopeOf('permit (principal, action, resource);')).toEqual({ kind: 'all' });
  });
});

describe('every example test case', () => {
  for (const pack of ['finance', 'production']) {
    it(`decides the ${pack} pack's test cases identically with the subsets and with the whole set (and in the demo pack)`, async () => {
      const cases = await readPolicyTestFile(join(EXAMPLES, pack, 'tests.json'));
      expect(cases.length).toBeGreaterThan(10);
      for (const dir of [join(EXAMPLES, pack), join(EXAMPLES, 'demo')]) {
        const { fast, whole } = await engines(dir);
        for (const test of cases) expect(decide(fast, test.request), `${dir}: ${test.name}`).toEqual(decide(whole, test.request));
      }
    }, 60_000);
  }
});

describe('generated calls across every tool of the demo pack', () => {
  it('agrees on 3,000 calls: transfers and deploys, from every group, at every risk score, jurisdiction and data class', async () => {
    const { fast, whole } = await engines(join(EXAMPLES, 'demo'));
    expect(fast.fastPath.subsets).toBe(true);
    const rng = prng(0x5ab5e7);
    const int = (n: number) => Math.floor(rng() * n);
    const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
    const outcomes = new Map<string, number>();
    const tools = new Map<string, number>();
    for (let i = 0; i < 3_000; i++) {
      const tool = pick(['payments.transfer', 'deploy.staging', 'deploy.production', 'no.such.tool']);
      const params =
        tool === 'payments.transfer'
          ? {
              amount: pick(['0.00', '12.50', '999.99', '1000.00', '10000.00', '10000.01', `${int(20000)}.${int(100)}`]),
              currency: pick(['USD', 'USD', 'EUR']),
              payee: pick(['Acme Ltd', 'Globex', `Unknown ${int(1e6)}`]),
              memo: 'x',
            }
          : tool === 'deploy.production'
            ? {
                service: `svc-${int(5)}`,
                environment: pick(['production', 'production-eu', 'staging']),
                changeId: pick(['', `CHG-${int(1e5)}`]),
                diff: 'd',
              }
            : pick([{ service: `svc-${int(5)}`, diff: 'd' }, { service: 1 }, {}]);
      const request: PolicyRequest = {
        agent: {
          id: `agent-${int(50)}`,
          owner: pick(['dana@example.com', 'sam@example.com']),
          group: pick(['finance-agents', 'deploy-agents', 'other-agents']),
          dataClasses: pick([['financial'], ['source-code'], ['financial', 'source-code']]),
          jurisdictions: pick([['US', 'GB'], ['US']]),
        },
        tool,
        params: params as PolicyRequest['params'],
        dataClass: pick(['financial', 'source-code', 'internal']),
        jurisdiction: pick(['US', 'GB', 'KP']),
        provenance: ['user'],
        risk: { score: pick([0, 10, 39, 40, 59, 60, 89, 90, 100]), factors: [] },
        now: new Date(Date.UTC(2026, 0, 1 + int(300), int(24))),
      };
      const a = decide(fast, request);
      expect(a, JSON.stringify(request)).toEqual(decide(whole, request));
      const outcome = (a as { outcome?: string; error?: string }).outcome ?? (a as { error: string }).error;
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      tools.set(tool, (tools.get(tool) ?? 0) + 1);
    }
    // The mix reaches every outcome and both refusals (a differential over one outcome would prove little).
    expect([...outcomes.keys()].sort()).toEqual(['allow', 'approval_required', 'deny', 'invalid_params', 'unknown_tool']);
  }, 180_000);
});

describe('the load-time self-check', () => {
  it('keeps the subsets when they agree with the whole set on the pack test cases', async () => {
    const engine = await PolicyEngine.open(join(EXAMPLES, 'finance'), { fastPathCases: packTestRequests });
    expect(engine.fastPath).toEqual({ subsets: true });
    expect(await packTestRequests(join(EXAMPLES, 'finance'))).not.toHaveLength(0);
  });

  it('turns the subsets off with the reason on a disagreement, and then decides with the whole set', async () => {
    const dir = join(EXAMPLES, 'demo');
    const { fast, whole } = await engines(dir);
    const cases = (await readPolicyTestFile(join(EXAMPLES, 'finance', 'tests.json'))).map((t) => t.request);
    // Fault injection (the real subsets cannot disagree): point transfers at the staging subset.
    const active = (fast as unknown as { active: { subsetIds: Map<string, string> } }).active;
    active.subsetIds.set('payments.transfer', active.subsetIds.get('deploy.staging')!);
    const reason = fast.checkFastPath(cases);
    expect(reason).toMatch(/^the policy subset for tool "payments\.transfer" disagreed with the whole set on check request \d+/);
    expect(fast.fastPath).toEqual({ subsets: false, fallback: reason });
    for (const request of cases) expect(decide(fast, request)).toEqual(decide(whole, request));
  });
});
