/**
 * Reaching the desk as a person in a real browser, for the desk's browser tests. Every desk test
 * goes through these functions, so how a person proves who they are (sign-in with their security
 * key, a real WebAuthn ceremony in the page's virtual authenticator) lives in one place.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { build } from 'vite';
import { REPO_ROOT } from '../../main/core/app.js';

/**
 * Build the renderer into `outDir` exactly as `npm run build:renderer` ships it. Vitest runs with
 * NODE_ENV=test, which would make Vite bundle React's development build, so NODE_ENV is
 * `production` for the build and put back as it was afterwards.
 */
export async function buildRenderer(outDir: string): Promise<void> {
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({
      configFile: join(REPO_ROOT, 'renderer', 'vite.config.ts'),
      mode: 'production',
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
}

export interface DeskAddress {
  readonly port: number;
  readonly uiSessionSecret: string;
  /** The desk's origin (https://<publicHost>:PORT for a hub over TLS); default http://localhost:PORT. */
  readonly deskUrl?: string;
}

/** Open the desk (optionally at a deep link such as `request=<id>`), with the session secret in the fragment. */
export async function openDesk(page: Page, app: DeskAddress, fragment = ''): Promise<void> {
  const extra = fragment.length > 0 ? `&${fragment}` : '';
  await page.goto(`${app.deskUrl ?? `http://localhost:${app.port}`}/ui/#secret=${encodeURIComponent(app.uiSessionSecret)}${extra}`);
}

/**
 * Sign in at the open desk as `approverId` with their security key, which must be registered and
 * held by this page's virtual authenticator (addVirtualAuthenticator, one context per person).
 * Signed in as someone else, it signs out first; already signed in as them, it does nothing.
 */
export async function actAs(page: Page, approverId: string): Promise<void> {
  const signedIn = page.getByTestId('desk-session');
  const form = page.getByTestId('desk-sign-in');
  await signedIn.or(form).first().waitFor({ timeout: 30_000 });
  if (await signedIn.isVisible()) {
    if ((await signedIn.getAttribute('data-approver-id')) === approverId) return;
    await signOut(page);
  }
  const select = page.getByTestId('desk-sign-in-approver');
  // The list of people loads with the form: wait until `approverId` is offered.
  await select.locator(`option[value="${approverId}"]`).waitFor({ state: 'attached', timeout: 30_000 });
  await select.selectOption(approverId);
  await page.getByTestId('desk-sign-in-submit').click();
  await page.locator(`[data-testid="desk-session"][data-approver-id="${approverId}"]`).waitFor({ timeout: 60_000 });
}

/**
 * At the open desk, start registering a security key for `approverId` with a registration code an
 * admin issued (Approvals view: choose the person, type the code, press "Register a security
 * key"), without waiting for the outcome: a test that expects a refusal reads it itself.
 */
export async function startKeyRegistration(page: Page, approverId: string, code: string): Promise<void> {
  // The tab is clicked right after the desk's first paint, while the page's one thread still runs
  // the chunks that load after it: with the pages CPU-throttled 4x through CDP at load 22-25 the
  // click waited 35-36 s for the tab to be actionable (team-walkthrough-browser, two desks at
  // once), past the 30 s this had; 5-14 s at load 17-24 in team-desk-admin-browser.
  await page.getByTestId('tab-approvals').click({ timeout: 120_000 });
  await page.getByTestId('approver-select').selectOption(approverId, { timeout: 60_000 });
  await page.getByTestId('registration-code').fill(code);
  await page.getByTestId('register-key').click();
}

/**
 * Register a security key for `approverId` at the open desk with `code` (held by this page's
 * virtual authenticator) and wait until the desk says it is registered.
 */
export async function registerKey(page: Page, approverId: string, code: string): Promise<void> {
  await startKeyRegistration(page, approverId, code);
  await page.getByTestId('registration-result').waitFor({ timeout: 60_000 });
}

/** Sign out at the open desk (the server ends the session; the sign-in form comes back). */
export async function signOut(page: Page): Promise<void> {
  await page.getByTestId('desk-sign-out').click();
  await page.getByTestId('desk-sign-in').waitFor({ timeout: 30_000 });
}

/** Records every notification the page creates, and lets a test click one (headless Chromium shows none). */
const CAPTURE_NOTIFICATIONS = `
  (() => {
    const Real = window.Notification;
    const shown = [];
    class Captured {
      constructor(title, options) {
        this.title = title;
        this.body = options && options.body;
        this.tag = options && options.tag;
        this.onclick = null;
        shown.push(this);
      }
      close() { this.closed = true; }
      static get permission() { return Real.permission; }
      static requestPermission() { return Real.requestPermission(); }
    }
    window.Notification = Captured;
    window.__notifications = shown;
  })();
`;

/**
 * Grant the desk's origin the 'notifications' permission in `context` and capture every
 * notification its pages create (window.__notifications; read them with shownNotifications).
 * Call before the page opens the desk.
 */
export async function captureNotifications(context: BrowserContext, origin: string): Promise<void> {
  await context.grantPermissions(['notifications'], { origin });
  await context.addInitScript(CAPTURE_NOTIFICATIONS);
}

/**
 * The page globals the tests read inside functions run in the page (page.waitForFunction). The
 * tests' tsconfig has no DOM types, so such a function casts globalThis to this type. Wait with a
 * function, never a string: Playwright eval()s a string predicate again on every poll, which the
 * desk's CSP (script-src 'self', no unsafe-eval) refuses as soon as the first check was false.
 */
export interface PageGlobals {
  document: {
    title: string;
    querySelector(selector: string): { getAttribute(name: string): string | null } | null;
    querySelectorAll(selector: string): ArrayLike<unknown>;
  };
  __notifications: unknown[];
}

export interface ShownNotification {
  title: string;
  body: string;
  tag: string;
}

/** The notifications the page created so far (captureNotifications). */
export function shownNotifications(page: Page): Promise<ShownNotification[]> {
  // An expression run in the page: the tests' tsconfig has no DOM types.
  return page.evaluate<ShownNotification[]>('window.__notifications.map((n) => ({ title: n.title, body: n.body, tag: n.tag }))');
}

/**
 * Screenshot the page in light and dark (prefers-color-scheme) as `<name>-light.png` and
 * `<name>-dark.png`: always into test-results/screenshots/ (not committed), and into
 * docs/screenshots/ (committed, shown in the README) when UPDATE_SCREENSHOTS=1.
 */
export async function saveScreenshots(page: Page, name: string): Promise<void> {
  const dirs = [join(REPO_ROOT, 'test-results', 'screenshots')];
  if (process.env.UPDATE_SCREENSHOTS === '1') dirs.push(join(REPO_ROOT, 'docs', 'screenshots'));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    const image = await page.screenshot({ fullPage: true });
    for (const dir of dirs) writeFileSync(join(dir, `${name}-${colorScheme}.png`), image);
  }
  await page.emulateMedia({ colorScheme: null });
}

/** The next read of one path, held back by holdNextRead until the test delivers it. */
export interface HeldRead {
  /** Whether the page has made the read (the core has answered it; the page has not seen it). */
  made(): boolean;
  /** Hand the page the held answer, wait until it has it, then let the page handle it (250 ms). */
  deliver(timeoutMs: number): Promise<void>;
  /** Reads of the path pass again. */
  stop(): Promise<void>;
}

/**
 * Fault injection for an answer that arrives late (the real core answers at once): the page's next
 * read of `pathname` is answered by the core when it is made and reaches the page only when the
 * test calls deliver(), as on a slow machine or network; later reads of it pass.
 */
export async function holdNextRead(page: Page, pathname: string): Promise<HeldRead> {
  const isRead = (url: URL) => url.pathname === pathname;
  let held: { request: unknown; fulfil: () => Promise<void> } | undefined;
  await page.route(isRead, async (route) => {
    if (held !== undefined) return route.continue();
    const response = await route.fetch();
    held = { request: route.request(), fulfil: () => route.fulfill({ response }) };
  });
  return {
    made: () => held !== undefined,
    async deliver(timeoutMs) {
      if (held === undefined) throw new Error(`no read of ${pathname} is held`);
      const request = held.request;
      const answered = page.waitForEvent('requestfinished', { predicate: (r) => r === request, timeout: timeoutMs });
      await held.fulfil();
      await answered;
      // Past the page's handling of it: the check and React's render of what it set.
      await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 250)));
    },
    stop: () => page.unroute(isRead),
  };
}
