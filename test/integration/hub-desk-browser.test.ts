/**
 * A desk pointed at a hub on a host name over TLS, in a real browser: Debian Chromium resolves
 * `countersign.test` to 127.0.0.1 (`--host-resolver-rules`) and trusts the hub's development
 * certificate by its public key (`--ignore-certificate-errors-spki-list` with the SPKI digest the
 * hub computes; a page with certificate errors may not use WebAuthn at all). The person registers
 * a key and signs in with the CDP virtual authenticator on https://countersign.test:PORT, so the
 * relying party id is the configured host name, not localhost; the session cookie is HttpOnly,
 * SameSite=Strict and Secure; and a ceremony on a plain-http localhost page of the same hub is
 * refused (another origin, another RP id).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { chromiumAvailable, launchChromium, openApproverBrowser, type ApproverBrowser } from '../helpers/chromium.js';
import { actAs, buildRenderer, openDesk, registerKey } from '../helpers/desk-browser.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';

const HOST = 'countersign.test';
let h: Harness;
let buildDir: string;
let browser: Browser | undefined;
const opened: ApproverBrowser[] = [];

beforeAll(async () => {
  if (!chromiumAvailable()) throw new Error('Debian chromium is needed at /usr/bin/chromium');
  buildDir = tempDir('countersign-renderer-');
  await buildRenderer(buildDir);
  h = await startHarness({
    config: { domain: 'test', gateway: { publicHost: HOST, tls: {} } },
    start: { rendererDir: buildDir },
  });
  h.app.approvers.addApprover({ id: 'alice', displayName: 'Alice Example', groups: ['finance-approvers'] });
  browser = await launchChromium([
    `--host-resolver-rules=MAP ${HOST} 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${h.app.edge.tls!.spkiSha256}`,
  ]);
}, 180_000);

afterAll(async () => {
  for (const ab of opened) await ab.close().catch(() => undefined);
  await browser?.close();
  await h?.close();
  if (buildDir !== undefined) rmSync(buildDir, { recursive: true, force: true });
}, 60_000);

describe('a desk on a hub served over TLS on a host name (Chromium)', () => {
  it('registers a key and signs Alice in on https://countersign.test: RP id = the host name, Secure HttpOnly SameSite=Strict cookie', async () => {
    const alice = await openApproverBrowser(browser!);
    opened.push(alice);
    const { page } = alice;
    await openDesk(page, h.app);
    // The desk removes the secret from the address bar; the page is the hub's https origin.
    expect(new URL(page.url()).origin).toBe(`https://${HOST}:${h.app.port}`);
    expect(await page.evaluate('window.isSecureContext')).toBe(true);

    await registerKey(page, 'alice', h.app.approvers.issueRegistrationCode('alice', 'test').code);
    const credentials = await alice.authenticator.credentials();
    expect(credentials.map((c) => c.rpId)).toEqual([HOST]);

    await actAs(page, 'alice');
    expect(await page.getByTestId('desk-session').getAttribute('data-approver-id')).toBe('alice');
    const cookie = (await alice.context.cookies()).find((c) => c.name === DESK_SESSION_COOKIE)!;
    expect(cookie).toMatchObject({ domain: HOST, httpOnly: true, sameSite: 'Strict', path: '/', secure: true });
    expect(await page.evaluate('document.cookie')).not.toContain(DESK_SESSION_COOKIE);
    const signedIn = h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'desk.signed_in'").get() as { n: number };
    expect(signedIn.n).toBe(1);
    expect(alice.problems).toEqual([]);
  });

  it('does not serve the desk to a browser on plain http: the TLS port gives no page', async () => {
    const page = await (await browser!.newContext()).newPage();
    try {
      const outcome = await page.goto(`http://${HOST}:${h.app.port}/ui/`).then(
        (response) => `answered ${response?.status() ?? 0}`,
        (error: unknown) => (error instanceof Error ? error.message : String(error)),
      );
      expect(outcome).toMatch(/net::ERR_/);
    } finally {
      await page.context().close();
    }
  });
});
