/**
 * Approver registration with real WebAuthn structures (the project's virtual authenticator,
 * verified by @simplewebauthn/server) on a real SQLite store: single-use challenges, the
 * attestation policy, virtual approvers only in the test domain, and the published directory.
 */
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDataDir } from '../../main/core/app.js';
import { ApproverDirectory, type ApproverDirectoryOptions } from '../../main/core/approvals/approver-directory.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { approverDirectorySchema } from '../../shared/approvals.js';
import { isCountersignError, type ErrorCode } from '../../shared/errors.js';
import type { Db } from '../../main/core/store/database.js';
import type { AuditLog } from '../../main/core/audit/audit-log.js';

const ORIGIN = 'http://localhost:7345';
let dir: string;
let db: Db;
let audit: AuditLog;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-approvers-'));
  ({ db, audit } = openDataDir(dir));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function directory(overrides: Partial<ApproverDirectoryOptions> = {}): ApproverDirectory {
  return new ApproverDirectory(db, audit, {
    domain: 'test',
    rpId: 'localhost',
    origins: [ORIGIN],
    requireAaguids: [],
    ceremonyTimeoutMs: 60_000,
    ...overrides,
  });
}

/** A hardware-key model the tests impersonate (test hook of the virtual authenticator). */
const YUBIKEY_5 = 'cb69481e-8ff7-4039-93ec-0a2729a154a8';
const OTHER_MODEL = '2fc0579f-8113-47ea-b116-bb5a8db9202a';

async function register(
  dirx: ApproverDirectory,
  authenticator: VirtualAuthenticator,
  approverId: string,
  origin = ORIGIN,
  impersonateAaguid?: string,
) {
  const options = await dirx.beginRegistration(approverId);
  const response = authenticator.createCredential({
    rpId: options.rp.id ?? 'localhost',
    origin,
    challenge: options.challenge,
    user: options.user,
    userVerification: 'required',
    ...(impersonateAaguid === undefined ? {} : { testHooks: { impersonateAaguid } }),
  });
  return { options, response, done: () => dirx.finishRegistration(approverId, response) };
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'ok' | 'other'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return isCountersignError(e) ? e.code : 'other';
  }
}

const count = (table: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;

describe('approver directory', () => {
  it('registers a virtual approver key and publishes it in a directory tool servers can load', async () => {
    const d = directory();
    d.addApprover({ id: 'alice@example.com', displayName: 'Alice', groups: ['finance-approvers'], virtual: true });
    const { done } = await register(d, new VirtualAuthenticator(), 'alice@example.com');
    const credential = await done();
    expect(credential).toMatchObject({ approverId: 'alice@example.com', status: 'active', attestationFmt: 'packed', signCount: 0 });
    const published = approverDirectorySchema.parse(d.published());
    expect(published.approvers).toEqual([
      {
        id: 'alice@example.com',
        displayName: 'Alice',
        groups: ['finance-approvers'],
        virtual: true,
        credentials: [{ id: credential.credentialId, publicJwk: credential.publicJwk }],
      },
    ]);
    expect(audit.verify()).toMatchObject({ ok: true });
  });

  it('spends the challenge: a replayed registration and a response for another approver are refused', async () => {
    const d = directory();
    d.addApprover({ id: 'alice', displayName: 'Alice', groups: ['g'], virtual: true });
    d.addApprover({ id: 'bob', displayName: 'Bob', groups: ['g'], virtual: true });
    const authenticator = new VirtualAuthenticator();
    const alice = await register(d, authenticator, 'alice');
    expect(await codeOf(d.finishRegistration('bob', alice.response))).toBe('challenge_invalid');
    await alice.done();
    expect(await codeOf(d.finishRegistration('alice', alice.response))).toBe('challenge_invalid');
    expect(count('approver_credentials')).toBe(1);
  });

  it('refuses a registration from another origin or without user verification', async () => {
    const d = directory();
    d.addApprover({ id: 'alice', displayName: 'Alice', groups: ['g'], virtual: true });
    const wrongOrigin = await register(d, new VirtualAuthenticator(), 'alice', 'http://localhost:9999');
    expect(await codeOf(wrongOrigin.done())).toBe('assertion_invalid');
    const options = await d.beginRegistration('alice');
    const noUv = new VirtualAuthenticator().createCredential({
      rpId: 'localhost',
      origin: ORIGIN,
      challenge: options.challenge,
      user: options.user,
      testHooks: { withoutUserVerification: true },
    });
    expect(await codeOf(d.finishRegistration('alice', noUv))).toBe('assertion_invalid');
    expect(count('approver_credentials')).toBe(0);
  });

  it('refuses virtual approvers and virtual keys outside the test domain', async () => {
    const production = directory({ domain: 'production' });
    expect(
      await codeOf(Promise.resolve().then(() => production.addApprover({ id: 'v', displayName: 'V', groups: [], virtual: true }))),
    ).toBe('virtual_approver_refused');
    production.addApprover({ id: 'carol', displayName: 'Carol', groups: ['g'] });
    const r = await register(production, new VirtualAuthenticator(), 'carol');
    expect(await codeOf(r.done())).toBe('attestation_refused');
    expect(count('approver_credentials')).toBe(0);
  });

  it('enforces the AAGUID allowlist for real approvers, and keeps virtual keys away from them', async () => {
    const d = directory({ requireAaguids: [YUBIKEY_5] });
    d.addApprover({ id: 'dave', displayName: 'Dave', groups: ['g'] });
    expect(await codeOf((await register(d, new VirtualAuthenticator(), 'dave', ORIGIN, OTHER_MODEL)).done())).toBe('attestation_refused');
    expect(await codeOf((await register(d, new VirtualAuthenticator(), 'dave')).done())).toBe('attestation_refused');
    expect(count('approver_credentials')).toBe(0);
    const accepted = await (await register(d, new VirtualAuthenticator(), 'dave', ORIGIN, YUBIKEY_5)).done();
    expect(accepted).toMatchObject({ approverId: 'dave', aaguid: YUBIKEY_5 });
  });

  it("refuses Chromium's virtual authenticator in production, and accepts it for real approvers in the test domain", async () => {
    const chromiumTestAaguid = '01020304-0506-0708-0102-030405060708';
    const production = directory({ domain: 'production' });
    production.addApprover({ id: 'paul', displayName: 'Paul', groups: ['g'] });
    expect(await codeOf((await register(production, new VirtualAuthenticator(), 'paul', ORIGIN, chromiumTestAaguid)).done())).toBe(
      'attestation_refused',
    );
    const test = directory({ domain: 'test' });
    test.addApprover({ id: 'tess', displayName: 'Tess', groups: ['g'] });
    expect(await codeOf((await register(test, new VirtualAuthenticator(), 'tess', ORIGIN, chromiumTestAaguid)).done())).toBe('ok');
  });

  it('keeps non-virtual keys away from virtual approvers', async () => {
    const d = directory();
    d.addApprover({ id: 'vicky', displayName: 'Vicky', groups: ['g'], virtual: true });
    expect(await codeOf((await register(d, new VirtualAuthenticator(), 'vicky', ORIGIN, YUBIKEY_5)).done())).toBe('attestation_refused');
  });

  it('refuses registration for a disabled or unknown approver, and drops them from the directory', async () => {
    const d = directory();
    d.addApprover({ id: 'erin', displayName: 'Erin', groups: ['g'], virtual: true });
    await (await register(d, new VirtualAuthenticator(), 'erin')).done();
    d.disable('erin');
    expect(await codeOf(d.beginRegistration('erin'))).toBe('approver_disabled');
    expect(await codeOf(d.beginRegistration('nobody'))).toBe('approver_unknown');
    expect(d.published().approvers).toEqual([]);
  });

  it('refuses to take the last admin out of the admin group (the first run would reopen), and changes nothing', async () => {
    const d = directory();
    d.addApprover({ id: 'root', displayName: 'Root', groups: [ADMIN_GROUP_NAME] });
    d.addApprover({ id: 'ops', displayName: 'Ops', groups: ['sre'] });
    const before = count('audit_log');
    expect(await codeOf(Promise.resolve().then(() => d.setGroups('root', ['sre'])))).toBe('last_admin');
    expect(d.get('root').groups).toEqual([ADMIN_GROUP_NAME]);
    expect(count('audit_log')).toBe(before);
    // With a second admin, the first may leave the group.
    d.setGroups('ops', ['sre', ADMIN_GROUP_NAME]);
    d.setGroups('root', ['sre']);
    expect(d.get('root').groups).toEqual(['sre']);
    expect(await codeOf(Promise.resolve().then(() => d.setGroups('ops', ['sre'])))).toBe('last_admin');
  });

  it('refuses to disable the last active admin (no one could act as admin any more), and changes nothing', async () => {
    const d = directory();
    d.addApprover({ id: 'root', displayName: 'Root', groups: [ADMIN_GROUP_NAME] });
    d.addApprover({ id: 'ops', displayName: 'Ops', groups: [ADMIN_GROUP_NAME] });
    d.addApprover({ id: 'sam', displayName: 'Sam', groups: ['sre'] });
    d.disable('sam');
    d.disable('ops'); // another admin is still active
    const before = count('audit_log');
    expect(await codeOf(Promise.resolve().then(() => d.disable('root')))).toBe('last_admin');
    expect(d.get('root').status).toBe('active');
    expect(count('audit_log')).toBe(before);
  });
});
