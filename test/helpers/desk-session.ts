/**
 * Signing a person in at the desk from Node (no browser): the real sign-in ceremony over the
 * bridge, answered by the project's software authenticator holding that person's key. Tests that
 * act for a person through the HTTP API or an in-process bridge use these, so the server's check
 * (bridge-caller.ts: the call's `approverId` must be the signed-in person) is exercised, never
 * bypassed. Browser tests use `actAs` (desk-browser.ts) instead.
 */
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import type { ApproverDirectory } from '../../main/core/approvals/approver-directory.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import type { CountersignBridge } from '../../shared/bridge-table.js';
import { DESK_SESSION_COOKIE, type DeskSessionView } from '../../shared/desk-session.js';

/** What a sign-in needs from the running app (RunningCountersign has all of it). */
export interface DeskApp {
  readonly port: number;
  readonly uiSessionSecret: string;
  readonly approvers: { readonly origins: readonly string[]; readonly rpId: string };
}

export interface HttpSignIn {
  /** The session id from the Set-Cookie (what a browser would keep HttpOnly). */
  readonly token: string;
  /** The Cookie header value to send. */
  readonly cookie: string;
  /** Bearer secret and session cookie: the headers an HTTP call for this person needs. */
  readonly headers: Readonly<Record<string, string>>;
  /** An HTTP bridge that sends both. */
  readonly bridge: CountersignBridge;
  readonly session: DeskSessionView;
  readonly setCookie: string;
}

/** The assertion `key` makes for a sign-in (or any assertion) ceremony's options. */
export function tapKey(app: DeskApp, key: VirtualAuthenticator, options: { challenge: string; allowCredentials?: Array<{ id: string }> }) {
  return key.getAssertion({
    rpId: app.approvers.rpId,
    origin: app.approvers.origins[0]!,
    challenge: options.challenge,
    allowCredentials: (options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
}

/**
 * A sign-in challenge with one character changed (still well-formed base64url of the same
 * length), as a client that edits it before its key signs would send it.
 */
export function alteredChallenge(challenge: string, at = 20): string {
  const swapped = challenge[at] === 'A' ? 'B' : 'A';
  return `${challenge.slice(0, at)}${swapped}${challenge.slice(at + 1)}`;
}

/** Sign `approverId` in over HTTP with their key; the session cookie comes back in Set-Cookie. */
export async function signInOverHttp(app: DeskApp, approverId: string, key: VirtualAuthenticator): Promise<HttpSignIn> {
  const base = `http://127.0.0.1:${app.port}`;
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${app.uiSessionSecret}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(json)}`);
    return { res, json };
  };
  const begun = await post('/api/session/sign-in', { approverId });
  const options = begun.json.options as { challenge: string; allowCredentials?: Array<{ id: string }> };
  const finished = await post('/api/session/sign-in/finish', { approverId, response: tapKey(app, key, options) });
  const setCookie = finished.res.headers.get('set-cookie') ?? '';
  const match = new RegExp(`^${DESK_SESSION_COOKIE}=([A-Za-z0-9_-]+);`).exec(setCookie);
  if (match === null) throw new Error(`no session cookie in ${JSON.stringify(setCookie)}`);
  const token = match[1]!;
  const cookie = `${DESK_SESSION_COOKIE}=${token}`;
  return {
    token,
    cookie,
    setCookie,
    headers: { authorization: `Bearer ${app.uiSessionSecret}`, cookie },
    bridge: createHttpBridge({ baseUrl: base, sessionSecret: app.uiSessionSecret, sessionCookie: token }),
    session: finished.json.session as DeskSessionView,
  };
}

/** Sign `approverId` in through a bridge that holds its own session (an in-process / IPC bridge). */
export async function signInBridge(
  app: DeskApp,
  bridge: CountersignBridge,
  approverId: string,
  key: VirtualAuthenticator,
): Promise<DeskSessionView> {
  const { options } = await bridge.beginSignIn(approverId);
  const { session } = await bridge.finishSignIn(approverId, tapKey(app, key, options));
  return session;
}

/**
 * Add a person with `groups` and register one key for them in a fresh software authenticator
 * (the real registration ceremony with a single-use code); the authenticator is returned for
 * their sign-in and taps.
 */
export async function registerPerson(
  app: { readonly approvers: ApproverDirectory },
  approverId: string,
  groups: string[],
): Promise<VirtualAuthenticator> {
  app.approvers.addApprover({ id: approverId, displayName: `${approverId} (display)`, groups, virtual: true });
  return registerKeyWithCode(app.approvers, approverId, app.approvers.issueRegistrationCode(approverId, 'test').code);
}

/**
 * The registration ceremony with the single-use `code`, answered by a fresh software authenticator
 * (excluding the person's keys already registered, as a browser does); the authenticator is returned.
 */
export async function registerKeyWithCode(approvers: ApproverDirectory, approverId: string, code: string): Promise<VirtualAuthenticator> {
  const options = await approvers.beginRegistration(approverId, code);
  const key = new VirtualAuthenticator();
  await approvers.finishRegistration(
    approverId,
    key.createCredential({
      rpId: approvers.rpId,
      origin: approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
      excludeCredentials: (options.excludeCredentials ?? []).map((c) => c.id),
    }),
  );
  return key;
}
