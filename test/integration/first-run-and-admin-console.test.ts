/**
 * The desk's first run and admin console at the core, through the bridge methods the desk calls
 * (h.app.ui, the one UiService): the first admin can be created only while no admin exists, even
 * when two desks race; a built-in platform authenticator is refused at once and the registration
 * code survives it (spent only with a stored key, once); agents are enrolled from their signed
 * enrollment request, rotated and revoked only with an admin's key tap (the project's software
 * authenticator produces real WebAuthn structures and signatures).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, ensurePeople, type Harness } from '../helpers/harness.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { createEnrollmentRequest } from '../../shared/enrollment.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import type { AdminAction } from '../../shared/admin-actions.js';
import { authenticatorLabel, isPlatformRegistration } from '../../shared/authenticators.js';

let h: Harness;

beforeEach(async () => {
  h = await startHarness({ config: { domain: 'test' } });
});
afterEach(async () => h.close());

function credentialFor(key: VirtualAuthenticator, options: { challenge: string; user: { id: string; name: string; displayName: string } }) {
  return key.createCredential({
    rpId: 'localhost',
    origin: h.app.approvers.origins[0]!,
    challenge: options.challenge,
    user: options.user,
    userVerification: 'required',
  });
}

/** A virtual admin with one registered key, through the bridge with a registration code. */
async function virtualAdmin(id: string): Promise<VirtualAuthenticator> {
  h.app.approvers.addApprover({ id, displayName: id, groups: ['countersign-admins'], virtual: true });
  const key = new VirtualAuthenticator();
  const { code } = h.app.approvers.issueRegistrationCode(id, 'test');
  const options = await h.app.ui.beginApproverRegistration(id, code);
  await h.app.ui.finishApproverRegistration(id, credentialFor(key, options));
  return key;
}

async function tapFor(adminId: string, key: VirtualAuthenticator, action: AdminAction) {
  const started = await h.app.ui.startAdminAction(adminId, action);
  const options = started.options as { challenge: string; allowCredentials?: Array<{ id: string }> };
  const response = key.getAssertion({
    rpId: 'localhost',
    origin: h.app.approvers.origins[0]!,
    challenge: options.challenge,
    allowCredentials: (options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
  return h.app.ui.submitAdminAction(adminId, response);
}

async function enrollmentRequest(agentId: string) {
  const key = await importAgentKey(await generateAgentKey('ES256'));
  return createEnrollmentRequest(key, agentId, `${agentId} bot`);
}

describe('first run', () => {
  it('creates exactly one first admin when two desks race, and is closed with first_run_closed afterwards', async () => {
    expect(await h.app.ui.getFirstRun()).toEqual({ open: true, approvers: 0 });
    const [a, b] = await Promise.allSettled([h.app.ui.createFirstAdmin('ana', 'Ana'), h.app.ui.createFirstAdmin('ben', 'Ben')]);
    const won = [a, b].filter((r) => r.status === 'fulfilled');
    const lost = [a, b].filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'first_run_closed' });
    expect(h.app.approvers.list().map((p) => p.id)).toHaveLength(1);
    expect(h.app.approvers.list()[0]?.groups).toEqual(['countersign-admins']);
    expect(await h.app.ui.getFirstRun()).toEqual({ open: false, approvers: 1 });
    await expect(h.app.ui.createFirstAdmin('carl', 'Carl')).rejects.toMatchObject({ code: 'first_run_closed' });
    // The code it issued registers a key (the admin is not virtual, so the software key is refused
    // as an attestation, which proves the code was accepted first).
    const { code } = (won[0] as PromiseFulfilledResult<{ code: string; approverId: string }>).value;
    const winner = h.app.approvers.list()[0]!.id;
    await expect(h.app.ui.beginApproverRegistration(winner, code)).resolves.toMatchObject({ hints: ['security-key'] });
  });

  it('stays open while only non-admin approvers exist', async () => {
    ensurePeople(h.app, 'owner@example.com');
    expect(await h.app.ui.getFirstRun()).toEqual({ open: true, approvers: 1 });
  });
});

describe('security keys: platform authenticators and registration codes', () => {
  it('refuses a platform authenticator at once with platform_authenticator_refused, keeps the code usable, and spends it with the key', async () => {
    h.app.approvers.addApprover({ id: 'vic', displayName: 'Vic', groups: [], virtual: true });
    const { code } = h.app.approvers.issueRegistrationCode('vic', 'test');
    const key = new VirtualAuthenticator();
    const first = await h.app.ui.beginApproverRegistration('vic', code);
    // Asked for by hint only: no authenticatorAttachment that would make a browser wait out the timeout.
    expect(first).toMatchObject({ hints: ['security-key'] });
    expect(
      (first as { authenticatorSelection?: { authenticatorAttachment?: string } }).authenticatorSelection?.authenticatorAttachment,
    ).toBe(undefined);
    const platform = { ...credentialFor(key, first), authenticatorAttachment: 'platform' as const };
    await expect(h.app.ui.finishApproverRegistration('vic', platform)).rejects.toMatchObject({ code: 'platform_authenticator_refused' });
    const internal = credentialFor(key, await h.app.ui.beginApproverRegistration('vic', code));
    const withInternal = { ...internal, response: { ...internal.response, transports: ['internal'] } };
    await expect(h.app.ui.finishApproverRegistration('vic', withInternal)).rejects.toMatchObject({
      code: 'platform_authenticator_refused',
    });
    expect(h.app.approvers.credentialsOf('vic')).toHaveLength(0);
    // A cancelled attempt (begun, never finished) does not burn it either; then a security key registers with it.
    await h.app.ui.beginApproverRegistration('vic', code);
    const good = credentialFor(key, await h.app.ui.beginApproverRegistration('vic', code));
    await expect(h.app.ui.finishApproverRegistration('vic', good)).resolves.toMatchObject({ approverId: 'vic' });
    // Spent with the key: single use from now on.
    await expect(h.app.ui.beginApproverRegistration('vic', code)).rejects.toMatchObject({ code: 'challenge_invalid' });
  });

  it('lets only one of two ceremonies begun with the same code store a key', async () => {
    h.app.approvers.addApprover({ id: 'vic', displayName: 'Vic', groups: [], virtual: true });
    const { code } = h.app.approvers.issueRegistrationCode('vic', 'test');
    const one = credentialFor(new VirtualAuthenticator(), await h.app.ui.beginApproverRegistration('vic', code));
    const two = credentialFor(new VirtualAuthenticator(), await h.app.ui.beginApproverRegistration('vic', code));
    await expect(h.app.ui.finishApproverRegistration('vic', one)).resolves.toMatchObject({ approverId: 'vic' });
    await expect(h.app.ui.finishApproverRegistration('vic', two)).rejects.toMatchObject({ code: 'challenge_invalid' });
    expect(h.app.approvers.credentialsOf('vic')).toHaveLength(1);
  });

  it('names known authenticators by make and model and recognises platform ones by any sign', () => {
    expect(authenticatorLabel('2fc0579f-8113-47ea-b116-bb5a8db9202a')).toBe('Yubico YubiKey 5 Series with NFC');
    expect(authenticatorLabel('42B4FB4A-2866-43B2-9BF7-6C6669C2E5D3')).toBe('Google Titan Security Key v2');
    expect(authenticatorLabel('00000000-0000-0000-0000-000000000001')).toBe('unknown model (00000000-0000-0000-0000-000000000001)');
    expect(isPlatformRegistration({ attachment: 'cross-platform', transports: ['usb'] })).toBe(false);
    expect(isPlatformRegistration({ attachment: 'platform' })).toBe(true);
    expect(isPlatformRegistration({ transports: ['usb', 'internal'] })).toBe(true);
    expect(isPlatformRegistration({ aaguid: '08987058-cadc-4b81-b6e1-30de50dcbe96' })).toBe(true);
  });
});

describe('agents from the admin console', () => {
  it('enrolls an agent from its signed request, rotates and revokes it, each only after the admin taps a key', async () => {
    const rootKey = await virtualAdmin('root');
    ensurePeople(h.app, 'dana@example.com');
    const request = await enrollmentRequest('ops-bot');
    const scope = {
      owner: 'dana@example.com',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: ['financial'],
      jurisdictions: ['US'],
    };
    // Started but not tapped: nothing enrolled.
    await h.app.ui.startAdminAction('root', { kind: 'agent.enroll', request, scope });
    expect(h.app.registry.getAgent('ops-bot')).toBeUndefined();
    const enrolled = await tapFor('root', rootKey, { kind: 'agent.enroll', request, scope });
    expect(enrolled.result).toEqual({ enrolled: 'ops-bot' });
    expect(h.app.registry.getAgent('ops-bot')).toMatchObject({ status: 'active', owner: 'dana@example.com' });

    const next = await enrollmentRequest('ops-bot');
    const rotated = await tapFor('root', rootKey, { kind: 'agent.rotate', id: 'ops-bot', request: next, overlapHours: 1 });
    expect(rotated.result).toMatchObject({ rotated: 'ops-bot', kid: next.payload.publicJwk.kid });

    const revoked = await tapFor('root', rootKey, { kind: 'agent.revoke', id: 'ops-bot', reason: 'laptop lost' });
    expect(revoked.result).toMatchObject({ revoked: 'ops-bot', endedRequests: [] });
    expect(h.app.registry.getAgent('ops-bot')).toMatchObject({ status: 'revoked' });
    const kinds = (h.app.db.prepare("SELECT record FROM audit_log WHERE kind = 'admin.action'").all() as Array<{ record: string }>).map(
      (r) => (JSON.parse(r.record) as { action: { kind: string } }).action.kind,
    );
    expect(kinds).toEqual(['agent.enroll', 'agent.rotate', 'agent.revoke']);
  });

  it('refuses a forged enrollment request before the tap, and a scope the policy does not know at submit', async () => {
    const rootKey = await virtualAdmin('root');
    ensurePeople(h.app, 'dana@example.com');
    const request = await enrollmentRequest('ops-bot');
    const forged = { ...request, payload: { ...request.payload, agentId: 'other-bot' } };
    const scope = {
      owner: 'dana@example.com',
      group: 'finance-agents',
      allowedTools: ['payments.transfer'],
      dataClasses: [],
      jurisdictions: [],
    };
    await expect(h.app.ui.startAdminAction('root', { kind: 'agent.enroll', request: forged, scope })).rejects.toMatchObject({
      code: 'enrollment_proof_invalid',
    });
    await expect(
      tapFor('root', rootKey, { kind: 'agent.enroll', request, scope: { ...scope, allowedTools: ['no.such.tool'] } }),
    ).rejects.toMatchObject({ code: 'unknown_tool' });
    expect(h.app.registry.getAgent('ops-bot')).toBeUndefined();
  });
});
