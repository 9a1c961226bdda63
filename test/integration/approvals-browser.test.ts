/**
 * Human approvals through the real renderer in a real browser: Debian Chromium (playwright-core)
 * with one CDP virtual authenticator per approver, the renderer built by Vite and served by the
 * core at http://localhost:<port>/ui/, in the test key domain (production refuses Chromium's virtual authenticator). Approvers choose themselves,
 * register a security key with the single-use registration code an admin issued, sign in with it, and approve / deny through the UI; the agent (a real SDK client over
 * WebSocket) gets its decision, and the co-signed token verifies as a tool server would check it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { Browser, Locator, Page } from 'playwright-core';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { CHROMIUM_VIRTUAL_AAGUID, launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { satisfiesQuorum, verifyApprovals } from '../../shared/verify-approvals.js';
import { approverDirectorySchema } from '../../shared/approvals.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { inProcessBridge } from '../../main/core/ui/bridge-routes.js';
import { windowCaller } from '../../main/core/ui/bridge-caller.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';
import { actAs, buildRenderer, holdNextRead } from '../helpers/desk-browser.js';
import type { AgentClient } from '../../shared/agent-client.js';
import type { DecisionResult } from '../../shared/protocol.js';

const PAYEE = 'Northwind Traders';
const UI_TIMEOUT = 10_000;

let h: Harness;
let buildDir: string;
let browser: Browser | undefined;
let agent: AgentClient;
const approverBrowsers = new Map<string, Promise<ApproverBrowser>>();

async function json(path: string): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`);
  expect(res.status, path).toBe(200);
  return res.json();
}

/** A fresh browser context + authenticator on the Approvals view, deciding as `id`. */
async function openAs(id: string): Promise<ApproverBrowser> {
  if (browser === undefined) throw new Error('the browser is not running');
  const ab = await openApproverBrowser(browser);
  const { page } = ab;
  await page.goto(`http://localhost:${h.app.port}/ui/#secret=${h.app.uiSessionSecret}`);
  // The secret is taken out of the address bar at once.
  expect(page.url()).toBe(`http://localhost:${h.app.port}/ui/`);
  await page.getByTestId('tab-approvals').click();
  await page.getByTestId('approver-select').selectOption(id);
  return ab;
}

/** Type a registration code into the UI and press "Register a security key". */
async function registerWith(page: Page, code: string): Promise<void> {
  await page.getByTestId('registration-code').fill(code);
  await page.getByTestId('register-key').click();
}

/** The registration result or the error panel, whichever shows first. */
async function registration(page: Page): Promise<{ kind: 'registered' | 'error'; code: string; text: string }> {
  const registered = page.getByTestId('registration-result');
  const error = page.getByTestId('approval-error');
  await registered.or(error).first().waitFor({ timeout: UI_TIMEOUT });
  if (await error.isVisible()) return { kind: 'error', code: (await error.getAttribute('data-code')) ?? '', text: await error.innerText() };
  return { kind: 'registered', code: '', text: await registered.innerText() };
}

/** One browser context + authenticator per approver, opened on the UI and registered once. */
function approver(id: string): Promise<ApproverBrowser> {
  let opened = approverBrowsers.get(id);
  if (opened === undefined) {
    opened = (async () => {
      const ab = await openAs(id);
      const { page } = ab;
      // An admin issues the single-use registration code (server side here); the approver types it in.
      expect(await page.getByTestId('register-key').isDisabled()).toBe(true); // no code, no registration
      await registerWith(page, h.app.approvers.issueRegistrationCode(id, 'test').code);
      const result = page.getByTestId('registration-result');
      await result.waitFor({ timeout: UI_TIMEOUT });
      expect(await result.getAttribute('data-aaguid')).toBe(CHROMIUM_VIRTUAL_AAGUID);
      const credentialId = await result.getAttribute('data-credential-id');
      expect(h.app.approvers.credentialsOf(id).map((c) => c.credentialId)).toEqual([credentialId]);
      expect(await ab.authenticator.credentials()).toHaveLength(1);
      expect(await page.getByTestId('registration-code').inputValue()).toBe(''); // spent: cleared
      // With the key registered, the approver signs in with it: the desk now decides as them only.
      await actAs(page, id);
      expect(await page.getByTestId('approver-select').isDisabled()).toBe(true);
      return ab;
    })();
    approverBrowsers.set(id, opened);
  }
  return opened;
}

/** The request's card in the pending list (after an explicit refresh). */
async function card(page: Page, requestId: string): Promise<Locator> {
  await page.getByTestId('refresh-pending').click();
  const locator = page.locator(`[data-testid="pending-request"][data-request-id="${requestId}"]`);
  await locator.waitFor({ timeout: UI_TIMEOUT });
  return locator;
}

/** The outcome panel for `requestId`, or the error panel, whichever shows first. */
async function result(
  page: Page,
  requestId: string,
): Promise<{ kind: 'outcome'; state: string; text: string } | { kind: 'error'; code: string; text: string }> {
  const outcome = page.locator(`[data-testid="ceremony-outcome"][data-request-id="${requestId}"]`);
  const error = page.getByTestId('approval-error');
  await outcome.or(error).first().waitFor({ timeout: UI_TIMEOUT });
  if (await error.isVisible()) return { kind: 'error', code: (await error.getAttribute('data-code')) ?? '', text: await error.innerText() };
  return { kind: 'outcome', state: (await outcome.getAttribute('data-state')) ?? '', text: await outcome.innerText() };
}

async function submitTransfer(amount: string) {
  const call = transferCall(amount, PAYEE);
  const pending = await agent.submit(call);
  expect(pending).toMatchObject({ decision: 'pending', state: 'pending' });
  const decided = agent.waitForDecision(pending.requestId, { timeoutMs: 20_000 });
  decided.catch(() => undefined); // awaited by the test; never an unhandled rejection
  return { call, requestId: pending.requestId, decided };
}

beforeAll(async () => {
  buildDir = tempDir('countersign-renderer-');
  await buildRenderer(buildDir);
  // The test key domain: production refuses Chromium's virtual authenticator (a known software
  // test double); the approvers themselves are ordinary, non-virtual approvers.
  h = await startHarness({ config: { domain: 'test' }, start: { rendererDir: buildDir } });
  expect(h.app.config.domain).toBe('test');
  h.app.approvers.addApprover({ id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] });
  h.app.approvers.addApprover({ id: 'bob', displayName: 'Bob', groups: ['finance-approvers'] });
  // The finance agent's owner is an approver too, in the very group the request needs.
  h.app.approvers.addApprover({ id: 'dana@example.com', displayName: 'Dana', groups: ['finance-approvers'] });
  const key = await h.enroll('finance-bot');
  // The agent's calls wait up to 30 s for the core's answer (the client's 5 s default ran out under
  // CPU load: 'no answer to call.submit within 5000 ms'), as desk-queue-browser's agents do.
  agent = h.client('finance-bot', key, { requestTimeoutMs: 30_000 });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  for (const opened of approverBrowsers.values())
    await opened.then(
      (ab) => ab.close(),
      () => undefined,
    );
  await browser?.close();
  await h?.close();
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
}, 30_000);

// Each test that first meets a person opens their browser context, loads the desk, registers their
// key and signs them in (approver()): the first test does that for two people before it decides.
// Measured at load 21 on this 2-core machine: 21.5 s for the first test, of which 14 s were the two
// contexts (5 s), the page loads (3 s) and the desk's first render (5 s); a slow CI machine needs
// more than vitest's 20 s default for that honest work, so these tests have their own timeout.
describe('approvals in the browser (Chromium virtual authenticators)', { timeout: 120_000 }, () => {
  it('two finance approvers register keys and approve a 48,000.00 USD transfer; the co-signed token verifies', async () => {
    const [alice, bob] = await Promise.all([approver('alice'), approver('bob')]);
    const { call, requestId, decided } = await submitTransfer('48000.00');
    const view = await h.app.approvals.getPending(requestId);

    // Alice sees everything about the call before she decides.
    const aliceCard = await card(alice.page, requestId);
    const shown = await aliceCard.innerText();
    for (const expected of [
      'finance-bot',
      'dana@example.com',
      'payments.transfer',
      '48000.00',
      'USD',
      PAYEE,
      'test',
      'financial',
      'US',
      'user',
      'finance-approvers',
      ...view.reasons,
    ]) {
      expect(shown, expected).toContain(expected);
    }
    for (const [name, value] of Object.entries(call.params)) {
      expect(await aliceCard.locator(`[data-testid="param"][data-param="${name}"]`).innerText(), name).toContain(value);
    }
    expect(await aliceCard.getByTestId('request-tool').innerText()).toBe('payments.transfer');
    expect(await aliceCard.getByTestId('request-agent').innerText()).toBe('finance-bot');
    expect(await aliceCard.getByTestId('request-owner').innerText()).toBe('dana@example.com');
    expect(await aliceCard.getByTestId('request-data-class').innerText()).toBe('financial');
    expect(await aliceCard.getByTestId('request-jurisdiction').innerText()).toBe('US');
    expect(await aliceCard.getByTestId('request-provenance').innerText()).toBe('user');
    // The risk score and each factor's sentence, as the scorer recorded them.
    expect(await aliceCard.getByTestId('risk-score').innerText()).toBe('10');
    expect(await aliceCard.locator('[data-factor="baseline_learning"]').innerText()).toContain('its baseline is learned from the first 20');
    expect(await aliceCard.getByTestId('request-reasons').locator('li').allInnerTexts()).toEqual(view.reasons);
    expect(await aliceCard.getByTestId('required-groups').innerText()).toContain('finance-approvers');
    expect(await aliceCard.getByTestId('approvals-needed').innerText()).toBe('2');
    expect(await aliceCard.getByTestId('approvals-so-far').innerText()).toBe('0 of 2');
    expect(await aliceCard.getByTestId('request-expiry').innerText()).toMatch(/min .* left|s left/);

    await aliceCard.getByTestId('approve').click();
    expect(await result(alice.page, requestId)).toMatchObject({ kind: 'outcome', state: 'pending' });

    // Bob sees Alice's approval, then completes the quorum.
    const bobCard = await card(bob.page, requestId);
    // Bob's open desk learns of Alice's approval by a push event and reloads: wait for it, never race it.
    const bobSoFar = bobCard.getByTestId('approvals-so-far');
    await bobSoFar.filter({ hasText: '1 of 2' }).waitFor({ timeout: 15_000 });
    expect(await bobSoFar.innerText()).toBe('1 of 2');
    expect(await bobCard.getByTestId('approval-entries').innerText()).toContain('Alice');
    await bobCard.getByTestId('approve').click();
    const bobResult = await result(bob.page, requestId);
    expect(bobResult).toMatchObject({ kind: 'outcome', state: 'approved' });
    expect(bobResult.text).toContain('approved by Alice and Bob');

    const final: DecisionResult = await decided;
    expect(final).toMatchObject({ requestId, state: 'approved', decision: 'allow' });
    expect(final.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);

    // The tool server's checks: the token itself, then each approver's assertion and its own quorum rule.
    const jwks = (await json('/.well-known/jwks.json')) as { keys: never[] };
    const claims = await verifyApprovalToken(final.token ?? '', {
      call,
      audience: 'payments-service',
      keys: jwks,
      jtiStore: new MemoryJtiStore(),
      domain: 'test',
    });
    expect(claims.decision).toMatchObject({ id: requestId, mode: 'approved' });
    const directory = approverDirectorySchema.parse(await json('/.well-known/countersign-approvers.json'));
    expect(directory.origins).toEqual([`http://localhost:${h.app.port}`]);
    const set = await verifyApprovals(claims.approvals, {
      directory,
      callSha256: claims.call_sha256,
      requestId: claims.decision.id,
      policyHash: claims.decision.policy_hash,
    });
    expect(set.approvers.map((a) => a.approverId).sort()).toEqual(['alice', 'bob']);
    expect(set.approvers.every((a) => a.userVerified)).toBe(true);
    expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })).toBe(true);
    expect(satisfiesQuorum(set, { approvals: 3, groups: [['finance-approvers']] })).toBe(false);

    // The request has left the pending list in both pages.
    await alice.page.getByTestId('refresh-pending').click();
    await alice.page
      .locator(`[data-testid="pending-request"][data-request-id="${requestId}"]`)
      .waitFor({ state: 'detached', timeout: UI_TIMEOUT });
    expect(h.app.audit.verify()).toMatchObject({ ok: true });
    expect([...alice.problems, ...bob.problems]).toEqual([]);
  });

  it('an approver denies with a reason; the agent gets "denied" with that reason', async () => {
    const alice = await approver('alice');
    const { requestId, decided } = await submitTransfer('52000.00');
    const reason = 'Northwind is not on the vendor list';

    const aliceCard = await card(alice.page, requestId);
    await aliceCard.getByTestId('deny').click();
    expect(await aliceCard.getByTestId('confirm-deny').isDisabled()).toBe(true); // a reason is required
    await aliceCard.getByTestId('deny-reason').fill(reason);
    await aliceCard.getByTestId('confirm-deny').click();
    const shown = await result(alice.page, requestId);
    expect(shown).toMatchObject({ kind: 'outcome', state: 'denied' });
    expect(shown.text).toContain(reason);

    const final = await decided;
    expect(final).toMatchObject({ requestId, state: 'denied', decision: 'deny' });
    expect(final.token).toBeUndefined();
    expect(final.reasons).toContain(`denied by Alice: ${reason}`);
    expect(await h.app.approvals.approvalsOf(requestId)).toMatchObject([{ approverId: 'alice', verdict: 'deny', reason }]);
    expect(alice.problems).toEqual([]);
  });

  it("the agent's owner cannot approve: the UI shows approver_conflicted and nothing is recorded", async () => {
    const dana = await approver('dana@example.com');
    const { requestId } = await submitTransfer('61000.00');

    const danaCard = await card(dana.page, requestId);
    expect(await danaCard.getByTestId('conflict-note').isVisible()).toBe(true);
    await danaCard.getByTestId('approve').click();
    const shown = await result(dana.page, requestId);
    expect(shown).toMatchObject({ kind: 'error', code: 'approver_conflicted' });
    expect(shown.text).toContain('[approver_conflicted]');

    expect(await h.app.approvals.approvalsOf(requestId)).toEqual([]);
    expect(await h.app.approvals.getPending(requestId)).toMatchObject({ state: 'pending', approvals: [] });
    expect(await (await card(dana.page, requestId)).getByTestId('approvals-so-far').innerText()).toBe('0 of 2');

    // The same refusal through the bridge's HTTP client and through the core's UI service (what
    // the Electron IPC handlers call), with the same code.
    // Both act with Dana's session (the one her key opened in the browser: Playwright can read the
    // HttpOnly cookie the page cannot), so the refusal comes from the approval rules, not sign-in.
    const danaCookie = (await dana.page.context().cookies()).find((c) => c.name === DESK_SESSION_COOKIE)!;
    expect(danaCookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    const http = createHttpBridge({
      baseUrl: `http://127.0.0.1:${h.app.port}`,
      sessionSecret: h.app.uiSessionSecret,
      sessionCookie: danaCookie.value,
    });
    const window = windowCaller();
    window.keep(danaCookie.value, 60);
    const ui = inProcessBridge(h.app.ui, h.app.bridgeEvents, window);
    for (const bridge of [http, ui]) {
      expect((await bridge.listApprovers()).approvers.map((a) => a.id)).toEqual(['alice', 'bob', 'dana@example.com']);
      expect((await bridge.listPendingApprovals()).pending.find((p) => p.requestId === requestId)).toMatchObject({
        agentOwner: 'dana@example.com',
        approvals: [],
      });
      await expect(bridge.startApprovalCeremony(requestId, 'dana@example.com', 'approve')).rejects.toMatchObject({
        code: 'approver_conflicted',
      });
      // Anyone but Dana is refused before the approval service is asked.
      await expect(bridge.startApprovalCeremony(requestId, 'nobody', 'approve')).rejects.toMatchObject({ code: 'approver_mismatch' });
      await expect(bridge.startApprovalCeremony('..', 'alice', 'approve')).rejects.toMatchObject({ code: 'schema_invalid' }); // never a dot path segment
    }
    await expect(ui.startApprovalCeremony(requestId, 'alice', 'maybe' as 'approve')).rejects.toMatchObject({ code: 'schema_invalid' });
    await expect(ui.submitApprovalCeremony(requestId, 'alice', { id: 'x', rawId: 'x', type: 'other', response: {} })).rejects.toMatchObject(
      { code: 'schema_invalid' },
    );
    expect(await h.app.approvals.approvalsOf(requestId)).toEqual([]);
    // The refused call shows up as a failed request in the console; nothing else may (no CSP violations).
    expect(dana.problems.filter((p) => !p.includes('status of 403'))).toEqual([]);
  });

  it("a wrong, reused or someone else's registration code is refused in the UI with challenge_invalid and no credential is stored", async () => {
    h.app.approvers.addApprover({ id: 'erin', displayName: 'Erin', groups: ['finance-approvers'] });
    const erin = await openAs('erin');
    approverBrowsers.set('erin', Promise.resolve(erin)); // closed in afterAll
    const { page } = erin;
    const noKeyStored = async (count: number) => {
      expect(h.app.approvers.credentialsOf('erin')).toHaveLength(count);
      expect(await erin.authenticator.credentials()).toHaveLength(count);
    };

    // A made-up code.
    await registerWith(page, 'not-a-code-anyone-issued');
    let shown = await registration(page);
    expect(shown).toMatchObject({ kind: 'error', code: 'challenge_invalid' });
    expect(shown.text).toContain('[challenge_invalid]');
    expect(shown.text).toContain('registration code');
    await noKeyStored(0);

    // A real code, but issued for someone else.
    await registerWith(page, h.app.approvers.issueRegistrationCode('bob', 'test').code);
    shown = await registration(page);
    expect(shown).toMatchObject({ kind: 'error', code: 'challenge_invalid' });
    await noKeyStored(0);

    // Erin's own code works once...
    const { code } = h.app.approvers.issueRegistrationCode('erin', 'test');
    await registerWith(page, code);
    const first = await registration(page);
    expect(first.kind).toBe('registered');
    await noKeyStored(1);

    // ...and is refused when used again: no second key.
    await registerWith(page, code);
    shown = await registration(page);
    expect(shown).toMatchObject({ kind: 'error', code: 'challenge_invalid' });
    expect(await page.getByTestId('registration-result').count()).toBe(0);
    await noKeyStored(1);

    // The same refusals through the bridge's HTTP client and the core's UI service (the IPC path).
    const http = createHttpBridge({ baseUrl: `http://127.0.0.1:${h.app.port}`, sessionSecret: h.app.uiSessionSecret });
    const ui = inProcessBridge(h.app.ui, h.app.bridgeEvents);
    for (const bridge of [http, ui]) {
      await expect(bridge.beginApproverRegistration('erin', code)).rejects.toMatchObject({ code: 'challenge_invalid' });
      await expect(bridge.beginApproverRegistration('erin', 'wrong')).rejects.toMatchObject({ code: 'challenge_invalid' });
      await expect(bridge.beginApproverRegistration('erin', '')).rejects.toMatchObject({ code: 'schema_invalid' });
    }
    await expect(ui.beginApproverRegistration('erin', 'x'.repeat(129))).rejects.toMatchObject({ code: 'schema_invalid' });
    await noKeyStored(1);
    // A fresh code starts a ceremony through either transport (and is spent by it).
    for (const bridge of [http, ui]) {
      const options = await bridge.beginApproverRegistration('erin', h.app.approvers.issueRegistrationCode('erin', 'test').code);
      expect(options.user.name).toBe('erin');
    }
    await noKeyStored(1);
    // The refused calls show up as failed requests in the console; nothing else may.
    expect(erin.problems.filter((p) => !p.includes('status of 400'))).toEqual([]);
    expect(h.app.audit.verify()).toMatchObject({ ok: true });
  });
  it('three identical calls show as one card with a count; two approvals answer every caller with its own token', async () => {
    const [alice, bob] = await Promise.all([approver('alice'), approver('bob')]);
    const calls = [await submitTransfer('53000.00'), await submitTransfer('53000.00'), await submitTransfer('53000.00')];
    const [primary, ...followers] = calls.map((c) => c.requestId);
    const aliceCard = await card(alice.page, primary!);
    expect(await aliceCard.getByTestId('request-count').innerText()).toBe('×3 identical calls');
    const listed = await aliceCard.getByTestId('request-followers').innerText();
    for (const id of followers) expect(listed).toContain(id);
    expect(await alice.page.getByTestId('pending-count').innerText()).toMatch(/\(\d+ calls\)$/);
    // Followers have no card of their own.
    for (const id of followers)
      expect(await alice.page.locator(`[data-testid="pending-request"][data-request-id="${id}"]`).count()).toBe(0);

    await aliceCard.getByTestId('approve').click();
    expect(await result(alice.page, primary!)).toMatchObject({ kind: 'outcome', state: 'pending' });
    await (await card(bob.page, primary!)).getByTestId('approve').click();
    expect(await result(bob.page, primary!)).toMatchObject({ kind: 'outcome', state: 'approved' });

    const jwks = (await json('/.well-known/jwks.json')) as { keys: never[] };
    const directory = approverDirectorySchema.parse(await json('/.well-known/countersign-approvers.json'));
    const jtis = new Set<string>();
    for (const { call, requestId, decided } of calls) {
      const final = await decided;
      expect(final).toMatchObject({ requestId, state: 'approved', decision: 'allow' });
      const claims = await verifyApprovalToken(final.token ?? '', {
        call,
        audience: 'payments-service',
        keys: jwks,
        jtiStore: new MemoryJtiStore(),
        domain: 'test',
      });
      expect(claims.decision.id).toBe(requestId);
      const set = await verifyApprovals(claims.approvals, {
        directory,
        callSha256: claims.call_sha256,
        requestId,
        policyHash: claims.decision.policy_hash,
      });
      expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })).toBe(true);
      jtis.add(claims.jti);
    }
    expect(jtis.size).toBe(3);
    expect([...alice.problems, ...bob.problems]).toEqual([]);
  });

  it('keeps a card that arrived when an older read of the pending list answers after it', async () => {
    const { page } = await approver('alice');
    const first = await submitTransfer('12100.00');
    await card(page, first.requestId);
    // Fault injection: the Refresh button's read reaches the page only after a request that arrived
    // later was shown by the push event's reload (a slow machine or network).
    const refreshRead = await holdNextRead(page, '/api/approvals/pending');
    await page.getByTestId('refresh-pending').click();
    await expect.poll(() => refreshRead.made(), { timeout: UI_TIMEOUT }).toBe(true);
    const second = await submitTransfer('12200.00');
    const secondCard = page.locator(`[data-testid="pending-request"][data-request-id="${second.requestId}"]`);
    await secondCard.waitFor({ timeout: UI_TIMEOUT });
    await refreshRead.deliver(UI_TIMEOUT);
    expect(await secondCard.count()).toBe(1);
    await refreshRead.stop();
  });
});
