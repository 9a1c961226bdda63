/**
 * The one registry of signed `typ` values. Every object Countersign or an agent signs names its
 * purpose in `typ` (JOSE explicit typing for the approval token, RFC 8725 section 3.11; a member
 * of the JCS record otherwise), so a signature made for one purpose never verifies as another.
 * Every signed kind takes its value from here; test/unit/signed-typ.test.ts checks that the values
 * are unique, that each signed-kind schema uses its constant, and that no other file spells one.
 * docs/canonical-json.md lists them. A value is API: never change one, add a new version.
 */
export const SIGNED_TYP = {
  /** The agent's answer to the gateway's session challenge (session.authenticate proof). */
  agentAuth: 'countersign.auth/v1',
  /** The agent's signed call envelope (call.submit). */
  callEnvelope: 'countersign.call/v1',
  /** A self-signed enrollment request (proof of possession of the enrolled key). */
  enrollment: 'countersign.enrollment/v1',
  /** The typed JCS record an approver's WebAuthn assertion signs (its SHA-256 is the challenge). */
  approvalChallenge: 'countersign.approval-challenge/v1',
  /** The typed JCS record an administrator's WebAuthn assertion signs for an admin action. */
  adminAction: 'countersign.admin-action/v1',
  /** The typed JCS record a second admin's assertion signs to confirm or reject a proposed admin action (the admin quorum). */
  adminConfirmation: 'countersign.admin-confirmation/v1',
  /** The JOSE header `typ` of every approval token (compact JWS) the gateway signs. */
  approvalToken: 'countersign-approval+jwt',
} as const;

export type SignedTyp = (typeof SIGNED_TYP)[keyof typeof SIGNED_TYP];
