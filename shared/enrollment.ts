/**
 * Enrollment requests: an agent's public key plus proof of possession (the request is signed
 * by the very key it enrolls). Scope (owner, group, tools, data classes, jurisdiction, expiry)
 * is decided by the admin at enrollment, never by the agent.
 */
import { z } from 'zod';
import { CountersignError, quote } from './errors.js';
import { SIGNED_TYPES, agentIdSchema } from './protocol.js';
import {
  agentKeyThumbprint,
  decodeSignature,
  signCanonical,
  verifyAgentSignature,
  type AgentKey,
  type AgentPublicJwk,
} from './agent-keys.js';
import { canonicalBytes } from './canonical-json.js';
import { base64url, randomBytes } from './encoding.js';

const b64 = z.string().regex(/^[A-Za-z0-9_-]+$/);

export const agentPublicJwkSchema = z.union([
  z.strictObject({
    kty: z.literal('OKP'),
    crv: z.literal('Ed25519'),
    x: b64.length(43),
    alg: z.literal('EdDSA'),
    kid: b64.min(16).max(128),
  }),
  z.strictObject({
    kty: z.literal('EC'),
    crv: z.literal('P-256'),
    x: b64.length(43),
    y: b64.length(43),
    alg: z.literal('ES256'),
    kid: b64.min(16).max(128),
  }),
]);

export const enrollmentPayloadSchema = z.strictObject({
  typ: z.literal(SIGNED_TYPES.enrollment),
  agentId: agentIdSchema,
  displayName: z.string().min(1).max(200),
  publicJwk: agentPublicJwkSchema,
  createdAt: z.int().nonnegative(),
  nonce: b64.min(16).max(64),
});
export type EnrollmentPayload = z.infer<typeof enrollmentPayloadSchema>;

export const enrollmentRequestSchema = z.strictObject({
  payload: enrollmentPayloadSchema,
  signature: b64.length(86),
});
export type EnrollmentRequest = z.infer<typeof enrollmentRequestSchema>;

/** How old an enrollment request may be when an admin enrolls it. */
export const ENROLLMENT_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
const FUTURE_SKEW_MS = 5 * 60 * 1000;

export async function createEnrollmentRequest(
  key: AgentKey,
  agentId: string,
  displayName: string,
  now = Date.now(),
): Promise<EnrollmentRequest> {
  const payload: EnrollmentPayload = {
    typ: SIGNED_TYPES.enrollment,
    agentId,
    displayName,
    publicJwk: key.publicJwk as EnrollmentPayload['publicJwk'],
    createdAt: now,
    nonce: base64url(randomBytes(16)),
  };
  return { payload, signature: await signCanonical(key, payload) };
}

/** Check shape, kid binding and proof of possession. Returns the verified payload. */
export async function verifyEnrollmentRequest(value: unknown, now = Date.now()): Promise<EnrollmentPayload> {
  const parsed = enrollmentRequestSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CountersignError(
      'enrollment_invalid',
      `the enrollment request is malformed at ${quote(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const { payload, signature } = parsed.data;
  const jwk = payload.publicJwk as AgentPublicJwk;
  if ((await agentKeyThumbprint(jwk)) !== jwk.kid) {
    throw new CountersignError('enrollment_invalid', 'the enrollment key id is not the thumbprint of its public key');
  }
  if (payload.createdAt > now + FUTURE_SKEW_MS)
    throw new CountersignError('enrollment_invalid', 'the enrollment request is dated in the future');
  if (payload.createdAt < now - ENROLLMENT_MAX_AGE_MS)
    throw new CountersignError('enrollment_invalid', 'the enrollment request is older than 7 days; generate a new one');
  const sig = decodeSignature(signature);
  if (sig === undefined || !(await verifyAgentSignature(jwk, canonicalBytes(payload), sig))) {
    throw new CountersignError(
      'enrollment_proof_invalid',
      `the enrollment request for ${quote(payload.agentId)} is not signed by the key it enrolls`,
    );
  }
  return payload;
}
