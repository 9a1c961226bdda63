/**
 * Human approvals end to end in headless mode, through the automation HTTP API: virtual
 * approvers (real WebAuthn structures and signatures, server-held software authenticator)
 * approve a 48,000.00 USD transfer; the agent is told at once over its WebSocket, and the tool
 * server verifies the co-signed token with every check (signature, binding, each approver's
 * assertion against the published directory, and its own quorum rule).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import {
  DEMO_POLICY_DIR,
  DEPLOY_SCOPE,
  FINANCE_SCOPE,
  nodeWebSocket,
  startHarness,
  tempDir,
  transferCall,
  type Harness,
  ensurePeople,
} from '../helpers/harness.js';
import { startCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { satisfiesQuorum, verifyApprovals } from '../../shared/verify-approvals.js';
import { approverDirectorySchema } from '../../shared/approvals.js';
import type { DecisionResult } from '../../shared/protocol.js';

let h: Harness;

async function api(
  path: string,
  init: { method?: string; body?: unknown; secret?: string | null; origin?: string } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (init.secret !== null) headers.authorization = `Bearer ${init.secret ?? h.app.uiSessionSecret}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  if (init.origin !== undefined) headers.origin = init.origin;
  const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const createVirtual = (id: string, groups: string[]) => api('/api/automation/virtual-approvers', { body: { id, displayName: id, groups } });
const decide = (requestId: string, approverId: string, verdict: 'approve' | 'deny', reason?: string) =>
  api(`/api/automation/requests/${requestId}/decide`, {
    body: reason === undefined ? { approverId, verdict } : { approverId, verdict, reason },
  });

async function verifyCoSigned(
  token: string,
  call: { tool: string; params: Record<string, unknown> },
  audience: string,
  quorum: { approvals: number; groups: string[][] },
) {
  const jwks = (await api('/.well-known/jwks.json', { secret: null })).json as { keys: never[] };
  const claims = await verifyApprovalToken(token, {
    call: call as never,
    audience,
    keys: jwks,
    jtiStore: new MemoryJtiStore(),
    domain: 'test',
  });
  expect(claims.decision.mode).toBe('approved');
  const directory = approverDirectorySchema.parse((await api('/.well-known/countersign-approvers.json', { secret: null })).json);
  const set = await verifyApprovals(claims.approvals, {
    directory,
    callSha256: claims.call_sha256,
    requestId: claims.decision.id,
    policyHash: claims.decision.policy_hash,
    allowVirtual: true,
  });
  expect(satisfiesQuorum(set, quorum)).toBe(true);
  return { claims, set };
}

let policyDir: string;

beforeEach(async () => {
  // A private copy of the demo pack, so a test may change its policy while running.
  policyDir = tempDir();
  cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true, dereference: true });
  h = await startHarness({ config: { domain: 'test' }, policyDir });
});
afterEach(async () => {
  await h.close();
  rmSync(policyDir, { recursive: true, force: true });
});

describe('headless approvals', () => {
  it('two finance approvers approve a 48,000.00 USD transfer; the agent gets a co-signed token that verifies', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const call = transferCall('48000.00', 'Northwind Traders');
    const pending = await client.submit(call);
    expect(pending).toMatchObject({ decision: 'pending', state: 'pending' });
    const decided = client.waitForDecision(pending.requestId, { timeoutMs: 15_000 });

    expect((await createVirtual('alice', ['finance-approvers'])).status).toBe(200);
    expect((await createVirtual('bob', ['finance-approvers'])).status).toBe(200);
    const listed = await api('/api/approvals/pending');
    expect(
      (listed.json.pending as Array<{ requestId: string; params: unknown }>).find((p) => p.requestId === pending.requestId)?.params,
    ).toEqual(call.params);
    // Paging: a second held call, read one at a time, oldest first.
    const held = await client.submit(transferCall('47000.00', 'Northwind Traders'));
    const page1 = await api('/api/approvals/pending?limit=1');
    const page2 = await api('/api/approvals/pending?limit=1&offset=1');
    expect(page1.json.total).toBe(2);
    expect((page1.json.pending as Array<{ requestId: string }>).map((p) => p.requestId)).toEqual([pending.requestId]);
    expect((page2.json.pending as Array<{ requestId: string }>).map((p) => p.requestId)).toEqual([held.requestId]);

    const first = await decide(pending.requestId, 'alice', 'approve');
    expect(first.json).toMatchObject({ state: 'pending' });
    const second = await decide(pending.requestId, 'bob', 'approve');
    expect(second.json).toMatchObject({ state: 'approved' });

    const result: DecisionResult = await decided;
    expect(result).toMatchObject({ requestId: pending.requestId, state: 'approved', decision: 'allow' });
    const { set } = await verifyCoSigned(result.token ?? '', call, 'payments-service', { approvals: 2, groups: [['finance-approvers']] });
    expect(set.approvers.map((a) => a.approverId).sort()).toEqual(['alice', 'bob']);
    expect((await api(`/api/automation/requests/${pending.requestId}/wait?timeoutMs=1000`)).json).toMatchObject({ state: 'approved' });
    expect(h.app.audit.verify()).toMatchObject({ ok: true });

    // Terminal states never change.
    expect((await decide(pending.requestId, 'alice', 'deny', 'too late')).json).toMatchObject({ error: { code: 'request_not_pending' } });
  });

  it('enforces the two-person rule for a production change, and one person counts once', async () => {
    const key = await h.enroll('deploy-bot', DEPLOY_SCOPE);
    const client = h.client('deploy-bot', key);
    const call = {
      tool: 'deploy.production',
      params: { service: 'checkout', environment: 'production-eu', changeId: 'CHG-1042', diff: '- replicas: 4\n+ replicas: 6' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    };
    const pending = await client.submit(call);
    if (pending.decision !== 'pending') {
      // Inside the demo pack's change-freeze window production deploys are denied outright.
      expect(pending.decision).toBe('deny');
      return;
    }
    await createVirtual('sre-1', ['sre-approvers']);
    await createVirtual('sre-2', ['sre-approvers']);
    await h.app.virtualApprovers?.registerKey('sre-1'); // a second key: still one person
    expect((await decide(pending.requestId, 'sre-1', 'approve')).json).toMatchObject({ state: 'pending' });
    expect((await decide(pending.requestId, 'sre-1', 'approve')).json).toMatchObject({ error: { code: 'approver_already_decided' } });
    expect((await decide(pending.requestId, 'sre-2', 'approve')).json).toMatchObject({ state: 'approved' });
    const result = await client.getRequest(pending.requestId);
    await verifyCoSigned(result.token ?? '', call, 'deploy-service', { approvals: 2, groups: [['sre-approvers']] });
  });

  it('a denial ends the request with its reason and tells the agent', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const pending = await client.submit(transferCall('48000.00', 'Northwind Traders'));
    const decided = client.waitForDecision(pending.requestId, { timeoutMs: 15_000 });
    await createVirtual('carol', ['finance-approvers']);
    expect((await decide(pending.requestId, 'carol', 'deny', 'payee not verified')).json).toMatchObject({ state: 'denied' });
    const result = await decided;
    expect(result).toMatchObject({ state: 'denied', decision: 'deny' });
    expect(result.reasons.join(' ')).toContain('payee not verified');
    expect(result.token).toBeUndefined();
  });

  it('refuses the API without the session secret or from another origin', async () => {
    expect((await api('/api/approvals/pending', { secret: null })).status).toBe(401);
    expect((await api('/api/approvals/pending', { secret: 'x'.repeat(43) })).status).toBe(401);
    const cross = await api('/api/automation/virtual-approvers', {
      body: { id: 'mallory', displayName: 'M', groups: ['finance-approvers'] },
      origin: 'https://evil.example',
    });
    expect(cross.status).toBe(403);
    expect((await api('/api/approvers')).json).toEqual({ approvers: [] });
  });
});

/** Make the two-approver transfer permit name `approverId` as conflicted, and reload it. */
async function nameConflicted(approverId: string): Promise<void> {
  const file = join(policyDir, 'finance-transfers.cedar');
  writeFileSync(
    file,
    readFileSync(file, 'utf8').replace('@id("two-approvers")', `@id("two-approvers")\n@conflicted_approvers("${approverId}")`),
  );
  expect(await h.app.policy.reload()).toMatchObject({ ok: true, changed: true });
}

async function heldTransfer(): Promise<string> {
  const key = await h.enroll('finance-bot');
  const pending = await h.client('finance-bot', key).submit(transferCall('48000.00', 'Northwind Traders'));
  for (const id of ['alice', 'bob', 'carol']) await createVirtual(id, ['finance-approvers']);
  return pending.requestId;
}

describe('approvals API input', () => {
  async function raw(path: string, body: string, contentType = 'application/json'): Promise<{ status: number; code: unknown }> {
    const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': contentType },
      body,
    });
    return { status: res.status, code: ((await res.json()) as { error?: { code?: unknown } }).error?.code };
  }

  it('refuses bodies that are not JSON, too large, not I-JSON or not the schema, and unknown routes', async () => {
    const path = '/api/automation/virtual-approvers';
    expect(await raw(path, 'id=alice', 'application/x-www-form-urlencoded')).toEqual({ status: 400, code: 'schema_invalid' });
    expect(await raw(path, JSON.stringify({ id: 'a', displayName: 'x'.repeat(70_000), groups: [] }))).toEqual({
      status: 413,
      code: 'frame_too_large',
    });
    expect(await raw(path, '{"id":"a","id":"b","displayName":"A","groups":[]}')).toMatchObject({ status: 400, code: 'json_duplicate_key' });
    expect(await raw(path, JSON.stringify({ id: 'a', displayName: 'A', groups: [], admin: true }))).toEqual({
      status: 400,
      code: 'schema_invalid',
    });
    expect(await raw('/api/approvals/nowhere', '{}')).toEqual({ status: 404, code: 'method_unknown' });
    expect(h.app.approvers.list()).toEqual([]);
  });

  /** A GET exactly as written (node:http keeps `.`/`..` and percent-encoded dots; fetch would normalise them). */
  function rawGet(path: string): Promise<{ status: number; code: unknown }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: h.app.port,
          path,
          headers: { host: `127.0.0.1:${h.app.port}`, authorization: `Bearer ${h.app.uiSessionSecret}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              code: (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: unknown } }).error?.code,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('refuses an admin body whose admin id is a dot segment or whose action or key response is not the schema', async () => {
    for (const adminId of ['.', '..', '']) {
      expect(
        await raw('/api/admin/ceremony', JSON.stringify({ adminId, action: { kind: 'approver.disable', id: 'bob' } })),
        adminId,
      ).toEqual({ status: 400, code: 'schema_invalid' });
      expect(
        await raw('/api/admin/submit', JSON.stringify({ adminId, response: { id: 'AA', rawId: 'AA', type: 'public-key', response: {} } })),
        adminId,
      ).toEqual({ status: 400, code: 'schema_invalid' });
    }
    expect(await raw('/api/admin/ceremony', JSON.stringify({ adminId: 'alice', action: { kind: 'approver.promote', id: 'bob' } }))).toEqual(
      { status: 400, code: 'schema_invalid' },
    );
    expect(
      await raw(
        '/api/admin/submit',
        JSON.stringify({ adminId: 'alice', response: { id: 'AA', rawId: 'AA', type: 'password', response: {} } }),
      ),
    ).toEqual({ status: 400, code: 'schema_invalid' });
  });

  it('refuses a history limit that is not a whole number, and a request or automation id that is not a bridge id', async () => {
    for (const limit of ['abc', '-1', '1e3', '2.5', '', '9999999999']) {
      expect(await rawGet(`/api/approvals/history?limit=${limit}`), limit).toEqual({ status: 400, code: 'schema_invalid' });
    }
    expect((await rawGet('/api/approvals/history?limit=5')).status).toBe(200);
    expect((await rawGet('/api/approvals/history')).status).toBe(200);
    // Dot segments in the path are removed by URL parsing before routing (never a handler); a too long id is refused.
    for (const id of ['%2E', '%2E%2E', '.', '..']) {
      expect([400, 404], id).toContain((await rawGet(`/api/approvals/requests/${id}`)).status);
    }
    const long = 'r'.repeat(129);
    expect(await rawGet(`/api/approvals/requests/${long}`)).toEqual({ status: 400, code: 'schema_invalid' });
    expect(await rawGet(`/api/automation/requests/${long}/wait?timeoutMs=0`)).toEqual({ status: 400, code: 'schema_invalid' });
    expect(await raw(`/api/automation/requests/${long}/decide`, JSON.stringify({ approverId: 'alice', verdict: 'approve' }))).toEqual({
      status: 400,
      code: 'schema_invalid',
    });
    expect(await raw('/api/automation/requests/r1/decide', JSON.stringify({ approverId: '..', verdict: 'approve' }))).toEqual({
      status: 400,
      code: 'schema_invalid',
    });
    expect(await raw('/api/automation/virtual-approvers', JSON.stringify({ id: '..', displayName: 'D', groups: [] }))).toEqual({
      status: 400,
      code: 'schema_invalid',
    });
  });

  it('refuses a "__proto__" member at any depth of an approval, admin or automation body, and records nothing', async () => {
    const requestId = await heldTransfer();
    const approvalsBefore = (h.app.db.prepare('SELECT COUNT(*) AS n FROM approvals').get() as { n: number }).n;
    const cases: Array<[string, string]> = [
      [`/api/approvals/requests/${requestId}/submit`, '{"approverId":"alice","response":{"id":"x","__proto__":{"type":"public-key"}}}'],
      [`/api/approvals/requests/${requestId}/submit`, '{"__proto__":{"reason":"x"},"approverId":"alice","response":{}}'],
      [`/api/approvals/requests/${requestId}/ceremony`, '{"approverId":"alice","verdict":"approve","\\u005f_proto__":1}'],
      ['/api/admin/ceremony', '{"adminId":"alice","action":{"kind":"disable-approver","id":"bob","__proto__":{"id":"alice"}}}'],
      ['/api/admin/submit', '{"adminId":"alice","response":{"response":{"clientDataJSON":"x","__proto__":{}}}}'],
      [`/api/automation/requests/${requestId}/decide`, '{"approverId":"alice","verdict":"approve","__proto__":{"verdict":"deny"}}'],
    ];
    for (const [path, body] of cases)
      expect(await raw(path, body), `${path} ${body}`).toEqual({ status: 400, code: 'json_reserved_member' });
    expect((h.app.db.prepare('SELECT COUNT(*) AS n FROM approvals').get() as { n: number }).n).toBe(approvalsBefore);
    expect((h.app.db.prepare('SELECT state FROM requests WHERE id = ?').get(requestId) as { state: string }).state).toBe('pending');
  });

  it('keeps virtual approvers across a restart, and refuses a corrupt state file', async () => {
    await createVirtual('alice', ['finance-approvers']);
    const dataDir = h.dataDir;
    await h.app.close();
    const again = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0, domain: 'test' } });
    try {
      const key = await importAgentKey(await generateAgentKey('EdDSA'));
      ensurePeople(again, FINANCE_SCOPE.owner);
      again.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'bot-2', 'bot-2')), FINANCE_SCOPE);
      const c = new AgentClient({ url: again.url, agentId: 'bot-2', key, reconnect: false, webSocket: nodeWebSocket });
      const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
      await expect(
        again.virtualApprovers!.decide({ requestId: pending.requestId, approverId: 'alice', verdict: 'approve' }),
      ).resolves.toMatchObject({ state: 'pending' });
      c.close();
    } finally {
      await again.close();
    }
    writeFileSync(join(dataDir, 'virtual-approvers.json'), '{"version":1,"authenticators":[{"nonsense":true}]}', { mode: 0o600 });
    const broken = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0, domain: 'test' } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(broken).toMatchObject({ code: 'config_invalid' });
  });
});

describe('policy-named conflicts', () => {
  it('refuses an approver the determining permit names as conflicted, and counts only the others', async () => {
    await nameConflicted('Bob');
    const requestId = await heldTransfer();
    expect((await decide(requestId, 'bob', 'approve')).json).toMatchObject({ error: { code: 'approver_conflicted' } });
    expect((await decide(requestId, 'alice', 'approve')).json).toMatchObject({ state: 'pending' });
    expect((await decide(requestId, 'carol', 'approve')).json).toMatchObject({ state: 'approved' });
  });

  it('applies conflicts the current policy names when a waiting request would complete', async () => {
    const requestId = await heldTransfer();
    expect((await decide(requestId, 'alice', 'approve')).json).toMatchObject({ state: 'pending' });
    await nameConflicted('carol'); // while it waits
    expect((await decide(requestId, 'carol', 'approve')).json).toMatchObject({ error: { code: 'approver_conflicted' } });
    expect((await decide(requestId, 'bob', 'approve')).json).toMatchObject({ state: 'approved' });
    const stored = h.app.db.prepare('SELECT conflicted_approvers FROM requests WHERE id = ?').get(requestId) as {
      conflicted_approvers: string;
    };
    // The request now records the conflict the current policy named.
    expect(JSON.parse(stored.conflicted_approvers)).toEqual(['carol']);
  });
});

describe('production configuration', () => {
  it('has no automation API and refuses virtual approvers', async () => {
    const prod = await startHarness();
    try {
      const res = await fetch(`http://127.0.0.1:${prod.app.port}/api/automation/virtual-approvers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${prod.app.uiSessionSecret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'v', displayName: 'V', groups: ['finance-approvers'] }),
      });
      expect(res.status).toBe(404);
      expect(prod.app.virtualApprovers).toBeUndefined();
      expect(() => prod.app.approvers.addApprover({ id: 'v', displayName: 'V', groups: [], virtual: true })).toThrow(/test key domain/);
    } finally {
      await prod.close();
    }
  });
});
