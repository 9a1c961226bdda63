/**
 * Admin actions need an admin's key tap over exactly that action (real WebAuthn structures and
 * signatures from the project's software authenticator, verified by the core over HTTP).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';

let h: Harness;
let rootKey: VirtualAuthenticator;

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function virtualApprover(id: string, groups: string[]): Promise<VirtualAuthenticator> {
  h.app.approvers.addApprover({ id, displayName: id, groups, virtual: true });
  const authenticator = new VirtualAuthenticator();
  const { code } = h.app.approvers.issueRegistrationCode(id, 'test');
  const options = await h.app.approvers.beginRegistration(id, code);
  await h.app.approvers.finishRegistration(id, authenticator.createCredential({ rpId: 'localhost', origin: h.app.approvers.origins[0]!, challenge: options.challenge, user: options.user, userVerification: 'required' }));
  return authenticator;
}

function tap(key: VirtualAuthenticator, options: { challenge: string; allowCredentials?: Array<{ id: string }> }) {
  return key.getAssertion({ rpId: 'localhost', origin: h.app.approvers.origins[0]!, challenge: options.challenge, allowCredentials: (options.allowCredentials ?? []).map((c) => c.id), userVerification: 'required' });
}

beforeEach(async () => {
  h = await startHarness({ config: { domain: 'test' } });
  rootKey = await virtualApprover('root', ['countersign-admins']);
});
afterEach(async () => h.close());

describe('admin actions', () => {
  it('adds an approver only after the admin taps a key over that action, and audits both', async () => {
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.add', id: 'alice', displayName: 'Alice', groups: ['finance-approvers'] } });
    expect(started.status).toBe(200);
    expect(h.app.approvers.list().map((a) => a.id)).toEqual(['root']);
    const options = started.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    const response = tap(rootKey, options);
    const done = await post('/api/admin/submit', { adminId: 'root', response });
    expect(done.status).toBe(200);
    expect(h.app.approvers.get('alice')).toMatchObject({ groups: ['finance-approvers'], status: 'active' });
    // The new approver's first key needs the code that came with the action, once.
    const code = (done.json.result as { registration: { code: string } }).registration.code;
    expect(() => h.app.approvers.get('alice')).not.toThrow();
    await expect(h.app.approvers.beginRegistration('alice')).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(h.app.approvers.beginRegistration('alice', 'x'.repeat(32))).rejects.toMatchObject({ code: 'challenge_invalid' });
    await expect(h.app.approvers.beginRegistration('alice', code)).resolves.toMatchObject({ rp: { id: 'localhost' } });
    await expect(h.app.approvers.beginRegistration('alice', code)).rejects.toMatchObject({ code: 'challenge_invalid' });
    const audited = h.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'admin.action'").all() as Array<{ record: string }>;
    expect(audited).toHaveLength(1);
    expect(audited[0]?.record).toContain('"approver.add"');
    // The same tap cannot be replayed for a second action.
    expect((await post('/api/admin/submit', { adminId: 'root', response })).json).toMatchObject({ error: { code: 'challenge_invalid' } });
  });

  it('refuses a non-admin, a tap by another admin, and a malformed action', async () => {
    const bobKey = await virtualApprover('bob', ['finance-approvers']);
    expect((await post('/api/admin/ceremony', { adminId: 'bob', action: { kind: 'approver.disable', id: 'root' } })).json).toMatchObject({ error: { code: 'approver_not_eligible' } });
    await virtualApprover('root2', ['countersign-admins']);
    const started = await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.disable', id: 'bob' } });
    const options = started.json.options as { challenge: string; allowCredentials: Array<{ id: string }> };
    // root2 submits root's challenge: not theirs.
    expect((await post('/api/admin/submit', { adminId: 'root2', response: tap(rootKey, options) })).json).toMatchObject({ error: { code: 'challenge_invalid' } });
    // bob's key cannot answer for root.
    expect(() => tap(bobKey, options)).toThrow();
    expect((await post('/api/admin/ceremony', { adminId: 'root', action: { kind: 'approver.delete_everything' } })).json).toMatchObject({ error: { code: 'schema_invalid' } });
    expect(h.app.approvers.get('bob').status).toBe('active');
  });
});
