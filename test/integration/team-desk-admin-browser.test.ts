/**
 * The desk's admin actions on team hubs in Debian Chromium (issues #13 and #15): two hubs of one
 * team on one real PostgreSQL 15 cluster, behind one origin served by a load balancer that is not
 * sticky (test/helpers/tcp-relay.ts: each new connection goes to the other hub), one browser, one
 * context and one CDP virtual authenticator per person. An admin signs in with their key and
 * enrolls an agent from its enrollment request file in the Agents view (key tap); the agent
 * connects to each hub at once and gets a decision. The admin revokes it (key tap) and the agent,
 * connected to each hub, is refused at its next call. A non-admin's session reaches no admin
 * action on either hub. The Approvers and keys view disables a person's key (key tap) and their
 * session ends on both hubs. With the two-admin quorum (approvals.adminQuorum: 2) admin 1 proposes
 * on hub A's desk, admin 2 is told on hub B's desk and confirms there with their own key, and the
 * action takes effect once. Screenshots of the Agents and the Approvers views, light and dark.
 */
import { request } from 'node:http';
import { rmSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest } from '../../shared/enrollment.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';
import { nodeWebSocket, tempDir, transferCall } from '../helpers/harness.js';
import { freePort, startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { startAlternatingRelay, type AlternatingRelay } from '../helpers/tcp-relay.js';
import { refuseReplicaInserts, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';
import { chromiumAvailable, launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { actAs, buildRenderer, openDesk, registerKey, saveScreenshots } from '../helpers/desk-browser.js';

const UI_TIMEOUT = 30_000;

let cluster: PostgresCluster;
let balancer: AlternatingRelay;
let db: pg.Pool;
let buildDir: string;
let browser: Browser | undefined;
/** The one origin (the balancer) and each hub's own origin. */
let origin: string;
let originA: string;
let originB: string;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
const opened: ApproverBrowser[] = [];
let a: RunningCountersign;
let b: RunningCountersign;

/** Every hub's replica has applied what the team directory holds now. */
async function caughtUp(): Promise<void> {
  const seq = Math.max(a.team!.directory.appliedSeq, b.team!.directory.appliedSeq);
  await a.team!.directory.waitForSeq(seq);
  await b.team!.directory.waitForSeq(seq);
}

/**
 * A person at their own desk (their own context and virtual authenticator) at `at` (an origin):
 * added to the team directory on hub A, their key registered through the desk's own form, signed in.
 */
async function personAt(id: string, groups: string[], at: string): Promise<ApproverBrowser> {
  const { registration } = await a.team!.approvers.add({ id, displayName: `${id} Example`, groups }, { issuedBy: 'test-admin' });
  await caughtUp();
  const person = await openApproverBrowser(browser!);
  opened.push(person);
  await openDesk(person.page, { port: 0, uiSessionSecret: a.uiSessionSecret, deskUrl: at });
  await registerKey(person.page, id, registration!.code);
  await caughtUp(); // the key, registered on whichever hub finished it, on both replicas
  await actAs(person.page, id);
  return person;
}

/** The desk session cookie this person's context holds (HttpOnly: the test reads it from the context). */
async function sessionCookie(person: ApproverBrowser): Promise<string> {
  const cookie = (await person.context.cookies()).find((c) => c.name === DESK_SESSION_COOKIE);
  expect(cookie, 'the desk holds a session cookie').toBeDefined();
  return `${DESK_SESSION_COOKIE}=${cookie!.value}`;
}

interface Answer {
  status: number;
  json: Record<string, unknown>;
}

/** One desk call straight to the hub on `port` (Host: that hub's origin), with the desk link's secret and `cookie`. */
function call(method: 'GET' | 'POST', port: number, path: string, cookie: string, body?: unknown): Promise<Answer> {
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: {
          host: `localhost:${port}`,
          origin: `http://localhost:${port}`,
          authorization: `Bearer ${a.uiSessionSecret}`,
          accept: 'application/json',
          cookie,
          ...(text === undefined ? {} : { 'content-type': 'application/json' }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

const codeOf = (answer: Answer) => (answer.json.error as { code?: string } | undefined)?.code;

/** The session a cookie names on the hub at `port` (null: none). */
async function sessionOn(port: number, cookie: string): Promise<{ approverId: string; admin: boolean } | null> {
  const answer = await call('GET', port, '/api/session', cookie);
  expect(answer.status, JSON.stringify(answer.json)).toBe(200);
  return answer.json.session as { approverId: string; admin: boolean } | null;
}

/** A new agent key and its enrollment request file's text. */
async function agentRequest(agentId: string): Promise<{ key: AgentKey; file: string }> {
  const key = await importAgentKey(await generateAgentKey('ES256'));
  return { key, file: JSON.stringify(await createEnrollmentRequest(key, agentId, `${agentId} bot`)) };
}

/** Enroll from the request file in the open Agents view (file picker), scoped to the demo's finance vocabulary, with the admin's key tap. */
async function enrollInDesk(page: Page, agentId: string, file: string): Promise<void> {
  await page.getByTestId('tab-agents').click({ timeout: UI_TIMEOUT });
  await page.getByTestId('agents-view').waitFor({ timeout: UI_TIMEOUT });
  await page.getByTestId('enroll-drop-input').setInputFiles({
    name: `${agentId}.enrollment.json`,
    mimeType: 'application/json',
    buffer: Buffer.from(file),
  });
  await page.getByTestId('enroll-request').waitFor({ timeout: UI_TIMEOUT });
  await page.getByTestId('enroll-group').fill('finance-agents');
  await page.getByTestId('enroll-tools').fill('payments.transfer');
  await page.getByTestId('enroll-data-classes').fill('financial');
  await page.getByTestId('enroll-jurisdictions').fill('US');
  await page.getByTestId('enroll-submit').click();
}

/** An agent client connected to `hub` (no reconnects: a refusal is final). */
function agentOn(hub: RunningCountersign, agentId: string, key: AgentKey): AgentClient {
  const client = new AgentClient({ url: hub.url, agentId, key, webSocket: nodeWebSocket, reconnect: false });
  clients.push(client);
  return client;
}

/**
 * The team's audit records of one kind, parsed: those the leader sequenced (audit_log) and those
 * still waiting for it (audit_submissions), in order.
 */
async function teamRecords(kind: string): Promise<Array<Record<string, unknown>>> {
  const rows = await db.query<{ record: string }>(
    'SELECT record FROM (SELECT 0 AS part, seq AS n, record FROM audit_log WHERE kind = $1 UNION ALL SELECT 1, id, fields FROM audit_submissions WHERE kind = $1) AS t ORDER BY part, n',
    [kind],
  );
  return rows.rows.map((row) => JSON.parse(row.record) as Record<string, unknown>);
}

/** The team directory's row of an agent (status and owner), if any. */
async function teamAgent(agentId: string): Promise<{ status: string; owner: string } | undefined> {
  const rows = await db.query<{ status: string; row: string }>('SELECT status, row FROM directory_agents WHERE id = $1', [agentId]);
  const found = rows.rows[0];
  return found === undefined ? undefined : { status: found.status, owner: (JSON.parse(found.row) as { owner: string }).owner };
}

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error('Debian chromium is needed at /usr/bin/chromium');
  buildDir = tempDir('countersign-renderer-');
  [cluster] = await Promise.all([startPostgres(), buildRenderer(buildDir)]);
  db = testPool(cluster.url);
  const ports = { 'hub-a': await freePort(), 'hub-b': await freePort() };
  balancer = await startAlternatingRelay([ports['hub-a'], ports['hub-b']]);
  origin = `http://localhost:${balancer.port}`;
  originA = `http://localhost:${ports['hub-a']}`;
  originB = `http://localhost:${ports['hub-b']}`;
  const room = { dirs, hubs };
  // Each hub serves the one origin and each hub's own (a desk pinned to a hub, for the quorum).
  const settings = (port: number) => ({
    gateway: {
      port,
      allowedHosts: [`localhost:${balancer.port}`, `localhost:${ports['hub-a']}`, `localhost:${ports['hub-b']}`],
      extraOrigins: [origin, originA, originB],
    },
    risk: { enabled: false },
    approvals: { adminQuorum: 2 },
  });
  a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a', settings(ports['hub-a'])), undefined, buildDir);
  b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b', settings(ports['hub-b'])), undefined, buildDir);
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const person of opened) await person.close().catch(() => undefined);
  await browser?.close();
  for (const app of hubs.reverse()) await app.close().catch(() => undefined);
  await balancer?.close();
  await db?.end();
  cluster?.destroy();
  for (const dir of [...dirs, buildDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("the desk's admin actions on team hubs, in Chromium behind the alternating origin", () => {
  let root: ApproverBrowser;
  let enrolledKey: AgentKey;

  it('an admin enrolls an agent from its request file with a key tap, and the agent gets a decision on either hub at once', async () => {
    root = await personAt('root', [ADMIN_GROUP_NAME], origin);
    const { key, file } = await agentRequest('desk-bot');
    enrolledKey = key;
    await enrollInDesk(root.page, 'desk-bot', file);
    await root.page.locator('[data-testid="agent-card"][data-agent-id="desk-bot"]').waitFor({ timeout: UI_TIMEOUT });
    // One admin who can tap: the quorum of two does not apply yet, so the tap performed the action.
    expect(await teamAgent('desk-bot')).toEqual({ status: 'active', owner: 'root' });
    // No waiting for the replicas: the hub that did not take the enrollment knows the agent too.
    for (const hub of [a, b]) {
      const decided = await agentOn(hub, 'desk-bot', key).submit(transferCall('10.00'));
      expect(decided, hub.team!.hub).toMatchObject({ decision: 'allow' });
    }
    const actions = await teamRecords('admin.action');
    expect(actions.map((r) => [r.adminId, (r.action as { kind: string }).kind])).toEqual([['root', 'agent.enroll']]);
    await saveScreenshots(root.page, 'team-agents');
  }, 120_000);

  it('the admin revokes it with a key tap, and the agent is refused at its next call on either hub', async () => {
    const card = root.page.locator('[data-testid="agent-card"][data-agent-id="desk-bot"]');
    await card.getByTestId('revoke-reason').fill('laptop lost');
    await card.getByTestId('revoke-agent').click();
    await root.page.locator('[data-testid="agent-card"][data-agent-id="desk-bot"][data-status="revoked"]').waitFor({ timeout: UI_TIMEOUT });
    // The agent's connections made before the revocation, each on its hub.
    const [onA, onB] = clients.slice(-2) as [AgentClient, AgentClient];
    for (const agent of [onA, onB]) await expect(agent.submit(transferCall('11.00'))).rejects.toMatchObject({ code: 'agent_revoked' });
    // And a new connection to either hub.
    for (const hub of [a, b])
      await expect(agentOn(hub, 'desk-bot', enrolledKey).submit(transferCall('12.00'))).rejects.toMatchObject({ code: 'agent_revoked' });
  }, 120_000);

  it("a non-admin's session reaches no admin action on either hub", async () => {
    const alice = await personAt('alice', ['finance-approvers'], origin);
    // The desk offers no admin view.
    expect(await alice.page.getByTestId('tab-agents').count()).toBe(0);
    expect(await alice.page.getByTestId('tab-approvers').count()).toBe(0);
    const cookie = await sessionCookie(alice);
    const { file } = await agentRequest('sneaky-bot');
    const action = {
      kind: 'agent.enroll',
      request: JSON.parse(file) as unknown,
      scope: {
        owner: 'alice',
        group: 'finance-agents',
        allowedTools: ['payments.transfer'],
        dataClasses: ['financial'],
        jurisdictions: ['US'],
      },
    };
    for (const port of [a.port, b.port]) {
      expect(await sessionOn(port, cookie)).toMatchObject({ approverId: 'alice', admin: false });
      for (const [method, path, body] of [
        ['GET', '/api/ui/approver-directory', undefined],
        ['GET', '/api/ui/admin/proposals', undefined],
        ['POST', '/api/ui/admin/ceremony', { adminId: 'alice', action }],
      ] as const) {
        const answer = await call(method, port, path, cookie, body);
        expect([answer.status, codeOf(answer)], `${port} ${path}`).toEqual([403, 'admin_required']);
      }
      // Naming an admin instead of herself is refused too.
      const posing = await call('POST', port, '/api/ui/admin/ceremony', cookie, { adminId: 'root', action });
      expect([posing.status, codeOf(posing)]).toEqual([403, 'approver_mismatch']);
    }
    expect(await teamAgent('sneaky-bot')).toBeUndefined();
  }, 120_000);

  it("disabling a person's key in the Approvers view ends their session on both hubs", async () => {
    const alice = opened.find((p) => p !== root)!;
    const cookie = await sessionCookie(alice);
    const { page } = root;
    await page.getByTestId('tab-approvers').click({ timeout: UI_TIMEOUT });
    const card = page.locator('[data-testid="approver-card"][data-approver-id="alice"]');
    await card.getByTestId('approver-key').first().waitFor({ timeout: UI_TIMEOUT });
    await saveScreenshots(page, 'team-approvers');
    await card.getByTestId('disable-key').click();
    await card.locator('[data-testid="approver-key"][data-status="removed"]').waitFor({ timeout: UI_TIMEOUT });
    for (const port of [a.port, b.port]) expect(await sessionOn(port, cookie)).toBeNull();
    expect((await db.query("SELECT id_hash FROM desk_sessions WHERE approver_id = 'alice'")).rows).toEqual([]);
    // Her desk, opened again (the link's secret lives only in page memory), asks her to sign in.
    await alice.page.goto('about:blank');
    await openDesk(alice.page, { port: 0, uiSessionSecret: a.uiSessionSecret, deskUrl: origin });
    await alice.page.getByTestId('desk-sign-in').waitFor({ timeout: UI_TIMEOUT });
  }, 120_000);

  it('with the two-admin quorum, admin 1 proposes on hub A, admin 2 confirms on hub B with their own key, and it takes effect once', async () => {
    // A second admin who can tap turns the quorum on.
    const root2 = await personAt('root2', [ADMIN_GROUP_NAME], originB);
    // root's key lives in root's context: root's desk moves to hub A's own origin.
    await root.page.goto('about:blank');
    await openDesk(root.page, { port: 0, uiSessionSecret: a.uiSessionSecret, deskUrl: originA });
    await actAs(root.page, 'root');

    const { key, file } = await agentRequest('quorum-bot');
    await enrollInDesk(root.page, 'quorum-bot', file);
    const proposed = root.page.getByTestId('enroll-status').and(root.page.locator('[data-state="done"]'));
    await proposed.waitFor({ timeout: UI_TIMEOUT });
    expect(await proposed.innerText()).toContain('a second admin confirms it');
    expect(await teamAgent('quorum-bot')).toBeUndefined();

    // Hub B's desk is told (the adminProposal push event) and root2 confirms there with a key tap.
    await root2.page.getByTestId('tab-agents').click({ timeout: UI_TIMEOUT });
    const waiting = root2.page.locator('[data-testid="admin-proposal"][data-proposed-by="root"]');
    await waiting.waitFor({ timeout: UI_TIMEOUT });
    expect(await waiting.innerText()).toContain('Enroll agent quorum-bot');
    await waiting.getByTestId('admin-proposal-confirm').click();
    await root2.page.locator('[data-testid="agent-card"][data-agent-id="quorum-bot"]').waitFor({ timeout: UI_TIMEOUT });
    // Root's desk on hub A follows: the proposal leaves its list.
    await root.page.getByTestId('admin-proposals-empty').waitFor({ timeout: UI_TIMEOUT });

    // Once: one agent, one executed proposal, one admin.action record naming both admins.
    expect(await teamAgent('quorum-bot')).toEqual({ status: 'active', owner: 'root' });
    expect((await db.query('SELECT state, proposed_by, decided_by, proposed_on_hub, decided_on_hub FROM admin_proposals')).rows).toEqual([
      { state: 'executed', proposed_by: 'root', decided_by: 'root2', proposed_on_hub: 'hub-a', decided_on_hub: 'hub-b' },
    ]);
    const enrolled = (await teamRecords('admin.action')).filter(
      (r) => (r.action as { id?: string; request?: unknown }).request !== undefined,
    );
    expect(enrolled.map((r) => [r.adminId, (r.confirmedBy as { adminId: string } | undefined)?.adminId])).toEqual([
      ['root', undefined],
      ['root', 'root2'],
    ]);
    for (const hub of [a, b])
      await expect(agentOn(hub, 'quorum-bot', key).submit(transferCall('13.00'))).resolves.toMatchObject({ decision: 'allow' });
    for (const person of opened) expect(person.problems, 'console errors').toEqual([]);
  }, 120_000);
  it("the quorum is the team's: while hub B's replica lags behind a second admin, an admin's tap on hub B only proposes", async () => {
    // root2 leaves the admins and comes back on hub A while hub B's replica cannot apply it.
    await a.team!.approvers.setGroups('root2', ['finance-approvers']);
    await caughtUp();
    const release = refuseReplicaInserts(b, 'approvers');
    try {
      await a.team!.approvers.setGroups('root2', [ADMIN_GROUP_NAME]);
      expect(b.approvers.get('root2').groups).not.toContain(ADMIN_GROUP_NAME); // hub B still counts one admin
      // root's desk at hub B's own origin (root's session is the team's: still signed in).
      await root.page.goto('about:blank');
      await openDesk(root.page, { port: 0, uiSessionSecret: a.uiSessionSecret, deskUrl: originB });
      await actAs(root.page, 'root');
      const { file } = await agentRequest('lag-bot');
      await enrollInDesk(root.page, 'lag-bot', file);
      const status = root.page.getByTestId('enroll-status').and(root.page.locator('[data-state="done"], [data-code]'));
      await status.waitFor({ timeout: UI_TIMEOUT });
      // Before the fix hub B counted the admins in its replica and performed the action on one tap.
      expect(await status.innerText()).toContain('a second admin confirms it');
      expect(await teamAgent('lag-bot')).toBeUndefined();
      expect((await db.query("SELECT proposed_by, proposed_on_hub FROM admin_proposals WHERE state = 'pending'")).rows).toEqual([
        { proposed_by: 'root', proposed_on_hub: 'hub-b' },
      ]);
    } finally {
      release();
    }
    await caughtUp();
  }, 120_000);

  it("a confirmation on hub B checks the proposer in the team directory: demoted on hub A while B's replica lags, their proposal is not performed", async () => {
    const proposal = (await db.query<{ id: string }>("SELECT id FROM admin_proposals WHERE state = 'pending'")).rows[0]!.id;
    const root2 = opened[2]!; // root, alice, root2
    await root2.page.goto('about:blank');
    await openDesk(root2.page, { port: 0, uiSessionSecret: a.uiSessionSecret, deskUrl: originB });
    await actAs(root2.page, 'root2');
    await root2.page.getByTestId('tab-agents').click({ timeout: UI_TIMEOUT });
    const waiting = root2.page.locator(`[data-testid="admin-proposal"][data-proposal-id="${proposal}"]`);
    await waiting.waitFor({ timeout: UI_TIMEOUT });
    const release = refuseReplicaInserts(b, 'approvers');
    try {
      await a.team!.approvers.setGroups('root', ['finance-approvers']);
      expect(b.approvers.get('root').groups).toContain(ADMIN_GROUP_NAME); // hub B's replica still says admin
      await waiting.getByTestId('admin-proposal-confirm').click();
      const refused = waiting.getByTestId('admin-proposal-status').and(root2.page.locator('[data-code]'));
      // Refused on the card, or (before the fix) performed: the proposal leaves the list.
      await Promise.race([refused.waitFor({ timeout: UI_TIMEOUT }), waiting.waitFor({ state: 'detached', timeout: UI_TIMEOUT })]);
      // Before the fix hub B read the proposer in its replica and enrolled the agent.
      expect(await teamAgent('lag-bot')).toBeUndefined();
      expect(await refused.getAttribute('data-code')).toBe('approver_not_eligible');
      expect((await db.query('SELECT state FROM admin_proposals WHERE id = $1', [proposal])).rows).toEqual([{ state: 'pending' }]);
    } finally {
      release();
    }
  }, 120_000);
});
