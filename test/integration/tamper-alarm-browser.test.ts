/**
 * The tamper alarm on the desk: the real renderer (built by Vite, served by the core at /ui/) in
 * Debian Chromium shows an open alarm as a banner read from the UI bridge, and drops it once an
 * admin's key tap (the project's software authenticator, over the admin API) acknowledges it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { startHarness, tempDir, type Harness } from '../helpers/harness.js';
import { launchChromium } from '../helpers/chromium.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { buildRenderer } from '../helpers/desk-browser.js';

const UI_TIMEOUT = 15_000;

let h: Harness;
let buildDir: string;
let browser: Browser | undefined;

beforeAll(async () => {
  buildDir = tempDir('countersign-renderer-');
  await buildRenderer(buildDir);
  h = await startHarness({ config: { domain: 'test' }, start: { rendererDir: buildDir } });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
  rmSync(buildDir, { recursive: true, force: true });
});

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('the tamper alarm in the desk UI', () => {
  it('shows an open alarm as a banner, and no banner once an admin acknowledged it', async () => {
    const app = h.app;
    await app.checkpoints.checkpoint();
    // Rewrite entry 1 in the database file from a second connection.
    const db = new Database(join(h.dataDir, 'countersign.db'));
    try {
      db.exec('DROP TRIGGER audit_log_no_update');
      db.prepare(`UPDATE audit_log SET record = substr(record, 1, length(record) - 1) || ',"forged":true}' WHERE seq = 1`).run();
    } finally {
      db.close();
    }
    const alarm = (await app.auditVerifier.verifyNow()).raised!;
    expect(alarm.firstBadSeq).toBe(1);

    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`http://localhost:${app.port}/ui/#secret=${app.uiSessionSecret}`);
    const banner = page.getByTestId('audit-alarm');
    await banner.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    const text = await banner.innerText();
    expect(text).toContain(`Tamper alarm ${alarm.id}`);
    expect(text).toContain('failed verification at entry 1');
    expect(text).toContain('High-impact calls wait for an approver');
    expect(await banner.getAttribute('role')).toBe('alert');

    // The admin acknowledges with a key tap (software authenticator, as the admin API tests do).
    app.approvers.addApprover({ id: 'root', displayName: 'root', groups: ['countersign-admins'], virtual: true });
    const key = new VirtualAuthenticator();
    const { code } = app.approvers.issueRegistrationCode('root', 'test');
    const reg = await app.approvers.beginRegistration('root', code);
    const origin = app.approvers.origins[0]!;
    await app.approvers.finishRegistration(
      'root',
      key.createCredential({ rpId: 'localhost', origin, challenge: reg.challenge, user: reg.user, userVerification: 'required' }),
    );
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'audit.acknowledge_alarm', alarmId: alarm.id } });
    const options = started.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    const response = key.getAssertion({
      rpId: 'localhost',
      origin,
      challenge: options.challenge,
      allowCredentials: options.allowCredentials.map((c) => c.id),
      userVerification: 'required',
    });
    expect((await post('/api/admin/submit', { adminId: 'root', response })).status).toBe(200);

    // The desk refreshes its status and the banner goes.
    await banner.waitFor({ state: 'detached', timeout: UI_TIMEOUT });
    await context.close();
  });
});
