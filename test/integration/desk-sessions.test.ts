/**
 * Desk sessions over the real HTTP edge and the in-process (IPC-shaped) bridge: a person signs in
 * with their security key (the project's software authenticator, real WebAuthn structures), the
 * session cookie is HttpOnly + SameSite=Strict + Path=/, and every bridge row that acts for a
 * person runs only for the person signed in. Lifetimes run on an injected clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { alteredChallenge, signInBridge, signInOverHttp, tapKey } from '../helpers/desk-session.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { inProcessBridge } from '../../main/core/ui/bridge-routes.js';
import { authorizeBridgeCall } from '../../main/core/ui/bridge-caller.js';
import { BRIDGE_METHODS, BRIDGE_METHOD_NAMES, arg, type BridgeMethodRow } from '../../shared/bridge-table.js';
import { callerRuleOf, DESK_SESSION_COOKIE, type DeskSessionView } from '../../shared/desk-session.js';
import { bridgeIdSchema } from '../../shared/bridge.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

let now = Date.UTC(2026, 11, 4, 12, 0, 0);
const clock = () => now;

async function start(config: Record<string, unknown> = {}): Promise<Harness> {
  now = Date.UTC(2026, 11, 4, 12, 0, 0);
  h = await startHarness({ config: { domain: 'test', ...config }, start: { clock } });
  return h;
}

async function person(app: Harness['app'], id: string, groups: string[] = ['finance-approvers']): Promise<VirtualAuthenticator> {
  app.approvers.addApprover({ id, displayName: `${id} (display)`, groups, virtual: true });
  const key = new VirtualAuthenticator();
  const { code } = app.approvers.issueRegistrationCode(id, 'test');
  const options = await app.approvers.beginRegistration(id, code);
  await app.approvers.finishRegistration(
    id,
    key.createCredential({
      rpId: 'localhost',
      origin: app.approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  return key;
}

const kindsOf = (app: Harness['app']) =>
  (app.db.prepare('SELECT kind FROM audit_log ORDER BY seq').all() as Array<{ kind: string }>).map((r) => r.kind);

describe('desk sign-in with a security key', () => {
  it('opens a session for exactly the person whose key signed, in an HttpOnly SameSite=Strict cookie, audited', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const signed = await signInOverHttp(app, 'alice', aliceKey);
    expect(signed.setCookie).toMatch(
      new RegExp(`^${DESK_SESSION_COOKIE}=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200$`),
    );
    expect(signed.setCookie).not.toContain('Secure'); // plain http on loopback
    expect(signed.session).toMatchObject({ approverId: 'alice', displayName: 'alice (display)', admin: false });
    expect(signed.session.credentialId).toBe(aliceKey.listCredentials()[0]!.id);
    expect(signed.session.expiresAt).toBe(now + 12 * 3600_000);
    expect((await signed.bridge.getSession()).session?.approverId).toBe('alice');
    expect(kindsOf(app)).toContain('desk.signed_in');
    // Only a digest is kept: the token appears nowhere in the audit log.
    const log = JSON.stringify(app.db.prepare('SELECT * FROM audit_log').all());
    expect(log).not.toContain(signed.token);
  });

  it('refuses every person row without a session (not_signed_in), over HTTP and in process', async () => {
    const { app } = await start();
    await person(app, 'alice');
    const http = createHttpBridge({ baseUrl: `http://127.0.0.1:${app.port}`, sessionSecret: app.uiSessionSecret });
    const ipc = inProcessBridge(app.ui, app.bridgeEvents);
    for (const bridge of [http, ipc]) {
      expect((await bridge.getSession()).session).toBeNull();
      await expect(bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
      await expect(
        bridge.submitApprovalCeremony('r-1', 'alice', { id: 'AA', rawId: 'AA', type: 'public-key', response: {} }),
      ).rejects.toMatchObject({ code: 'not_signed_in' });
      // Reads and registration stay behind the transport gate only.
      expect((await bridge.listApprovers()).approvers.map((a) => a.id)).toEqual(['alice']);
    }
    // A made-up cookie is no session either.
    const forged = createHttpBridge({
      baseUrl: `http://127.0.0.1:${app.port}`,
      sessionSecret: app.uiSessionSecret,
      sessionCookie: 'A'.repeat(43),
    });
    await expect(forged.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
  });

  it("refuses another person's approverId with the signed-in person's session (approver_mismatch), and lets their own through", async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    await person(app, 'bob');
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    await expect(alice.bridge.startApprovalCeremony('r-1', 'bob', 'approve')).rejects.toMatchObject({ code: 'approver_mismatch' });
    await expect(
      alice.bridge.submitApprovalCeremony('r-1', 'bob', { id: 'AA', rawId: 'AA', type: 'public-key', response: {} }, 'x'),
    ).rejects.toMatchObject({ code: 'approver_mismatch' });
    // Her own id passes the check and reaches the approval service (which knows no such request).
    await expect(alice.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'request_unknown' });

    const ipc = inProcessBridge(app.ui, app.bridgeEvents);
    await signInBridge(app, ipc, 'alice', aliceKey);
    expect((await ipc.getSession()).session?.approverId).toBe('alice');
    await expect(ipc.startApprovalCeremony('r-1', 'bob', 'approve')).rejects.toMatchObject({ code: 'approver_mismatch' });
    // Another window (bridge) holds no session of its own.
    await expect(inProcessBridge(app.ui, app.bridgeEvents).startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({
      code: 'not_signed_in',
    });
  });

  it('still needs the bearer secret: a session cookie alone is refused at the edge', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    const res = await fetch(`http://127.0.0.1:${app.port}/api/session`, { headers: { cookie: alice.cookie } });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: 'not_authenticated' } });
  });

  it('ends the session on sign-out: the cookie is cleared, later calls are not_signed_in, desk.signed_out is audited', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    const res = await fetch(`http://127.0.0.1:${app.port}/api/session/sign-out`, {
      method: 'POST',
      headers: { ...alice.headers, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(await res.json()).toEqual({ signedOut: true });
    expect(res.headers.get('set-cookie')).toMatch(new RegExp(`^${DESK_SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`));
    expect((await alice.bridge.getSession()).session).toBeNull();
    await expect(alice.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
    const out = app.db.prepare("SELECT record FROM audit_log WHERE kind = 'desk.signed_out'").all() as Array<{ record: string }>;
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0]!.record)).toMatchObject({ approverId: 'alice', reason: 'signed_out' });
    expect(await alice.bridge.signOut()).toEqual({ signedOut: false });
  });

  it('ends an idle session after the idle timeout and any session at its absolute lifetime (injected clock)', async () => {
    const { app } = await start({ approvals: { sessionIdleMs: 10 * 60_000, sessionLifetimeMs: 60 * 60_000 } });
    const aliceKey = await person(app, 'alice');
    const idle = await signInOverHttp(app, 'alice', aliceKey);
    // Acting for the person is activity (it reaches the service: no such request); polling is not.
    const act = (bridge: typeof idle.bridge) =>
      expect(bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'request_unknown' });
    now += 9 * 60_000;
    await act(idle.bridge);
    now += 9 * 60_000;
    expect((await idle.bridge.getSession()).session?.approverId).toBe('alice');
    now += 2 * 60_000; // 11 minutes after the last act, though getSession was called meanwhile
    await expect(idle.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
    expect((await idle.bridge.getSession()).session).toBeNull();

    const busy = await signInOverHttp(app, 'alice', aliceKey);
    for (let i = 0; i < 6; i++) {
      now += 9 * 60_000;
      await act(busy.bridge);
    }
    now += 7 * 60_000; // 61 minutes after sign-in, never idle
    await expect(busy.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
    const reasons = (app.db.prepare("SELECT record FROM audit_log WHERE kind = 'desk.signed_out'").all() as Array<{ record: string }>).map(
      (r) => (JSON.parse(r.record) as { reason: string }).reason,
    );
    expect(reasons).toEqual(['idle', 'expired']);
  });

  it('ends the session of a person who is disabled meanwhile', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    app.approvers.disable('alice');
    await expect(alice.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
  });

  /** The reasons of every desk.signed_out so far, in order. */
  const endReasons = (app: Harness['app']) =>
    (app.db.prepare("SELECT record FROM audit_log WHERE kind = 'desk.signed_out' ORDER BY seq").all() as Array<{ record: string }>).map(
      (r) => (JSON.parse(r.record) as { reason: string }).reason,
    );

  it('ends the session over HTTP when the key that signed in is removed, while a session of the same person on another key lives on', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    // A second key of alice's, registered with a second code.
    const spare = new VirtualAuthenticator();
    const { code } = app.approvers.issueRegistrationCode('alice', 'test');
    const options = await app.approvers.beginRegistration('alice', code);
    await app.approvers.finishRegistration(
      'alice',
      spare.createCredential({
        rpId: 'localhost',
        origin: app.approvers.origins[0]!,
        challenge: options.challenge,
        user: options.user,
        userVerification: 'required',
      }),
    );
    const onFirst = await signInOverHttp(app, 'alice', aliceKey);
    const onSpare = await signInOverHttp(app, 'alice', spare);
    expect(onFirst.session.credentialId).not.toBe(onSpare.session.credentialId);
    app.approvers.removeCredential(onFirst.session.credentialId);
    await expect(onFirst.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
    expect((await onFirst.bridge.getSession()).session).toBeNull();
    // The other key's session was not granted on the removed key.
    await expect(onSpare.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'request_unknown' });
    expect(endReasons(app)).toEqual(['key_removed']);
  });

  it('ends the session over HTTP when the key that signed in is marked suspect (a clone answered with an older counter)', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    // The same credential with its counter wound back: the server sees a regression and marks the key suspect.
    aliceKey.setCounter(aliceKey.listCredentials()[0]!.id, 0);
    await expect(signInOverHttp(app, 'alice', aliceKey)).rejects.toThrow(/credential_suspect|counter/);
    await expect(alice.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
    expect(endReasons(app)).toEqual(['key_suspect']);
  });

  it('ends the session over HTTP when the person leaves a group they had at sign-in (an admin leaving the admin group loses the admin rows at once)', async () => {
    const { app } = await start();
    const rootKey = await person(app, 'root', ['countersign-admins', 'finance-approvers']);
    await person(app, 'second-admin', ['countersign-admins']);
    const root = await signInOverHttp(app, 'root', rootKey);
    expect(root.session.admin).toBe(true);
    expect((await root.bridge.listApproverDirectory()).approvers.length).toBe(2);
    // Gaining a group grants nothing the session was not signed in with, so it lives on.
    app.approvers.setGroups('root', ['countersign-admins', 'finance-approvers', 'sre']);
    expect((await root.bridge.listApproverDirectory()).approvers.length).toBe(2);
    app.approvers.setGroups('root', ['finance-approvers', 'sre']);
    await expect(root.bridge.listApproverDirectory()).rejects.toMatchObject({ code: 'not_signed_in' });
    expect((await root.bridge.getSession()).session).toBeNull();
    // Signing in again gives a session with the rights the person has now.
    const again = await signInOverHttp(app, 'root', rootKey);
    expect(again.session.admin).toBe(false);
    await expect(again.bridge.listApproverDirectory()).rejects.toMatchObject({ code: 'admin_required' });

    const aliceKey = await person(app, 'alice', ['finance-approvers', 'sre']);
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    app.approvers.setGroups('alice', ['sre']);
    await expect(alice.bridge.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'not_signed_in' });
    expect(endReasons(app)).toEqual(['groups_changed', 'groups_changed']);
  });

  it('ends the session over HTTP of a person who is disabled meanwhile, audited with that reason', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const alice = await signInOverHttp(app, 'alice', aliceKey);
    app.approvers.disable('alice');
    expect((await alice.bridge.getSession()).session).toBeNull();
    expect(endReasons(app)).toEqual(['approver_disabled']);
  });

  it('refuses a replayed sign-in assertion, a challenge issued to someone else, and a key of another person', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const bobKey = await person(app, 'bob');
    const bridge = inProcessBridge(app.ui, app.bridgeEvents);
    const { options } = await bridge.beginSignIn('alice');
    const assertion = tapKey(app, aliceKey, options);
    await bridge.finishSignIn('alice', assertion);
    const replay = inProcessBridge(app.ui, app.bridgeEvents);
    await expect(replay.finishSignIn('alice', assertion)).rejects.toMatchObject({ code: 'challenge_invalid' });
    expect((await replay.getSession()).session).toBeNull();
    expect(kindsOf(app).filter((kind) => kind === 'desk.signed_in')).toHaveLength(1);

    // Alice's challenge answered by bob's own key in bob's name: refused (the challenge is bound to alice).
    const second = await bridge.beginSignIn('alice');
    const bobsTap = tapKey(app, bobKey, { challenge: second.options.challenge, allowCredentials: [bobKey.listCredentials()[0]!] });
    await expect(replay.finishSignIn('bob', bobsTap)).rejects.toMatchObject({ code: 'challenge_invalid' });
    expect((await replay.getSession()).session).toBeNull();
    // Refused for bob, it is still alice's to answer.
    await replay.finishSignIn('alice', tapKey(app, aliceKey, second.options));
    expect((await replay.getSession()).session).toMatchObject({ approverId: 'alice' });
    await replay.signOut();
    // Bob's key answering a challenge that offered only alice's keys: refused.
    const third = await replay.beginSignIn('alice');
    const bobAnswer = bobKey.getAssertion({
      rpId: 'localhost',
      origin: app.approvers.origins[0]!,
      challenge: (third.options as { challenge: string }).challenge,
      allowCredentials: [bobKey.listCredentials()[0]!.id],
      userVerification: 'required',
    });
    await expect(replay.finishSignIn('alice', bobAnswer)).rejects.toMatchObject({ code: 'credential_unknown' });
    // A person without a key cannot even start.
    app.approvers.addApprover({ id: 'carol', displayName: 'Carol', groups: [] });
    await expect(replay.beginSignIn('carol')).rejects.toMatchObject({ code: 'credential_unknown' });
    expect((await replay.getSession()).session).toBeNull();
  });

  it("a sign-in begin stores nothing: begins for a person by another client during their key tap leave that person's sign-in answerable", async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const desk = inProcessBridge(app.ui, app.bridgeEvents);
    const own = await desk.beginSignIn('alice');
    // While alice reaches for her key, another client holding the desk link begins 50 sign-ins for her.
    const flooder = inProcessBridge(app.ui, app.bridgeEvents);
    const flood: Array<{ challenge: string }> = [];
    for (let i = 0; i < 50; i++) flood.push((await flooder.beginSignIn('alice')).options);
    await desk.finishSignIn('alice', tapKey(app, aliceKey, own.options));
    expect((await desk.getSession()).session).toMatchObject({ approverId: 'alice' });
    // The flood's first challenge is as answerable as any (nothing displaced it either).
    const other = inProcessBridge(app.ui, app.bridgeEvents);
    await other.finishSignIn('alice', tapKey(app, aliceKey, flood[0]!));
    expect((await other.getSession()).session).toMatchObject({ approverId: 'alice' });
  });

  it('refuses an expired or altered sign-in challenge (challenge_invalid), and of two finishes with one assertion opens one session', async () => {
    const { app } = await start({ approvals: { ceremonyTimeoutMs: 60_000 } });
    const aliceKey = await person(app, 'alice');
    const desk = inProcessBridge(app.ui, app.bridgeEvents);
    // Expired: answered after the ceremony timeout (injected clock).
    const late = await desk.beginSignIn('alice');
    now += 60_000;
    await expect(desk.finishSignIn('alice', tapKey(app, aliceKey, late.options))).rejects.toMatchObject({ code: 'challenge_invalid' });
    // Altered before the key signed: in its random part, or its expiry moved on.
    const begun = await desk.beginSignIn('alice');
    for (const at of [20, 30]) {
      const altered = { ...begun.options, challenge: alteredChallenge(begun.options.challenge, at) };
      await expect(desk.finishSignIn('alice', tapKey(app, aliceKey, altered))).rejects.toMatchObject({ code: 'challenge_invalid' });
    }
    expect((await desk.getSession()).session).toBeNull();
    expect(kindsOf(app)).not.toContain('desk.signed_in');
    // One assertion sent twice at once: one session, the other refused as used.
    const assertion = tapKey(app, aliceKey, begun.options);
    const twice = [inProcessBridge(app.ui, app.bridgeEvents), inProcessBridge(app.ui, app.bridgeEvents)];
    const outcomes = await Promise.allSettled(twice.map((bridge) => bridge.finishSignIn('alice', assertion)));
    expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(outcomes.find((outcome) => outcome.status === 'rejected')).toMatchObject({ reason: { code: 'challenge_invalid' } });
    expect(kindsOf(app).filter((kind) => kind === 'desk.signed_in')).toHaveLength(1);
  });

  it('signing in again replaces the session the desk held (one desk, one person)', async () => {
    const { app } = await start();
    const aliceKey = await person(app, 'alice');
    const bobKey = await person(app, 'bob');
    const desk = inProcessBridge(app.ui, app.bridgeEvents);
    await signInBridge(app, desk, 'alice', aliceKey);
    await signInBridge(app, desk, 'bob', bobKey);
    expect((await desk.getSession()).session?.approverId).toBe('bob');
    await expect(desk.startApprovalCeremony('r-1', 'alice', 'approve')).rejects.toMatchObject({ code: 'approver_mismatch' });
    expect(app.deskSessions.size).toBe(1);
  });
});

describe('the binding rule (shared/desk-session.ts)', () => {
  const session = (admin: boolean): DeskSessionView => ({
    approverId: 'alice',
    displayName: 'Alice',
    admin,
    credentialId: 'AA',
    signedInAt: 0,
    expiresAt: 1,
    idleExpiresAt: 1,
  });
  const row = (args: BridgeMethodRow['args'], caller?: BridgeMethodRow['caller']): BridgeMethodRow => ({
    args,
    result: bridgeIdSchema,
    channel: 'countersign:x',
    http: { verb: 'POST', path: '/api/x' },
    ...(caller === undefined ? {} : { caller }),
  });

  it('covers every table row by its argument names: approverId rows bind to the person unless marked transport', () => {
    for (const name of BRIDGE_METHOD_NAMES) {
      const r: BridgeMethodRow = BRIDGE_METHODS[name];
      if (r.args.some((a) => a.name === 'approverId') && r.caller !== 'transport') expect(callerRuleOf(r), name).not.toBe('transport');
    }
    expect(callerRuleOf(BRIDGE_METHODS.startApprovalCeremony)).toBe('person');
    expect(callerRuleOf(BRIDGE_METHODS.beginApproverRegistration)).toBe('transport');
  });

  it('applies to a row added later with no marking: approverId binds, adminId also needs an admin', () => {
    const future = row([arg('approverId', bridgeIdSchema, 'body')]);
    expect(() => authorizeBridgeCall(future, ['alice'], undefined)).toThrow(expect.objectContaining({ code: 'not_signed_in' }));
    expect(() => authorizeBridgeCall(future, ['bob'], session(false))).toThrow(expect.objectContaining({ code: 'approver_mismatch' }));
    expect(() => authorizeBridgeCall(future, ['alice'], session(false))).not.toThrow();
    const adminRow = row([arg('adminId', bridgeIdSchema, 'body')]);
    expect(() => authorizeBridgeCall(adminRow, ['alice'], session(false))).toThrow(expect.objectContaining({ code: 'admin_required' }));
    expect(() => authorizeBridgeCall(adminRow, ['alice'], session(true))).not.toThrow();
    const marked = row([], 'admin');
    expect(() => authorizeBridgeCall(marked, [], session(false))).toThrow(expect.objectContaining({ code: 'admin_required' }));
    expect(() => authorizeBridgeCall(marked, [], undefined)).toThrow(expect.objectContaining({ code: 'not_signed_in' }));
  });
});
