/**
 * The desk's sign-in session, as the bridge carries it: the person signed in (proved by a
 * security-key assertion), the session cookie's name, and the ONE rule binding bridge calls to that
 * person. The rule is generic, so every bridge row is covered by its argument names alone:
 *
 * - a row with an argument named `approverId` acts for a person: someone must be signed in, and
 *   the argument must name them (`not_signed_in`, `approver_mismatch`);
 * - a row with an argument named `adminId`, or marked `caller: 'admin'`, also needs the signed-in
 *   person to be an admin (`admin_required`);
 * - a row marked `caller: 'transport'` is authorised by the transport alone (the bearer secret or
 *   the IPC sender check): reads, sign-in itself, and key registration, which a single-use code
 *   authorises before the person has a key.
 * The server enforces it in callBridgeMethod (main/core/ui/bridge-routes.ts) for IPC and HTTP alike.
 */
import { z } from 'zod';
import { ADMIN_GROUP_NAME, authenticationOptionsSchema, bridgeIdSchema } from './bridge.js';

// The session cookie's name, without zod (the desk's first-paint transport sends it).
export { DESK_SESSION_COOKIE } from './ui-address.js';

const epochMs = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What the desk knows about its session (no token: that stays in the cookie or in the main process). */
export const deskSessionSchema = z.strictObject({
  approverId: bridgeIdSchema,
  displayName: z.string().min(1).max(200),
  /** A member of the admin group (ADMIN_GROUP_NAME) as of this call. */
  admin: z.boolean(),
  /** The security key that signed in (the session is bound to that ceremony). */
  credentialId: z
    .string()
    .min(1)
    .max(1400)
    .regex(/^[A-Za-z0-9_-]+$/),
  signedInAt: epochMs,
  /** The absolute end of the session, whatever the activity. */
  expiresAt: epochMs,
  /** The end of the session if no call comes before it (each call moves it, never past expiresAt). */
  idleExpiresAt: epochMs,
});
export type DeskSessionView = z.infer<typeof deskSessionSchema>;

export const deskSessionResponseSchema = z.strictObject({ session: deskSessionSchema.nullable() });
export const signInOptionsSchema = z.strictObject({ options: authenticationOptionsSchema });
export const signedInSchema = z.strictObject({ session: deskSessionSchema });
export const signedOutSchema = z.strictObject({ signedOut: z.boolean() });

/** Who may call a bridge row beyond the transport gate (see the file comment). */
export type BridgeCallerRule = 'transport' | 'person' | 'admin';

/** Argument names that name the person a call acts for: each must be the signed-in person. */
export const PERSON_ARGUMENT_NAMES: readonly string[] = ['approverId', 'adminId'];

/** The rule of a row: its explicit `caller`, else derived from its argument names (fails towards stricter). */
export function callerRuleOf(row: {
  readonly caller?: BridgeCallerRule;
  readonly args: readonly { readonly name: string }[];
}): BridgeCallerRule {
  if (row.caller !== undefined) return row.caller;
  if (row.args.some((a) => a.name === 'adminId')) return 'admin';
  if (row.args.some((a) => PERSON_ARGUMENT_NAMES.includes(a.name))) return 'person';
  return 'transport';
}

/** Whether a person with these groups is an admin (the admin views and admin rows). */
export function isAdminGroups(groups: readonly string[]): boolean {
  return groups.includes(ADMIN_GROUP_NAME);
}
