/**
 * A desk on any hub (docs/team-mode.md "One origin, any hub", PG migration 14): two hubs of one
 * team on one real PostgreSQL 15 cluster started by the test, behind one origin served by a load
 * balancer that is not sticky (a loopback relay sending each new connection to the other hub:
 * test/helpers/tcp-relay.ts). Hub B reaches the database through a second relay, the one fault
 * injected here (its database going away). Checks: the desk link is the team's (one bearer
 * secret); a sign-in and every later call alternate between hubs and stay signed in; the session
 * id is kept only as its hash; a sign-out on one hub ends the session on every hub; disabling the
 * person, removing their key, or demoting an admin, on hub A ends or narrows the session on hub B while B's replica
 * lags (the groups come from the team directory, at sign-in and at every call); idle and absolute
 * lifetimes hold for the team; a sign-in begin stores nothing (ADR 0019), so a client beginning
 * sign-ins for a person during their key tap leaves that person's sign-in answerable, and a finish
 * replayed on the other hub, made for another person, altered or expired is refused; with the
 * database away the hub grants and resolves no session (store_unavailable). Last, a desk in Chromium (CDP
 * virtual authenticator) opened at the alternating origin registers a key, signs in and approves
 * a call held by an agent on hub B.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { rmSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import type { RunningCountersign } from '../../main/core/app.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { SignInChallenges } from '../../main/core/ui/sign-in-challenge.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';
import { FINANCE_SCOPE, nodeWebSocket, tempDir, transferCall } from '../helpers/harness.js';
import { freePort, startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { startAlternatingRelay, startTcpRelay, type AlternatingRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { ensureTeamPeople, refuseReplicaInserts, registerTeamPerson, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';
import { chromiumAvailable, launchChromium, openApproverBrowser } from '../helpers/chromium.js';
import { actAs, buildRenderer, openDesk, registerKey } from '../helpers/desk-browser.js';
import { alteredChallenge } from '../helpers/desk-session.js';

const AGENT = 'anywhere-bot';
const UI_TIMEOUT = 30_000;

let cluster: PostgresCluster;
let dbRelay: TcpRelay;
let balancer: AlternatingRelay;
let db: pg.Pool;
let buildDir: string;
let browser: Browser | undefined;
let origin: string;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
const keys = new Map<string, VirtualAuthenticator>();
let a: RunningCountersign;
let b: RunningCountersign;

interface Answer {
  status: number;
  json: Record<string, unknown>;
  setCookie: string;
  /** The hub port the connection reached. */
  hub: number | undefined;
}

/**
 * One desk call on a connection of its own (as a browser's calls spread over connections), to
 * `port` (the balancer by default, Host = the one origin) from `localAddress`.
 */
function call(
  method: 'GET' | 'POST',
  path: string,
  options: { body?: unknown; cookie?: string; port?: number; localAddress?: string; secret?: string } = {},
): Promise<Answer> {
  const port = options.port ?? balancer.port;
  const before = balancer.targets.length;
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
        headers: {
          host: port === balancer.port ? `localhost:${port}` : `127.0.0.1:${port}`,
          authorization: `Bearer ${options.secret ?? a.uiSessionSecret}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(options.cookie === undefined ? {} : { cookie: options.cookie }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const setCookie = res.headers['set-cookie'];
          resolve({
            status: res.statusCode ?? 0,
            json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
            setCookie: Array.isArray(setCookie) ? setCookie.join('\n') : '',
            hub: port === balancer.port ? balancer.targets[before] : port,
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const codeOf = (answer: Answer) => (answer.json.error as { code?: string } | undefined)?.code;

type TapOptions = { challenge: string; allowCredentials: Array<{ id: string }> };

/** `approverId`'s key answering a sign-in's options at the one origin. */
function tapOf(approverId: string, options: TapOptions) {
  return keys.get(approverId)!.getAssertion({
    rpId: 'localhost',
    origin,
    challenge: options.challenge,
    allowCredentials: options.allowCredentials.map((c) => c.id),
    userVerification: 'required',
  });
}

/** Sign `approverId` in through `via` (the balancer unless a hub's port): begin and finish each on their own connection. */
async function signIn(approverId: string, via?: number) {
  const begun = await call('POST', '/api/session/sign-in', { body: { approverId }, ...(via === undefined ? {} : { port: via }) });
  expect(begun.status, JSON.stringify(begun.json)).toBe(200);
  const options = begun.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
  const response = keys.get(approverId)!.getAssertion({
    rpId: 'localhost',
    origin,
    challenge: options.challenge,
    allowCredentials: options.allowCredentials.map((c) => c.id),
    userVerification: 'required',
  });
  const finished = await call('POST', '/api/session/sign-in/finish', {
    body: { approverId, response },
    ...(via === undefined ? {} : { port: via }),
  });
  expect(finished.status, JSON.stringify(finished.json)).toBe(200);
  const token = new RegExp(`^${DESK_SESSION_COOKIE}=([A-Za-z0-9_-]{43});`).exec(finished.setCookie)![1]!;
  return { token, cookie: `${DESK_SESSION_COOKIE}=${token}`, begunOn: begun.hub, finishedOn: finished.hub, session: finished.json.session };
}

/** The session a cookie names, as the hub the call reaches sees it (null: none). */
async function sessionOf(cookie: string, port?: number): Promise<{ approverId: string; admin: boolean } | null> {
  const answer = await call('GET', '/api/session', { cookie, ...(port === undefined ? {} : { port }) });
  expect(answer.status, JSON.stringify(answer.json)).toBe(200);
  return answer.json.session as { approverId: string; admin: boolean } | null;
}

const idHash = (token: string) => createHash('sha256').update(token, 'utf8').digest('base64url');
const sessionRows = async (approverId: string) =>
  (await db.query<{ id_hash: string; groups: string }>('SELECT id_hash, groups FROM desk_sessions WHERE approver_id = $1', [approverId]))
    .rows;

/** Every hub's replica has applied what the team directory holds now. */
async function caughtUp(): Promise<void> {
  const seq = Math.max(a.team!.directory.appliedSeq, b.team!.directory.appliedSeq);
  await a.team!.directory.waitForSeq(seq);
  await b.team!.directory.waitForSeq(seq);
}

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error('Debian chromium is needed at /usr/bin/chromium');
  buildDir = tempDir('countersign-renderer-');
  [cluster] = await Promise.all([startPostgres(), buildRenderer(buildDir)]);
  db = testPool(cluster.url);
  dbRelay = await startTcpRelay(cluster.port);
  const ports = { 'hub-a': await freePort(), 'hub-b': await freePort() };
  balancer = await startAlternatingRelay([ports['hub-a'], ports['hub-b']]);
  origin = `http://localhost:${balancer.port}`;
  const room = { dirs, hubs };
  const settings = (port: number) => ({
    gateway: { port, allowedHosts: [`localhost:${balancer.port}`], extraOrigins: [origin] },
    risk: { enabled: false },
  });
  a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a', settings(ports['hub-a'])), undefined, buildDir);
  b = await startTeamHub(
    room,
    'hub-b',
    `postgres://countersign@127.0.0.1:${dbRelay.port}/postgres`,
    teamHubDir(room, 'hub-b', settings(ports['hub-b'])),
    undefined,
    buildDir,
  );
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  for (const id of ['alice', 'bob', 'carol', 'erin', 'fay']) keys.set(id, await registerTeamPerson(a, id, ['finance-approvers']));
  for (const id of ['root', 'root2', 'root3']) keys.set(id, await registerTeamPerson(a, id, ['finance-approvers', ADMIN_GROUP_NAME]));
  await caughtUp();
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  for (const app of hubs.reverse()) await app.close().catch(() => undefined);
  await balancer?.close();
  await dbRelay?.close();
  await db?.end();
  cluster?.destroy();
  for (const dir of [...dirs, buildDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('a desk on any hub behind one origin', () => {
  it('one desk link for the team: a sign-in and every later call alternate between the hubs and stay signed in; the id is kept only hashed', async () => {
    expect(b.uiSessionSecret).toBe(a.uiSessionSecret);
    const alice = await signIn('alice');
    expect(alice.begunOn).not.toBe(alice.finishedOn); // the balancer sent begin and finish to different hubs
    expect(alice.session).toMatchObject({ approverId: 'alice', admin: false });
    const seen = new Set<number | undefined>();
    for (let i = 0; i < 4; i++) {
      const answer = await call('GET', '/api/session', { cookie: alice.cookie });
      expect(answer.json.session).toMatchObject({ approverId: 'alice' });
      seen.add(answer.hub);
    }
    expect(seen).toEqual(new Set([a.port, b.port]));
    const rows = await sessionRows('alice');
    expect(rows).toEqual([{ id_hash: idHash(alice.token), groups: JSON.stringify(['finance-approvers']) }]);
    const text = JSON.stringify((await db.query('SELECT * FROM desk_sessions')).rows);
    expect(text).not.toContain(alice.token);
    // Another secret is refused by both hubs, as before.
    const wrong = await call('GET', '/api/session', { cookie: alice.cookie, secret: 'x'.repeat(43) });
    expect([wrong.status, codeOf(wrong)]).toEqual([401, 'not_authenticated']);
  }, 60_000);

  it('a sign-out on hub A ends the session on hub B too, and is audited once', async () => {
    const bob = await signIn('bob');
    expect(await sessionOf(bob.cookie, b.port)).toMatchObject({ approverId: 'bob' });
    const out = await call('POST', '/api/session/sign-out', { body: {}, cookie: bob.cookie, port: a.port });
    expect(out.json).toEqual({ signedOut: true });
    expect(await sessionOf(bob.cookie, b.port)).toBeNull();
    expect(await sessionRows('bob')).toEqual([]);
    const again = await call('POST', '/api/session/sign-out', { body: {}, cookie: bob.cookie, port: b.port });
    expect(again.json).toEqual({ signedOut: false });
    // desk.signed_out in the log of the hub that ended it, once across the hubs.
    const ends = (hub: RunningCountersign) =>
      (hub.db.prepare("SELECT record FROM audit_log WHERE kind = 'desk.signed_out'").all() as Array<{ record: string }>)
        .map((row) => JSON.parse(row.record) as { approverId: string; reason: string })
        .filter((record) => record.approverId === 'bob');
    expect(ends(a)).toEqual([expect.objectContaining({ approverId: 'bob', reason: 'signed_out' })]);
    expect(ends(b)).toEqual([]);
  }, 60_000);

  it("disabling a person on hub A ends their session on hub B at its next call, while B's replica lags", async () => {
    const carol = await signIn('carol');
    const release = refuseReplicaInserts(b, 'approvers'); // hub B's replica cannot apply the change yet
    try {
      await a.team!.approvers.disable('carol');
      expect(b.approvers.get('carol').status).toBe('active');
      expect(await sessionOf(carol.cookie, b.port)).toBeNull();
      expect(await sessionRows('carol')).toEqual([]);
    } finally {
      release();
    }
  }, 60_000);

  it("removing the key that signed in, on hub A, ends the session on hub B at its next call, while B's replica lags", async () => {
    const fay = await signIn('fay');
    const release = refuseReplicaInserts(b, 'approver_credentials');
    try {
      const credentialId = keys.get('fay')!.listCredentials()[0]!.id;
      await a.team!.approvers.removeCredential(credentialId);
      expect(b.approvers.credential(credentialId).status).toBe('active'); // B's replica still has it
      expect(await sessionOf(fay.cookie, b.port)).toBeNull();
      expect(await sessionRows('fay')).toEqual([]);
    } finally {
      release();
    }
  }, 60_000);

  it("a sign-in on hub B takes the session's groups from the team directory: an admin demoted on hub A gets no admin session on B while B's replica lags", async () => {
    const release = refuseReplicaInserts(b, 'approvers');
    try {
      await a.team!.approvers.setGroups('root', ['finance-approvers']);
      expect(b.approvers.get('root').groups).toContain(ADMIN_GROUP_NAME); // B's replica still says admin
      // Before the fix the session took B's replica's groups: an admin session.
      const root = await signIn('root', b.port);
      expect(root.session).toMatchObject({ approverId: 'root', admin: false });
      expect(await sessionRows('root')).toEqual([{ id_hash: idHash(root.token), groups: JSON.stringify(['finance-approvers']) }]);
      expect(await sessionOf(root.cookie, b.port)).toMatchObject({ approverId: 'root', admin: false });
      // An admin row on B is refused.
      const admin = await call('GET', '/api/ui/approver-directory', { cookie: root.cookie, port: b.port });
      expect([admin.status, codeOf(admin)]).toEqual([403, 'admin_required']);

      // And an admin signed in on B, demoted on A, loses the session at the next call on B.
      const root2 = await signIn('root2', b.port);
      expect(root2.session).toMatchObject({ admin: true });
      await a.team!.approvers.setGroups('root2', ['finance-approvers']);
      expect(await sessionOf(root2.cookie, b.port)).toBeNull();
    } finally {
      release();
    }
  }, 60_000);

  it('the idle timeout and the absolute lifetime hold for the team: a session idle on one hub is ended on the other', async () => {
    const alice = await signIn('alice');
    // Its last call (on either hub) longer ago than the idle timeout (30 min by default).
    await db.query('UPDATE desk_sessions SET last_seen_at = $2 WHERE id_hash = $1', [idHash(alice.token), Date.now() - 31 * 60_000]);
    expect(await sessionOf(alice.cookie)).toBeNull();
    const hashes = async () => (await sessionRows('alice')).map((row) => row.id_hash);
    expect(await hashes()).not.toContain(idHash(alice.token));
    const again = await signIn('alice');
    await db.query('UPDATE desk_sessions SET expires_at = $2 WHERE id_hash = $1', [idHash(again.token), Date.now() - 1]);
    expect(await sessionOf(again.cookie)).toBeNull();
    expect(await hashes()).not.toContain(idHash(again.token));
  }, 60_000);

  it("a sign-in begin stores nothing: another client beginning sign-ins for a person through the balancer during their key tap leaves that person's sign-in answerable", async () => {
    // Review3 finding 8: begins used to be rows bounded per person, and 4 begins for one person
    // during their key tap displaced their own sign-in (challenge_invalid), so a desk-link holder
    // could keep a chosen person signed out. Now a begin is stateless (ADR 0019).
    const stored = async () =>
      (
        await db.query<{ n: string }>(
          'SELECT (SELECT count(*) FROM ceremony_challenges) + (SELECT count(*) FROM sign_in_challenges_used) AS n',
        )
      ).rows[0]!.n;
    const before = await stored();
    const begun = await call('POST', '/api/session/sign-in', { body: { approverId: 'erin' }, localAddress: '127.0.0.3' });
    expect(begun.status).toBe(200);
    const flood: Answer[] = [];
    for (let i = 0; i < 12; i++)
      flood.push(await call('POST', '/api/session/sign-in', { body: { approverId: 'erin' }, localAddress: '127.0.0.2' }));
    expect(flood.map((answer) => answer.status)).toEqual(flood.map(() => 200));
    expect(new Set(flood.map((answer) => answer.hub)).size).toBe(2); // through both hubs
    expect(await stored()).toBe(before); // no begin wrote a row
    const options = begun.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    const finished = await call('POST', '/api/session/sign-in/finish', {
      body: { approverId: 'erin', response: tapOf('erin', options) },
      localAddress: '127.0.0.3',
    });
    expect([finished.status, codeOf(finished)]).toEqual([200, undefined]); // on main: 400 challenge_invalid
    expect(finished.json.session).toMatchObject({ approverId: 'erin' });
  }, 60_000);

  it('a sign-in finish is refused (challenge_invalid) and opens no session when replayed on the other hub, made for another person, altered, or expired', async () => {
    const finish = (approverId: string, response: unknown, port?: number) =>
      call('POST', '/api/session/sign-in/finish', { body: { approverId, response }, ...(port === undefined ? {} : { port }) });
    const refused = (answer: Answer) => {
      expect([answer.status, codeOf(answer), answer.setCookie]).toEqual([400, 'challenge_invalid', '']);
    };
    const sessionsBefore = (await sessionRows('alice')).length;
    // Replayed: the same finish sent to both hubs at once, then to each again. One session; the
    // key stays active (a replay is refused as a used challenge before the counter could take it
    // for a clone's answer).
    const begun = await call('POST', '/api/session/sign-in', { body: { approverId: 'alice' }, port: a.port });
    expect(begun.status, JSON.stringify(begun.json)).toBe(200);
    const response = tapOf('alice', begun.json.options as TapOptions);
    const both = await Promise.all([finish('alice', response, a.port), finish('alice', response, b.port)]);
    expect(both.map((answer) => answer.status).sort()).toEqual([200, 400]);
    refused(both.find((answer) => answer.status !== 200)!);
    refused(await finish('alice', response, b.port));
    refused(await finish('alice', response, a.port));
    expect((await sessionRows('alice')).length).toBe(sessionsBefore + 1);
    const keyStatus = await db.query<{ status: string }>("SELECT status FROM directory_credentials WHERE approver_id = 'alice'");
    expect(keyStatus.rows.map((row) => row.status)).toEqual(['active']);
    // Made for erin, signed by bob's own key, sent as bob's.
    const erins = (await call('POST', '/api/session/sign-in', { body: { approverId: 'erin' } })).json.options as TapOptions;
    const bobs = (await call('POST', '/api/session/sign-in', { body: { approverId: 'bob' } })).json.options as TapOptions;
    refused(await finish('bob', tapOf('bob', { challenge: erins.challenge, allowCredentials: bobs.allowCredentials })));
    // Altered before the key signed.
    refused(await finish('bob', tapOf('bob', { ...bobs, challenge: alteredChallenge(bobs.challenge) })));
    // Expired: a challenge made with the team's own key (read from the database), one expired and
    // one not, so only the expiry differs.
    const { rows } = await db.query<{ key: string }>('SELECT key FROM team_sign_in_key');
    const teamKey = new SignInChallenges(Buffer.from(rows[0]!.key, 'base64url'), 'localhost');
    refused(await finish('bob', tapOf('bob', { ...bobs, challenge: teamKey.issue('bob', Date.now() - 1) })));
    expect((await finish('bob', tapOf('bob', { ...bobs, challenge: teamKey.issue('bob', Date.now() + 60_000) }))).status).toBe(200);
  }, 60_000);

  it('with the database away a hub grants and resolves no session (store_unavailable); the session is back when it returns', async () => {
    const alice = await signIn('alice', b.port);
    const begun = await call('POST', '/api/session/sign-in', { body: { approverId: 'alice' }, port: a.port });
    const options = begun.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    const response = keys.get('alice')!.getAssertion({
      rpId: 'localhost',
      origin,
      challenge: options.challenge,
      allowCredentials: options.allowCredentials.map((c) => c.id),
      userVerification: 'required',
    });
    const before = (await sessionRows('alice')).length;
    dbRelay.sever();
    try {
      const resolved = await call('GET', '/api/session', { cookie: alice.cookie, port: b.port });
      expect([resolved.status, codeOf(resolved)]).toEqual([503, 'store_unavailable']);
      expect(resolved.setCookie).toBe(''); // the desk keeps its cookie: the session is not ended by the outage
      const finished = await call('POST', '/api/session/sign-in/finish', { body: { approverId: 'alice', response }, port: b.port });
      expect([finished.status, codeOf(finished), finished.setCookie]).toEqual([503, 'store_unavailable', '']);
      // A begin stores nothing: it is answered from the hub's replica.
      const started = await call('POST', '/api/session/sign-in', { body: { approverId: 'alice' }, port: b.port });
      expect(started.status).toBe(200);
    } finally {
      dbRelay.heal();
    }
    expect((await sessionRows('alice')).length).toBe(before);
    expect(await sessionOf(alice.cookie, b.port)).toMatchObject({ approverId: 'alice' });
  }, 60_000);

  it('a desk in Chromium at the alternating origin registers a key, signs in and approves a call held by an agent on hub B', async () => {
    const { registration } = await a.team!.approvers.add(
      { id: 'dora', displayName: 'Dora Example', groups: ['finance-approvers'] },
      { issuedBy: 'test-admin' },
    );
    await caughtUp();
    const agentKey = await importAgentKey(await generateAgentKey('EdDSA'));
    await a.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(agentKey, AGENT, AGENT)), FINANCE_SCOPE);
    await caughtUp();
    const agent = new AgentClient({ url: b.url, agentId: AGENT, key: agentKey, webSocket: nodeWebSocket, reconnect: false });
    clients.push(agent);
    const held = await agent.submit(transferCall('5000.00', 'Northwind Traders'));
    expect(held).toMatchObject({ decision: 'pending', approval: { approvals: 1 } });
    const decided = agent.waitForDecision(held.requestId, { timeoutMs: 60_000 });
    decided.catch(() => undefined);

    const dora = await openApproverBrowser(browser!);
    try {
      const spread = balancer.targets.length;
      await openDesk(dora.page, { port: balancer.port, uiSessionSecret: a.uiSessionSecret, deskUrl: origin });
      await registerKey(dora.page, 'dora', registration!.code);
      await caughtUp(); // the key, registered on whichever hub finished it, on both replicas
      await actAs(dora.page, 'dora');
      await dora.page.getByTestId('tab-approvals').click();
      await dora.page.getByTestId('refresh-pending').click();
      const card = dora.page.locator(`[data-testid="pending-request"][data-request-id="${held.requestId}"]`);
      await card.waitFor({ timeout: UI_TIMEOUT });
      await card.getByTestId('approve').click();
      const panel = dora.page.locator(`[data-testid="ceremony-outcome"][data-request-id="${held.requestId}"]`);
      const error = dora.page.getByTestId('approval-error');
      await panel.or(error).first().waitFor({ timeout: UI_TIMEOUT });
      expect((await error.isVisible()) ? await error.innerText() : await panel.getAttribute('data-state')).toBe('approved');
      // The desk's connections went to both hubs, and it stayed signed in throughout.
      expect(new Set(balancer.targets.slice(spread))).toEqual(new Set([a.port, b.port]));
      expect(await dora.page.locator('[data-testid="desk-session"][data-approver-id="dora"]').count()).toBe(1);
    } finally {
      await dora.close();
    }
    await expect(decided).resolves.toMatchObject({ requestId: held.requestId, decision: 'allow', state: 'approved' });
    const approvals = await db.query<{ approver_id: string }>('SELECT approver_id FROM approvals WHERE request_id = $1', [held.requestId]);
    expect(approvals.rows).toEqual([{ approver_id: 'dora' }]);
  }, 120_000);
});
