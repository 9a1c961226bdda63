/**
 * What `countersign policy check` and `countersign policy test` run (docs/policy.md):
 * - checkPolicyDirectory(dir): load + validate a directory and summarize it;
 * - runPolicyTests(dir, testFile): evaluate every case of a JSON decision-test file.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { parseStrictJson, type JsonObject, type JsonValue } from '../../../shared/canonical-json.js';
import { CountersignError, isCountersignError, quote, type ErrorCode } from '../../../shared/errors.js';
import { PolicyEngine, type PolicyDecision, type PolicyOutcome, type PolicyRequest } from './policy-engine.js';
import { loadPolicyDirectory, type PermitApprovalRequirement } from './policy-set.js';
import { fileReadError } from '../user-files.js';

// ---------------------------------------------------------------------------------------------
// policy check

export interface PolicyCheckSummary {
  dir: string;
  hash: string;
  policies: Array<{
    id: string;
    file: string;
    line: number;
    effect: 'permit' | 'forbid';
    reason?: string;
    obligation?: PermitApprovalRequirement;
  }>;
  tools: Array<{ name: string; audience: string; impact: string }>;
  warnings: string[];
}

/** Loads and validates a policy directory; throws CountersignError('policy_invalid'). */
export async function checkPolicyDirectory(dir: string): Promise<PolicyCheckSummary> {
  const set = await loadPolicyDirectory(dir);
  const policies = [...set.policies.values()]
    .sort((a, b) => (a.file === b.file ? a.line - b.line : a.file < b.file ? -1 : 1))
    .map((p) => ({
      id: p.id,
      file: p.file,
      line: p.line,
      effect: p.effect,
      ...(p.reason !== undefined ? { reason: p.reason } : {}),
      ...(p.obligation !== undefined ? { obligation: p.obligation } : {}),
    }));
  const tools = [...set.tools.values()]
    .map((t) => ({ name: t.name, audience: t.audience, impact: t.impact }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return { dir: set.dir, hash: set.hash, policies, tools, warnings: [...set.warnings] };
}

// ---------------------------------------------------------------------------------------------
// policy test

const agentSchema = z.strictObject({
  id: z.string(),
  owner: z.string(),
  group: z.string(),
  dataClasses: z.array(z.string()),
  jurisdictions: z.array(z.string()),
});

const isoDateTime = z
  .string()
  .refine((v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v)), {
    message: 'must be an ISO 8601 date-time such as 2025-06-02T10:00:00Z',
  });

const requestSchema = z.strictObject({
  agent: agentSchema,
  tool: z.string(),
  params: z.record(z.string(), z.unknown()),
  dataClass: z.string(),
  jurisdiction: z.string(),
  provenance: z.array(z.string()).default([]),
  risk: z.strictObject({ score: z.number().int(), factors: z.array(z.string()).default([]) }),
  now: isoDateTime,
});

const expectSchema = z
  .strictObject({
    outcome: z.enum(['allow', 'deny', 'approval_required']).optional(),
    error: z.enum(['unknown_tool', 'invalid_params']).optional(),
    determiningPolicies: z.array(z.string()).optional(),
    approvals: z.number().int().min(0).optional(),
    approverGroups: z.array(z.array(z.string())).optional(),
    ttlSeconds: z.number().int().min(0).optional(),
    userVerification: z.enum(['required', 'preferred']).optional(),
  })
  .refine((e) => (e.outcome === undefined) !== (e.error === undefined), { message: 'give exactly one of "outcome" or "error"' });

const testFileSchema = z.strictObject({
  description: z.string().optional(),
  /** Fields shallow-merged under every test's request (the test's own fields win). */
  defaults: z.strictObject({ request: z.record(z.string(), z.unknown()) }).optional(),
  tests: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        description: z.string().optional(),
        request: z.record(z.string(), z.unknown()),
        expect: expectSchema,
      }),
    )
    .min(1),
});

export type PolicyTestExpectation = z.infer<typeof expectSchema>;

export interface PolicyTestCase {
  name: string;
  request: PolicyRequest;
  expect: PolicyTestExpectation;
}

export interface PolicyTestResult {
  name: string;
  passed: boolean;
  /** Empty when passed; otherwise what differs, e.g. `outcome: expected "allow", got "deny"`. */
  message: string;
  decision?: PolicyDecision;
  error?: { code: ErrorCode; message: string };
}

export interface PolicyTestReport {
  policyDir: string;
  testFile: string;
  policyHash: string;
  total: number;
  passed: number;
  failed: number;
  results: PolicyTestResult[];
}

/**
 * Runs a decision-test file against a policy directory. Throws CountersignError
 * ('policy_invalid') for a bad directory and ('config_invalid') for a malformed test file;
 * failing cases are reported, not thrown (see assertPolicyTestsPassed).
 */
export async function runPolicyTests(policyDir: string, testFile: string): Promise<PolicyTestReport> {
  const cases = await readPolicyTestFile(testFile);
  const engine = await PolicyEngine.open(policyDir);
  const results = runPolicyTestCases(engine, cases);
  const passed = results.filter((r) => r.passed).length;
  return {
    policyDir: engine.dir,
    testFile,
    policyHash: engine.hash,
    total: results.length,
    passed,
    failed: results.length - passed,
    results,
  };
}

/** Throws CountersignError('policy_test_failed') naming the failed cases. */
export function assertPolicyTestsPassed(report: PolicyTestReport): void {
  if (report.failed === 0) return;
  const failures = report.results.filter((r) => !r.passed).map((r) => `${quote(r.name)}: ${r.message}`);
  throw new CountersignError('policy_test_failed', `${report.failed} of ${report.total} policy tests failed: ${failures.join('; ')}`, {
    details: { failed: report.failed, total: report.total },
  });
}

/** Reads and validates a decision-test file; throws CountersignError('config_invalid'). */
export async function readPolicyTestFile(testFile: string): Promise<PolicyTestCase[]> {
  let text: string;
  try {
    text = await readFile(testFile, 'utf8');
  } catch (error) {
    throw fileReadError('the policy test file', testFile, error);
  }
  let json: JsonValue;
  try {
    json = parseStrictJson(text);
  } catch (error) {
    throw new CountersignError(
      'config_invalid',
      `policy test file ${quote(testFile, 200)} is not valid json: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const file = testFileSchema.safeParse(json);
  if (!file.success) throw invalidFile(testFile, file.error);

  const names = new Set<string>();
  const cases: PolicyTestCase[] = [];
  for (const [index, test] of file.data.tests.entries()) {
    if (names.has(test.name))
      throw new CountersignError('config_invalid', `policy test file ${quote(testFile, 200)}: duplicate test name ${quote(test.name)}`);
    names.add(test.name);
    const merged = { ...(file.data.defaults?.request ?? {}), ...test.request };
    const request = requestSchema.safeParse(merged);
    if (!request.success) throw invalidFile(testFile, request.error, `tests[${index}] (${quote(test.name)}) request`);
    const r = request.data;
    cases.push({
      name: test.name,
      request: {
        agent: r.agent,
        tool: r.tool,
        params: r.params as JsonObject,
        dataClass: r.dataClass,
        jurisdiction: r.jurisdiction,
        provenance: r.provenance,
        risk: { score: r.risk.score, factors: r.risk.factors },
        now: new Date(r.now),
      },
      expect: test.expect,
    });
  }
  return cases;
}

/** Evaluates test cases against an engine (also usable to replay recorded traffic). */
export function runPolicyTestCases(engine: PolicyEngine, cases: readonly PolicyTestCase[]): PolicyTestResult[] {
  return cases.map((test) => runOne(engine, test));
}

function runOne(engine: PolicyEngine, test: PolicyTestCase): PolicyTestResult {
  const { expect } = test;
  let decision: PolicyDecision;
  try {
    decision = engine.evaluate(test.request);
  } catch (error) {
    if (!isCountersignError(error)) throw error;
    const got = { code: error.code, message: error.message };
    if (expect.error === error.code) return { name: test.name, passed: true, message: '', error: got };
    const wanted = expect.error !== undefined ? `error ${expect.error}` : `outcome ${quote(expect.outcome)}`;
    return { name: test.name, passed: false, message: `expected ${wanted}, got error ${error.code}: ${error.message}`, error: got };
  }

  const diffs: string[] = [];
  if (expect.error !== undefined) {
    diffs.push(`expected error ${expect.error}, got outcome ${quote(decision.outcome)}`);
  } else if (expect.outcome !== decision.outcome) {
    diffs.push(`outcome: expected ${quote(expect.outcome)}, got ${quote(decision.outcome)}`);
  }
  if (expect.determiningPolicies !== undefined) {
    const wanted = [...expect.determiningPolicies].sort();
    if (!sameJson(wanted, decision.determiningPolicies)) {
      diffs.push(`determiningPolicies: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(decision.determiningPolicies)}`);
    }
  }
  const obligation = decision.obligation;
  if (expect.approvals !== undefined && expect.approvals !== (obligation?.approvals ?? 0)) {
    diffs.push(`approvals: expected ${expect.approvals}, got ${obligation?.approvals ?? 0}`);
  }
  if (expect.approverGroups !== undefined) {
    const wanted = expect.approverGroups.map((g) => [...g].sort()).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
    if (!sameJson(wanted, obligation?.groups ?? [])) {
      diffs.push(`approverGroups: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(obligation?.groups ?? [])}`);
    }
  }
  if (expect.ttlSeconds !== undefined && expect.ttlSeconds !== obligation?.ttlSeconds) {
    diffs.push(`ttlSeconds: expected ${expect.ttlSeconds}, got ${obligation?.ttlSeconds ?? 'none'}`);
  }
  if (expect.userVerification !== undefined && expect.userVerification !== obligation?.userVerification) {
    diffs.push(
      `userVerification: expected ${quote(expect.userVerification)}, got ${obligation === undefined ? 'none' : quote(obligation.userVerification)}`,
    );
  }
  if (diffs.length === 0) return { name: test.name, passed: true, message: '', decision };
  const context = [`determining ${JSON.stringify(decision.determiningPolicies)}`, `reasons ${JSON.stringify(decision.reasons)}`];
  if (decision.errors.length > 0) context.push(`errors ${JSON.stringify(decision.errors)}`);
  return { name: test.name, passed: false, message: `${diffs.join('; ')} (${context.join(', ')})`, decision };
}

function invalidFile(testFile: string, error: z.ZodError, prefix?: string): CountersignError {
  const issues = error.issues.slice(0, 5).map((issue) => {
    const at = issue.path.map(String).join('.');
    return `${prefix ?? ''}${prefix !== undefined && at !== '' ? '.' : ''}${at === '' && prefix === undefined ? 'top level' : at}: ${issue.message.toLowerCase()}`;
  });
  return new CountersignError('config_invalid', `policy test file ${quote(testFile, 200)} is malformed: ${issues.join('; ')}`);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export type { PolicyOutcome };
