/**
 * Human approvals as they travel in a co-signed approval token, and the challenge binding that
 * ties each approver's WebAuthn assertion to the exact call.
 *
 * The WebAuthn challenge of an approval ceremony is base64url(SHA-256(JCS(record))) where the
 * record is domain-separated by its `typ` and names the request, the canonical call digest, the
 * verdict, the policy hash, the expiry, the approver and a single-use nonce. A tool server that
 * holds the token can recompute the challenge from the record it carries and confirm that the
 * approver's security key signed over this very call (shared/verify-approvals.ts).
 *
 * Identical held calls merge into one group (docs/approvals.md "Identical calls"): the record then
 * also lists, in `followers`, every other request id of the group, sorted. The approver signs for
 * the primary request and for each follower by name, and each follower's token carries the same
 * assertions: a tool server accepts an assertion for request R when R is the record's requestId
 * or one of its followers, and the call digest is the same.
 */
import { z } from 'zod';
import { canonicalBytes } from './canonical-json.js';
import { base64url, sha256 } from './encoding.js';
import { SIGNED_TYP } from './typ.js';

export const APPROVAL_CHALLENGE_TYP = SIGNED_TYP.approvalChallenge;

// In a module of its own, without zod, for the desk's first paint (shared/desk-first-answers.ts).
import { MAX_GROUP_FOLLOWERS } from './group-limits.js';
export { MAX_GROUP_FOLLOWERS } from './group-limits.js';

const b64url = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[A-Za-z0-9_-]+$/, 'must be base64url');

export const approvalChallengeRecordSchema = z
  .strictObject({
    typ: z.literal(APPROVAL_CHALLENGE_TYP),
    requestId: z.string().min(1).max(64),
    callSha256: b64url(43).length(43),
    verdict: z.enum(['approve', 'deny']),
    policyHash: z.string().min(1).max(80),
    /** When the request (and so this challenge) expires, in milliseconds since the epoch. */
    expiresAt: z.int().min(0).max(Number.MAX_SAFE_INTEGER),
    approverId: z.string().min(1).max(128),
    nonce: b64url(43),
    /**
     * The other requests of a merged group (identical calls), sorted, distinct, never the primary.
     * Absent for a request that stands alone, so such records (and their challenges) are unchanged.
     */
    followers: z.array(z.string().min(1).max(64)).min(1).max(MAX_GROUP_FOLLOWERS).optional(),
  })
  .refine(
    (r) =>
      r.followers === undefined || (r.followers.every((id, i, all) => i === 0 || all[i - 1]! < id) && !r.followers.includes(r.requestId)),
    {
      message: 'followers must be sorted, distinct and must not repeat the request id',
      path: ['followers'],
    },
  );
export type ApprovalChallengeRecord = z.infer<typeof approvalChallengeRecordSchema>;

/**
 * The WebAuthn challenge of any signed record, base64url(SHA-256(JCS(record))): the one challenge
 * function of every ceremony (approvals here, admin actions in main/core/approvals/admin-actions.ts).
 */
export async function recordChallenge(record: unknown): Promise<string> {
  return base64url(await sha256(canonicalBytes(record)));
}

/** The WebAuthn challenge (base64url) bound to `record`. */
export async function approvalChallenge(record: ApprovalChallengeRecord): Promise<string> {
  return recordChallenge(record);
}

/**
 * The same challenge with a synchronous SHA-256 the caller brings: the core passes node:crypto's,
 * so the approval path (the last approver's tap to the token) takes no thread-pool round trip,
 * which costs a scheduler wait on a loaded machine. Same bytes hashed, same answer.
 */
export function recordChallengeWith(record: unknown, sha256Sync: (bytes: Uint8Array) => Uint8Array): string {
  return base64url(sha256Sync(canonicalBytes(record)));
}

/** One approver's assertion, as carried in the token's `approvals` claim (all bytes base64url). */
export const approvalAssertionSchema = z.strictObject({
  approverId: z.string().min(1).max(128),
  credentialId: b64url(1400),
  authenticatorData: b64url(4096),
  clientDataJSON: b64url(4096),
  signature: b64url(512),
  userHandle: b64url(128).optional(),
  record: approvalChallengeRecordSchema,
});
export type ApprovalAssertion = z.infer<typeof approvalAssertionSchema>;

/** The published approver directory tool servers check assertions against. */
export const approverDirectorySchema = z.strictObject({
  /** WebAuthn relying party id, e.g. "localhost". */
  rpId: z.string().min(1).max(253),
  /** Origins approvals may come from, exact (scheme, host and port). */
  origins: z.array(z.string().min(1).max(300)).min(1).max(16),
  approvers: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(128),
        displayName: z.string().max(200),
        groups: z.array(z.string().min(1).max(128)).max(64),
        /** Virtual approvers exist only in the headless test key domain. */
        virtual: z.boolean(),
        credentials: z
          .array(
            z.strictObject({
              id: b64url(1400),
              /** P-256 (ES256) public key. */
              publicJwk: z.strictObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: b64url(43), y: b64url(43) }),
            }),
          )
          .max(32),
      }),
    )
    .max(10_000),
});
export type ApproverDirectory = z.infer<typeof approverDirectorySchema>;
