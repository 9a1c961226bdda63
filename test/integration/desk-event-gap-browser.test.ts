/**
 * The desk's event stream drops and comes back (Chromium goes offline, as on a network blip or a
 * laptop's Wi-Fi switch): what the core pushed while the stream was down still reaches the views.
 * Real Debian Chromium, the built renderer served by a real core, real SDK agents. The drop is
 * a TCP relay between browser and core (test/helpers/tcp-relay.ts, bytes unchanged) that resets
 * every connection and refuses new ones for a while: Chromium reaches `localhost:<core port>`
 * through it by a host resolver rule, so the page's origin and Host are the core's own. (The
 * browser's offline mode cannot be used: it leaves an open stream open.)
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { rmSync } from 'node:fs';
import type { Browser, Request } from 'playwright-core';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { actAs, buildRenderer, openDesk, registerKey, saveScreenshots } from '../helpers/desk-browser.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import type { AgentClient } from '../../shared/agent-client.js';

const UI_TIMEOUT = 20_000;

let h: Harness;
let buildDir: string;
let browser: Browser | undefined;
let alice: ApproverBrowser;
let finance: AgentClient;
let relay: TcpRelay;

beforeAll(async () => {
  buildDir = tempDir('countersign-desk-gap-renderer-');
  await buildRenderer(buildDir);
  h = await startHarness({ config: { domain: 'test' }, start: { rendererDir: buildDir } });
  h.app.approvers.addApprover({ id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] });
  h.app.approvers.addApprover({ id: 'root', displayName: 'Root', groups: [ADMIN_GROUP_NAME] });
  finance = h.client('finance-bot', await h.enroll('finance-bot'), { requestTimeoutMs: 30_000 });
  await h.app.virtualApprovers!.create({ id: 'carol', displayName: 'Carol', groups: ['finance-approvers'] });
  relay = await startTcpRelay(h.app.port);
  browser = await launchChromium([`--host-resolver-rules=MAP localhost:${h.app.port} 127.0.0.1:${relay.port}`]);
  alice = await openApproverBrowser(browser);
  await openDesk(alice.page, h.app);
  await registerKey(alice.page, 'alice', h.app.approvers.issueRegistrationCode('alice', 'test').code);
  await actAs(alice.page, 'alice');
}, 180_000);

afterAll(async () => {
  await alice?.close();
  await browser?.close();
  await relay?.close();
  await h?.close();
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
}, 60_000);

/** Reset the page's connections and refuse new ones, until the core has seen its event stream close. */
async function dropStream(): Promise<void> {
  relay.sever();
  await vi.waitFor(() => expect(h.app.bridgeEvents.subscribers).toBe(0), { timeout: UI_TIMEOUT, interval: 50 });
}

describe('the desk across an event-stream reconnect (Chromium)', { timeout: 90_000 }, () => {
  it('shows a request that arrived and a decision made while its event stream was down, once the stream is back', async () => {
    const first = await finance.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(first.decision).toBe('pending');
    const { page } = alice;
    await page.getByTestId('tab-queue').click();
    const row = page.locator(`[data-testid="queue-row"][data-request-id="${first.requestId}"]`);
    await row.waitFor({ timeout: UI_TIMEOUT });
    await row.click();
    const state = page.locator(`[data-testid="request-view"][data-request-id="${first.requestId}"] [data-testid="request-state"]`);
    await state.waitFor({ timeout: UI_TIMEOUT });
    expect(await state.innerText()).toMatch(/pending/i);
    await vi.waitFor(() => expect(h.app.bridgeEvents.subscribers).toBe(1), { timeout: UI_TIMEOUT, interval: 50 });

    await dropStream();
    // While the stream is down: a co-approver denies the request Alice has open, and a new call waits.
    await h.app.virtualApprovers!.decide({
      requestId: first.requestId,
      approverId: 'carol',
      verdict: 'deny',
      reason: 'payee not verified',
    });
    const second = await finance.submit(transferCall('1200.00', 'Contoso Supplies'));
    expect(second.decision).toBe('pending');
    relay.heal();

    // The request view has no periodic refresh: only the replayed `decided` event can update it.
    await page.locator(`[data-testid="request-view"][data-request-id="${first.requestId}"] .state-denied`).waitFor({ timeout: UI_TIMEOUT });
    expect(await state.innerText()).toMatch(/denied/i);
    // A decided request's policy reasons say why it was held, not why it is.
    expect(await page.getByTestId('request-reasons-heading').innerText()).toBe('Why it was held');
    await saveScreenshots(page, 'desk-request-after-reconnect');
    // The queue, opened now, lists the call that arrived during the gap.
    await page.getByTestId('back-to-queue').click();
    await page.locator(`[data-testid="queue-row"][data-request-id="${second.requestId}"]`).waitFor({ timeout: UI_TIMEOUT });
    // Through the relay, before the fix would have been visible: the page connected only through it.
    expect(relay.open).toBeGreaterThan(0);
  });

  it('re-reads each view once for a replayed burst of events, not once per event', async () => {
    const { page } = alice;
    await page.getByTestId('tab-queue').click();
    await page.getByTestId('queue-view').waitFor({ timeout: UI_TIMEOUT });
    await vi.waitFor(() => expect(h.app.bridgeEvents.subscribers).toBe(1), { timeout: UI_TIMEOUT, interval: 50 });
    await dropStream();
    const burst = 24;
    const held: string[] = [];
    for (let i = 0; i < burst; i += 1) {
      const call = await finance.submit(transferCall(`${300 + i}.00`, 'Fabrikam Burst'));
      expect(call.decision).toBe('pending');
      held.push(call.requestId);
    }
    // Every request the page makes from here, by path; the event stream itself stays open.
    const asked = new Map<string, number>();
    const inFlight = new Set<unknown>();
    const onRequest = (request: Request) => {
      const path = new URL(request.url()).pathname;
      if (path === '/api/ui/events') return;
      asked.set(path, (asked.get(path) ?? 0) + 1);
      inFlight.add(request);
    };
    const onDone = (request: Request) => inFlight.delete(request);
    page.on('request', onRequest);
    page.on('requestfinished', onDone);
    page.on('requestfailed', onDone);
    const healedAt = Date.now();
    relay.heal();
    try {
      // The queue shows the whole burst once the replayed `pending` events are read...
      await page.locator(`[data-testid="queue-row"][data-request-id="${held[burst - 1]}"]`).waitFor({ timeout: UI_TIMEOUT });
      await vi.waitFor(() => expect(inFlight.size).toBe(0), { timeout: UI_TIMEOUT, interval: 20 });
      const elapsed = Date.now() - healedAt;
      // ...after one queue read for all 24 events (plus at most one straddling a read already
      // running, and the 15 s fallback refresh if it fell in this window), where each event
      // used to start its own. The same for the notifier's read and the overview's status
      // (which also polls every 3 s).
      expect(asked.get('/api/ui/queue') ?? 0).toBeGreaterThanOrEqual(1);
      expect(asked.get('/api/ui/queue')).toBeLessThanOrEqual(3);
      expect(asked.get('/api/approvals/pending') ?? 0).toBeLessThanOrEqual(3);
      expect(asked.get('/api/ui/status') ?? 0).toBeLessThanOrEqual(2 + Math.ceil(elapsed / 3000));
    } finally {
      page.off('request', onRequest);
      page.off('requestfinished', onDone);
      page.off('requestfailed', onDone);
    }
  });
});
