/**
 * The History, Policies and Custody-and-health views in Debian Chromium over the real renderer
 * (built by Vite, served by the core at /ui/) and a real core (SQLite, Cedar, software signer, the
 * test key domain's virtual approvers, who decide; the desk is used by dana, a person who signs in
 * with a key registered in each page's CDP virtual authenticator): a decided request with its
 * approvals and an inclusion proof that the page verifies, and a changed proof that it shows as
 * failing; filters and search driven from the keyboard; the export of a selection as a download;
 * "test a call" showing the decision and the approvals it needs, and a broken policy's file:line
 * after the hot reload; custody and an on-demand verification; each view usable at 420 px;
 * screenshots light and dark.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DEMO_POLICY_DIR, startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { addVirtualAuthenticator, launchChromium } from '../helpers/chromium.js';
import { actAs, buildRenderer, openDesk, registerKey, saveScreenshots, type PageGlobals } from '../helpers/desk-browser.js';
import { HISTORY_EXPORT_FORMAT } from '../../shared/desk-records.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';

const UI_TIMEOUT = 20_000;
/**
 * The person at the desk. alice and bob are virtual approvers (their keys are held by the core and
 * cannot sign in from a browser), so the desk is used by dana, a person whose security key lives
 * in each page's virtual authenticator.
 */
const DESK_USER = 'dana';

let h: Harness;
let buildDir: string;
let policyDir: string;
let browser: Browser | undefined;
let approvedId: string;
let deniedId: string;

beforeAll(async () => {
  buildDir = tempDir('countersign-renderer-');
  await buildRenderer(buildDir);
  policyDir = tempDir('countersign-policies-');
  cpSync(DEMO_POLICY_DIR, policyDir, { recursive: true });
  h = await startHarness({ config: { domain: 'test', risk: { enabled: false } }, policyDir, start: { rendererDir: buildDir } });
  for (const id of ['alice', 'bob']) await h.app.virtualApprovers!.create({ id, displayName: id, groups: ['finance-approvers'] });
  h.app.approvers.addApprover({ id: DESK_USER, displayName: 'Dana Example', groups: ['finance-approvers'] });
  // An admin exists (first run closed), so these views and their screenshots are the everyday desk.
  h.app.approvers.addApprover({ id: 'root', displayName: 'Root', groups: [ADMIN_GROUP_NAME] });
  const finance = h.client('finance-bot', await h.enroll('finance-bot'));
  approvedId = (await finance.submit(transferCall('48000.00', 'Northwind Traders'))).requestId;
  await h.app.virtualApprovers!.decide({ requestId: approvedId, approverId: 'alice', verdict: 'approve' });
  await h.app.virtualApprovers!.decide({ requestId: approvedId, approverId: 'bob', verdict: 'approve' });
  deniedId = (await finance.submit(transferCall('5000.00', 'Globex Corp'))).requestId;
  await h.app.virtualApprovers!.decide({ requestId: deniedId, approverId: 'alice', verdict: 'deny', reason: 'unknown vendor' });
  for (let i = 0; i < 3; i++) await finance.submit(transferCall(`1${i}.00`, 'Acme Ltd'));
  await h.app.checkpoints.checkpoint();
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
  rmSync(buildDir, { recursive: true, force: true });
  rmSync(policyDir, { recursive: true, force: true });
});

/** A fresh context with its own authenticator; dana registers a key in it through the desk's own form, then signs in with it. */
async function deskAt(view: string, width = 1100, beforeView?: (page: Page) => Promise<void>): Promise<Page> {
  const context = await browser!.newContext({ viewport: { width, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  await addVirtualAuthenticator(page);
  await openDesk(page, h.app);
  await registerKey(page, DESK_USER, h.app.approvers.issueRegistrationCode(DESK_USER, 'test').code);
  await actAs(page, DESK_USER);
  await beforeView?.(page);
  await page.getByTestId(`tab-${view}`).click({ timeout: UI_TIMEOUT });
  return page;
}

/** Page-side expressions (this file is compiled without the DOM library). */
// A function, not a string: a string predicate is eval'd on every poll, which the desk's CSP refuses.
const ONE_ROW = () => (globalThis as unknown as PageGlobals).document.querySelectorAll('[data-testid="history-row"]').length === 1;

const row = (page: Page, id: string) => page.locator(`[data-testid="history-row"][data-request-id="${id}"]`);

describe('the History view', () => {
  it('shows a decided request with its approvals and verifies its inclusion proof in the page', { timeout: 120_000 }, async () => {
    const page = await deskAt('history');
    await row(page, approvedId).getByTestId('history-open').click({ timeout: UI_TIMEOUT });
    const proof = row(page, approvedId).getByTestId('history-proof');
    await proof.and(page.locator('[data-status="verified"]')).waitFor({ timeout: UI_TIMEOUT });
    expect(await proof.innerText()).toContain('Verified in this page');
    const approvals = await row(page, approvedId).getByTestId('history-approvals').innerText();
    expect(approvals).toContain('alice');
    expect(approvals).toContain('bob');
    const jti = (h.app.db.prepare('SELECT jti FROM tokens WHERE request_id = ?').get(approvedId) as { jti: string }).jti;
    expect(await row(page, approvedId).getByTestId('history-token-id').innerText()).toBe(jti);
    await saveScreenshots(page, 'desk-history');
    await page.context().close();
  });

  it('shows a changed proof as failing', { timeout: 120_000 }, async () => {
    const page = await deskAt('history');
    // Fault injection: the real core never serves a changed record, so the response is altered on its way to the page.
    await page.route(`**/api/ui/history/${approvedId}`, async (route) => {
      const response = await route.fetch();
      const body = (await response.json()) as { proof: { entries: Array<{ record: string }> } };
      body.proof.entries[0]!.record = body.proof.entries[0]!.record.replace('finance-bot', 'finance-bon');
      await route.fulfill({ response, json: body });
    });
    await row(page, approvedId).getByTestId('history-open').click({ timeout: UI_TIMEOUT });
    const proof = row(page, approvedId).getByTestId('history-proof');
    await proof.and(page.locator('[data-status="failed"]')).waitFor({ timeout: UI_TIMEOUT });
    expect(await proof.innerText()).toContain('audit_proof_invalid');
    expect(await proof.getAttribute('role')).toBe('alert');
    await page.context().close();
  });

  it('filters by state and searches by payee from the keyboard', { timeout: 120_000 }, async () => {
    const page = await deskAt('history');
    await row(page, approvedId).waitFor({ timeout: UI_TIMEOUT });
    expect(await page.getByTestId('history-row').count()).toBe(5);
    await page.getByTestId('history-filter-text').focus();
    await page.keyboard.type('northwind');
    await page.keyboard.press('Enter');
    await page.waitForFunction(ONE_ROW, undefined, { timeout: UI_TIMEOUT });
    expect(await row(page, approvedId).count()).toBe(1);
    await page.getByTestId('history-filter-text').fill('');
    await page.getByTestId('history-filter-state').selectOption('denied');
    await page.getByTestId('history-apply').press('Enter');
    await row(page, deniedId).waitFor({ timeout: UI_TIMEOUT });
    await page.waitForFunction(ONE_ROW, undefined, { timeout: UI_TIMEOUT });
    // Opened with the keyboard: the button takes Enter.
    await row(page, deniedId).getByTestId('history-open').press('Enter');
    expect(await row(page, deniedId).getByTestId('history-detail').innerText()).toContain('unknown vendor');
    await page.context().close();
  });

  it('keeps the rows of the search the person asked for when the first search answers after it', { timeout: 120_000 }, async () => {
    // Fault injection (the real core answers at once): the view's first search (no filter) is
    // answered by the core when it is made and reaches the page only when the test lets it, as on
    // a slow machine where it waits for the full bridge and the person's filter overtakes it.
    const held: Array<() => Promise<void>> = [];
    const page = await deskAt('history', 1100, async (p) => {
      await p.route('**/api/ui/history', async (route) => {
        const { historyQuery } = route.request().postDataJSON() as { historyQuery: { text?: string } };
        if (historyQuery.text !== undefined) return route.continue();
        const response = await route.fetch();
        held.push(() => route.fulfill({ response }));
      });
    });
    await expect.poll(() => held.length, { timeout: UI_TIMEOUT }).toBe(1);
    await page.getByTestId('history-filter-text').fill('northwind', { timeout: UI_TIMEOUT });
    await page.getByTestId('history-filter-text').press('Enter');
    await row(page, approvedId).waitFor({ timeout: UI_TIMEOUT });
    const answered = page.waitForEvent('requestfinished', {
      predicate: (r) => new URL(r.url()).pathname === '/api/ui/history' && !r.postData()?.includes('northwind'),
      timeout: UI_TIMEOUT,
    });
    await held[0]!();
    await answered;
    // Past the page's handling of it: the parse, the check and React's render of what it set.
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 250)));
    expect(await page.getByTestId('history-row').count()).toBe(1);
    expect(await row(page, approvedId).count()).toBe(1);
    expect(await page.getByTestId('history-count').innerText()).toBe('1 request shown');
    await page.context().close();
  });

  it('exports the selected requests with their proofs as a JSON download', { timeout: 120_000 }, async () => {
    const page = await deskAt('history');
    await row(page, approvedId).getByTestId('history-select').check({ timeout: UI_TIMEOUT });
    await row(page, deniedId).getByTestId('history-select').check();
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: UI_TIMEOUT }),
      page.getByTestId('history-export').click(),
    ]);
    const file = join(tempDir('countersign-export-'), 'export.json');
    await download.saveAs(file);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as {
      format: string;
      requests: Array<{ requestId: string; proof: { entries: unknown[] }; proofCheck: { ok: boolean } }>;
    };
    expect(doc.format).toBe(HISTORY_EXPORT_FORMAT);
    expect(doc.requests.map((r) => r.requestId).sort()).toEqual([approvedId, deniedId].sort());
    for (const r of doc.requests) {
      expect(r.proof.entries.length).toBeGreaterThan(0);
      expect(r.proofCheck.ok).toBe(true);
    }
    await page.context().close();
  });
});

describe('the Policies view', () => {
  it('tests a call and shows the decision and the approvals it needs, recording nothing', { timeout: 120_000 }, async () => {
    const before = (h.app.db.prepare('SELECT COUNT(*) AS n FROM requests').get() as { n: number }).n;
    const page = await deskAt('policies');
    await page.getByTestId('policy-test-agent').locator('option[value="finance-bot"]').waitFor({ state: 'attached', timeout: UI_TIMEOUT });
    await page.getByTestId('policy-test-agent').selectOption('finance-bot');
    await page.getByTestId('policy-test-tool').selectOption('payments.transfer');
    await page.getByTestId('policy-test-run').click();
    const result = page.getByTestId('policy-test-result');
    await result.waitFor({ timeout: UI_TIMEOUT });
    expect(await result.getAttribute('data-outcome')).toBe('approval_required');
    expect(await page.getByTestId('policy-test-approvals').innerText()).toContain('Needs 2 approvals from finance-approvers');
    expect((h.app.db.prepare('SELECT COUNT(*) AS n FROM requests').get() as { n: number }).n).toBe(before);
    expect(await page.getByTestId('policies-hash').innerText()).toBe(h.app.policy.hash);
    await saveScreenshots(page, 'desk-policies');

    // Bad input is refused with its code, on the form.
    await page.getByTestId('policy-test-params').fill('{not json');
    await page.getByTestId('policy-test-run').click();
    expect(await page.getByTestId('policy-test-error').innerText()).toContain('json_invalid');
    await page.context().close();
  });

  it("shows a broken policy's error with file:line after the reload", { timeout: 120_000 }, async () => {
    const page = await deskAt('policies');
    await page.getByTestId('policy-reload').waitFor({ timeout: UI_TIMEOUT });
    writeFileSync(
      join(policyDir, 'broken.cedar'),
      '// the syntax error is on line 4\n\n@id("oops")\npermit (principal, action, resource) when { context.nope == };\n',
    );
    const failed = page.locator('[data-testid="policy-reload"][data-status="failed"]');
    const until = Date.now() + 30_000;
    while ((await failed.count()) === 0 && Date.now() < until) {
      await page.waitForTimeout(250);
      await page.getByTestId('policies-refresh').click();
    }
    expect(await page.getByTestId('policy-reload-error').first().innerText()).toContain('broken.cedar:4');
    expect(await failed.getAttribute('role')).toBe('alert');
    await saveScreenshots(page, 'desk-policies-reload-failed');
    rmSync(join(policyDir, 'broken.cedar'));
    await page.context().close();
  });
});

describe('the Custody and health view', () => {
  it('shows software custody, the key fingerprint and the checkpoint, and verifies the log on demand', { timeout: 120_000 }, async () => {
    const page = await deskAt('health');
    const custody = page.getByTestId('health-custody');
    await custody.waitFor({ timeout: UI_TIMEOUT });
    expect(await custody.getAttribute('data-custody')).toBe('software');
    expect(await page.getByTestId('health-kid').innerText()).toBe(h.app.signer.keyId);
    expect(await page.getByTestId('health-checkpoint').innerText()).toMatch(/\d+ entries at/);
    await page.getByTestId('health-verify').click();
    const result = page.getByTestId('health-verify-result');
    await result.waitFor({ timeout: UI_TIMEOUT });
    expect(await result.getAttribute('data-ok')).toBe('true');
    await saveScreenshots(page, 'desk-health');
    await page.context().close();
  });
});

describe('at 420 px wide', () => {
  it('each view fits without a horizontal scroll', { timeout: 120_000 }, async () => {
    for (const view of ['history', 'policies', 'health']) {
      const page = await deskAt(view, 420);
      await page.getByTestId(`${view}-view`).waitFor({ timeout: UI_TIMEOUT });
      if (view === 'history') await row(page, approvedId).getByTestId('history-open').click({ timeout: UI_TIMEOUT });
      await page.waitForTimeout(300);
      const width = await page.evaluate<number>('document.documentElement.scrollWidth');
      // The elements that stick out, named in the failure message.
      const wide = await page.evaluate<string[]>(
        "[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 421).slice(0, 8).map((e) => e.tagName + '.' + e.className)",
      );
      expect(width, `${view}: ${wide.join(' | ')}`).toBeLessThanOrEqual(420);
      if (view === 'history') await saveScreenshots(page, 'desk-history-420');
      await page.context().close();
    }
  });
});
