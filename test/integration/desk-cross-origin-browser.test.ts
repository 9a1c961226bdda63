/**
 * A page from another origin cannot use the desk (issue #13), in Debian's Chromium: a signed-in
 * approver's browser (the desk's HttpOnly, SameSite=Strict session cookie held) visits a page
 * served by a second local HTTP server on another port of localhost (another origin, but the
 * same site, so SameSite alone does not stop it). That page tries the desk's bridge every way a
 * page can: fetch with credentials (JSON, and a "simple" text/plain POST that needs no
 * preflight), fetch with the leaked session secret, a form POST, an EventSource on the event
 * stream and a WebSocket to the gateway. Each is refused and nothing changes: the request stays
 * pending with no approval, no ceremony is started, the audit log does not grow. And a DNS
 * rebinding: a browser that resolves a foreign name to this machine reaches the server with that
 * Host, and is answered 421 host_not_allowed, page and bridge alike.
 * (The header-level checks without a browser are in ui-http.test.ts and bridge-table.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { CHROMIUM_PATH, launchChromium } from '../helpers/chromium.js';
import { registerPerson, signInOverHttp, type HttpSignIn } from '../helpers/desk-session.js';
import { DESK_SESSION_COOKIE } from '../../shared/desk-session.js';

let h: Harness;
let browser: Browser | undefined;
let foreign: Server;
let foreignOrigin: string;
let alice: HttpSignIn;
let requestId: string;

/** What must not move while the foreign page tries. */
async function stateOf(id: string) {
  const db = h.app.db;
  return {
    state: (await h.app.approvals.getPending(id)).state,
    approvals: (db.prepare('SELECT COUNT(*) AS n FROM approvals WHERE request_id = ?').get(id) as { n: number }).n,
    challenges: (db.prepare('SELECT COUNT(*) AS n FROM webauthn_challenges').get() as { n: number }).n,
    audit: (db.prepare('SELECT COUNT(*) AS n FROM audit_log').get() as { n: number }).n,
  };
}

beforeAll(async () => {
  h = await startHarness({ config: { domain: 'test' } });
  const key = await registerPerson(h.app, 'alice', ['finance-approvers']);
  alice = await signInOverHttp(h.app, 'alice', key);
  const finance = h.client('finance-bot', await h.enroll('finance-bot'));
  requestId = (await finance.submit(transferCall('48000.00', 'Northwind Traders'))).requestId;
  // The foreign site: a plain page on another port of localhost.
  foreign = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>elsewhere</title><p>another site</p>');
  });
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
  foreignOrigin = `http://localhost:${(foreign.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => foreign?.close(resolve));
  await h?.close();
}, 60_000);

describe('a page from another origin', () => {
  it('cannot call the bridge with the approver’s cookie by fetch, form POST, EventSource or WebSocket, and nothing changes', async () => {
    const desk = `http://localhost:${h.app.port}`;
    const context = await browser!.newContext();
    // The approver is signed in at the desk in this browser: the cookie a browser would hold.
    await context.addCookies([
      { name: DESK_SESSION_COOKIE, value: alice.token, domain: 'localhost', path: '/', httpOnly: true, sameSite: 'Strict' },
    ]);
    const page = await context.newPage();
    const seen: Array<{ url: string; status: number; method: string; origin: string | undefined }> = [];
    const sent: Array<{ url: string; method: string }> = [];
    page.on('request', (req) => {
      if (req.url().startsWith(desk)) sent.push({ url: req.url(), method: req.method() });
    });
    page.on('response', (res) => {
      if (res.url().startsWith(desk))
        seen.push({ url: res.url(), status: res.status(), method: res.request().method(), origin: res.request().headers()['origin'] });
    });
    await page.goto(`${foreignOrigin}/`);
    const before = await stateOf(requestId);
    expect(before.state).toBe('pending');

    const attempts = await page.evaluate(
      async ({ desk, requestId, secret }) => {
        const outcome = async (work: () => Promise<Response>) => {
          try {
            const res = await work();
            return { status: res.status, type: res.type, body: res.type === 'opaque' ? '' : await res.text() };
          } catch (error) {
            return { error: String(error) };
          }
        };
        const body = JSON.stringify({ approverId: 'alice', verdict: 'approve' });
        return {
          jsonWithCookie: await outcome(() =>
            fetch(`${desk}/api/approvals/requests/${requestId}/ceremony`, {
              method: 'POST',
              credentials: 'include',
              headers: { 'content-type': 'application/json' },
              body,
            }),
          ),
          // A "simple" request: no preflight, so it reaches the server; the answer stays opaque.
          simplePost: await outcome(() =>
            fetch(`${desk}/api/approvals/requests/${requestId}/ceremony`, {
              method: 'POST',
              mode: 'no-cors',
              credentials: 'include',
              headers: { 'content-type': 'text/plain' },
              body,
            }),
          ),
          // Even with the session secret (say it leaked), the browser must not be let through.
          withSecret: await outcome(() =>
            fetch(`${desk}/api/ui/queue`, { credentials: 'include', headers: { authorization: `Bearer ${secret}` } }),
          ),
          readQueue: await outcome(() => fetch(`${desk}/api/ui/queue`, { credentials: 'include' })),
          eventSource: await new Promise<string>((resolve) => {
            const source = new EventSource(`${desk}/api/ui/events`, { withCredentials: true });
            source.onopen = () => resolve('open');
            source.onerror = () => {
              source.close();
              resolve('error');
            };
            source.onmessage = () => resolve('message');
          }),
          webSocket: await new Promise<string>((resolve) => {
            const socket = new WebSocket(desk.replace('http:', 'ws:'));
            socket.onopen = () => {
              socket.close();
              resolve('open');
            };
            socket.onerror = () => resolve('error');
          }),
        };
      },
      { desk, requestId, secret: h.app.uiSessionSecret },
    );
    expect(JSON.stringify(attempts.jsonWithCookie)).toMatch(/^{"error":"TypeError/);
    // A simple POST is sent without a preflight; the server refuses it (below), and its answer's
    // Cross-Origin-Resource-Policy: same-origin keeps even an opaque copy from the page.
    expect(JSON.stringify(attempts.simplePost)).toMatch(/^{"error":"TypeError/);
    expect(JSON.stringify(attempts.withSecret)).toMatch(/^{"error":"TypeError/);
    expect(JSON.stringify(attempts.readQueue)).toMatch(/^{"error":"TypeError/);
    expect(attempts.eventSource).toBe('error');
    expect(attempts.webSocket).toBe('error');

    // A form POST from the foreign page: the browser navigates to the answer, which refuses.
    const formAnswer = page.waitForResponse((res) => res.url().endsWith(`/api/approvals/requests/${requestId}/submit`));
    await page.evaluate(
      ({ desk, requestId }) => {
        // (Runs in the page; the tests' TypeScript has no DOM library, so the shapes are spelled out.)
        type Element = {
          name: string;
          value: string;
          method: string;
          enctype: string;
          action: string;
          append(e: Element): void;
          submit(): void;
        };
        const doc = (globalThis as unknown as { document: { createElement(tag: string): Element; body: Element } }).document;
        const form = doc.createElement('form');
        form.method = 'POST';
        form.enctype = 'text/plain';
        form.action = `${desk}/api/approvals/requests/${requestId}/submit`;
        const input = doc.createElement('input');
        input.name = '{"approverId":"alice","response":{"x":"';
        input.value = '"}}';
        form.append(input);
        doc.body.append(form);
        form.submit();
      },
      { desk, requestId },
    );
    const refused = await formAnswer;
    expect([401, 403]).toContain(refused.status());
    const refusal = (await refused.json()) as { error?: { code?: string } };
    expect(['not_authenticated', 'origin_not_allowed']).toContain(refusal.error?.code);

    // Every request that reached the server carried the foreign origin and was refused.
    const reached = seen.filter((s) => s.method !== 'OPTIONS');
    expect(reached.length).toBeGreaterThan(0);
    for (const s of reached) {
      expect(s.origin, s.url).toBe(foreignOrigin);
      expect(s.status, `${s.method} ${s.url}`).toBeGreaterThanOrEqual(400);
    }
    // The browser did send the preflight-free POST; the state check below shows it did nothing.
    expect(sent.some((s) => s.method === 'POST' && s.url.endsWith('/ceremony'))).toBe(true);
    // Nothing moved: still pending, no approval, no ceremony challenge, no audit entry.
    expect(await stateOf(requestId)).toEqual(before);
    await context.close();
  });

  it('is refused when it reaches the desk by a rebound name (DNS rebinding): 421 for the page and the bridge', async () => {
    // A browser whose resolver maps a foreign name to this machine, as a rebinding attack arranges.
    const rebinding = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--host-resolver-rules=MAP rebind.attacker.test 127.0.0.1'],
    });
    try {
      // The attacker's own page (served before the name was rebound) carries no CSP: standing in for
      // it, the 421 page is opened with CSP bypassed so the page may call its own origin.
      const page = await (await rebinding.newContext({ bypassCSP: true })).newPage();
      const before = await stateOf(requestId);
      const base = `http://rebind.attacker.test:${h.app.port}`;
      const shown = await page.goto(`${base}/ui/`);
      expect(shown?.status()).toBe(421);
      expect(await shown?.json()).toMatchObject({ error: { code: 'host_not_allowed' } });
      // From the rebound origin's point of view the desk is same-origin: only the Host check stands.
      const calls = await page.evaluate(
        async ({ requestId, secret }) => {
          const call = async (path: string, init: RequestInit = {}) => {
            const res = await fetch(path, { ...init, headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' } });
            return { status: res.status, body: await res.json() };
          };
          return [
            await call('/api/ui/queue'),
            await call(`/api/approvals/requests/${requestId}/ceremony`, {
              method: 'POST',
              body: JSON.stringify({ approverId: 'alice', verdict: 'approve' }),
            }),
          ];
        },
        { requestId, secret: h.app.uiSessionSecret },
      );
      for (const c of calls) expect(c).toMatchObject({ status: 421, body: { error: { code: 'host_not_allowed' } } });
      expect(await stateOf(requestId)).toEqual(before);
    } finally {
      await rebinding.close();
    }
  });
});
