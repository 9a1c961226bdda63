import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { isCountersignError, type ErrorCode } from '../../shared/errors.js';
import { PolicyEngine, type PolicyRequest, type ReloadResult } from '../../main/core/policy/policy-engine.js';
import { loadPolicyDirectory } from '../../main/core/policy/policy-set.js';
import { assertPolicyTestsPassed, checkPolicyDirectory, runPolicyTests } from '../../main/core/policy/policy-tests.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FINANCE = path.join(ROOT, 'examples/finance');
const PRODUCTION = path.join(ROOT, 'examples/production');

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countersign-policy-'));
  tempDirs.push(dir);
  return dir;
}

/** A copy of an example pack in a fresh temp dir. */
function copyPack(source: string): string {
  const dir = tempDir();
  for (const name of fs.readdirSync(source)) fs.copyFileSync(path.join(source, name), path.join(dir, name));
  return dir;
}

const DEMO_SCHEMA = `
namespace Countersign {
  entity AgentGroup;
  entity Agent in [AgentGroup] { owner: String, group: String, dataClasses: Set<String>, jurisdictions: Set<String> };
  entity Tool { audience: String, impact: String };
  type Risk = { score: Long, factors: Set<String> };
  action "demo.echo" appliesTo {
    principal: [Agent],
    resource: [Tool],
    context: {
      params: { text: String, amount: decimal },
      dataClass: String,
      jurisdiction: String,
      provenance: Set<String>,
      risk: Risk,
      now: datetime,
    },
  };
}
`;

const DEMO_ENTITIES = JSON.stringify([
  { uid: { type: 'Countersign::Tool', id: 'demo.echo' }, attrs: { audience: 'demo', impact: 'low' }, parents: [] },
]);

/** A synthetic pack: the demo schema + entities and the given .cedar files. */
function makePack(policies: Record<string, string>, overrides: { schema?: string; entities?: string } = {}): string {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'schema.cedarschema'), overrides.schema ?? DEMO_SCHEMA);
  fs.writeFileSync(path.join(dir, 'entities.json'), overrides.entities ?? DEMO_ENTITIES);
  for (const [name, text] of Object.entries(policies)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

const PERMIT_ALL = '@id("all") permit(principal, action, resource);\n';

function demoRequest(overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    agent: { id: 'agent-1', owner: 'alice@example.com', group: 'demo-agents', dataClasses: ['internal'], jurisdictions: ['US'] },
    tool: 'demo.echo',
    params: { text: 'hello', amount: '12.50' },
    dataClass: 'internal',
    jurisdiction: 'US',
    provenance: ['user-request'],
    risk: { score: 10, factors: [] },
    now: new Date('2025-06-02T10:00:00Z'),
    ...overrides,
  };
}

function financeRequest(params: Record<string, string>, overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    agent: { id: 'ap-agent-1', owner: 'alice@example.com', group: 'finance-agents', dataClasses: ['financial'], jurisdictions: ['US'] },
    tool: 'payments.transfer',
    params: { amount: '10.00', currency: 'USD', payee: 'Acme Ltd', memo: 'invoice', ...params },
    dataClass: 'financial',
    jurisdiction: 'US',
    provenance: [],
    risk: { score: 5, factors: [] },
    now: new Date('2025-06-02T10:00:00Z'),
    ...overrides,
  };
}

function productionRequest(now = '2026-06-02T10:00:00Z'): PolicyRequest {
  return {
    agent: { id: 'deploy-bot', owner: 'bob@example.com', group: 'deploy-agents', dataClasses: ['source-code'], jurisdictions: ['US'] },
    tool: 'deploy.production',
    params: { service: 'checkout', environment: 'production', changeId: 'CHG-1', diff: '+replicas: 4' },
    dataClass: 'source-code',
    jurisdiction: 'US',
    provenance: [],
    risk: { score: 5, factors: [] },
    now: new Date(now),
  };
}

function errorCode(fn: () => unknown): ErrorCode | undefined {
  try {
    fn();
  } catch (error) {
    if (isCountersignError(error)) return error.code;
    throw error;
  }
  return undefined;
}

async function loadError(dir: string): Promise<string> {
  try {
    await loadPolicyDirectory(dir);
  } catch (error) {
    if (isCountersignError(error, 'policy_invalid')) return error.message;
    throw error;
  }
  throw new Error('expected the policy set to be rejected');
}

/** Adds a payee to the known list of a pack's entities.json (one Payee entity in PayeeList "known"). */
function addKnownPayee(file: string, name: string): void {
  const entities = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown[];
  entities.push({ uid: { type: 'Countersign::Payee', id: name }, attrs: {}, parents: [{ type: 'Countersign::PayeeList', id: 'known' }] });
  fs.writeFileSync(file, JSON.stringify(entities, null, 2));
}

describe('example packs', () => {
  it.each([
    ['finance', FINANCE],
    ['production', PRODUCTION],
  ])('%s tests.json passes', async (_name, dir) => {
    const report = await runPolicyTests(dir, path.join(dir, 'tests.json'));
    const failures = report.results.filter((r) => !r.passed).map((r) => `${r.name}: ${r.message}`);
    expect(failures).toEqual([]);
    expect(report.total).toBeGreaterThanOrEqual(10);
    expect(report.policyHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(() => assertPolicyTestsPassed(report)).not.toThrow();
  });

  it('reports a wrong expectation as a failed test with a diff', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'tests.json');
    const request = { ...financeRequest({ amount: '999.99' }), now: '2025-06-02T10:00:00Z' };
    fs.writeFileSync(file, JSON.stringify({ tests: [{ name: 'wrong', request, expect: { outcome: 'approval_required', approvals: 2 } }] }));
    const report = await runPolicyTests(FINANCE, file);
    expect(report.failed).toBe(1);
    expect(report.results[0]?.message).toContain('outcome: expected "approval_required", got "allow"');
    expect(report.results[0]?.message).toContain('approvals: expected 2, got 0');
    try {
      assertPolicyTestsPassed(report);
      expect.unreachable();
    } catch (error) {
      expect(isCountersignError(error, 'policy_test_failed')).toBe(true);
    }
  });

  it('rejects a malformed test file with config_invalid', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'tests.json');
    fs.writeFileSync(file, JSON.stringify({ tests: [{ name: 'x', request: {}, expect: { outcome: 'maybe' } }] }));
    await expect(runPolicyTests(FINANCE, file)).rejects.toMatchObject({ code: 'config_invalid' });
    fs.writeFileSync(file, '{"tests": [], "tests": []}');
    await expect(runPolicyTests(FINANCE, file)).rejects.toMatchObject({ code: 'config_invalid' });
  });

  it('checkPolicyDirectory summarizes policies and tools', async () => {
    const summary = await checkPolicyDirectory(PRODUCTION);
    expect(summary.tools.map((t) => t.name)).toEqual(['deploy.production', 'deploy.staging']);
    expect(summary.tools[0]).toEqual({ name: 'deploy.production', audience: 'deploy-service', impact: 'critical' });
    const twoPerson = summary.policies.find((p) => p.id === 'deploys:production-two-person');
    expect(twoPerson?.obligation).toEqual({
      approvals: 2,
      groups: ['sre-approvers'],
      ttlSeconds: 1800,
      userVerification: 'required',
      conflicted: [],
    });
    expect(summary.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('exposes tool info', async () => {
    const engine = await PolicyEngine.open(FINANCE);
    expect(engine.tool('payments.transfer')).toMatchObject({ audience: 'payments-service', impact: 'high' });
    expect(engine.tool('payments.refund')).toBeUndefined();
    expect(engine.toolNames()).toEqual(['payments.transfer']);
  });
});

describe('decision rules', () => {
  it('denies by default', async () => {
    const engine = await PolicyEngine.open(
      makePack({ 'p.cedar': '@id("never") permit(principal, action, resource) when { context.risk.score < 0 };' }),
    );
    const decision = engine.evaluate(demoRequest());
    expect(decision).toMatchObject({ outcome: 'deny', determiningPolicies: [], errors: [], reasons: ['no policy permits this call'] });
    expect(decision.policyHash).toBe(engine.hash);
  });

  it('lets forbid win over permit', async () => {
    const engine = await PolicyEngine.open(
      makePack({
        'p.cedar': `${PERMIT_ALL}@id("risky") @reason("too risky") forbid(principal, action, resource) when { context.risk.score >= 50 };`,
      }),
    );
    expect(engine.evaluate(demoRequest()).outcome).toBe('allow');
    const denied = engine.evaluate(demoRequest({ risk: { score: 50, factors: ['x'] } }));
    expect(denied).toMatchObject({ outcome: 'deny', determiningPolicies: ['p:risky'], reasons: ['too risky'] });
  });

  it('denies when any policy fails to evaluate, even if a permit applies', async () => {
    // Validates strictly, but overflows a Long at run time when score > 0.
    const overflow = '@id("overflow") forbid(principal, action, resource) when { context.risk.score + 9223372036854775807 < 0 };';
    const engine = await PolicyEngine.open(makePack({ 'p.cedar': `${PERMIT_ALL}${overflow}` }));
    const decision = engine.evaluate(demoRequest({ risk: { score: 10, factors: [] } }));
    expect(decision.outcome).toBe('deny');
    expect(decision.determiningPolicies).toEqual(['p:overflow']);
    expect(decision.errors[0]).toContain('overflow');
    expect(decision.reasons).toEqual(['a policy could not be evaluated, so the call is denied']);
    // A permit that errors is skipped by Cedar (default deny); we still report it.
    const erroringPermit = await PolicyEngine.open(
      makePack({ 'p.cedar': '@id("bad") permit(principal, action, resource) when { context.risk.score * 9223372036854775807 > 0 };' }),
    );
    expect(erroringPermit.evaluate(demoRequest())).toMatchObject({
      outcome: 'deny',
      determiningPolicies: ['p:bad'],
      reasons: ['a policy could not be evaluated, so the call is denied'],
    });
    // No error at score 0: the permit applies normally.
    expect(engine.evaluate(demoRequest({ risk: { score: 0, factors: [] } })).outcome).toBe('allow');
  });

  it('denies (not throws) on a malformed request field it builds itself', async () => {
    const engine = await PolicyEngine.open(makePack({ 'p.cedar': PERMIT_ALL }));
    expect(engine.evaluate(demoRequest({ risk: { score: 42.5, factors: [] } }))).toMatchObject({ outcome: 'deny' });
    expect(engine.evaluate(demoRequest({ risk: { score: 101, factors: [] } })).errors[0]).toContain('risk score');
    expect(engine.evaluate(demoRequest({ now: new Date(Number.NaN) })).outcome).toBe('deny');
  });

  it('throws unknown_tool for a tool outside the set', async () => {
    const engine = await PolicyEngine.open(FINANCE);
    expect(errorCode(() => engine.evaluate(financeRequest({}, { tool: 'payments.refund' })))).toBe('unknown_tool');
    expect(errorCode(() => engine.evaluate(financeRequest({}, { tool: 'Countersign::Action::"payments.transfer"' })))).toBe('unknown_tool');
  });

  it('throws invalid_params for params that do not match the tool schema', async () => {
    const engine = await PolicyEngine.open(FINANCE);
    const cases: Array<[string, Record<string, unknown>]> = [
      ['extra field', { amount: '10.00', currency: 'USD', payee: 'Acme Ltd', memo: '', iban: 'X' }],
      ['float amount', { amount: 10.5, currency: 'USD', payee: 'Acme Ltd', memo: '' }],
      ['five fraction digits', { amount: '10.00001', currency: 'USD', payee: 'Acme Ltd', memo: '' }],
      ['integer-looking decimal', { amount: '10', currency: 'USD', payee: 'Acme Ltd', memo: '' }],
      ['missing field', { amount: '10.00', currency: 'USD', payee: 'Acme Ltd' }],
      ['null', { amount: '10.00', currency: 'USD', payee: 'Acme Ltd', memo: null }],
      ['wrong type', { amount: '10.00', currency: 'USD', payee: 42, memo: '' }],
      ['entity escape', { amount: '10.00', currency: 'USD', payee: { __entity: { type: 'Countersign::Tool', id: 'x' } }, memo: '' }],
    ];
    for (const [name, params] of cases) {
      const request = { ...financeRequest({}), params } as PolicyRequest;
      let caught: unknown;
      try {
        engine.evaluate(request);
      } catch (error) {
        caught = error;
      }
      expect(isCountersignError(caught, 'invalid_params'), name).toBe(true);
      expect((caught as Error).message, name).toContain('"payments.transfer"');
    }
    let message = '';
    try {
      engine.evaluate({ ...financeRequest({}), params: { amount: '10.00', currency: 'USD', payee: 'Acme Ltd', memo: '', iban: 'X' } });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('`iban` should not exist');
  });

  it('refuses a malformed @conflicted_approvers, and one without @approvals', async () => {
    const bad = makePack({
      'p.cedar': '@id("x") @approvals("1") @conflicted_approvers("not an id!") permit(principal, action, resource);',
    });
    await expect(PolicyEngine.open(bad)).rejects.toMatchObject({ code: 'policy_invalid' });
    const orphan = makePack({ 'p.cedar': '@id("y") @conflicted_approvers("bob") permit(principal, action, resource);' });
    await expect(PolicyEngine.open(orphan)).rejects.toMatchObject({ code: 'policy_invalid' });
  });

  it('lists a reason once when several determining policies share it (one guardrail in two files)', async () => {
    const guardrail =
      '@id("high-risk") @reason("the risk score is 90 or higher") forbid(principal, action, resource) when { context.risk.score >= 90 };\n';
    const engine = await PolicyEngine.open(makePack({ 'a.cedar': `${PERMIT_ALL}${guardrail}`, 'b.cedar': guardrail }));
    const denied = engine.evaluate(demoRequest({ risk: { score: 95, factors: ['x'] } }));
    expect(denied).toMatchObject({
      outcome: 'deny',
      determiningPolicies: ['a:high-risk', 'b:high-risk'],
      reasons: ['the risk score is 90 or higher'],
    });

    const approval =
      '@id("one") @approvals("1") @approver_groups("finance-approvers") @reason("one finance approver") permit(principal, action, resource);\n';
    const held = (await PolicyEngine.open(makePack({ 'a.cedar': approval, 'b.cedar': approval }))).evaluate(demoRequest());
    expect(held.outcome).toBe('approval_required');
    expect(held.reasons).toEqual(['one finance approver']);
    expect(held.obligation?.reasons).toEqual(['one finance approver']);
  });

  it('combines the obligations of determining permits strictly', async () => {
    const policies = `
@id("one-finance") @approvals("1") @approver_groups("finance-approvers") @approval_ttl("30m") @user_verification("preferred") @reason("one finance approver")
permit(principal, action, resource);

@id("two-treasury") @approvals("2") @approver_groups("treasury, cfo-office") @approval_ttl("10m") @user_verification("required") @reason("two from treasury or the cfo office") @conflicted_approvers("Payee.Liaison@example.com, cfo@example.com")
permit(principal, action, resource) when { context.params.amount.greaterThan(decimal("1000.00")) };

@id("plain") @reason("plain permit")
permit(principal, action, resource);
`;
    const engine = await PolicyEngine.open(makePack({ 'p.cedar': policies }));
    const small = engine.evaluate(demoRequest());
    expect(small.outcome).toBe('approval_required');
    expect(small.determiningPolicies).toEqual(['p:one-finance', 'p:plain']);
    expect(small.obligation).toEqual({
      approvals: 1,
      groups: [['finance-approvers']],
      ttlSeconds: 1800,
      userVerification: 'preferred',
      reasons: ['one finance approver'],
      conflicted: [],
    });

    const large = engine.evaluate(demoRequest({ params: { text: 'x', amount: '5000.00' } }));
    expect(large.outcome).toBe('approval_required');
    expect(large.determiningPolicies).toEqual(['p:one-finance', 'p:plain', 'p:two-treasury']);
    expect(large.obligation).toEqual({
      approvals: 2,
      groups: [['cfo-office', 'treasury'], ['finance-approvers']],
      ttlSeconds: 600,
      userVerification: 'required',
      reasons: ['one finance approver', 'two from treasury or the cfo office'],
      conflicted: ['cfo@example.com', 'payee.liaison@example.com'],
    });
    expect(large.reasons).toEqual(['one finance approver', 'plain permit', 'two from treasury or the cfo office']);
  });

  it('allows when the only determining permits ask for no approvals', async () => {
    const engine = await PolicyEngine.open(makePack({ 'p.cedar': '@id("zero") @approvals("0") permit(principal, action, resource);' }));
    const decision = engine.evaluate(demoRequest());
    expect(decision.outcome).toBe('allow');
    expect(decision.obligation).toBeUndefined();
    expect(decision.reasons).toEqual(['permitted by policy "p:zero"']);
  });

  it('applies defaults (15m, uv required) when a permit only gives @approvals', async () => {
    const engine = await PolicyEngine.open(makePack({ 'p.cedar': '@id("any") @approvals("3") permit(principal, action, resource);' }));
    expect(engine.evaluate(demoRequest()).obligation).toEqual({
      approvals: 3,
      groups: [],
      ttlSeconds: 900,
      userVerification: 'required',
      reasons: [],
      conflicted: [],
    });
  });
});

describe('policy hash', () => {
  it('is stable across loads and locations, and ignores JSON formatting', async () => {
    const a = await loadPolicyDirectory(FINANCE);
    const b = await loadPolicyDirectory(copyPack(FINANCE));
    expect(b.hash).toBe(a.hash);

    const reformatted = copyPack(FINANCE);
    const entities = JSON.parse(fs.readFileSync(path.join(reformatted, 'entities.json'), 'utf8')) as unknown;
    fs.writeFileSync(path.join(reformatted, 'entities.json'), JSON.stringify(entities));
    expect((await loadPolicyDirectory(reformatted)).hash).toBe(a.hash);
  });

  it('changes with the schema, a policy or an entity', async () => {
    const base = (await loadPolicyDirectory(FINANCE)).hash;

    const entities = copyPack(FINANCE);
    const file = path.join(entities, 'entities.json');
    addKnownPayee(file, 'Acme Holdings');
    expect((await loadPolicyDirectory(entities)).hash).not.toBe(base);

    const policy = copyPack(FINANCE);
    const cedarFile = path.join(policy, 'guardrails.cedar');
    fs.writeFileSync(cedarFile, fs.readFileSync(cedarFile, 'utf8').replace('score >= 90', 'score >= 80'));
    expect((await loadPolicyDirectory(policy)).hash).not.toBe(base);

    const schema = copyPack(FINANCE);
    fs.appendFileSync(path.join(schema, 'schema.cedarschema'), '\n// a comment\n');
    expect((await loadPolicyDirectory(schema)).hash).not.toBe(base);
  });
});

describe('hot reload', () => {
  it('keeps the last good set when a broken file appears, then picks up a valid change', async () => {
    const dir = copyPack(FINANCE);
    const engine = await PolicyEngine.open(dir);
    const hash = engine.hash;
    const toNewPayee = financeRequest({ amount: '50.00', payee: 'Acme Holdings' });
    const before = engine.evaluate(toNewPayee);
    expect(before.outcome).toBe('approval_required');

    fs.writeFileSync(path.join(dir, 'broken.cedar'), '@id("broken") permit(principal, action, resource) when { context.risk.score > };');
    const failed = await engine.reload();
    expect(failed.ok).toBe(false);
    if (failed.ok) throw new Error('unreachable');
    expect(failed.error.code).toBe('policy_invalid');
    expect(failed.error.message).toContain('broken.cedar:1:');
    expect(failed.error.message).toContain('unexpected token');
    expect(failed.hash).toBe(hash);
    expect(engine.hash).toBe(hash);
    expect(engine.evaluate(toNewPayee)).toEqual(before);

    fs.rmSync(path.join(dir, 'broken.cedar'));
    const file = path.join(dir, 'entities.json');
    addKnownPayee(file, 'Acme Holdings');
    const ok = await engine.reload();
    expect(ok).toMatchObject({ ok: true, changed: true, previousHash: hash });
    expect(engine.hash).not.toBe(hash);
    const after = engine.evaluate(toNewPayee);
    expect(after.outcome).toBe('allow');
    expect(after.policyHash).toBe(engine.hash);

    const again = await engine.reload();
    expect(again).toMatchObject({ ok: true, changed: false, hash: engine.hash });
  });

  it('watch() applies a change freeze toggled in entities.json', async () => {
    const dir = copyPack(PRODUCTION);
    const engine = await PolicyEngine.open(dir);
    expect(engine.evaluate(productionRequest()).outcome).toBe('approval_required');

    const results: ReloadResult[] = [];
    let notify: (() => void) | undefined;
    const stop = engine.watch(
      (result) => {
        results.push(result);
        notify?.();
      },
      { debounceMs: 30 },
    );
    try {
      const reloaded = new Promise<void>((resolve) => {
        notify = () => {
          if (results.some((r) => r.ok && r.changed)) resolve();
        };
      });
      const file = path.join(dir, 'entities.json');
      fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"active": false', '"active": true'));
      await reloaded;
    } finally {
      stop();
    }
    const frozen = engine.evaluate(productionRequest());
    expect(frozen).toMatchObject({ outcome: 'deny', determiningPolicies: ['guardrails:change-freeze-manual'] });
    expect(frozen.reasons[0]).toContain('change freeze');
  });

  it('serializes concurrent reloads', async () => {
    const engine = await PolicyEngine.open(copyPack(PRODUCTION));
    const results = await Promise.all([engine.reload(), engine.reload(), engine.reload()]);
    expect(results.every((r) => r.ok && !r.changed)).toBe(true);
  });
});

describe('loading rejects invalid sets', () => {
  it('rejects a policy without @id', async () => {
    const message = await loadError(makePack({ 'p.cedar': `${PERMIT_ALL}\npermit(principal, action, resource);` }));
    expect(message).toContain('p.cedar:3: policy has no @id');
  });

  it('rejects a duplicate @id in one file but accepts the same @id in two files', async () => {
    const message = await loadError(makePack({ 'p.cedar': `${PERMIT_ALL}${PERMIT_ALL}` }));
    expect(message).toContain('duplicate @id "all"');
    const set = await loadPolicyDirectory(makePack({ 'a.cedar': PERMIT_ALL, 'b.cedar': PERMIT_ALL }));
    expect([...set.policies.keys()].sort()).toEqual(['a:all', 'b:all']);
  });

  it('rejects a policy that fails strict schema validation, naming file and policy', async () => {
    const message = await loadError(
      makePack({ 'p.cedar': `${PERMIT_ALL}@id("typo") forbid(principal, action, resource) when { context.params.ammount == "x" };` }),
    );
    expect(message).toContain('p.cedar:2:56: policy "p:typo"');
    expect(message).toContain('ammount');
  });

  it('rejects bad obligation annotations', async () => {
    const bad = [
      ['@approvals("11")', 'from 0 to 10'],
      ['@approvals("two")', 'whole number'],
      ['@approvals("1") @approval_ttl("25h")', 'at most 24h'],
      ['@approvals("1") @approval_ttl("15 minutes")', '@approval_ttl'],
      ['@approvals("1") @user_verification("discouraged")', '@user_verification'],
      ['@approvals("1") @approver_groups("finance, ")', '@approver_groups'],
      ['@approver_groups("finance")', 'need @approvals'],
      ['@approval("2")', 'unknown annotation @approval'],
      ['@approvals', 'needs a value'],
    ];
    for (const [annotations, expected] of bad) {
      const message = await loadError(makePack({ 'p.cedar': `@id("x") ${annotations} permit(principal, action, resource);` }));
      expect(message, annotations).toContain(expected);
    }
    const onForbid = await loadError(makePack({ 'p.cedar': `${PERMIT_ALL}@id("f") @approvals("2") forbid(principal, action, resource);` }));
    expect(onForbid).toContain('only apply to permit policies');
  });

  it('rejects a tool without an action and an action without a tool', async () => {
    const extraTool = JSON.stringify([
      { uid: { type: 'Countersign::Tool', id: 'demo.echo' }, attrs: { audience: 'demo', impact: 'low' }, parents: [] },
      { uid: { type: 'Countersign::Tool', id: 'demo.other' }, attrs: { audience: 'demo', impact: 'low' }, parents: [] },
    ]);
    expect(await loadError(makePack({ 'p.cedar': PERMIT_ALL }, { entities: extraTool }))).toContain(
      '"demo.other" is not declared as an action',
    );
    expect(await loadError(makePack({ 'p.cedar': PERMIT_ALL }, { entities: '[]' }))).toContain(
      'action "demo.echo" has no Countersign::Tool entity',
    );
  });

  it('rejects entities that do not match the schema or are reserved', async () => {
    const missingAttr = JSON.stringify([{ uid: { type: 'Countersign::Tool', id: 'demo.echo' }, attrs: { audience: 'demo' }, parents: [] }]);
    expect(await loadError(makePack({ 'p.cedar': PERMIT_ALL }, { entities: missingAttr }))).toContain('entities.json');
    const agent = JSON.stringify([
      (JSON.parse(DEMO_ENTITIES) as unknown[])[0],
      { uid: { type: 'Countersign::Agent', id: 'a' }, attrs: { owner: 'o', group: 'g', dataClasses: [], jurisdictions: [] }, parents: [] },
    ]);
    expect(await loadError(makePack({ 'p.cedar': PERMIT_ALL }, { entities: agent }))).toContain('come from enrollment');
    expect(
      await loadError(
        makePack({ 'p.cedar': PERMIT_ALL }, { entities: '[{"uid": {"type": "Countersign::Tool", "id": "demo.echo", "id": "x"}}]' }),
      ),
    ).toContain('entities.json');
  });

  it('rejects a schema that breaks the context conventions', async () => {
    const schema = DEMO_SCHEMA.replace('now: datetime', 'now: Long');
    expect(await loadError(makePack({ 'p.cedar': PERMIT_ALL }, { schema }))).toContain('`now` must be a required datetime');
    const noRisk = DEMO_SCHEMA.replace('risk: Risk,', '');
    expect(await loadError(makePack({ 'p.cedar': PERMIT_ALL }, { schema: noRisk }))).toContain('must declare `risk');
  });

  it('rejects a missing directory, schema or policy file', async () => {
    const nope = path.join(tempDir(), 'nope');
    await expect(loadPolicyDirectory(nope)).rejects.toMatchObject({
      code: 'file_not_found',
      message: `the policy directory ${JSON.stringify(nope)} does not exist`,
    });
    const empty = tempDir();
    const message = await loadError(empty);
    expect(message).toContain('schema.cedarschema: cannot be read');
    expect(message).toContain('no .cedar policy files');
  });
});
