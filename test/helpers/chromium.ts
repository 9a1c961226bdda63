/**
 * Real-browser helpers: Debian Chromium driven by playwright-core (never a downloaded browser)
 * and the Chrome DevTools Protocol's WebAuthn virtual authenticator, so approvers register and
 * use "security keys" through the real renderer with real WebAuthn ceremonies.
 *
 * Notes from STACK.md that these helpers encode:
 * - WebAuthn.enable must run on the tab before any ceremony, or navigator.credentials.get() hangs
 *   forever in headless mode (it ignores its timeout);
 * - an authenticator belongs to one tab: use one browser context + one authenticator per approver;
 * - the page must be on http://localhost:PORT (127.0.0.1 is not a valid RP id), or on https with a
 *   certificate Chromium trusts (a page with certificate errors may not use WebAuthn).
 *
 * Chromium's virtual authenticator attests with format "packed" (an x5c batch certificate of its
 * own) and the AAGUID 01020304-0506-0708-0102-030405060708; @simplewebauthn/server accepts it.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** The AAGUID Chromium's CDP virtual authenticator puts in its attestations. */
export const CHROMIUM_VIRTUAL_AAGUID = '01020304-0506-0708-0102-030405060708';

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_PATH);
}

/**
 * Launch Debian's Chromium headless (no sandbox: tests may run as root in containers). `extraArgs`
 * add switches, e.g. a host resolver rule and a trusted SPKI for a hub on a host name over TLS.
 */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  const browser = await launchPlain(extraArgs);
  // COUNTERSIGN_TEST_CPU_THROTTLE=4 slows every page the tests open 4x (CDP
  // Emulation.setCPUThrottlingRate), to find the waits that a slow, loaded machine runs past and
  // the late answers it reorders. Off by default; never set in CI.
  const rate = Number(process.env.COUNTERSIGN_TEST_CPU_THROTTLE ?? 0);
  if (rate > 1) {
    const throttle = async (context: BrowserContext, page: Page) => {
      const cdp = await context.newCDPSession(page);
      await cdp.send('Emulation.setCPUThrottlingRate', { rate });
      return page;
    };
    const newContext = browser.newContext.bind(browser);
    browser.newContext = async (options) => {
      const context = await newContext(options);
      const newPage = context.newPage.bind(context);
      context.newPage = async () => throttle(context, await newPage());
      return context;
    };
    browser.newPage = async (options) => {
      const context = await browser.newContext(options);
      return context.newPage();
    };
  }
  return browser;
}

async function launchPlain(extraArgs: readonly string[]): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
  });
}

export interface VirtualAuthenticator {
  cdp: CDPSession;
  authenticatorId: string;
  /** The credentials the authenticator holds (CDP WebAuthn.getCredentials). */
  credentials(): Promise<Array<{ credentialId: string; rpId?: string; signCount: number; userHandle?: string }>>;
  remove(): Promise<void>;
}

/**
 * Attach a CTAP2 USB security key with user verification to `page` (WebAuthn.enable first, with
 * the browser UI off, so ceremonies complete without a prompt). Call before the page's first
 * ceremony; it survives navigations of the same tab.
 */
export async function addVirtualAuthenticator(page: Page): Promise<VirtualAuthenticator> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'usb',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    cdp,
    authenticatorId,
    async credentials() {
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
      return credentials.map((c) => ({
        credentialId: c.credentialId,
        signCount: c.signCount,
        ...(c.rpId === undefined ? {} : { rpId: c.rpId }),
        ...(c.userHandle === undefined ? {} : { userHandle: c.userHandle }),
      }));
    },
    async remove() {
      await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId });
    },
  };
}

export interface ApproverBrowser {
  context: BrowserContext;
  page: Page;
  authenticator: VirtualAuthenticator;
  /** Console errors and failed requests the page produced (CSP violations land here). */
  problems: string[];
  close(): Promise<void>;
}

/** A fresh browser context (its own storage) with one tab and one virtual authenticator. */
export async function openApproverBrowser(browser: Browser): Promise<ApproverBrowser> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  const authenticator = await addVirtualAuthenticator(page);
  return { context, page, authenticator, problems, close: () => context.close() };
}
