/**
 * Who is calling the bridge: the transport's hold on a desk session (an HttpOnly cookie over
 * HTTP, a per-window slot in the Electron main process over IPC) and the ONE check binding a
 * call to the signed-in person (shared/desk-session.ts states the rule). callBridgeMethod
 * (bridge-routes.ts) resolves the session and runs `authorizeBridgeCall` before any row runs;
 * the session rows themselves (UiService getSession/finishSignIn/signOut) read the caller of the
 * call in progress through `currentBridgeCall`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { BridgeMethodRow } from '../../../shared/bridge-table.js';
import { PERSON_ARGUMENT_NAMES, callerRuleOf, type DeskSessionView } from '../../../shared/desk-session.js';

/** A transport's hold on one desk's session token. */
export interface BridgeCaller {
  /** The session id this caller presents (cookie value, or the window's slot), if any. */
  readonly token: string | undefined;
  /** Keep `token` for this caller's next calls (a Set-Cookie, or the window's slot). */
  keep(token: string, maxAgeSeconds: number): void;
  /** Drop it (an expiring Set-Cookie, or clear the slot). */
  forget(): void;
}

/** A caller with no session and nowhere to keep one (automation holding only the bearer secret). */
export const ANONYMOUS_CALLER: BridgeCaller = {
  token: undefined,
  keep: () => {
    throw new CountersignError('not_signed_in', 'this transport cannot hold a desk session');
  },
  forget: () => undefined,
};

/** One window's slot (the Electron main process keeps one per webContents; inProcessBridge one per bridge). */
export function windowCaller(): BridgeCaller {
  let token: string | undefined;
  return {
    get token() {
      return token;
    },
    keep: (value) => {
      token = value;
    },
    forget: () => {
      token = undefined;
    },
  };
}

/** The call in progress: its caller and the session it resolved to. */
export interface BridgeCallContext {
  readonly caller: BridgeCaller;
  readonly session: DeskSessionView | undefined;
}

const calls = new AsyncLocalStorage<BridgeCallContext>();

/** Run `work` as a bridge call of `context`. */
export function runBridgeCall<T>(context: BridgeCallContext, work: () => T): T {
  return calls.run(context, work);
}

/** The bridge call in progress (not_signed_in outside one: fail closed). */
export function currentBridgeCall(): BridgeCallContext {
  const context = calls.getStore();
  if (context === undefined) throw new CountersignError('not_signed_in', 'this method runs only as a desk bridge call');
  return context;
}

/**
 * The one check: a row that acts for a person needs a session, every person argument must name
 * the signed-in person, and an admin row needs that person to be an admin. Arguments have already
 * been checked against the row.
 */
export function authorizeBridgeCall(row: BridgeMethodRow, args: readonly unknown[], session: DeskSessionView | undefined): void {
  const rule = callerRuleOf(row);
  if (rule === 'transport') return;
  if (session === undefined) throw new CountersignError('not_signed_in', 'sign in with your security key first');
  row.args.forEach((spec, index) => {
    if (!PERSON_ARGUMENT_NAMES.includes(spec.name)) return;
    const value = args[index];
    if (value !== undefined && value !== session.approverId)
      throw new CountersignError(
        'approver_mismatch',
        `${quote(typeof value === 'string' ? value : JSON.stringify(value))} is not the person signed in at this desk (${quote(session.approverId)})`,
      );
  });
  if (rule === 'admin' && !session.admin) throw new CountersignError('admin_required', `${quote(session.approverId)} is not an admin`);
}
