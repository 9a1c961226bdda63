/**
 * Admin actions need an admin's key tap over exactly that action (real WebAuthn structures and
 * signatures from the project's software authenticator, verified by the core over HTTP).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { AdminActions } from '../../main/core/approvals/admin-actions.js';
import type { AuditLog } from '../../main/core/audit/audit-log.js';

let h: Harness;
let rootKey: VirtualAuthenticator;

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function virtualApprover(id: string, groups: string[]): Promise<VirtualAuthenticator> {
  h.app.approvers.addApprover({ id, displayName: id, groups, virtual: true });
  return registerKey(id);
}

/** Register one more virtual key for an existing approver; returns the authenticator holding it. */
async function registerKey(id: string): Promise<VirtualAuthenticator> {
  const authenticator = new VirtualAuthenticator();
  const { code } = h.app.approvers.issueRegistrationCode(id, 'test');
  const options = await h.app.approvers.beginRegistration(id, code);
  await h.app.approvers.finishRegistration(
    id,
    authenticator.createCredential({
      rpId: 'localhost',
      origin: h.app.approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  return authenticator;
}

type Options = { challenge: string; allowCredentials: Array<{ id: string }> };
const addAlice = { kind: 'approver.add', id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] };

function tap(key: VirtualAuthenticator, options: { challenge: string; allowCredentials?: Array<{ id: string }> }) {
  return key.getAssertion({
    rpId: 'localhost',
    origin: h.app.approvers.origins[0]!,
    challenge: options.challenge,
    allowCredentials: (options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
}

beforeEach(async () => {
  h = await startHarness({ config: { domain: 'test' } });
  rootKey = await virtualApprover('root', ['countersign-admins']);
});
afterEach(async () => h.close());

describe('admin actions', () => {
  it('adds an approver only after the admin taps a key over that action, and audits both', async () => {
    const started = await post('/api/admin/ceremony', {
      adminId: 'root',
      action: { kind: 'approver.add', id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] },
    });
    expect(started.status).toBe(200);
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root']);
    const options = started.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    const response = tap(rootKey, options);
    const done = await post('/api/admin/submit', { adminId: 'root', response });
    expect(done.status).toBe(200);
    expect(h.app.approvers.get('alice')).toMatchObject({ groups: ['finance-approvers'], status: 'active' });
    // The new approver's first key needs the code that came with the action; it is spent only when
    // a key is stored, so starting twice (a cancelled attempt) still works (security-keys.test.ts).
    const code = (done.json.result as { registration: { code: string } }).registration.code;
    expect(() => h.app.approvers.get('alice')).not.toThrow();
    await expect(h.app.approvers.beginRegistration('alice')).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(h.app.approvers.beginRegistration('alice', 'x'.repeat(32))).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(h.app.approvers.beginRegistration('alice', code)).resolves.toMatchObject({ rp: { id: 'localhost' } });
    await expect(h.app.approvers.beginRegistration('alice', code)).resolves.toMatchObject({ rp: { id: 'localhost' } });
    const audited = h.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'admin.action'").all() as Array<{ record: string }>;
    expect(audited).toHaveLength(1);
    expect(audited[0]?.record).toContain('"approver.add"');
    // The same tap cannot be replayed for a second action.
    expect((await post('/api/admin/submit', { adminId: 'root', response })).json).toMatchObject({ error: { code: 'challenge_invalid' } });
  });

  it('refuses a non-admin, a tap by another admin, and a malformed action', async () => {
    const bobKey = await virtualApprover('bob', ['finance-approvers']);
    expect((await post('/api/admin/ceremony', { adminId: 'bob', action: { kind: 'approver.disable', id: 'root' } })).json).toMatchObject({
      error: { code: 'approver_not_eligible' },
    });
    await virtualApprover('root2', ['countersign-admins']);
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.disable', id: 'bob' } });
    const options = started.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    // root2 submits root's challenge: not theirs.
    expect((await post('/api/admin/submit', { adminId: 'root2', response: tap(rootKey, options) })).json).toMatchObject({
      error: { code: 'challenge_invalid' },
    });
    // bob's key cannot answer for root.
    expect(() => tap(bobKey, options)).toThrow();
    expect((await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.delete_everything' } })).json).toMatchObject({
      error: { code: 'schema_invalid' },
    });
    expect(h.app.approvers.get('bob').status).toBe('active');
  });

  it('marks an admin key whose signature counter went backwards suspect, audits it, and refuses the action and the key from then on', async () => {
    const keyId = rootKey.listCredentials()[0]!.id;
    const first = await post('/api/admin/ceremony', { adminId: 'root', action: addAlice });
    expect((await post('/api/admin/submit', { adminId: 'root', response: tap(rootKey, first.json.options as Options) })).status).toBe(200);
    expect(h.app.approvers.credential(keyId).signCount).toBe(1);
    // A cloned key: its next assertion carries counter 1 again, not above the stored 1.
    rootKey.setCounter(keyId, 0);
    const second = await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.disable', id: 'alice' } });
    const refused = await post('/api/admin/submit', { adminId: 'root', response: tap(rootKey, second.json.options as Options) });
    expect(refused.json).toMatchObject({ error: { code: 'credential_suspect' } });
    expect(h.app.approvers.credential(keyId).status).toBe('suspect');
    expect(h.app.approvers.get('alice').status).toBe('active');
    const suspectAudit = h.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'approver.credential_suspect'").all() as Array<{
      record: string;
    }>;
    expect(suspectAudit.map((r) => JSON.parse(r.record) as Record<string, unknown>)).toMatchObject([
      { approverId: 'root', credentialId: keyId, status: 'suspect', storedCounter: 1, reportedCounter: 1 },
    ]);
    expect(h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'admin.action'").get()).toEqual({ n: 1 });
    // The suspect key is never offered again, even with a counter that moves on.
    rootKey.setCounter(keyId, 100);
    expect((await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.disable', id: 'alice' } })).json).toMatchObject({
      error: { code: 'credential_unknown' },
    });
    expect(h.app.approvers.get('alice').status).toBe('active');
  });

  it('refuses an admin tap with a key of the admin that the ceremony did not offer, and performs nothing', async () => {
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: addAlice });
    const options = started.json.options as Options;
    // A key registered after the ceremony began is the admin's, active, and still not offered.
    const laterKey = await registerKey('root');
    const laterId = laterKey.listCredentials()[0]!.id;
    expect(options.allowCredentials.map((c) => c.id)).not.toContain(laterId);
    const response = laterKey.getAssertion({
      rpId: 'localhost',
      origin: h.app.approvers.origins[0]!,
      challenge: options.challenge,
      allowCredentials: [laterId],
      userVerification: 'required',
    });
    expect((await post('/api/admin/submit', { adminId: 'root', response })).json).toMatchObject({ error: { code: 'credential_unknown' } });
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root']);
    expect(h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'admin.action'").get()).toEqual({ n: 0 });
    // The refused tap spent nothing: an offered key still confirms the same action.
    expect((await post('/api/admin/submit', { adminId: 'root', response: tap(rootKey, options) })).status).toBe(200);
    expect(h.app.approvers.get('alice').status).toBe('active');
  });

  it('refuses an admin tap whose userHandle names another user, and performs nothing', async () => {
    await virtualApprover('root2', ['countersign-admins']);
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: addAlice });
    const response = tap(rootKey, started.json.options as Options);
    // The userHandle is not covered by the signature: only the server's check can catch it.
    response.response.userHandle = Buffer.from('root2', 'utf8').toString('base64url');
    expect((await post('/api/admin/submit', { adminId: 'root', response })).json).toMatchObject({ error: { code: 'assertion_invalid' } });
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root', 'root2']);
    expect(h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'admin.action'").get()).toEqual({ n: 0 });
  });

  it('lets a virtual admin confirm an action with a key the ceremony engine offered', async () => {
    await h.app.virtualApprovers!.create({ id: 'vadmin', displayName: 'Virtual admin', groups: ['countersign-admins'] });
    const started = await post('/api/admin/ceremony', { adminId: 'vadmin', action: addAlice });
    const done = await post('/api/admin/submit', {
      adminId: 'vadmin',
      response: h.app.virtualApprovers!.answer(started.json.options as Options),
    });
    expect(done.status).toBe(200);
    expect(h.app.approvers.get('alice').status).toBe('active');
  });

  it('refuses an admin disabled while their tap is being verified, and performs nothing', async () => {
    // The race is injected through the clock: the submit reads it after its first admin check
    // and before the signature is verified, so the admin is disabled in between.
    let raceOnNextClock = false;
    const clock = () => {
      if (raceOnNextClock) {
        raceOnNextClock = false;
        h.app.approvers.disable('root');
      }
      return Date.now();
    };
    // A second admin, so root may be disabled (the last active admin cannot: last_admin).
    await virtualApprover('root2', ['countersign-admins']);
    const admin = new AdminActions(h.app.db, h.app.audit, h.app.approvers, { ceremonyTimeoutMs: 60_000, now: clock });
    const { options } = await admin.start('root', addAlice);
    raceOnNextClock = true;
    await expect(admin.submit('root', tap(rootKey, options as Options))).rejects.toMatchObject({ code: 'approver_disabled' });
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root', 'root2']);
    expect(h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'admin.action'").get()).toEqual({ n: 0 });
    expect(h.app.db.prepare('SELECT used_at FROM admin_challenges').all()).toEqual([{ used_at: null }]);
  });

  it('refuses an admin removed from the admin group while their tap is being verified, and performs nothing', async () => {
    let raceOnNextClock = false;
    const clock = () => {
      if (raceOnNextClock) {
        raceOnNextClock = false;
        h.app.approvers.setGroups('root', ['finance-approvers']);
      }
      return Date.now();
    };
    // A second admin, so root may leave the group (the last admin cannot: last_admin).
    await virtualApprover('root2', ['countersign-admins']);
    const admin = new AdminActions(h.app.db, h.app.audit, h.app.approvers, { ceremonyTimeoutMs: 60_000, now: clock });
    const { options } = await admin.start('root', addAlice);
    raceOnNextClock = true;
    await expect(admin.submit('root', tap(rootKey, options as Options))).rejects.toMatchObject({ code: 'approver_not_eligible' });
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root', 'root2']);
    expect(h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind = 'admin.action'").get()).toEqual({ n: 0 });
  });

  it('answers audit_write_failed when the admin action cannot be audited, and performs nothing', async () => {
    // A mock audit log: the real one cannot be made to fail on demand mid-transaction.
    const failing = Object.create(h.app.audit) as AuditLog;
    failing.append = () => {
      throw new Error('disk full');
    };
    const admin = new AdminActions(h.app.db, failing, h.app.approvers, { ceremonyTimeoutMs: 60_000 });
    const { options } = await admin.start('root', addAlice);
    await expect(admin.submit('root', tap(rootKey, options as Options))).rejects.toMatchObject({ code: 'audit_write_failed' });
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root']);
    expect(h.app.db.prepare('SELECT used_at FROM admin_challenges').all()).toEqual([{ used_at: null }]);
  });

  it('refuses a ceremony started before the upgrade that records offered keys, asking to restart it', async () => {
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: addAlice });
    // A row written by a version before the offered column existed.
    h.app.db.prepare('UPDATE admin_challenges SET offered = NULL').run();
    const refused = await post('/api/admin/submit', { adminId: 'root', response: tap(rootKey, started.json.options as Options) });
    expect(refused.json).toMatchObject({ error: { code: 'challenge_invalid' } });
    expect(JSON.stringify(refused.json)).toContain('restarted');
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root']);
  });
});
