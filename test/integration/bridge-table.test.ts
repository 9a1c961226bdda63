/**
 * The bridge table and the HTTP edge against a real core (gateway, SQLite, Cedar, software
 * signer, the test key domain's virtual approvers): every table method is reachable over HTTP
 * and refuses a bad argument with the same stable code as the in-process (IPC) transport; the
 * push events arrive over Server-Sent Events for a real held call; and the one bearer / origin /
 * Host policy holds on every row of the edge's route table.
 */
import { isCountersignError } from '../../shared/errors.js';
import { callerRuleOf } from '../../shared/desk-session.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { BRIDGE_METHODS, BRIDGE_METHOD_NAMES, type BridgeEvent, type BridgeMethodRow } from '../../shared/bridge-table.js';
import { callBridgeMethod, inProcessBridge } from '../../main/core/ui/bridge-routes.js';
import { windowCaller } from '../../main/core/ui/bridge-caller.js';
import { registerPerson, signInBridge, signInOverHttp } from '../helpers/desk-session.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ config: { domain: 'test' } });
});
afterAll(async () => {
  await h.close();
});

/** A well-formed value for each argument name the table uses, and a value its schema refuses. */
const GOOD: Record<string, unknown> = {
  approverId: 'alice',
  requestId: 'r-1',
  registrationCode: 'code-1',
  verdict: 'approve',
  reason: 'looks right',
  limit: 5,
  offset: 0,
  response: { id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: {} },
  historyQuery: { states: ['approved'], text: 'Acme', limit: 10 },
  agentId: 'finance-bot',
  call: {
    tool: 'payments.transfer',
    params: { amount: '10.00', currency: 'USD', payee: 'Acme Ltd' },
    dataClass: 'financial',
    jurisdiction: 'US',
    provenance: ['user'],
  },
  newAdminId: 'root',
  displayName: 'Root Admin',
  adminId: 'root',
  action: { kind: 'agent.revoke', id: 'agent-1', reason: 'lost laptop' },
  deliveryId: 'd-1',
  proposalId: 'adm-1',
  confirmation: 'confirm',
};
const BAD: Record<string, unknown> = {
  approverId: 'x'.repeat(129),
  requestId: 'x'.repeat(129),
  registrationCode: '',
  verdict: 'maybe',
  reason: 'x'.repeat(501),
  limit: -1,
  offset: -1,
  response: { id: 'AAAA', rawId: 'AAAA', type: 'password', response: {} },
  historyQuery: { text: 'ab' },
  agentId: 'not an id',
  call: { tool: 'payments.transfer', params: [] },
  newAdminId: '..',
  displayName: '',
  adminId: 'x'.repeat(129),
  action: { kind: 'agent.explode', id: 'agent-1' },
  deliveryId: 'x'.repeat(129),
  proposalId: 'x'.repeat(129),
  confirmation: 'approve',
};

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function raw(path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers = { host: `127.0.0.1:${h.app.port}`, ...options.headers };
    const req = request({ host: '127.0.0.1', port: h.app.port, path, method: options.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** One table call as raw HTTP, built from the row (path, query and body places), with the session secret. */
function rawCall(row: BridgeMethodRow, values: Record<string, unknown>): Promise<RawResponse> {
  let path = row.http.path as string;
  const query = new URLSearchParams();
  const body: Record<string, unknown> = {};
  for (const spec of row.args) {
    const value = values[spec.name];
    if (spec.in === 'path') path = path.replace(`{${spec.name}}`, encodeURIComponent(String(value)));
    else if (spec.in === 'query') query.set(spec.name, String(value));
    else body[spec.name] = value;
  }
  const search = query.toString();
  const headers: Record<string, string> = { authorization: `Bearer ${h.app.uiSessionSecret}` };
  if (row.http.verb === 'POST') headers['content-type'] = 'application/json';
  return raw(`${path}${search === '' ? '' : `?${search}`}`, {
    method: row.http.verb,
    headers,
    ...(row.http.verb === 'POST' ? { body: JSON.stringify(body) } : {}),
  });
}

describe('every bridge table method', () => {
  it('has a known bad and good value for each of its arguments (so the table below covers new rows)', () => {
    for (const name of BRIDGE_METHOD_NAMES) {
      for (const spec of BRIDGE_METHODS[name].args) {
        expect(Object.hasOwn(BAD, spec.name), `${name}.${spec.name}`).toBe(true);
        expect(Object.hasOwn(GOOD, spec.name), `${name}.${spec.name}`).toBe(true);
      }
    }
  });

  it('refuses each bad argument over HTTP and in process (IPC) with the same code and message', async () => {
    let checked = 0;
    for (const name of BRIDGE_METHOD_NAMES) {
      const row: BridgeMethodRow = BRIDGE_METHODS[name];
      for (const [index, spec] of row.args.entries()) {
        const values = { ...GOOD, [spec.name]: BAD[spec.name] };
        const http = await rawCall(row, values);
        const label = `${name}(${spec.name})`;
        expect(http.status, label).toBe(400);
        const error = (JSON.parse(http.body) as { error: { code: string; message: string } }).error;
        expect(error.code, label).toBe('schema_invalid');

        const args = row.args.map((a) => values[a.name]);
        const inProcess = await callBridgeMethod(h.app.ui, name, args).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(inProcess, label).toMatchObject({ code: 'schema_invalid' });
        // The query decoder refuses `-1` before the schema does; everything else gets the schema's own sentence.
        if (spec.in !== 'query') expect(error.message, label).toBe((inProcess as Error).message);
        expect(error.message, label).toContain(JSON.stringify(spec.name));
        expect(index).toBeGreaterThanOrEqual(0);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(8);
  });

  it('answers every method without arguments over HTTP exactly as in process, validated by the client', async () => {
    const client = createHttpBridge({ baseUrl: `http://127.0.0.1:${h.app.port}`, sessionSecret: h.app.uiSessionSecret });
    for (const name of BRIDGE_METHOD_NAMES) {
      if (BRIDGE_METHODS[name].args.some((a) => !a.optional)) continue;
      if (callerRuleOf(BRIDGE_METHODS[name]) !== 'transport') {
        // A person or admin row: with no one signed in, both transports refuse it the same way.
        const codeOf = (p: Promise<unknown>) =>
          p.then(
            () => 'answered',
            (e: unknown) => (isCountersignError(e) ? e.code : 'other'),
          );
        expect(await codeOf((client[name] as () => Promise<unknown>)()), name).toBe('not_signed_in');
        expect(await codeOf(callBridgeMethod(h.app.ui, name, [])), name).toBe('not_signed_in');
        continue;
      }
      const over = await (client[name] as () => Promise<unknown>)();
      const local = await callBridgeMethod(h.app.ui, name, []);
      // The status carries live counters; compare the rest.
      if (name === 'getStatus') expect((over as { serverId: string }).serverId).toBe((local as { serverId: string }).serverId);
      else expect(over, name).toEqual(local);
    }
  });

  it('gives every row the caller rule it is meant to have (a change here is a decision: update docs/desktop.md)', () => {
    const expected: Record<string, 'transport' | 'person' | 'admin'> = {
      getStatus: 'transport',
      listRecentDecisions: 'transport',
      listAgents: 'transport',
      listApprovers: 'transport',
      listPendingApprovals: 'transport',
      beginApproverRegistration: 'transport',
      finishApproverRegistration: 'transport',
      startApprovalCeremony: 'person',
      submitApprovalCeremony: 'person',
      searchHistory: 'transport',
      getHistoryEntry: 'transport',
      getPolicyOverview: 'transport',
      testPolicyCall: 'person',
      getCustodyHealth: 'transport',
      verifyAuditNow: 'person',
      getFirstRun: 'transport',
      createFirstAdmin: 'transport',
      startAdminAction: 'admin',
      submitAdminAction: 'admin',
      listPendingAdminActions: 'admin',
      startAdminConfirmation: 'admin',
      submitAdminConfirmation: 'admin',
      listApproverDirectory: 'admin',
      listWebhookDeadLetters: 'admin',
      retryWebhookDeadLetter: 'admin',
      getSession: 'transport',
      beginSignIn: 'transport',
      finishSignIn: 'transport',
      signOut: 'transport',
      listQueue: 'transport',
      getRequest: 'person',
    };
    const actual = Object.fromEntries(BRIDGE_METHOD_NAMES.map((name) => [name, callerRuleOf(BRIDGE_METHODS[name])]));
    expect(actual).toEqual(Object.fromEntries(Object.keys(actual).map((name) => [name, expected[name]])));
    expect(Object.keys(expected).filter((name) => !Object.hasOwn(actual, name))).toEqual([]);
  });

  it('runs testPolicyCall and verifyAuditNow only for a signed-in person, over HTTP and in process, and then answers both alike', async () => {
    const anonymous = createHttpBridge({ baseUrl: `http://127.0.0.1:${h.app.port}`, sessionSecret: h.app.uiSessionSecret });
    const call = transferCall('48000.00', 'Northwind Traders');
    await expect(anonymous.testPolicyCall('finance-bot', call)).rejects.toMatchObject({ code: 'not_signed_in' });
    await expect(anonymous.verifyAuditNow()).rejects.toMatchObject({ code: 'not_signed_in' });
    await expect(callBridgeMethod(h.app.ui, 'testPolicyCall', ['finance-bot', call])).rejects.toMatchObject({ code: 'not_signed_in' });

    // Any signed-in person will do (not an admin): an on-call engineer checks the log and tries a call.
    const key = await registerPerson(h.app, 'oncall', ['sre']);
    const person = await signInOverHttp(h.app, 'oncall', key);
    expect(person.session.admin).toBe(false);
    const desk = windowCaller();
    await signInBridge(h.app, inProcessBridge(h.app.ui, h.app.bridgeEvents, desk), 'oncall', key);
    const overHttp = await person.bridge.verifyAuditNow();
    const inProcess = (await callBridgeMethod(h.app.ui, 'verifyAuditNow', [], desk)) as typeof overHttp;
    expect(overHttp.ok).toBe(true);
    // Two verification passes: the same log, each at its own time.
    expect({ ...inProcess, at: 0 }).toEqual({ ...overHttp, at: 0 });
    await h.enroll('finance-bot-policy-test');
    const tested = await person.bridge.testPolicyCall('finance-bot-policy-test', call);
    expect(await callBridgeMethod(h.app.ui, 'testPolicyCall', ['finance-bot-policy-test', call], desk)).toEqual(tested);
  });

  it('refuses an unknown body member and too many arguments the same way on both transports', async () => {
    const row: BridgeMethodRow = BRIDGE_METHODS.startApprovalCeremony;
    const res = await raw(row.http.path.replace('{requestId}', 'r-1'), {
      method: 'POST',
      headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ approverId: 'alice', verdict: 'approve', admin: true }),
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'schema_invalid' } });
    await expect(callBridgeMethod(h.app.ui, 'startApprovalCeremony', ['r-1', 'alice', 'approve', 'extra'])).rejects.toMatchObject({
      code: 'schema_invalid',
    });
  });
});

describe('push events', () => {
  it('a real HTTP client receives "pending", "approvalRecorded" then "decided" for a real call through the gateway', async () => {
    const client = createHttpBridge({ baseUrl: `http://127.0.0.1:${h.app.port}`, sessionSecret: h.app.uiSessionSecret });
    const events: BridgeEvent[] = [];
    let wake: () => void = () => undefined;
    const unsubscribe = client.subscribe((event) => {
      events.push(event);
      wake();
    });
    const until = async (done: () => boolean) => {
      while (!done()) await new Promise<void>((resolve) => (wake = resolve));
    };
    try {
      // The stream is open once the server counts the subscriber.
      while (h.app.bridgeEvents.subscribers < 1) await new Promise((r) => setTimeout(r, 20));
      const key = await h.enroll('finance-bot');
      const agent = h.client('finance-bot', key);
      const held = await agent.submit(transferCall('48000.00', 'Northwind Traders'));
      expect(held.decision).toBe('pending');
      await until(() => events.some((e) => e.name === 'pending' && e.data.requestId === held.requestId));
      expect(events.find((e) => e.name === 'pending')).toEqual({
        name: 'pending',
        data: { requestId: held.requestId, agentId: 'finance-bot' },
      });

      await h.app.virtualApprovers!.create({ id: 'carol', displayName: 'Carol', groups: ['finance-approvers'] });
      await h.app.virtualApprovers!.decide({
        requestId: held.requestId,
        approverId: 'carol',
        verdict: 'deny',
        reason: 'payee not verified',
      });
      await until(() => events.some((e) => e.name === 'decided'));
      const names = events.filter((e) => 'requestId' in e.data && e.data.requestId === held.requestId).map((e) => e.name);
      expect(names).toEqual(['pending', 'approvalRecorded', 'decided']);
      expect(events.find((e) => e.name === 'decided')).toEqual({ name: 'decided', data: { requestId: held.requestId, state: 'denied' } });
    } finally {
      unsubscribe();
    }
  });

  it('serves the stream only with the secret, as text/event-stream', async () => {
    const refused = await raw('/api/ui/events');
    expect(refused.status).toBe(401);
    const head = await raw('/api/ui/events', { method: 'HEAD', headers: { authorization: `Bearer ${h.app.uiSessionSecret}` } });
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(head.headers['cache-control']).toBe('no-store');
  });
});

describe('the one bearer, origin and Host policy on every route of the edge', () => {
  const concrete = (path: string) => path.replace(/\{[A-Za-z]+\}/g, 'r-1').replace(/\/\*$/, '/index.html');

  it('covers the gateway, bridge, approval, admin, audit, automation and renderer rows', () => {
    const paths = h.app.gateway.routeTable.map((r) => r.path);
    for (const path of [
      '/healthz',
      '/.well-known/jwks.json',
      '/.well-known/countersign-approvers.json',
      '/api/ui/status',
      '/api/ui/events',
      '/api/approvals/pending',
      '/api/admin/ceremony',
      '/api/audit/checkpoint',
      '/api/automation/virtual-approvers',
      '/ui/*',
    ]) {
      expect(paths).toContain(path);
    }
    for (const name of BRIDGE_METHOD_NAMES) expect(paths).toContain(BRIDGE_METHODS[name].http.path);
  });

  it('refuses a session route without the secret (401), from a foreign origin (403), and any route on a foreign Host (421)', async () => {
    for (const route of h.app.gateway.routeTable) {
      const path = concrete(route.path);
      const label = `${route.verb} ${route.path}`;
      const body = route.verb === 'POST' ? '{}' : undefined;
      const json: Record<string, string> = route.verb === 'POST' ? { 'content-type': 'application/json' } : {};
      const method = route.verb;

      const foreignHost = await raw(path, {
        method,
        headers: { host: 'evil.example', authorization: `Bearer ${h.app.uiSessionSecret}`, ...json },
        ...(body === undefined ? {} : { body }),
      });
      expect(foreignHost.status, label).toBe(421);

      if (route.access === 'session') {
        for (const authorization of [undefined, 'Bearer wrong', `Basic ${h.app.uiSessionSecret}`, `Bearer ${h.app.uiSessionSecret}x`]) {
          const res = await raw(path, {
            method,
            headers: { ...(authorization === undefined ? {} : { authorization }), ...json },
            ...(body === undefined ? {} : { body }),
          });
          expect(res.status, `${label} ${authorization}`).toBe(401);
          expect(JSON.parse(res.body), label).toMatchObject({ error: { code: 'not_authenticated' } });
          expect(res.body).not.toContain(h.app.uiSessionSecret);
        }
        const cross = await raw(path, {
          method,
          headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, origin: 'http://evil.example', ...json },
          ...(body === undefined ? {} : { body }),
        });
        expect(cross.status, label).toBe(403);
        expect(JSON.parse(cross.body), label).toMatchObject({ error: { code: 'origin_not_allowed' } });
      } else {
        const open = await raw(path, { method });
        expect(open.status, label).not.toBe(401);
        expect(open.status, label).not.toBe(403);
      }
    }
  });
});
