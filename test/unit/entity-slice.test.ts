/**
 * Entity slicing never changes a decision: every example test case, and thousands of generated
 * calls against packs with large directories, decided with only the entities each call can reach
 * and with every entity, must agree exactly (outcome, determining policies, errors, obligation,
 * reasons). Also: what the slice holds, and that its size does not grow with the directory.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PolicyEngine, type PolicyRequest } from '../../main/core/policy/policy-engine.js';
import { loadPolicyDirectory } from '../../main/core/policy/policy-set.js';
import { buildEntitySliceIndex, sliceForCall } from '../../main/core/policy/entity-slice.js';
import { actionSubsets } from '../../main/core/policy/action-subsets.js';
import { readPolicyTestFile } from '../../main/core/policy/policy-tests.js';
import { isCountersignError } from '../../shared/errors.js';
import { prng } from '../helpers/prng.js';

const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempCopy(pack: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-slice-'));
  dirs.push(dir);
  cpSync(join(EXAMPLES, pack), dir, { recursive: true, dereference: true });
  return dir;
}

/** A decision or the error code, so that refusals are compared too. */
function decide(engine: PolicyEngine, request: PolicyRequest): unknown {
  try {
    return engine.evaluate(request);
  } catch (error) {
    if (isCountersignError(error)) return { error: error.code, message: error.message };
    throw error;
  }
}

async function engines(dir: string): Promise<{ sliced: PolicyEngine; whole: PolicyEngine }> {
  const set = await loadPolicyDirectory(dir);
  return { sliced: new PolicyEngine(set), whole: new PolicyEngine(set, { entitySlicing: false }) };
}

const rng = prng(0x5eed);
const int = (n: number) => Math.floor(rng() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;

describe('every example test case', () => {
  for (const pack of ['finance', 'production']) {
    it(`decides the ${pack} pack's test cases identically with the slice and with every entity`, async () => {
      const { sliced, whole } = await engines(join(EXAMPLES, pack));
      const cases = await readPolicyTestFile(join(EXAMPLES, pack, 'tests.json'));
      expect(cases.length).toBeGreaterThan(10);
      for (const test of cases) expect(decide(sliced, test.request), test.name).toEqual(decide(whole, test.request));
      // The demo pack holds both packs' policies together: the same cases against it.
      const demo = await engines(join(EXAMPLES, 'demo'));
      for (const test of cases) expect(decide(demo.sliced, test.request), `demo: ${test.name}`).toEqual(decide(demo.whole, test.request));
    }, 60_000);
  }
});

describe('generated calls against a finance directory of 300 payees', () => {
  it('agrees on 1,500 calls: known and unknown payees, amounts, currencies, jurisdictions, risk, groups', async () => {
    const dir = tempCopy('finance');
    const entities = JSON.parse(readFileSync(join(dir, 'entities.json'), 'utf8')) as unknown[];
    const payees = Array.from({ length: 300 }, (_, i) => `Vendor ${i}`);
    for (const id of payees)
      entities.push({ uid: { type: 'Countersign::Payee', id }, attrs: {}, parents: [{ type: 'Countersign::PayeeList', id: 'known' }] });
    // Payees that exist but are not on the known list must still not count as known.
    for (let i = 0; i < 50; i++) entities.push({ uid: { type: 'Countersign::Payee', id: `Stranger ${i}` }, attrs: {}, parents: [] });
    writeFileSync(join(dir, 'entities.json'), JSON.stringify(entities));
    const { sliced, whole } = await engines(dir);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 1_500; i++) {
      const payee = pick([pick(payees), pick(payees), `Stranger ${int(60)}`, 'Acme Ltd', `Unknown ${int(1e6)}`, '']);
      const request: PolicyRequest = {
        agent: {
          id: `agent-${int(50)}`,
          owner: 'dana',
          group: pick(['finance-agents', 'finance-agents', 'other-agents']),
          dataClasses: pick([['financial'], ['internal']]),
          jurisdictions: pick([['US', 'GB'], ['US']]),
        },
        tool: 'payments.transfer',
        params: {
          amount: pick([
            '0.00',
            '-1.00',
            '12.50',
            '999.99',
            '1000.00',
            '4200.00',
            '10000.00',
            '10000.01',
            '48000.00',
            `${int(20000)}.${int(100)}`,
          ]),
          currency: pick(['USD', 'USD', 'EUR']),
          payee,
          memo: 'x',
        },
        dataClass: pick(['financial', 'financial', 'internal']),
        jurisdiction: pick(['US', 'GB', 'KP', 'FR']),
        provenance: ['user'],
        risk: { score: pick([0, 10, 39, 40, 59, 60, 89, 90, 100]), factors: [] },
        now: new Date(Date.UTC(2026, 0, 1 + int(300), int(24))),
      };
      const a = decide(sliced, request);
      expect(a, JSON.stringify(request)).toEqual(decide(whole, request));
      const outcome = (a as { outcome?: string; error?: string }).outcome ?? (a as { error: string }).error;
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    // The generated mix reaches every outcome (a differential over one outcome would prove little).
    expect([...outcomes.keys()].sort()).toEqual(['allow', 'approval_required', 'deny']);
  }, 180_000);
});

describe('generated calls against a pack that reaches entities every way Cedar can', () => {
  const SCHEMA = `namespace Countersign {
  entity AgentGroup;
  entity Agent in [AgentGroup] { owner: String, group: String, dataClasses: Set<String>, jurisdictions: Set<String> };
  entity Tool { audience: String, impact: String };
  entity Region { embargoed: Bool };
  entity Bank in [Region] { blocked: Bool, country: String };
  entity ListGroup;
  entity PayeeList in [ListGroup];
  entity Payee in [PayeeList] { bank: Bank, tier: Long };
  entity Switch { on: Bool };
  type Risk = { score: Long, factors: Set<String> };
  type Meta = { via: Payee, note: String };
  type PayParams = { payee: Payee, cc: Set<Payee>, meta: Meta, amount: Long };
  action "pay.send" appliesTo { principal: [Agent], resource: [Tool], context: { params: PayParams, dataClass: String, jurisdiction: String, provenance: Set<String>, risk: Risk, now: datetime } };
}`;
  const POLICIES = `
@id("trusted") @reason("trusted")
permit (principal, action == Countersign::Action::"pay.send", resource)
when { context.params.payee in Countersign::ListGroup::"trusted" && context.params.amount < 1000 && context.params.payee.tier >= 2 };
@id("cc-known") @reason("cc known") @approvals("1") @approver_groups("finance-approvers")
permit (principal, action == Countersign::Action::"pay.send", resource)
when { context.params.cc.contains(context.params.meta.via) && context.params.meta.via in Countersign::PayeeList::"gold" };
@id("blocked-bank") @reason("blocked bank")
forbid (principal, action, resource)
when { context.params.payee.bank.blocked || context.params.payee.bank in Countersign::Region::"north" && Countersign::Region::"north".embargoed };
@id("switch") @reason("switch")
forbid (principal, action, resource)
when { Countersign::Switch::"halt".on && context.params.payee.tier < 1 };
`;
  it('agrees on 1,500 calls over parents, grandparents, attribute references, sets and nested records', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'countersign-slice-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'schema.cedarschema'), SCHEMA);
    writeFileSync(join(dir, 'pay.cedar'), POLICIES);
    const entities: unknown[] = [
      { uid: { type: 'Countersign::Tool', id: 'pay.send' }, attrs: { audience: 'pay', impact: 'high' }, parents: [] },
      { uid: { type: 'Countersign::Switch', id: 'halt' }, attrs: { on: true }, parents: [] },
      { uid: { type: 'Countersign::ListGroup', id: 'trusted' }, attrs: {}, parents: [] },
      { uid: { type: 'Countersign::PayeeList', id: 'gold' }, attrs: {}, parents: [{ type: 'Countersign::ListGroup', id: 'trusted' }] },
      // Named by no policy: a silver payee is in "trusted" only through this entity's parents.
      { uid: { type: 'Countersign::PayeeList', id: 'silver' }, attrs: {}, parents: [{ type: 'Countersign::ListGroup', id: 'trusted' }] },
      { uid: { type: 'Countersign::PayeeList', id: 'bronze' }, attrs: {}, parents: [] },
      { uid: { type: 'Countersign::Region', id: 'north' }, attrs: { embargoed: true }, parents: [] },
      { uid: { type: 'Countersign::Region', id: 'south' }, attrs: { embargoed: false }, parents: [] },
    ];
    const banks = Array.from({ length: 40 }, (_, i) => `bank-${i}`);
    for (const id of banks)
      entities.push({
        uid: { type: 'Countersign::Bank', id },
        attrs: { blocked: rng() < 0.1, country: 'X' },
        parents: [{ type: 'Countersign::Region', id: pick(['north', 'south']) }],
      });
    const payees = Array.from({ length: 150 }, (_, i) => `p-${i}`);
    for (const id of payees) {
      entities.push({
        uid: { type: 'Countersign::Payee', id },
        attrs: { bank: { __entity: { type: 'Countersign::Bank', id: pick(banks) } }, tier: int(4) },
        parents: rng() < 0.8 ? [{ type: 'Countersign::PayeeList', id: pick(['gold', 'silver', 'bronze']) }] : [],
      });
    }
    writeFileSync(join(dir, 'entities.json'), JSON.stringify(entities));
    const { sliced, whole } = await engines(dir);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 1_500; i++) {
      const somePayee = () => pick([pick(payees), pick(payees), pick(payees), `ghost-${int(5)}`]);
      const cc = Array.from({ length: int(4) }, somePayee);
      const request: PolicyRequest = {
        agent: { id: 'a1', owner: 'o', group: 'g', dataClasses: ['x'], jurisdictions: ['US'] },
        tool: 'pay.send',
        params: {
          payee: somePayee(),
          cc,
          meta: { via: cc.length > 0 && rng() < 0.7 ? pick(cc) : somePayee(), note: 'n' },
          amount: pick([5, 500, 999, 1000, 5000]),
        },
        dataClass: 'x',
        jurisdiction: 'US',
        provenance: [],
        risk: { score: 0, factors: [] },
        now: new Date(Date.UTC(2026, 5, 1)),
      };
      const a = decide(sliced, request);
      expect(a, JSON.stringify(request.params)).toEqual(decide(whole, request));
      const outcome = (a as { outcome?: string; error?: string }).outcome ?? (a as { error: string }).error;
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect([...outcomes.keys()].sort()).toEqual(['allow', 'approval_required', 'deny']);
    // Unknown payees make attribute access fail: both modes deny with the same evaluation errors.
    expect(
      decide(sliced, { ...baseRequest(), params: { payee: 'ghost-1', cc: [], meta: { via: 'ghost-2', note: '' }, amount: 5 } }),
    ).toMatchObject({ outcome: 'deny' });
  }, 180_000);

  function baseRequest(): PolicyRequest {
    return {
      agent: { id: 'a1', owner: 'o', group: 'g', dataClasses: ['x'], jurisdictions: ['US'] },
      tool: 'pay.send',
      params: {},
      dataClass: 'x',
      jurisdiction: 'US',
      provenance: [],
      risk: { score: 0, factors: [] },
      now: new Date(Date.UTC(2026, 5, 1)),
    };
  }
});

describe('the slice itself', () => {
  it('holds the tool, the policy literals and the named payee with its list, never the rest of the directory', async () => {
    for (const size of [10, 5_000]) {
      const dir = tempCopy('finance');
      const entities = JSON.parse(readFileSync(join(dir, 'entities.json'), 'utf8')) as unknown[];
      for (let i = 0; i < size; i++)
        entities.push({
          uid: { type: 'Countersign::Payee', id: `Vendor ${i}` },
          attrs: {},
          parents: [{ type: 'Countersign::PayeeList', id: 'known' }],
        });
      writeFileSync(join(dir, 'entities.json'), JSON.stringify(entities));
      const set = await loadPolicyDirectory(dir);
      const index = buildEntitySliceIndex(set);
      const base = index.baseSlice
        .get('payments.transfer')!
        .entities.map((e) => `${(e.uid as { type: string }).type}::${(e.uid as { id: string }).id}`)
        .sort();
      expect(base).toEqual([
        'Countersign::JurisdictionList::sanctioned',
        'Countersign::PayeeList::known',
        'Countersign::Tool::payments.transfer',
      ]);
      const params = { amount: '10.00', currency: 'USD', payee: 'Vendor 7', memo: 'm' };
      const call = sliceForCall(index, 'payments.transfer', params);
      expect(call.extra.map((e) => (e.uid as { id: string }).id)).toEqual(['Vendor 7']);
      expect(call.params.payee).toEqual({ __entity: { type: 'Countersign::Payee', id: 'Vendor 7' } });
      // The signed params are never changed; the Cedar view is a copy.
      expect(params.payee).toBe('Vendor 7');
      expect(sliceForCall(index, 'payments.transfer', { ...params, payee: 'Nobody' }).extra).toEqual([]);
    }
  });

  it("gives a tool evaluated with a policy subset only the literals of that subset's policies", async () => {
    // The demo pack: the change freeze is named only by deploy.production's guardrails, the
    // known-payee list only by the transfer permits; the sanctioned list by a guardrail of every tool.
    const set = await loadPolicyDirectory(join(EXAMPLES, 'demo'));
    const toolPolicies = actionSubsets(set.schemaJson, set.policyTexts, set.toolEntities.keys());
    const index = buildEntitySliceIndex({ ...set, toolPolicies });
    const names = (tool: string, slices: typeof index.baseSlice) =>
      slices
        .get(tool)!
        .entities.map((e) => `${(e.uid as { type: string }).type}::${(e.uid as { id: string }).id}`)
        .sort();
    expect(names('payments.transfer', index.subsetSlice)).toEqual([
      'Countersign::JurisdictionList::sanctioned',
      'Countersign::PayeeList::known',
      'Countersign::Tool::payments.transfer',
    ]);
    expect(names('deploy.staging', index.subsetSlice)).toEqual([
      'Countersign::JurisdictionList::sanctioned',
      'Countersign::Tool::deploy.staging',
    ]);
    expect(names('deploy.production', index.subsetSlice)).toEqual([
      'Countersign::ChangeFreeze::global',
      'Countersign::JurisdictionList::sanctioned',
      'Countersign::Tool::deploy.production',
    ]);
    // The whole set's slice (the fallback when subsets are off) still names every literal.
    expect(names('deploy.staging', index.baseSlice)).toEqual([
      'Countersign::ChangeFreeze::global',
      'Countersign::JurisdictionList::sanctioned',
      'Countersign::PayeeList::known',
      'Countersign::Tool::deploy.staging',
    ]);
    // A payee the subset slice lacks is reached from the call itself, with its list.
    const call = sliceForCall(
      index,
      'payments.transfer',
      { amount: '1.00', currency: 'USD', payee: 'Acme Ltd', memo: '' },
      index.subsetSlice.get('payments.transfer'),
    );
    expect(call.extra.map((e) => (e.uid as { id: string }).id)).toEqual(['Acme Ltd']);
  });
});
