/**
 * Cedar evaluation in a worker thread (policy/cedar-worker.mjs): the same answers as the
 * in-thread path, reloads reach the worker, and a worker that dies mid-call yields a deny,
 * never an allow, and is replaced. The crash is produced by terminating the real worker.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type * as CedarModule from '@cedar-policy/cedar-wasm/nodejs';
import { PolicyEngine, type PolicyRequest } from '../../main/core/policy/policy-engine.js';
import { isCountersignError } from '../../shared/errors.js';

/**
 * Injected fault: Cedar's evaluator throwing in this thread (a wasm trap), which a valid policy set
 * cannot be made to do. The module is the real one; only while `cedarTraps` is set does its
 * statefulIsAuthorized throw. The worker thread loads its own, untouched copy.
 */
let cedarTraps = false;
vi.mock('@cedar-policy/cedar-wasm/nodejs', async (importOriginal) => {
  const real = await importOriginal<typeof CedarModule>();
  return {
    ...real,
    statefulIsAuthorized: (...args: Parameters<typeof real.statefulIsAuthorized>) => {
      if (cedarTraps) throw new Error('unreachable executed');
      return real.statefulIsAuthorized(...args);
    },
  };
});

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEMO = path.join(ROOT, 'examples/demo');
const engines: PolicyEngine[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function open(dir = DEMO): Promise<PolicyEngine> {
  const engine = await PolicyEngine.open(dir, { worker: true });
  engines.push(engine);
  return engine;
}

function transfer(amount: string, payee: string, jurisdiction = 'US'): PolicyRequest {
  return {
    agent: {
      id: 'finance-bot',
      owner: 'dana@example.com',
      group: 'finance-agents',
      dataClasses: ['financial'],
      jurisdictions: ['US', 'KP'],
    },
    tool: 'payments.transfer',
    params: { amount, currency: 'USD', payee, memo: 'invoice' },
    dataClass: 'financial',
    jurisdiction,
    provenance: ['user'],
    risk: { score: 0, factors: [] },
    now: new Date('2026-06-02T10:00:00Z'),
  };
}

describe('policy evaluation in a worker thread', () => {
  it('answers exactly as the in-thread evaluation for allow, hold, forbid and bad params', async () => {
    const engine = await open();
    const requests = [
      transfer('250.00', 'Acme Ltd'),
      transfer('48000.00', 'Northwind Traders'),
      transfer('900.00', 'Pyongyang Trading', 'KP'),
    ];
    const outcomes = [];
    for (const request of requests) {
      const inWorker = await engine.evaluateAsync(request);
      expect(inWorker).toEqual(engine.evaluate(request));
      outcomes.push(inWorker.outcome);
    }
    expect(outcomes).toEqual(['allow', 'approval_required', 'deny']);
    const badParams = { ...transfer('1.00', 'Acme Ltd'), params: { amount: 12, currency: 'USD', payee: 'Acme Ltd', memo: '' } };
    const thrown = await engine.evaluateAsync(badParams).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(thrown, 'invalid_params')).toBe(true);
  });

  it('evaluates a reloaded policy set in the worker', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'countersign-worker-'));
    dirs.push(dir);
    fs.cpSync(DEMO, dir, { recursive: true, dereference: true });
    const engine = await open(dir);
    expect((await engine.evaluateAsync(transfer('250.00', 'Acme Ltd'))).outcome).toBe('allow');
    fs.writeFileSync(
      path.join(dir, 'zz-stop.cedar'),
      '@id("stop-all") @reason("payments stopped") forbid(principal, action == Countersign::Action::"payments.transfer", resource);',
    );
    const reloaded = await engine.reload();
    expect(reloaded.ok && reloaded.changed).toBe(true);
    const after = await engine.evaluateAsync(transfer('250.00', 'Acme Ltd'));
    expect(after).toMatchObject({
      outcome: 'deny',
      determiningPolicies: ['zz-stop:stop-all'],
      policyHash: engine.hash,
      reasons: ['payments stopped'],
    });
  });

  it('denies a call in flight when the worker dies, then recovers with a new worker', async () => {
    const engine = await open();
    const evaluator = engine.evaluator;
    if (evaluator === undefined) throw new Error('the engine was opened with a worker');
    const inFlight = engine.evaluateAsync(transfer('250.00', 'Acme Ltd'));
    await evaluator.crashForTest();
    const denied = await inFlight;
    expect(denied.outcome).toBe('deny');
    expect(denied.reasons).toEqual(['a policy could not be evaluated, so the call is denied']);
    expect(denied.errors[0]).toContain('the policy evaluator stopped');
    expect(evaluator.restarts).toBe(1);
    expect((await engine.evaluateAsync(transfer('250.00', 'Acme Ltd'))).outcome).toBe('allow');
  });

  it('refuses to evaluate after close, with a deny, even when asked to evaluate inline', async () => {
    const engine = await open();
    await engine.close();
    for (const options of [{}, { inlineIfIdle: true }]) {
      const result = await engine.evaluateAsync(transfer('250.00', 'Acme Ltd'), options);
      expect(result.outcome).toBe('deny');
      expect(result.errors[0]).toContain('closed');
    }
    expect(engine.inlineEvaluations).toBe(0);
  });

  it('answers a lone call in the calling thread when the worker is idle, exactly as the worker does', async () => {
    const engine = await open();
    const requests = [
      transfer('250.00', 'Acme Ltd'),
      transfer('48000.00', 'Northwind Traders'),
      transfer('900.00', 'Pyongyang Trading', 'KP'),
    ];
    for (const request of requests) {
      const inline = await engine.evaluateAsync(request, { inlineIfIdle: true });
      expect(inline).toEqual(await engine.evaluateAsync(request));
    }
    expect(engine.inlineEvaluations).toBe(3);
    // Params that fail the tool's schema are refused alike (invalid_params), never answered with a deny (review6 F9).
    const badParams = { ...transfer('1.00', 'Acme Ltd'), params: { amount: 12, currency: 'USD', payee: 'Acme Ltd', memo: '' } };
    const refusal = (options: { inlineIfIdle?: boolean }) =>
      engine.evaluateAsync(badParams, options).then(
        (decision) => ({ answered: decision.outcome }),
        (error: unknown) => ({ refused: isCountersignError(error) ? error.code : String(error) }),
      );
    expect({ inline: await refusal({ inlineIfIdle: true }), worker: await refusal({}) }).toEqual({
      inline: { refused: 'invalid_params' },
      worker: { refused: 'invalid_params' },
    });
    expect(engine.inlineEvaluations).toBe(4);
  });

  it('denies a lone call whose in-thread evaluation throws, as the worker path denies one whose worker failed', async () => {
    const engine = await open();
    cedarTraps = true;
    try {
      const result = await engine.evaluateAsync(transfer('250.00', 'Acme Ltd'), { inlineIfIdle: true });
      expect(engine.inlineEvaluations).toBe(1);
      expect(result.outcome).toBe('deny');
      expect(result.errors).toEqual(['authorization failed: unreachable executed']);
    } finally {
      cedarTraps = false;
    }
    expect((await engine.evaluateAsync(transfer('250.00', 'Acme Ltd'), { inlineIfIdle: true })).outcome).toBe('allow');
  });

  it('sends a call to the worker when the worker already has one in flight, whatever the caller asks', async () => {
    const engine = await open();
    const first = engine.evaluateAsync(transfer('250.00', 'Acme Ltd'));
    const second = engine.evaluateAsync(transfer('48000.00', 'Northwind Traders'), { inlineIfIdle: true });
    expect(engine.inlineEvaluations).toBe(0);
    // Both answered by the worker; the in-flight one is denied if the worker dies, so neither ran here.
    await engine.evaluator!.crashForTest();
    expect((await first).outcome).toBe('deny');
    expect((await second).outcome).toBe('deny');
    expect(engine.inlineEvaluations).toBe(0);
  });
});
