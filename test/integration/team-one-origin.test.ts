/**
 * One origin, any hub (docs/team-mode.md): two hubs of one team behind one origin, as a load
 * balancer that is not sticky puts them, on one real PostgreSQL 15 cluster started by the test.
 * Both hubs publish the balancer's origin (`gateway.extraOrigins`); approvers tap the tests'
 * software authenticators at that origin. Hub B reaches the database through a TCP relay, the one
 * fault injected here (a database that goes away for one hub). Checks: an approval ceremony begun
 * on hub A is finished on hub B and the other way round (one token at the agent); a key
 * registration and a desk sign-in begun on one hub finish on the other; the same answer sent to
 * both hubs at once is accepted once; an expired challenge, and one presented for another person
 * or another request, is refused with challenge_invalid and records nothing (and is not spent);
 * with the database away the hub refuses with store_unavailable and records nothing.
 */
import { rmSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import type { ApprovalVerdict } from '../../main/core/approvals/approval-service.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { ensureTeamPeople, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';
import { signInOverHttp } from '../helpers/desk-session.js';

/** The one origin desks use (the balancer's); every hub lists it. */
const ORIGIN = 'http://localhost:7999';
const AGENT = 'origin-bot';
const NORTHWIND = transferCall('48000.00', 'Northwind Traders');

let cluster: PostgresCluster;
let relay: TcpRelay;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
const keys = new Map<string, VirtualAuthenticator>();
let a: RunningCountersign;
let b: RunningCountersign;
let agent: AgentClient;
const pushed: DecisionResult[] = [];

/** A ceremony begun on `hub`, answered by the approver's key at the one origin (not yet submitted). */
async function begin(hub: RunningCountersign, requestId: string, approverId: string, verdict: ApprovalVerdict = 'approve') {
  const started = await hub.approvals.startCeremony({ requestId, approverId, verdict });
  const response = keys.get(approverId)!.getAssertion({
    rpId: 'localhost',
    origin: ORIGIN,
    challenge: started.options.challenge,
    allowCredentials: (started.options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
  return { requestId, approverId, verdict, response, challenge: started.options.challenge };
}

/** Add `approverId` to the team directory on `begun`, register a key beginning on `begun` and finishing on `finished`. */
async function registerAcross(begun: RunningCountersign, finished: RunningCountersign, approverId: string): Promise<VirtualAuthenticator> {
  const { registration } = await begun.team!.approvers.add(
    { id: approverId, displayName: approverId, groups: ['finance-approvers'], virtual: true },
    { issuedBy: 'test-admin' },
  );
  const options = await begun.approvers.beginRegistration(approverId, registration!.code);
  await finished.team!.directory.waitForSeq(begun.team!.directory.appliedSeq);
  const key = new VirtualAuthenticator();
  await finished.approvers.finishRegistration(
    approverId,
    key.createCredential({
      rpId: 'localhost',
      origin: ORIGIN,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  keys.set(approverId, key);
  return key;
}

async function stored(requestId: string) {
  const request = await db.query<{ state: string }>('SELECT state FROM requests WHERE id = $1', [requestId]);
  const tokens = await db.query<{ token: string }>('SELECT token FROM tokens WHERE request_id = $1', [requestId]);
  const approvals = await db.query<{ approver_id: string; hub: string }>(
    'SELECT approver_id, hub FROM approvals WHERE request_id = $1 ORDER BY at, approver_id',
    [requestId],
  );
  return { state: request.rows[0]?.state, tokens: tokens.rows.length, approvals: approvals.rows.map((r) => [r.approver_id, r.hub]) };
}

async function challengeRow(challenge: string) {
  const { rows } = await db.query<{ issued_by_hub: string; used_by_hub: string | null; used: boolean }>(
    'SELECT issued_by_hub, used_by_hub, used_at IS NOT NULL AS used FROM ceremony_challenges WHERE challenge = $1',
    [challenge],
  );
  return rows[0];
}

/** A bridge call over HTTP to `hub` (its own desk secret), as a desk's browser sends it through the balancer. */
async function post(hub: RunningCountersign, path: string, body: unknown) {
  const res = await fetch(`http://127.0.0.1:${hub.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${hub.uiSessionSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown>, setCookie: res.headers.get('set-cookie') ?? '' };
}

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  relay = await startTcpRelay(cluster.port);
  const settings = { gateway: { port: 0, extraOrigins: [ORIGIN] } };
  const room = { dirs, hubs };
  a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a', settings));
  b = await startTeamHub(room, 'hub-b', `postgres://countersign@127.0.0.1:${relay.port}/postgres`, teamHubDir(room, 'hub-b', settings));
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  // alice registers beginning on hub A and finishing on hub B; bob the other way round.
  await registerAcross(a, b, 'alice');
  await registerAcross(b, a, 'bob');
  await registerAcross(a, b, 'carol');
  const agentKey = await importAgentKey(await generateAgentKey('EdDSA'));
  await a.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(agentKey, AGENT, AGENT)), FINANCE_SCOPE);
  await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
  agent = new AgentClient({
    url: b.url,
    agentId: AGENT,
    key: agentKey,
    webSocket: nodeWebSocket,
    reconnect: false,
    requestTimeoutMs: 15_000,
    onDecision: (result) => pushed.push(result),
  });
  clients.push(agent);
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const app of hubs.reverse()) await app.close().catch(() => undefined);
  await relay?.close();
  await db?.end();
  cluster?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}, 120_000);

async function holdOnB(call = NORTHWIND): Promise<string> {
  const held = await agent.submit(call);
  expect(held).toMatchObject({ decision: 'pending', approval: { approvals: 2 } });
  return held.requestId;
}

describe('one origin, any hub', () => {
  it('an approval ceremony begun on hub A is finished on hub B, and one begun on B is finished on A: one token at the agent', async () => {
    const requestId = await holdOnB();
    const answer = agent.waitForDecision(requestId, { timeoutMs: 30_000 });
    const alice = await begin(a, requestId, 'alice');
    expect(await b.approvals.submitCeremony(alice)).toMatchObject({ state: 'pending' });
    expect(await challengeRow(alice.challenge)).toEqual({ issued_by_hub: 'hub-a', used_by_hub: 'hub-b', used: true });
    const bob = await begin(b, requestId, 'bob');
    expect(await a.approvals.submitCeremony(bob)).toMatchObject({ state: 'approved' });
    await expect(answer).resolves.toMatchObject({ state: 'approved', decision: 'allow' });
    expect(await stored(requestId)).toEqual({
      state: 'approved',
      tokens: 1,
      approvals: [
        ['alice', 'hub-b'],
        ['bob', 'hub-a'],
      ],
    });
  }, 60_000);

  it('the same answer sent to hub A and hub B at once is accepted exactly once', async () => {
    const requestId = await holdOnB();
    const alice = await begin(a, requestId, 'alice');
    const settled = await Promise.allSettled([a.approvals.submitCeremony(alice), b.approvals.submitCeremony(alice)]);
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const refused = settled.find((s) => s.status === 'rejected');
    expect(refused?.reason).toMatchObject({ code: 'challenge_invalid' });
    expect((await stored(requestId)).approvals.map(([id]) => id)).toEqual(['alice']);
    // And once more, later, on either hub: spent.
    await expect(b.approvals.submitCeremony(alice)).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(a.approvals.submitCeremony(alice)).rejects.toMatchObject({ code: 'challenge_invalid' });
  }, 60_000);

  it('refuses an expired challenge, and one presented for another person or request, with challenge_invalid; nothing is recorded or spent', async () => {
    const requestId = await holdOnB();
    const other = await holdOnB(transferCall('47000.00', 'Contoso')); // not identical: its own group
    const carol = await begin(a, requestId, 'carol');
    // Bound to carol and to this request: presented as bob's, or for the other request, on hub B.
    await expect(b.approvals.submitCeremony({ ...carol, approverId: 'bob' })).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(b.approvals.submitCeremony({ ...carol, requestId: other })).rejects.toMatchObject({ code: 'challenge_invalid' });
    expect(await challengeRow(carol.challenge)).toMatchObject({ used: false });
    // Its ceremony time runs out (the row's expiry moved into the past): refused on either hub.
    await db.query('UPDATE ceremony_challenges SET expires_at = $1 WHERE challenge = $2', [Date.now() - 1, carol.challenge]);
    const expired: unknown = await b.approvals.submitCeremony(carol).catch((error: unknown) => error);
    expect(expired).toMatchObject({ code: 'challenge_invalid' });
    expect(String((expired as Error).message)).toContain('expired');
    await expect(a.approvals.submitCeremony(carol)).rejects.toMatchObject({ code: 'challenge_invalid' });
    expect(await stored(requestId)).toMatchObject({ state: 'pending', tokens: 0, approvals: [] });
    expect(await stored(other)).toMatchObject({ state: 'pending', tokens: 0, approvals: [] });
    // A fresh ceremony still works.
    expect(await b.approvals.submitCeremony(await begin(a, requestId, 'carol'))).toMatchObject({ state: 'pending' });
  }, 60_000);

  it('keys registered beginning on one hub and finishing on the other tap on both; a registration challenge is used once', async () => {
    expect(a.approvers.credentialsOf('alice')).toHaveLength(1);
    expect(b.approvers.credentialsOf('bob')).toHaveLength(1);
    // A second key for dave: begun on B, finished on A, the same answer again on B is refused.
    const { registration } = await a.team!.approvers.add(
      { id: 'dave', displayName: 'Dave', groups: [], virtual: true },
      { issuedBy: 'test-admin' },
    );
    await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
    const options = await b.approvers.beginRegistration('dave', registration!.code);
    const key = new VirtualAuthenticator();
    const response = key.createCredential({
      rpId: 'localhost',
      origin: ORIGIN,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    });
    // Bound to dave: finished as alice it is refused, and not spent.
    await expect(a.approvers.finishRegistration('alice', response)).rejects.toMatchObject({ code: 'challenge_invalid' });
    await a.approvers.finishRegistration('dave', response);
    await expect(b.approvers.finishRegistration('dave', response)).rejects.toMatchObject({ code: 'challenge_invalid' });
    expect(a.approvers.credentialsOf('dave')).toHaveLength(1);
  }, 60_000);

  it('a desk sign-in begun on hub A is finished on hub B; the same answer again on A is refused', async () => {
    const begun = await post(a, '/api/session/sign-in', { approverId: 'alice' });
    expect(begun.status).toBe(200);
    const options = begun.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    const response = keys.get('alice')!.getAssertion({
      rpId: 'localhost',
      origin: ORIGIN,
      challenge: options.challenge,
      allowCredentials: options.allowCredentials.map((c) => c.id),
      userVerification: 'required',
    });
    // Bound to alice: presented as bob's it is refused and stays usable.
    const asBob = await post(b, '/api/session/sign-in/finish', { approverId: 'bob', response });
    expect((asBob.json.error as { code: string }).code).toBe('challenge_invalid');
    const finished = await post(b, '/api/session/sign-in/finish', { approverId: 'alice', response });
    expect(finished.status).toBe(200);
    expect(finished.setCookie).toMatch(new RegExp(`^${DESK_SESSION_COOKIE}=[A-Za-z0-9_-]{43};`));
    expect(finished.json.session).toMatchObject({ approverId: 'alice' });
    const again = await post(a, '/api/session/sign-in/finish', { approverId: 'alice', response });
    expect((again.json.error as { code: string }).code).toBe('challenge_invalid');
  }, 60_000);

  it("an admin's action tapped for on hub A is performed on hub B; the same answer again on A is refused and performs nothing more", async () => {
    const { registration } = await a.team!.approvers.add(
      { id: 'root', displayName: 'Root', groups: ['countersign-admins'], virtual: true },
      { issuedBy: 'test-admin' },
    );
    const options = await a.approvers.beginRegistration('root', registration!.code);
    const rootKey = new VirtualAuthenticator();
    await a.approvers.finishRegistration(
      'root',
      rootKey.createCredential({
        rpId: 'localhost',
        origin: ORIGIN,
        challenge: options.challenge,
        user: options.user,
        userVerification: 'required',
      }),
    );
    await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
    // root signs in on each hub (one session would do now: sessions are the team's; the admin tap is what crosses here).
    const [onA, onB] = [await signInOverHttp(a, 'root', rootKey), await signInOverHttp(b, 'root', rootKey)];
    const started = await onA.bridge.startAdminAction('root', { kind: 'approver.issue_registration_code', id: 'carol' });
    const offer = started.options as { challenge: string; allowCredentials?: Array<{ id: string }> };
    const answer = rootKey.getAssertion({
      rpId: 'localhost',
      origin: ORIGIN,
      challenge: offer.challenge,
      allowCredentials: (offer.allowCredentials ?? []).map((c) => c.id),
      userVerification: 'required',
    });
    const done = await onB.bridge.submitAdminAction('root', answer);
    expect(JSON.stringify(done.result)).toMatch(/"code":"[A-Za-z0-9_-]{32}"/);
    expect(await challengeRow(offer.challenge)).toEqual({ issued_by_hub: 'hub-a', used_by_hub: 'hub-b', used: true });
    await expect(onA.bridge.submitAdminAction('root', answer)).rejects.toMatchObject({ code: 'challenge_invalid' });
    const codes = await db.query("SELECT 1 FROM directory_registration_codes WHERE approver_id = 'carol'");
    expect(codes.rowCount).toBe(2); // the one carol registered with, and this one: once
  }, 60_000);

  it('with the database away a hub refuses ceremonies with store_unavailable and records nothing; it recovers by itself', async () => {
    const requestId = await holdOnB();
    const alice = await begin(a, requestId, 'alice');
    relay.sever();
    try {
      await expect(b.approvals.submitCeremony(alice)).rejects.toMatchObject({ code: 'store_unavailable' });
      // A desk sign-in's begin stores nothing (ADR 0019): answered from the hub's replica.
      await expect(b.deskSessions.begin('alice')).resolves.toMatchObject({ options: { rpId: 'localhost' } });
    } finally {
      relay.heal();
    }
    expect(await challengeRow(alice.challenge)).toMatchObject({ used: false });
    expect(await stored(requestId)).toMatchObject({ state: 'pending', approvals: [] });
    expect(await b.approvals.submitCeremony(alice)).toMatchObject({ state: 'pending' });
  }, 60_000);
});
