/**
 * The README's team-mode walkthrough, steps 3–5, done as people do them, in a real browser: two
 * hubs on one real PostgreSQL 15 cluster, both on https://countersign.test over TLS with their
 * development certificates, each listing the other's desk origin (`--allowed-origin`); alice, bob
 * and dana and the agent added once in the team directory (step 2, the path of
 * `countersign approvers|agents ... --database`); the agent on hub B with hub B's certificate
 * pinned (as examples/team/transfer-agent.ts connects) asks to pay 48,000.00 USD and is held.
 * Then Alice, in her own Chromium context with her own CDP virtual authenticator, opens hub A's
 * desk, registers her key with her code, signs in and approves (1 of 2); Bob does the same on hub
 * B's desk and completes the quorum. The agent on hub B gets the token, which verifies as a tool
 * server checks it: hub B's signing key (the hub where the quorum completed), the call's digest,
 * both approvers' assertions against hub A's published directory (both desks' origins in it).
 */
import { rmSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import type { RunningCountersign } from '../../main/core/app.js';
import { readTlsTrust, tlsWebSocketFactory } from '../../main/mcp/tls-trust.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { satisfiesQuorum, verifyApprovals } from '../../shared/verify-approvals.js';
import { tempDir, transferCall } from '../helpers/harness.js';
import { freePort, startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { startTeamHub, teamHubDir } from '../helpers/team-hubs.js';
import { chromiumAvailable, launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import { actAs, buildRenderer, openDesk, registerKey, saveScreenshots } from '../helpers/desk-browser.js';

const HOST = 'countersign.test';
const UI_TIMEOUT = 20_000;
/** Well under the notifier's 30 s fallback refresh: the count must follow the approver's own tap, not that timer. */
const OWN_DECISION_SHOWN = 10_000;
const CALL = transferCall('48000.00', 'Northwind Traders');

let cluster: PostgresCluster;
let db: pg.Pool;
let buildDir: string;
let browser: Browser | undefined;
let agent: AgentClient | undefined;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const opened: ApproverBrowser[] = [];
const codes = new Map<string, string>();
let a: RunningCountersign;
let b: RunningCountersign;

/** The agent resolves countersign.test to loopback, as the walkthrough's /etc/hosts line does (Node asks with `all: true` when it races address families). */
const toLoopback: LookupFunction = (_hostname, options, callback) => {
  if ((options as { all?: boolean }).all)
    (callback as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
};

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error('Debian chromium is needed at /usr/bin/chromium');
  buildDir = tempDir('countersign-renderer-');
  [cluster] = await Promise.all([startPostgres(), buildRenderer(buildDir)]);
  db = testPool(cluster.url);
  // Step 1: two hubs on one database, ports known up front so each lists the other's desk origin.
  const ports = { 'hub-a': await freePort(), 'hub-b': await freePort() };
  const origin = (port: number) => `https://${HOST}:${port}`;
  const room = { dirs, hubs };
  for (const [name, port] of Object.entries(ports)) {
    const other = name === 'hub-a' ? ports['hub-b'] : ports['hub-a'];
    const gateway = { port, publicHost: HOST, tls: {}, extraOrigins: [origin(other)] };
    await startTeamHub(room, name, cluster.url, teamHubDir(room, name, { gateway }), undefined, buildDir);
  }
  [a, b] = hubs as [RunningCountersign, RunningCountersign];
  // Step 2: people and their codes, once, in the team directory (through hub A's data directory).
  for (const person of ['alice', 'bob']) await a.team!.approvers.add({ id: person, displayName: person, groups: ['finance-approvers'] });
  // dana, the agent's owner, is the team's admin: with an admin in the directory no desk offers the first-run setup.
  await a.team!.approvers.add({ id: 'dana', displayName: 'dana', groups: ['finance-approvers', ADMIN_GROUP_NAME] });
  for (const person of ['alice', 'bob']) codes.set(person, (await a.team!.approvers.issueRegistrationCode(person, 'cli')).code);
  browser = await launchChromium([
    `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${a.edge.tls!.spkiSha256},${b.edge.tls!.spkiSha256}`,
  ]);
}, 180_000);

afterAll(async () => {
  agent?.close();
  for (const ab of opened) await ab.close().catch(() => undefined);
  await browser?.close();
  for (const hub of hubs.reverse()) await hub.close().catch(() => undefined);
  await db?.end();
  cluster?.destroy();
  for (const dir of [...dirs, buildDir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** Step 4 for one person: open the hub's desk in their own browser, register their key with their code, sign in with it. */
async function signInAt(hub: RunningCountersign, person: string): Promise<ApproverBrowser> {
  const ab = await openApproverBrowser(browser!);
  opened.push(ab);
  await openDesk(ab.page, hub);
  expect(new URL(ab.page.url()).origin).toBe(hub.deskUrl);
  await registerKey(ab.page, person, codes.get(person)!);
  await actAs(ab.page, person);
  expect((await ab.authenticator.credentials()).map((c) => c.rpId)).toEqual([HOST]);
  expect(await ab.page.getByTestId('first-run-banner').count()).toBe(0); // the team has an admin (step 2)
  return ab;
}

/** The request's card in the desk's pending list (after an explicit refresh). */
async function card(page: Page, requestId: string): Promise<Locator> {
  await page.getByTestId('refresh-pending').click();
  const locator = page.locator(`[data-testid="pending-request"][data-request-id="${requestId}"]`);
  await locator.waitFor({ timeout: UI_TIMEOUT });
  return locator;
}

/** The ceremony's outcome panel for `requestId`, or the error panel, whichever shows first. */
async function outcome(page: Page, requestId: string): Promise<string> {
  const panel = page.locator(`[data-testid="ceremony-outcome"][data-request-id="${requestId}"]`);
  const error = page.getByTestId('approval-error');
  await panel.or(error).first().waitFor({ timeout: UI_TIMEOUT });
  if (await error.isVisible()) return `error ${await error.getAttribute('data-code')}: ${await error.innerText()}`;
  return (await panel.getAttribute('data-state')) ?? '';
}

describe('the team-mode walkthrough: two hubs, two desks, one agent, 48,000 USD (Chromium)', () => {
  it('Alice approves on hub A’s desk, Bob on hub B’s, and the agent on hub B gets a token that verifies', async () => {
    // Step 2 (the agent): enrolled once in the team directory, owned by dana.
    const privateJwk = await generateAgentKey('EdDSA');
    const key = await importAgentKey(privateJwk);
    const enrollment = await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot', 'finance-bot'));
    await a.team!.agents.enroll(enrollment, {
      owner: 'dana',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US'],
    });
    await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);

    // Step 3: the agent on hub B, its certificate pinned, is held.
    expect(b.url).toBe(`wss://${HOST}:${b.port}`);
    agent = new AgentClient({
      url: b.url,
      agentId: 'finance-bot',
      key,
      webSocket: tlsWebSocketFactory(readTlsTrust({ fingerprint256: b.edge.tls!.fingerprint256 }), { lookup: toLoopback }),
      reconnect: false,
    });
    await agent.connect();
    const held = await agent.submit(CALL);
    expect(held).toMatchObject({ decision: 'pending', approval: { approvals: 2, groups: [['finance-approvers']] } });
    expect(held.reasons.join(' ')).toContain('need two finance approvers');
    // The agent waits through both people's registration, sign-in and approval (the test's budget below).
    const decided = agent.waitForDecision(held.requestId, { timeoutMs: 240_000 });
    decided.catch(() => undefined); // awaited below; never an unhandled rejection

    // Step 4: Alice on hub A's desk, Bob on hub B's, each in their own browser, at the same time.
    const [alice, bob] = await Promise.all([signInAt(a, 'alice'), signInAt(b, 'bob')]);

    // Step 5: both see the transfer; Alice approves on hub A (1 of 2).
    const aliceCard = await card(alice.page, held.requestId);
    const shown = await aliceCard.innerText();
    for (const expected of ['finance-bot', 'payments.transfer', '48000.00', 'USD', 'Northwind Traders', 'need two finance approvers'])
      expect(shown, expected).toContain(expected);
    expect(await aliceCard.getByTestId('approvals-so-far').innerText()).toBe('0 of 2');
    const aliceCount = alice.page.getByTestId('desk-pending-count');
    await aliceCount.filter({ hasText: '1 waiting for you' }).waitFor({ timeout: UI_TIMEOUT });
    await aliceCard.getByTestId('approve').click();
    expect(await outcome(alice.page, held.requestId)).toBe('pending');
    await aliceCard.getByTestId('approvals-so-far').filter({ hasText: '1 of 2' }).waitFor({ timeout: UI_TIMEOUT });
    // Her card says she approved it and offers nothing more; her count drops at once (a partial
    // approval pushes no event, so only her own tap can tell the header).
    await aliceCard.getByTestId('already-decided').waitFor({ timeout: UI_TIMEOUT });
    expect(await aliceCard.getByTestId('already-decided').getAttribute('data-verdict')).toBe('approve');
    expect(await aliceCard.getByTestId('already-decided').innerText()).toMatch(/^approved by you at /);
    expect(await aliceCard.getByTestId('approve').count()).toBe(0);
    expect(await aliceCard.getByTestId('deny').count()).toBe(0);
    await aliceCount.filter({ hasText: 'Nothing waits for you' }).waitFor({ timeout: OWN_DECISION_SHOWN });
    await saveScreenshots(alice.page, 'team-walkthrough-alice-hub-a');

    // Bob's desk on hub B reads the team database: Alice's approval is there.
    const bobCard = await card(bob.page, held.requestId);
    expect(await bobCard.getByTestId('approvals-so-far').innerText()).toBe('1 of 2');
    expect(await bobCard.getByTestId('approval-entries').innerText()).toContain('alice');
    await bobCard.getByTestId('approve').click();
    expect(await outcome(bob.page, held.requestId)).toBe('approved');
    await saveScreenshots(bob.page, 'team-walkthrough-bob-hub-b');

    // The agent on hub B has its token.
    const final = await decided;
    expect(final).toMatchObject({ requestId: held.requestId, decision: 'allow', state: 'approved' });

    // A tool server's checks: hub B signed it (its keys alone), for exactly this call, with both
    // approvers' assertions verifying against hub A's published directory (both desks' origins).
    const claims = await verifyApprovalToken(final.token ?? '', {
      call: { tool: CALL.tool, params: CALL.params },
      audience: 'payments-service',
      keys: { keys: b.signingKeys.published('test', Date.now()) },
      jtiStore: new MemoryJtiStore(),
      domain: 'test',
    });
    expect(claims.decision).toMatchObject({ id: held.requestId, mode: 'approved' });
    const directory = a.approvers.published();
    expect([...directory.origins].sort()).toEqual([a.deskUrl, b.deskUrl].sort());
    const set = await verifyApprovals(claims.approvals, {
      directory,
      requestId: claims.decision.id,
      callSha256: claims.call_sha256,
      policyHash: claims.decision.policy_hash,
    });
    expect(set.approvers.map((x) => x.approverId).sort()).toEqual(['alice', 'bob']);
    expect(set.approvers.every((x) => x.userVerified)).toBe(true);
    expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })).toBe(true);

    // The team database: one token, each approval recorded on the hub it was tapped on, decided on B.
    const request = await db.query<{ state: string; decided_by_hub: string }>('SELECT state, decided_by_hub FROM requests WHERE id = $1', [
      held.requestId,
    ]);
    expect(request.rows).toEqual([{ state: 'approved', decided_by_hub: 'hub-b' }]);
    const approvals = await db.query<{ approver_id: string; hub: string }>(
      'SELECT approver_id, hub FROM approvals WHERE request_id = $1 ORDER BY approver_id',
      [held.requestId],
    );
    expect(approvals.rows).toEqual([
      { approver_id: 'alice', hub: 'hub-a' },
      { approver_id: 'bob', hub: 'hub-b' },
    ]);
    const tokens = await db.query<{ token: string }>('SELECT token FROM tokens WHERE request_id = $1', [held.requestId]);
    expect(tokens.rows.map((r) => r.token)).toEqual([final.token]);
    // Both approvals in the team audit log (sequenced by the leader, or still waiting for it: one snapshot reads both).
    const given = await db.query<{ record: string }>(
      `SELECT fields AS record FROM audit_submissions WHERE request_id = $1 AND kind = 'approval.given'
       UNION ALL SELECT record FROM audit_log WHERE request_id = $1 AND kind = 'approval.given'`,
      [held.requestId],
    );
    expect(given.rows.map((r) => (JSON.parse(r.record) as { approverId: string }).approverId).sort()).toEqual(['alice', 'bob']);
    expect([...alice.problems, ...bob.problems]).toEqual([]);
    // Two people's registration, sign-in and approval in Chromium: about 15 s alone, over 20 s
    // beside another test file at load 20; with the pages CPU-throttled 4x (CDP), 56 s at load 18
    // and 100 s to Bob's approval at load 22-25 (the two sign-ins alone 78 s).
  }, 300_000);
});
