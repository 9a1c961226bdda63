/**
 * The headline scenarios end to end: real SDK client -> real WebSocket -> gateway -> Cedar ->
 * software signer -> SQLite, and the token verified the way a tool server would, with the JWKS
 * fetched over HTTP.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { startHarness, transferCall, DEPLOY_SCOPE, DEMO_POLICY_DIR, tempDir, type Harness } from '../helpers/harness.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { isCountersignError } from '../../shared/errors.js';

async function fetchJwks(h: Harness) {
  const res = await fetch(`http://127.0.0.1:${h.app.port}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  return (await res.json()) as { keys: never[] };
}

function count(h: Harness, table: 'requests' | 'tokens' | 'audit_log'): number {
  return (h.app.db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
}

describe('finance transfers', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => h.close());

  it('allows a small transfer to a known payee with a token the tool server verifies', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const call = transferCall('250.00');
    const result = await client.submit(call);
    expect(result.decision).toBe('allow');
    expect(result.determiningPolicies).toEqual(['finance-transfers:small-known-payee']);
    expect(result.token).toBeTypeOf('string');

    const jwks = await fetchJwks(h);
    const jtiStore = new MemoryJtiStore();
    const verified = await verifyApprovalToken(result.token!, {
      call: { tool: call.tool, params: call.params },
      audience: 'payments-service',
      keys: jwks,
      jtiStore,
    });
    expect(verified.sub).toBe('finance-bot');
    expect(verified.decision.id).toBe(result.requestId);
    expect(verified.decision.policy_hash).toBe(h.app.policy.hash);
    expect(verified.exp - verified.iat).toBe(60);
    // The same token a second time is a replay.
    await expect(
      verifyApprovalToken(result.token!, {
        call: { tool: call.tool, params: call.params },
        audience: 'payments-service',
        keys: jwks,
        jtiStore,
      }),
    ).rejects.toMatchObject({ code: 'token_replayed' });
    // A tool server executing a different amount refuses it.
    await expect(
      verifyApprovalToken(result.token!, {
        call: { tool: call.tool, params: { ...call.params, amount: '2500.00' } },
        audience: 'payments-service',
        keys: jwks,
        jtiStore: new MemoryJtiStore(),
      }),
    ).rejects.toMatchObject({ code: 'token_digest_mismatch' });
  });

  it('decides a lone call with Cedar in the event-loop thread, and calls submitted together alike', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const before = h.app.policy.inlineEvaluations;
    const lone = await client.submit(transferCall('250.00'));
    expect(h.app.policy.inlineEvaluations).toBe(before + 1);
    // Calls submitted together: whichever of them the gateway reads alone may be inlined and the
    // rest go to the worker (how many arrive in one read is timing, so not asserted here; that a
    // call is not inlined while another is in flight is proved in policy-worker.test.ts). Either
    // way the answers are alike.
    const together = await Promise.all(Array.from({ length: 10 }, () => client.submit(transferCall('250.00'))));
    for (const result of [lone, ...together]) {
      expect(result.decision).toBe('allow');
      expect(result.determiningPolicies).toEqual(['finance-transfers:small-known-payee']);
    }
  });

  it('holds a 48,000.00 USD transfer to a new payee for two finance approvers', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const result = await client.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(result.decision).toBe('pending');
    expect(result.token).toBeUndefined();
    expect(result.approval).toMatchObject({ approvals: 2, groups: [['finance-approvers']], userVerification: 'required', ttlSeconds: 900 });
    expect(result.approval!.expiresAt).toBeGreaterThan(Date.now() + 800_000);
    const fetched = await client.getRequest(result.requestId);
    expect(fetched).toMatchObject({ requestId: result.requestId, state: 'pending', decision: 'pending' });
    expect(count(h, 'tokens')).toBe(0);
  });

  it('denies a transfer to a sanctioned jurisdiction with the reason, and issues no token', async () => {
    const key = await h.enroll('finance-bot', { jurisdictions: ['US', 'KP'] });
    const client = h.client('finance-bot', key);
    const result = await client.submit(transferCall('900.00', 'Acme Ltd', 'KP'));
    expect(result.decision).toBe('deny');
    expect(result.determiningPolicies).toContain('finance-guardrails:sanctioned-jurisdiction');
    expect(result.reasons).toContain('the call targets a sanctioned jurisdiction');
    expect(result.token).toBeUndefined();
    expect(count(h, 'tokens')).toBe(0);
  });

  it('denies a call outside the agent scope before policy runs', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const result = await client.submit({ ...transferCall('10.00'), dataClass: 'phi' });
    expect(result.decision).toBe('deny');
    expect(result.reasons[0]).toContain('"phi"');
  });

  it('records every decision in the hash-chained audit log, and the chain verifies', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    await client.submit(transferCall('250.00'));
    await client.submit(transferCall('48000.00', 'Northwind Traders'));
    await client.submit(transferCall('5.00', 'Someone New', 'US'));
    const kinds = h.app.audit.entries().map((e) => e.kind);
    expect(kinds).toEqual(
      expect.arrayContaining(['server.started', 'policy.loaded', 'agent.enrolled', 'decision.allow', 'decision.pending']),
    );
    expect(h.app.audit.verify()).toMatchObject({ ok: true });
    const allow = h.app.audit.entries().find((e) => e.kind === 'decision.allow')!;
    const record = JSON.parse(allow.record) as { token: { jti: string }; policyHash: string };
    expect(record.policyHash).toBe(h.app.policy.hash);
    const tokenRow = h.app.db.prepare('SELECT jti FROM tokens').get() as { jti: string };
    expect(record.token.jti).toBe(tokenRow.jti);
  });
});

describe('production changes', () => {
  let h: Harness;
  let policyDir: string;
  beforeEach(async () => {
    policyDir = join(tempDir(), 'policies');
    mkdirSync(policyDir);
    cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true, dereference: true });
    h = await startHarness({ policyDir });
  });
  afterEach(async () => h.close());

  it('allows staging automatically and holds production for two sre approvers', async () => {
    const key = await h.enroll('deploy-bot', DEPLOY_SCOPE);
    const client = h.client('deploy-bot', key);
    const staging = await client.submit({
      tool: 'deploy.staging',
      params: { service: 'checkout', diff: 'x' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    });
    expect(staging.decision).toBe('allow');
    const prod = await client.submit({
      tool: 'deploy.production',
      params: { service: 'checkout', environment: 'production-eu', changeId: 'CHG-1', diff: '+a' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    });
    expect(prod.decision).toBe('pending');
    expect(prod.approval).toMatchObject({ approvals: 2, groups: [['sre-approvers']] });
  });

  it('applies a change freeze turned on while running (hot reload), and records the reload', async () => {
    const key = await h.enroll('deploy-bot', DEPLOY_SCOPE);
    const client = h.client('deploy-bot', key);
    const prodCall = {
      tool: 'deploy.production',
      params: { service: 'checkout', environment: 'production', changeId: 'CHG-2', diff: '+a' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    };
    expect((await client.submit(prodCall)).decision).toBe('pending');
    const before = h.app.policy.hash;
    const entitiesFile = join(policyDir, 'entities.json');
    const entities = JSON.parse(readFileSync(entitiesFile, 'utf8')) as Array<{ uid: { id: string }; attrs: Record<string, unknown> }>;
    entities.find((e) => e.uid.id === 'global')!.attrs.active = true;
    writeFileSync(entitiesFile, JSON.stringify(entities));
    const deadline = Date.now() + 5_000;
    while (h.app.policy.hash === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(h.app.policy.hash).not.toBe(before);
    const frozen = await client.submit(prodCall);
    expect(frozen.decision).toBe('deny');
    expect(frozen.determiningPolicies).toContain('production-guardrails:change-freeze-manual');
    expect(frozen.policyHash).toBe(h.app.policy.hash);
    expect(h.app.audit.entries().filter((e) => e.kind === 'policy.loaded')).toHaveLength(2);
  });

  it('keeps deciding with the last good policy set when a broken file is dropped in', async () => {
    const key = await h.enroll('deploy-bot', DEPLOY_SCOPE);
    const client = h.client('deploy-bot', key);
    const staging = {
      tool: 'deploy.staging',
      params: { service: 'checkout', diff: 'x' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    };
    const before = h.app.policy.hash;
    writeFileSync(join(policyDir, 'broken.cedar'), '@id("oops") permit (principal, action resource);');
    const deadline = Date.now() + 5_000;
    while (!h.app.audit.entries().some((e) => e.kind === 'policy.reload_failed') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const failure = h.app.audit.entries().find((e) => e.kind === 'policy.reload_failed');
    expect(failure).toBeDefined();
    expect(JSON.parse(failure!.record)).toMatchObject({ keptPolicyHash: before });
    expect(h.app.policy.hash).toBe(before);
    const result = await client.submit(staging);
    expect(result).toMatchObject({ decision: 'allow', policyHash: before });
  });
});

describe('request outcome after reconnect', () => {
  it('lets an agent fetch the outcome of its request on a new connection, but not another agent', async () => {
    const h = await startHarness();
    try {
      const key = await h.enroll('finance-bot');
      const other = await h.enroll('other-bot');
      const first = h.client('finance-bot', key);
      const pending = await first.submit(transferCall('48000.00', 'Northwind Traders'));
      first.close();
      const second = h.client('finance-bot', key);
      expect((await second.getRequest(pending.requestId)).state).toBe('pending');
      const intruder = h.client('other-bot', other);
      const error = await intruder.getRequest(pending.requestId).catch((e: unknown) => e);
      expect(isCountersignError(error, 'request_unknown')).toBe(true);
    } finally {
      await h.close();
    }
  });
});
