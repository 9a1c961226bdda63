/**
 * The key taps of the admin console and the first run, in the browser: an admin action is started
 * on the server (which binds the challenge to exactly that action), signed by the admin's
 * security key (@simplewebauthn/browser), and submitted; a security key is registered with a
 * registration code. Errors come back as CountersignErrors with their stable code; the messages
 * people see for the codes that need explaining are here too.
 */
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/browser';

/** The WebAuthn client, loaded at the first key tap (not with the queue, which shows admin proposals). */
const webAuthn = () => import('@simplewebauthn/browser');
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import type { AdminAction } from '../../../shared/admin-actions.js';
import type { AdminConfirmationOutcome, AdminConfirmationVerdict, AdminOutcome } from '../../../shared/bridge-admin.js';
import type { RegisteredKey } from '../../../shared/bridge.js';
import { isCountersignError } from '../../../shared/errors.js';

/** Ask for the admin's key tap over `action`, then perform it. */
export async function runAdminAction(bridge: CountersignBridge, adminId: string, action: AdminAction): Promise<AdminOutcome> {
  const started = await bridge.startAdminAction(adminId, action);
  const response = await (await webAuthn()).startAuthentication({ optionsJSON: started.options });
  return bridge.submitAdminAction(adminId, response);
}

/** A second admin's key tap confirming or rejecting a proposed admin action (the admin quorum). */
export async function decideAdminProposal(
  bridge: CountersignBridge,
  adminId: string,
  proposalId: string,
  confirmation: AdminConfirmationVerdict,
): Promise<AdminConfirmationOutcome> {
  const started = await bridge.startAdminConfirmation(proposalId, adminId, confirmation);
  const response = await (await webAuthn()).startAuthentication({ optionsJSON: started.options });
  return bridge.submitAdminConfirmation(adminId, response);
}

/** What people read after their tap: done, or (under the admin quorum) waiting for a second admin. */
export function outcomeText(outcome: AdminOutcome, done: string): string {
  if (outcome.proposal === undefined) return done;
  return `Proposed (${outcome.proposal.id}): a second admin confirms it with their key under Pending admin actions before it takes effect.`;
}

/** Register a security key for `approverId` with a registration code (the code is spent only if the key is stored). */
export async function registerSecurityKey(bridge: CountersignBridge, approverId: string, code: string): Promise<RegisteredKey> {
  const options = await bridge.beginApproverRegistration(approverId, code);
  const response = await (
    await webAuthn()
  ).startRegistration({ optionsJSON: options as unknown as PublicKeyCredentialCreationOptionsJSON });
  return bridge.finishApproverRegistration(approverId, response);
}

export interface ShownError {
  readonly code: string;
  readonly message: string;
}

/** What people read for a failure: our stable code and message, or the browser's own refusal explained. */
export function shownError(caught: unknown): ShownError {
  if (isCountersignError(caught)) {
    const hint = HINTS[caught.code];
    return { code: caught.code, message: hint === undefined ? caught.message : `${caught.message}. ${hint}` };
  }
  const name = caught instanceof Error ? caught.name : '';
  if (name === 'NotAllowedError')
    return {
      code: 'ceremony_cancelled',
      message: 'The security key ceremony was cancelled or timed out. Nothing was changed; try again with your key.',
    };
  if (name === 'InvalidStateError')
    return { code: 'key_already_registered', message: 'This security key is already registered. Use another key.' };
  return { code: 'internal_error', message: caught instanceof Error ? caught.message : String(caught) };
}

const HINTS: Readonly<Record<string, string>> = {
  platform_authenticator_refused:
    'Only roaming security keys (USB, NFC or Bluetooth, such as a YubiKey, Titan, Feitian or Solo key) are accepted. Your registration code is still valid: plug in a security key and try again.',
  first_run_closed: 'Reload the desk and sign in as that admin.',
  challenge_invalid: 'Start again; if it was the registration code, ask an admin for a new one.',
  credential_suspect: 'This key is marked suspect and refused; register a new key.',
  admin_self_confirm: 'Under the admin quorum a second admin decides it from their own desk.',
  admin_proposal_closed: 'Another admin decided it already, or it expired; the list shows what is still waiting.',
};
