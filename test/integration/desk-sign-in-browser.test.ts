/**
 * Sign-in by security key in a real browser: Debian Chromium with one CDP virtual authenticator
 * per person, the renderer built by Vite and served by the core. The desk shows the person whose
 * key signed; the HttpOnly cookie never reaches the page's script; a call for another person, a
 * call without a session, a call after sign-out, after the idle timeout and past the absolute
 * lifetime (the core's clock is injected) and a replayed sign-in assertion are all refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { chromiumAvailable, launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { actAs, buildRenderer, openDesk, registerKey, signOut } from '../helpers/desk-browser.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';

const UI_TIMEOUT = 30_000;
let h: Harness;
let buildDir: string;
let browser: Browser | undefined;
const opened: ApproverBrowser[] = [];
let now = Date.UTC(2026, 11, 4, 9, 0, 0);

/** A fresh context with its own authenticator, the person's key registered through the desk's own form. */
async function personWithKey(id: string): Promise<ApproverBrowser> {
  const ab = await openApproverBrowser(browser!);
  opened.push(ab);
  await openDesk(ab.page, h.app);
  await registerKey(ab.page, id, h.app.approvers.issueRegistrationCode(id, 'test').code);
  return ab;
}

/** A bridge call made by the page's own script (bearer secret + whatever cookie the browser sends). */
async function pagePost(page: Page, path: string, body: unknown): Promise<{ status: number; code?: string }> {
  return page.evaluate(
    async ({ path, body, secret }) => {
      const res = await fetch(path, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        credentials: 'same-origin',
      });
      const json = (await res.json()) as { error?: { code: string } };
      return { status: res.status, ...(json.error === undefined ? {} : { code: json.error.code }) };
    },
    { path, body, secret: h.app.uiSessionSecret },
  );
}
const ceremonyAs = (page: Page, approverId: string) =>
  pagePost(page, '/api/approvals/requests/r-1/ceremony', { approverId, verdict: 'approve' });

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error('Debian chromium is needed at /usr/bin/chromium');
  buildDir = tempDir('countersign-renderer-');
  await buildRenderer(buildDir);
  h = await startHarness({
    config: { domain: 'test', approvals: { sessionIdleMs: 10 * 60_000, sessionLifetimeMs: 60 * 60_000 } },
    start: { rendererDir: buildDir, clock: () => now },
  });
  h.app.approvers.addApprover({ id: 'alice', displayName: 'Alice Example', groups: ['finance-approvers'] });
  h.app.approvers.addApprover({ id: 'bob', displayName: 'Bob Example', groups: ['finance-approvers'] });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  for (const ab of opened) await ab.close().catch(() => undefined);
  await browser?.close();
  await h?.close();
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
}, 60_000);

describe('desk sign-in with a security key (Chromium)', () => {
  it('signs Alice in with her key: the desk shows her, the cookie is HttpOnly and SameSite=Strict, and only her calls pass', async () => {
    const alice = await personWithKey('alice');
    const { page } = alice;
    // Before sign-in: no session, so acting for Alice is refused.
    expect(await ceremonyAs(page, 'alice')).toEqual({ status: 403, code: 'not_signed_in' });

    await actAs(page, 'alice');
    const shown = page.getByTestId('desk-session');
    expect(await shown.getAttribute('data-approver-id')).toBe('alice');
    expect(await shown.innerText()).toContain('Alice Example');
    const cookie = (await alice.context.cookies()).find((c) => c.name === DESK_SESSION_COOKIE)!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/', secure: false });
    expect(await page.evaluate('document.cookie')).not.toContain(DESK_SESSION_COOKIE);
    // The acting-as choice is gone; the approvals view decides as the signed-in person only.
    expect(await page.getByTestId('desk-act-as').count()).toBe(0);
    expect(await page.getByTestId('approver-select').inputValue()).toBe('alice');
    expect(await page.getByTestId('approver-select').isDisabled()).toBe(true);

    // Her session passes the check (the service then finds no such request); Bob's id does not.
    expect(await ceremonyAs(page, 'alice')).toEqual({ status: 404, code: 'request_unknown' });
    expect(await ceremonyAs(page, 'bob')).toEqual({ status: 403, code: 'approver_mismatch' });
    const kinds = (h.app.db.prepare("SELECT kind FROM audit_log WHERE kind LIKE 'desk.%'").all() as Array<{ kind: string }>).map(
      (r) => r.kind,
    );
    expect(kinds).toContain('desk.signed_in');
  });

  it('a session cookie from one person cannot act as another, in another browser either; no session is refused', async () => {
    const bob = await personWithKey('bob');
    await actAs(bob.page, 'bob');
    const bobCookie = (await bob.context.cookies()).find((c) => c.name === DESK_SESSION_COOKIE)!;
    // Someone who copies Bob's cookie into their own browser still acts only as Bob.
    const thief = await openApproverBrowser(browser!);
    opened.push(thief);
    await openDesk(thief.page, h.app);
    expect(await ceremonyAs(thief.page, 'bob')).toEqual({ status: 403, code: 'not_signed_in' });
    await thief.context.addCookies([{ ...bobCookie }]);
    expect(await ceremonyAs(thief.page, 'alice')).toEqual({ status: 403, code: 'approver_mismatch' });
    await thief.context.clearCookies();
    expect(await ceremonyAs(thief.page, 'alice')).toEqual({ status: 403, code: 'not_signed_in' });
  });

  it('refuses a replayed sign-in assertion', async () => {
    const { page } = opened[0]!; // Alice's browser
    if (await page.getByTestId('desk-session').isVisible()) await signOut(page);
    const finished = page.waitForRequest((r) => r.url().endsWith('/api/session/sign-in/finish'));
    await actAs(page, 'alice');
    const body = (await finished).postDataJSON() as unknown;
    // The same assertion again, from the same page: its challenge was single use.
    expect(await pagePost(page, '/api/session/sign-in/finish', body)).toEqual({ status: 400, code: 'challenge_invalid' });
  });

  it('signs out: the form comes back and the old session acts for no one', async () => {
    const { page, context } = opened[0]!;
    await actAs(page, 'alice');
    const before = (await context.cookies()).find((c) => c.name === DESK_SESSION_COOKIE)!;
    await signOut(page);
    expect(await page.getByTestId('desk-session').count()).toBe(0);
    expect((await context.cookies()).find((c) => c.name === DESK_SESSION_COOKIE)).toBeUndefined();
    // Even the old cookie, put back, is dead.
    await context.addCookies([{ ...before }]);
    expect(await ceremonyAs(page, 'alice')).toEqual({ status: 403, code: 'not_signed_in' });
    await context.clearCookies();
  });

  // Its own timeout: a key registration, a sign-in and a sign-out, each waiting for a poll (every 3 s) to be held.
  it('a session read that answers after the person signed in or out does not undo it', { timeout: 120_000 }, async () => {
    h.app.approvers.addApprover({ id: 'carol', displayName: 'Carol Example', groups: ['finance-approvers'] });
    const { page } = await personWithKey('carol');
    await page.getByTestId('desk-sign-in').waitFor({ timeout: UI_TIMEOUT });
    // Fault injection (the real core answers at once): every read of the session (the desk polls
    // it) is answered by the core when it is made, and that answer reaches the page only when the
    // test lets it, as on a slow machine or network where a poll crosses a sign-in or sign-out.
    const held: Array<{ who: string; deliver: () => Promise<void> }> = [];
    await page.route('**/api/session', async (route) => {
      const response = await route.fetch();
      const { session } = (await response.json()) as { session: { approverId: string } | null };
      held.push({ who: session?.approverId ?? 'nobody', deliver: () => route.fulfill({ response }) });
    });
    let finished = 0;
    page.on('requestfinished', (r) => {
      if (new URL(r.url()).pathname === '/api/session') finished += 1;
    });
    /** Hand the page every held answer that said `who` is signed in, oldest first, and let it act on them. */
    const deliver = async (who: string) => {
      const answers = held.filter((a) => a.who === who);
      const target = finished + answers.length;
      for (const answer of answers) {
        held.splice(held.indexOf(answer), 1);
        await answer.deliver();
      }
      await expect.poll(() => finished, { timeout: UI_TIMEOUT }).toBe(target);
      // Past the page's handling of them: the parse, the check and React's render of what it set.
      await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 250)));
    };

    // Polls made while nobody was signed in arrive after Carol signed in.
    await expect.poll(() => held.length, { timeout: UI_TIMEOUT }).toBeGreaterThan(0);
    await actAs(page, 'carol');
    await deliver('nobody');
    expect(await page.getByTestId('desk-sign-in').count()).toBe(0);
    expect(await page.getByTestId('desk-session').getAttribute('data-approver-id')).toBe('carol');

    // Polls made while she was signed in arrive after she signed out.
    await expect.poll(() => held.filter((a) => a.who === 'carol').length, { timeout: UI_TIMEOUT }).toBeGreaterThan(0);
    await signOut(page);
    await deliver('carol');
    expect(await page.getByTestId('desk-session').count()).toBe(0);
    expect(await page.getByTestId('desk-sign-in').isVisible()).toBe(true);

    // Reads made after the change are shown as before: she is signed out. Everything held is
    // delivered before the route goes (unroute itself lets through a read held after that).
    for (const answer of held.splice(0)) await answer.deliver();
    await page.unroute('**/api/session');
    await page.getByTestId('desk-sign-in').waitFor({ timeout: UI_TIMEOUT });
  });

  it('ends an idle session and one past its absolute lifetime (injected clock); the desk returns to sign-in', async () => {
    const { page } = opened[0]!;
    await actAs(page, 'alice');
    now += 11 * 60_000; // idle longer than 10 minutes
    await page.getByTestId('desk-sign-in').waitFor({ timeout: UI_TIMEOUT }); // the desk notices at its next poll
    expect(await ceremonyAs(page, 'alice')).toEqual({ status: 403, code: 'not_signed_in' });

    await actAs(page, 'alice');
    for (let i = 0; i < 6; i++) {
      now += 9 * 60_000; // active every 9 minutes...
      expect(await ceremonyAs(page, 'alice')).toEqual({ status: 404, code: 'request_unknown' });
    }
    now += 9 * 60_000; // ...but 63 minutes after sign-in
    expect(await ceremonyAs(page, 'alice')).toEqual({ status: 403, code: 'not_signed_in' });
    await page.getByTestId('desk-sign-in').waitFor({ timeout: UI_TIMEOUT });
    const reasons = (
      h.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'desk.signed_out'").all() as Array<{ record: string }>
    ).map((r) => (JSON.parse(r.record) as { reason: string }).reason);
    expect(reasons).toEqual(expect.arrayContaining(['signed_out', 'idle', 'expired']));
  });

  it(
    'notices a session that ended on the server although every session read takes longer than the poll',
    { timeout: 180_000 },
    async () => {
      h.app.approvers.addApprover({ id: 'dave', displayName: 'Dave Example', groups: ['finance-approvers'] });
      const { page } = await personWithKey('dave');
      await actAs(page, 'dave');
      // Fault injection (the real core answers at once): each read of the session reaches the core
      // 4 s after the page made it, longer than the desk's 3 s poll, as on a slow machine or link.
      // A newer read starts before every answer arrives; the answers must still be shown.
      await page.route('**/api/session', async (route) => {
        await new Promise((resolve) => setTimeout(resolve, 4_000));
        await route.continue();
      });
      now += 11 * 60_000; // idle past 10 minutes: the server ends the session
      await page.getByTestId('desk-sign-in').waitFor({ timeout: 40_000 });
      expect(await page.getByTestId('desk-session').count()).toBe(0);
      await page.unroute('**/api/session');
    },
  );
});
