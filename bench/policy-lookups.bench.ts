/**
 * Policy cost against the size of the directory (issue: decisions at machine speed whatever the
 * size of the directory). The finance pack is loaded with 10, 1,000, 10,000 and 100,000 known
 * payees (one Payee entity each, docs/policy.md "Lookups that stay O(1)") and decides a varied
 * call mix (known and unknown payees, amounts across every tier, risk scores, jurisdictions) with
 * per-call entity slicing. The baseline in the same run is the smallest directory; the figure is
 * the ratio at each size. For contrast, the old style (one PayeeList entity with a Set of names,
 * handed to Cedar whole) is measured at the small sizes. Memory is read after the largest load.
 * The same again with the demo pack (finance and production together) and the decision-path call
 * mix (transfers, staging and production deploys, from both agent groups, at varied risk scores):
 * its cost at each size, the ratio of the largest to the smallest, and, at the largest, the same
 * calls with the whole policy set instead of each tool's subset (docs/policy.md).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PolicyEngine, type PolicyRequest } from '../main/core/policy/policy-engine.js';
import { loadPolicyDirectory } from '../main/core/policy/policy-set.js';
import { prng } from '../test/helpers/prng.js';
import { demoPackWith, mixedCall } from './decision-path.bench.js';

const FINANCE = join(import.meta.dirname, '..', 'examples', 'finance');

type Style = 'entities' | 'set-attribute';

function packWith(payees: number, style: Style): string {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-bench-lookups-'));
  cpSync(FINANCE, dir, { recursive: true, dereference: true });
  const entities = (JSON.parse(readFileSync(join(dir, 'entities.json'), 'utf8')) as Array<{ uid: { type: string } }>).filter(
    (e) => e.uid.type !== 'Countersign::Payee' && e.uid.type !== 'Countersign::PayeeList',
  );
  const names = Array.from({ length: payees }, (_, i) => (i === 0 ? 'Acme Ltd' : `Vendor ${i}`));
  if (style === 'entities') {
    entities.push({ uid: { type: 'Countersign::PayeeList', id: 'known' }, attrs: {}, parents: [] } as never);
    for (const id of names)
      entities.push({
        uid: { type: 'Countersign::Payee', id },
        attrs: {},
        parents: [{ type: 'Countersign::PayeeList', id: 'known' }],
      } as never);
  } else {
    // The pre-slicing style: one entity holding every name in a Set, read with .contains().
    entities.push({ uid: { type: 'Countersign::PayeeList', id: 'known' }, attrs: { payees: names }, parents: [] } as never);
    const schemaFile = join(dir, 'schema.cedarschema');
    writeFileSync(
      schemaFile,
      readFileSync(schemaFile, 'utf8')
        .replace(/entity PayeeList;\s*entity Payee in \[PayeeList\];/, 'entity PayeeList { payees: Set<String> };')
        .replace('payee: Payee,', 'payee: String,'),
    );
    const policyFile = join(dir, 'transfers.cedar');
    writeFileSync(
      policyFile,
      readFileSync(policyFile, 'utf8').replaceAll(
        'context.params.payee in Countersign::PayeeList::"known"',
        'Countersign::PayeeList::"known".payees.contains(context.params.payee)',
      ),
    );
  }
  writeFileSync(join(dir, 'entities.json'), JSON.stringify(entities));
  return dir;
}

function callMix(payees: number, n: number): PolicyRequest[] {
  const rng = prng(0x10c4);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
  return Array.from({ length: n }, () => ({
    agent: {
      id: `agent-${Math.floor(rng() * 10_000)}`,
      owner: 'dana',
      group: 'finance-agents',
      dataClasses: ['financial'],
      jurisdictions: ['US', 'GB'],
    },
    tool: 'payments.transfer',
    params: {
      amount: pick([
        '12.50',
        '250.00',
        '999.99',
        '4200.00',
        '18000.00',
        `${Math.floor(rng() * 9000) + 1}.${String(Math.floor(rng() * 100)).padStart(2, '0')}`,
      ]),
      currency: 'USD',
      payee:
        rng() < 0.8
          ? rng() < 0.1
            ? 'Acme Ltd'
            : `Vendor ${1 + Math.floor(rng() * Math.max(1, payees - 1))}`
          : `New Supplier ${Math.floor(rng() * 1e6)}`,
      memo: 'invoice',
    },
    dataClass: 'financial',
    jurisdiction: pick(['US', 'US', 'GB']),
    provenance: ['user'],
    risk: { score: pick([5, 15, 35, 45, 65]), factors: [] },
    now: new Date(Date.UTC(2026, 5, 2, 10)),
  }));
}

async function measure(payees: number, style: Style, calls: number): Promise<Record<string, number>> {
  const dir = packWith(payees, style);
  try {
    const loadStart = performance.now();
    const engine = new PolicyEngine(await loadPolicyDirectory(dir));
    const loadMs = performance.now() - loadStart;
    const mix = callMix(payees, calls);
    for (const request of mix.slice(0, 200)) engine.evaluate(request); // warm up
    const samples: number[] = [];
    const outcomes = { allow: 0, approval_required: 0, deny: 0 };
    for (const request of mix) {
      const t = performance.now();
      const decision = engine.evaluate(request);
      samples.push(performance.now() - t);
      outcomes[decision.outcome]++;
    }
    samples.sort((a, b) => a - b);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    return {
      payees,
      loadMs: Math.round(loadMs),
      meanMs: Number(mean.toFixed(4)),
      p50Ms: Number(samples[Math.floor(samples.length * 0.5)]!.toFixed(4)),
      p99Ms: Number(samples[Math.floor(samples.length * 0.99)]!.toFixed(4)),
      ...outcomes,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The decision-path mix as policy requests: both agent kinds, every tool of the demo pack, varied risk. */
function demoMix(payees: number, n: number): PolicyRequest[] {
  const rng = prng(0xde70);
  return Array.from({ length: n }, (_, i) => {
    const kind = i % 2 === 0 ? 'finance' : 'deploy';
    const call = mixedCall(kind, rng, payees);
    return {
      agent: {
        id: `bench-${kind}-${Math.floor(rng() * 10_000)}`,
        owner: kind === 'finance' ? 'dana@example.com' : 'sam@example.com',
        group: kind === 'finance' ? 'finance-agents' : 'deploy-agents',
        dataClasses: kind === 'finance' ? ['financial'] : ['source-code'],
        jurisdictions: kind === 'finance' ? ['US', 'GB'] : ['US'],
      },
      tool: call.tool,
      params: call.params,
      dataClass: call.dataClass,
      jurisdiction: call.jurisdiction,
      provenance: call.provenance,
      risk: { score: [0, 5, 15, 35, 45, 65][Math.floor(rng() * 6)]!, factors: [] },
      now: new Date(Date.UTC(2026, 5, 2, 10)),
    };
  });
}

function timeEvaluations(engine: PolicyEngine, mix: PolicyRequest[]): { meanMs: number; p50Ms: number; p99Ms: number } {
  for (const request of mix.slice(0, 200)) engine.evaluate(request); // warm up
  const samples: number[] = [];
  for (const request of mix) {
    const t = performance.now();
    engine.evaluate(request);
    samples.push(performance.now() - t);
  }
  samples.sort((a, b) => a - b);
  return {
    meanMs: Number((samples.reduce((a, b) => a + b, 0) / samples.length).toFixed(4)),
    p50Ms: Number(samples[Math.floor(samples.length * 0.5)]!.toFixed(4)),
    p99Ms: Number(samples[Math.floor(samples.length * 0.99)]!.toFixed(4)),
  };
}

async function measureDemo(payees: number, calls: number, compareWhole: boolean): Promise<Record<string, unknown>> {
  const dir = demoPackWith(payees);
  try {
    const set = await loadPolicyDirectory(dir);
    const mix = demoMix(payees, calls);
    const subsets = timeEvaluations(new PolicyEngine(set), mix);
    if (!compareWhole) return { payees, ...subsets };
    // Interleaved halves would be fairer on a loaded machine; one pass each keeps the bench short.
    const whole = timeEvaluations(new PolicyEngine(set, { policySubsets: false }), mix);
    return { payees, ...subsets, wholeSet: whole, subsetToWholeSet: Number((subsets.meanMs / whole.meanMs).toFixed(3)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runPolicyLookupsBench(options: {
  sizes: number[];
  calls: number;
  setStyleSizes: number[];
}): Promise<Record<string, unknown>> {
  const sliced: Array<Record<string, number>> = [];
  for (const size of options.sizes) sliced.push(await measure(size, 'entities', options.calls));
  const heapMiB = Math.round(process.memoryUsage().heapUsed / 2 ** 20);
  const rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
  const setStyle: Array<Record<string, number>> = [];
  for (const size of options.setStyleSizes) setStyle.push(await measure(size, 'set-attribute', Math.min(options.calls, 1_000)));
  const base = sliced[0]!.meanMs!;
  const demo: Array<Record<string, unknown>> = [];
  for (const [i, size] of options.sizes.entries()) demo.push(await measureDemo(size, options.calls, i === options.sizes.length - 1));
  const demoBase = demo[0]!.meanMs as number;
  return {
    calls: options.calls,
    evaluationWithSlicing: sliced,
    costRatioToSmallest: Object.fromEntries(sliced.map((r) => [String(r.payees), Number((r.meanMs! / base).toFixed(3))])),
    targetLargestWithin: 1.25,
    memoryAfterLargestLoad: { heapMiB, rssMiB },
    oldSetAttributeStyle: setStyle,
    demoPackFinanceAndProduction: {
      evaluation: demo,
      costRatioToSmallest: Object.fromEntries(demo.map((r) => [String(r.payees), Number(((r.meanMs as number) / demoBase).toFixed(3))])),
    },
  };
}
