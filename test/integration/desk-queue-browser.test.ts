/**
 * The desk's queue and request views in a real browser: Debian Chromium (playwright-core), one
 * browser context and CDP virtual authenticator per person, the renderer built by Vite and served
 * by the core, the test key domain. People reach the desk through openDesk + actAs (the sign-in
 * seam), register a key once (the Approvals view, with an admin's registration code), and decide
 * from the request view; agents are real SDK clients over WebSocket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { DEPLOY_SCOPE, startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { actAs, buildRenderer, holdNextRead, openDesk, registerKey, saveScreenshots } from '../helpers/desk-browser.js';
import { fingerprintWords } from '../../shared/fingerprint.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import type { AgentClient } from '../../shared/agent-client.js';

const UI_TIMEOUT = 20_000;
const PAYEE = 'Northwind Traders';

let h: Harness;
let buildDir: string;
let browser: Browser | undefined;
let finance: AgentClient;
let deploy: AgentClient;
const people = new Map<string, Promise<ApproverBrowser>>();

/** One browser context per person, at the desk acting as them, with a registered key. */
function person(id: string): Promise<ApproverBrowser> {
  let opened = people.get(id);
  if (opened === undefined) {
    opened = (async () => {
      if (browser === undefined) throw new Error('the browser is not running');
      const ab = await openApproverBrowser(browser);
      const { page } = ab;
      await openDesk(page, h.app);
      // Register this person's key (Approvals view), with the single-use code an admin issued.
      await registerKey(page, id, h.app.approvers.issueRegistrationCode(id, 'test').code);
      await actAs(page, id);
      await page.getByTestId('tab-queue').click();
      return ab;
    })();
    people.set(id, opened);
  }
  return opened;
}

/** The queue row of a request (the queue follows push events; Refresh is only a fallback). */
async function queueRow(page: Page, requestId: string) {
  await page.getByTestId('tab-queue').click();
  const row = page.locator(`[data-testid="queue-row"][data-request-id="${requestId}"]`);
  await row.waitFor({ timeout: UI_TIMEOUT });
  return row;
}

async function openRequest(page: Page, requestId: string) {
  await (await queueRow(page, requestId)).click();
  const view = page.locator(`[data-testid="request-view"][data-request-id="${requestId}"]`);
  await view.waitFor({ timeout: UI_TIMEOUT });
  await view.locator('[data-testid="digest-check"][data-ok="true"]').waitFor({ timeout: UI_TIMEOUT });
  return view;
}

async function outcome(page: Page): Promise<{ state: string; text: string }> {
  const done = page.getByTestId('request-outcome');
  const failed = page.getByTestId('request-error');
  await done.or(failed).first().waitFor({ timeout: UI_TIMEOUT });
  if (await failed.isVisible()) return { state: `error:${await failed.getAttribute('data-code')}`, text: await failed.innerText() };
  return { state: (await done.getAttribute('data-state')) ?? '', text: await done.innerText() };
}

async function held(agent: AgentClient, call: Parameters<AgentClient['submit']>[0]) {
  const pending = await agent.submit(call);
  expect(pending).toMatchObject({ decision: 'pending', state: 'pending' });
  const decided = agent.waitForDecision(pending.requestId, { timeoutMs: 60_000 });
  decided.catch(() => undefined); // awaited by the test; never an unhandled rejection
  return { requestId: pending.requestId, decided };
}

beforeAll(async () => {
  buildDir = tempDir('countersign-desk-renderer-');
  await buildRenderer(buildDir);
  h = await startHarness({ config: { domain: 'test' }, start: { rendererDir: buildDir } });
  for (const [id, name] of [
    ['alice', 'Alice'],
    ['bob', 'Bob'],
  ] as const)
    h.app.approvers.addApprover({ id, displayName: name, groups: ['finance-approvers'] });
  // An admin exists, as on any installation past its first run: the queue and request views (and
  // their README screenshots) are the everyday desk, without the set-up banner.
  h.app.approvers.addApprover({ id: 'root', displayName: 'Root', groups: [ADMIN_GROUP_NAME] });
  // Sam owns the deploy agent and is in the group its requests need.
  h.app.approvers.addApprover({ id: 'sam@example.com', displayName: 'Sam', groups: ['sre-approvers'] });
  finance = h.client('finance-bot', await h.enroll('finance-bot'), { requestTimeoutMs: 30_000 });
  deploy = h.client('deploy-bot', await h.enroll('deploy-bot', DEPLOY_SCOPE), { requestTimeoutMs: 30_000 });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  for (const opened of people.values())
    await opened.then(
      (ab) => ab.close(),
      () => undefined,
    );
  await browser?.close();
  await h?.close();
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
}, 60_000);

describe('the desk queue and request views (Chromium, virtual authenticators)', () => {
  it('two approvers approve a 48,000 USD transfer from the queue, both read the same fingerprint, and the agent receives the token', async () => {
    const [alice, bob] = await Promise.all([person('alice'), person('bob')]);
    const { requestId, decided } = await held(finance, transferCall('48000.00', PAYEE));

    const row = await queueRow(alice.page, requestId);
    expect(await row.getByTestId('queue-headline').innerText()).toBe('48,000.00 USD to Northwind Traders');
    expect(await row.getByTestId('queue-progress').innerText()).toBe('0 of 2 approvals');
    expect(await row.innerText()).toContain('finance-bot');
    expect(await row.getByTestId('queue-countdown').innerText()).toMatch(/^\d+ min \d+ s left$/);
    await saveScreenshots(alice.page, 'desk-queue');

    const aliceView = await openRequest(alice.page, requestId);
    const words = fingerprintWords((await h.app.approvals.getPending(requestId)).callSha256)!.join(' ');
    expect(await aliceView.getByTestId('fingerprint').innerText()).toBe(words);
    expect(await aliceView.getByTestId('transfer-amount').innerText()).toContain('48,000.00');
    expect(await aliceView.getByTestId('transfer-payee').innerText()).toContain(PAYEE);
    expect(await aliceView.getByTestId('raw-json').innerText()).toContain('"amount": "48000.00"');
    expect(await aliceView.getByTestId('request-obligation').innerText()).toContain('two-approvers');
    await saveScreenshots(alice.page, 'desk-request');
    await aliceView.getByTestId('approve-note').fill('invoice checked against PO 7');
    await aliceView.getByTestId('approve').click();
    expect((await outcome(alice.page)).state).toBe('pending');

    const bobView = await openRequest(bob.page, requestId);
    expect(await bobView.getByTestId('fingerprint').innerText()).toBe(words);
    expect(await bobView.getByTestId('request-progress').innerText()).toBe('1 of 2');
    // Who approved already, with which key.
    const aliceKey = h.app.approvers.credentialsOf('alice')[0]!.credentialId;
    const approvals = await bobView.getByTestId('request-approvals').innerText();
    expect(approvals).toContain('Alice approved');
    expect(approvals).toContain(aliceKey);
    expect(approvals).toContain('invoice checked against PO 7');
    await bobView.getByTestId('approve').click();
    expect((await outcome(bob.page)).state).toBe('approved');

    const result = await decided;
    expect(result.state).toBe('approved');
    expect(result.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    // The decided request leaves Alice's queue by push event.
    await alice.page.getByTestId('back-to-queue').click();
    await alice.page
      .locator(`[data-testid="queue-row"][data-request-id="${requestId}"]`)
      .waitFor({ state: 'detached', timeout: UI_TIMEOUT });
  }, 180_000);

  it('a denial needs a reason, and the reason reaches the agent', async () => {
    const alice = await person('alice');
    const { requestId, decided } = await held(finance, transferCall('23000.00', 'Contoso'));
    const view = await openRequest(alice.page, requestId);
    expect(await view.getByTestId('deny').isDisabled()).toBe(true); // no reason, no denial
    await view.getByTestId('deny-reason').fill('payee not on the vendor list');
    expect(await view.getByTestId('deny').isDisabled()).toBe(false);
    await view.getByTestId('deny').click();
    expect((await outcome(alice.page)).state).toBe('denied');
    const result = await decided;
    expect(result.state).toBe('denied');
    expect(result.reasons.join(' ')).toContain('payee not on the vendor list');
  }, 120_000);

  it("shows a production change's details and disables its owner's Approve with the reason on the card", async () => {
    const sam = await person('sam@example.com');
    const { requestId } = await held(deploy, {
      tool: 'deploy.production',
      params: { service: 'checkout', environment: 'production', changeId: 'CHG-1042', diff: '- replicas: 2\n+ replicas: 4' },
      dataClass: 'source-code',
      jurisdiction: 'US',
      provenance: ['ci'],
    });
    const row = await queueRow(sam.page, requestId);
    expect(await row.getByTestId('queue-headline').innerText()).toBe('production: checkout (CHG-1042)');
    const view = await openRequest(sam.page, requestId);
    expect(await view.getByTestId('change-environment').innerText()).toBe('production');
    expect(await view.getByTestId('change-service').innerText()).toBe('checkout');
    expect(await view.getByTestId('change-ticket').innerText()).toBe('CHG-1042');
    expect(await view.getByTestId('change-diff').innerText()).toContain('+ replicas: 4');
    expect(await view.getByTestId('approve').isDisabled()).toBe(true);
    expect(await view.getByTestId('approve-disabled-reason').innerText()).toBe(
      'You own the agent that made this request, so you may not approve it.',
    );
    expect(await view.getByTestId('approve').getAttribute('aria-describedby')).toBe('approve-why');
  }, 120_000);

  it('keeps a request that arrived when an older read of the queue answers after it', async () => {
    h.app.approvers.addApprover({ id: 'carol', displayName: 'Carol', groups: ['finance-approvers'] });
    const { page } = await person('carol');
    const first = await held(finance, transferCall('21000.00', 'Contoso'));
    await queueRow(page, first.requestId);
    // Fault injection: the Refresh button's read reaches the page only after a request that arrived
    // later was shown by the push event's reload (a slow machine or network).
    const refreshRead = await holdNextRead(page, '/api/ui/queue');
    await page.getByTestId('queue-refresh').click();
    await expect.poll(() => refreshRead.made(), { timeout: UI_TIMEOUT }).toBe(true);
    const second = await held(finance, transferCall('22000.00', 'Contoso'));
    const secondRow = page.locator(`[data-testid="queue-row"][data-request-id="${second.requestId}"]`);
    await secondRow.waitFor({ timeout: UI_TIMEOUT });
    await refreshRead.deliver(UI_TIMEOUT);
    expect(await secondRow.count()).toBe(1);
    await refreshRead.stop();
  }, 120_000);

  it('merges identical calls into one queue row with a count', async () => {
    const alice = await person('alice');
    const call = transferCall('31000.00', 'Fabrikam');
    const first = await held(finance, call);
    await held(finance, call);
    await held(finance, call);
    const row = await queueRow(alice.page, first.requestId);
    await expect.poll(async () => row.getAttribute('data-calls'), { timeout: UI_TIMEOUT }).toBe('3');
    expect(await row.getByTestId('queue-count').innerText()).toBe('×3 identical calls');
    expect(await alice.page.locator('[data-testid="queue-row"]', { hasText: '31,000.00 USD to Fabrikam' }).count()).toBe(1);
    const view = await openRequest(alice.page, first.requestId);
    expect(await view.getByTestId('request-count').innerText()).toBe('×3 identical calls');
    expect(await view.getByTestId('request-expiry').innerText()).toMatch(/Expires .* \(\d+ min \d+ s left\)/);
  }, 120_000);

  it('renders HTML and a right-to-left override in parameters inert, and flags them', async () => {
    const alice = await person('alice');
    const payee = '<img src=x onerror="window.__pwned=1">Acme\u202Etxt.exe';
    const { requestId } = await held(finance, transferCall('47000.00', payee));
    const view = await openRequest(alice.page, requestId);
    expect(await view.locator('img').count()).toBe(0);
    expect(await alice.page.evaluate('window.__pwned')).toBeUndefined();
    const flags = view.getByTestId('param-flags');
    expect(await flags.innerText()).toContain('payee holds a text-direction control (U+202E)');
    expect(await view.getByTestId('transfer-payee').innerText()).toContain('<img src=x onerror="window.__pwned=1">Acme⟦U+202E⟧txt.exe');
    expect(await view.getByTestId('raw-json').innerText()).toContain('Acme\\u202etxt.exe');
    // Nothing in the page itself carries the override.
    expect(await view.innerText()).not.toContain('\u202E');
  }, 120_000);

  it('approves with the keyboard alone, and the queue stays usable at 420 px wide', async () => {
    const [alice, bob] = await Promise.all([person('alice'), person('bob')]);
    const { requestId, decided } = await held(finance, transferCall('12500.00', 'Tailspin Toys'));
    await (await openRequest(alice.page, requestId)).getByTestId('approve').click();
    expect((await outcome(alice.page)).state).toBe('pending');

    const page = bob.page;
    await page.setViewportSize({ width: 420, height: 900 });
    await queueRow(page, requestId);
    expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(420);
    const focusOn = async (testId: string, requestIdAttr?: string) => {
      for (let i = 0; i < 80; i++) {
        await page.keyboard.press('Tab');
        const here = await page.evaluate<{ testId?: string; requestId?: string }>(
          '({ testId: document.activeElement?.dataset?.testid, requestId: document.activeElement?.dataset?.requestId })',
        );
        if (here.testId === testId && (requestIdAttr === undefined || here.requestId === requestIdAttr)) return;
      }
      throw new Error(`Tab never reached ${testId}`);
    };
    await page.locator('body').focus();
    await focusOn('queue-row', requestId);
    // Focus is visible: the focused row draws an outline.
    expect(await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle')).not.toBe('none');
    await page.keyboard.press('Enter');
    await page
      .locator(`[data-testid="request-view"][data-request-id="${requestId}"] [data-testid="digest-check"][data-ok="true"]`)
      .waitFor({ timeout: UI_TIMEOUT });
    expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(420);
    await saveScreenshots(page, 'desk-request-narrow');
    await focusOn('approve');
    await page.keyboard.press('Enter');
    expect((await outcome(page)).state).toBe('approved');
    expect((await decided).state).toBe('approved');
  }, 180_000);
});
