/**
 * Desk notifications in Debian Chromium: with the 'notifications' permission granted to the
 * context, a new pending request that needs the person at the desk fires a desktop notification
 * (captured by an init script that wraps window.Notification, since headless Chromium shows
 * none), the window title carries the pending count, and clicking the notification opens the
 * request (the desk's target becomes the request view for that id). Someone the request does not
 * need gets no notification. An older read of the count answering after a newer one (the 30 s
 * fallback's, made by moving the page's fake clock on) does not set an older count.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { addVirtualAuthenticator, launchChromium } from '../helpers/chromium.js';
import {
  actAs,
  buildRenderer,
  captureNotifications,
  holdNextRead,
  openDesk,
  registerKey,
  shownNotifications,
  type PageGlobals,
} from '../helpers/desk-browser.js';
import type { AgentClient } from '../../shared/agent-client.js';

const UI_TIMEOUT = 60_000;

let h: Harness;
let buildDir: string;
let browser: Browser | undefined;
let agent: AgentClient;

beforeAll(async () => {
  buildDir = tempDir('countersign-renderer-');
  await buildRenderer(buildDir);
  h = await startHarness({ config: { domain: 'test' }, start: { rendererDir: buildDir } });
  h.app.approvers.addApprover({ id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] });
  h.app.approvers.addApprover({ id: 'olga', displayName: 'Olga', groups: ['operations'] });
  agent = h.client('finance-bot', await h.enroll('finance-bot'));
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
}, 30_000);

/**
 * A fresh context (notifications granted, captured) with its own virtual authenticator; the
 * person's key is registered through the desk's own form, then they sign in with it.
 */
async function deskFor(approverId: string, options: { fakeClock?: boolean } = {}): Promise<Page> {
  const origin = `http://localhost:${h.app.port}`;
  const context = await browser!.newContext();
  await captureNotifications(context, origin);
  const page = await context.newPage();
  // Playwright's fake timers, installed before the desk loads: time flows as usual until the test
  // moves it on (page.clock.fastForward), which fires what falls due at once.
  if (options.fakeClock === true) await page.clock.install();
  await addVirtualAuthenticator(page);
  await openDesk(page, h.app);
  await registerKey(page, approverId, h.app.approvers.issueRegistrationCode(approverId, 'test').code);
  // Back to the desk's first view (the authenticator survives the navigation).
  await openDesk(page, h.app);
  await actAs(page, approverId);
  await page.getByTestId('desk-pending-count').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  return page;
}

describe('desk notifications in the browser', () => {
  it('notifies the person a new request needs, counts it in the title, and a click opens the request', async () => {
    const alice = await deskFor('alice');
    const olga = await deskFor('olga');
    expect(await alice.title()).toBe('Countersign');

    const pending = await agent.submit(transferCall('48000.00'));
    expect(pending).toMatchObject({ decision: 'pending' });

    await alice.waitForFunction(() => (globalThis as unknown as PageGlobals).__notifications.length > 0, undefined, {
      timeout: UI_TIMEOUT,
    });
    const notices = await shownNotifications(alice);
    expect(notices).toHaveLength(1);
    expect(notices[0]!.title).toBe('Approval needed: payments.transfer');
    expect(notices[0]!.body).toContain('finance-bot');
    expect(notices[0]!.body).toContain('approving needs your security key');
    expect(notices[0]!.tag).toBe(`countersign-${pending.requestId}`);
    await alice.waitForFunction(() => (globalThis as unknown as PageGlobals).document.title === '(1) Countersign', undefined, {
      timeout: UI_TIMEOUT,
    });
    expect(await alice.getByTestId('desk-pending-count').innerText()).toBe('1 waiting for you');

    // The click opens the request view for that id; nothing is approved by it.
    await alice.evaluate('window.__notifications[0].onclick()');
    const main = alice.locator('main.app');
    await alice.waitForFunction(
      (requestId) =>
        (globalThis as unknown as PageGlobals).document.querySelector('main.app')?.getAttribute('data-desk-request') === requestId,
      pending.requestId,
      { timeout: UI_TIMEOUT },
    );
    expect(await main.getAttribute('data-desk-view')).toBe('request');
    expect((await h.app.approvals.getPending(pending.requestId)).state).toBe('pending');

    // Olga is in no group the request counts: no notification, no count.
    expect(await olga.getByTestId('desk-pending-count').innerText()).toBe('Nothing waits for you');
    expect(await shownNotifications(olga)).toHaveLength(0);
    expect(await olga.title()).toBe('Countersign');
    await alice.context().close();
    await olga.context().close();
  }, 240_000);

  it('shows the request opened last from a notification, when the one opened before answers after it', async () => {
    h.app.approvers.addApprover({ id: 'amir', displayName: 'Amir', groups: ['finance-approvers'] });
    const amir = await deskFor('amir');
    const clickNotice = (requestId: string) =>
      amir.evaluate(
        (tag) =>
          ((globalThis as unknown as PageGlobals).__notifications as Array<{ tag: string; onclick: () => void }>)
            .find((n) => n.tag === tag)!
            .onclick(),
        `countersign-${requestId}`,
      );
    const noticeFor = (requestId: string) =>
      amir.waitForFunction(
        (tag) => ((globalThis as unknown as PageGlobals).__notifications as Array<{ tag: string }>).some((n) => n.tag === tag),
        `countersign-${requestId}`,
        { timeout: UI_TIMEOUT },
      );
    const first = await agent.submit(transferCall('47000.00', 'Northwind Traders'));
    const second = await agent.submit(transferCall('46000.00', 'Contoso Ltd'));
    expect([first.decision, second.decision]).toEqual(['pending', 'pending']);
    await noticeFor(first.requestId);
    await noticeFor(second.requestId);
    // Fault injection (the real core answers at once): the first request's read is held in the
    // browser until the second request is on the screen, as on a slow machine or network.
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    await amir.route(`**/api/ui/requests/${first.requestId}/for/**`, async (route) => {
      held += 1;
      await released;
      await route.continue();
    });
    await clickNotice(first.requestId);
    await expect.poll(() => held, { timeout: UI_TIMEOUT }).toBeGreaterThan(0);
    await clickNotice(second.requestId);
    const shown = amir.locator('article[data-testid="request-view"]');
    await amir.locator(`article[data-testid="request-view"][data-request-id="${second.requestId}"]`).waitFor({ timeout: UI_TIMEOUT });
    const answered = amir.waitForResponse(`**/api/ui/requests/${first.requestId}/for/**`, { timeout: UI_TIMEOUT });
    release();
    await answered;
    // Past the page's handling of the late answer: its digest, its render.
    await amir.evaluate(() => new Promise((resolve) => setTimeout(resolve, 500)));
    expect(await shown.getAttribute('data-request-id')).toBe(second.requestId);
    expect(await amir.locator('main.app').getAttribute('data-desk-request')).toBe(second.requestId);
    await amir.unroute(`**/api/ui/requests/${first.requestId}/for/**`);
    await amir.context().close();
  }, 240_000);

  it('keeps the newer count when the fallback read answers after a newer event read', async () => {
    h.app.approvers.addApprover({ id: 'noor', displayName: 'Noor', groups: ['finance-approvers'] });
    const noor = await deskFor('noor', { fakeClock: true });
    const noticeFor = (requestId: string) =>
      noor.waitForFunction(
        (tag) => ((globalThis as unknown as PageGlobals).__notifications as Array<{ tag: string }>).some((n) => n.tag === tag),
        `countersign-${requestId}`,
        { timeout: UI_TIMEOUT },
      );
    const first = await agent.submit(transferCall('45000.00', 'Fabrikam'));
    expect(first.decision).toBe('pending');
    // The read that notified it set the count too (earlier tests' requests may still be waiting).
    // Past its render, and past any event read still running for that request: the next read is the fallback's.
    await noticeFor(first.requestId);
    await noor.evaluate(() => new Promise((resolve) => setTimeout(resolve, 500)));
    const shown = /^\((\d+)\) Countersign$/.exec(await noor.title());
    expect(shown).not.toBeNull();
    const count = Number(shown![1]);
    // Fault injection (the real core answers at once): the 30 s fallback's read, made now by
    // moving the page's clock on, reaches the page only when the test delivers it. The clock then
    // stays paused, moved on only in small steps: the bridge aborts a read after 10 s of the
    // page's time, which a slow page would otherwise reach while the read is held.
    const fallbackRead = await holdNextRead(noor, '/api/approvals/pending');
    const now = await noor.evaluate(() => Date.now());
    await noor.clock.pauseAt(now + 30_000);
    await expect.poll(() => fallbackRead.made(), { timeout: UI_TIMEOUT }).toBe(true);
    // A newer request: its event's read (not coalesced with the fallback's) answers first.
    const second = await agent.submit(transferCall('44000.00', 'Tailspin Toys'));
    expect(second.decision).toBe('pending');
    await expect
      .poll(
        async () => {
          await noor.clock.runFor(20);
          return noor.title();
        },
        { timeout: UI_TIMEOUT },
      )
      .toBe(`(${count + 1}) Countersign`);
    await noor.clock.resume();
    await fallbackRead.deliver(UI_TIMEOUT);
    // The older answer (one request fewer) does not take the count back.
    expect(await noor.title()).toBe(`(${count + 1}) Countersign`);
    expect(await noor.getByTestId('desk-pending-count').innerText()).toBe(`${count + 1} waiting for you`);
    await fallbackRead.stop();
    await noor.context().close();
  }, 240_000);
});
