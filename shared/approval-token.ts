/**
 * Countersign approval tokens: types, constants, the claims schema and the call digest.
 *
 * An approval token is a compact JWS whose protected header is exactly `{alg, kid, typ}` and
 * whose payload binds one decision to one exact tool call (see docs/tokens.md). This module is
 * shared by the issuer (main/core/tokens), the verifier (shared/verify-approval-token.ts) and
 * agent SDKs, so everything here is pure TypeScript.
 */
import { z } from 'zod';
import { canonicalBytes } from './canonical-json.js';
import type { JsonValue } from './canonical-json.js';
import { base64url, fromBase64url, sha256 } from './encoding.js';
import { SIGNED_TYP } from './typ.js';
import { sha256Sync } from './sha256.js';

/** The JOSE `typ` every approval token carries (RFC 8725 section 3.11 explicit typing). */
export const APPROVAL_TOKEN_TYP = SIGNED_TYP.approvalToken;

/** Signing algorithms a Countersign key may be pinned to. One algorithm per key. */
export const SIGNING_ALGORITHMS = ['ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

export const DEFAULT_TOKEN_TTL_SECONDS = 60;
export const MAX_TOKEN_TTL_SECONDS = 900;
export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;
export const MAX_CLOCK_TOLERANCE_SECONDS = 60;
/** Tokens longer than this are rejected before any parsing (token_malformed). */
export const MAX_TOKEN_LENGTH = 64 * 1024;

export type TokenDomain = 'production' | 'test';
export type DecisionMode = 'automatic' | 'approved';

/** A public signing key as published in the JWKS. `alg` pins the only algorithm it verifies. */
export type PublicJwk = {
  kty: 'EC' | 'OKP';
  crv: 'P-256' | 'Ed25519';
  x: string;
  y?: string;
  kid: string;
  alg: SigningAlgorithm;
  use: 'sig';
};

/** The key type and curve each algorithm requires. */
export const ALGORITHM_KEY_TYPES: Readonly<Record<SigningAlgorithm, { kty: 'EC' | 'OKP'; crv: 'P-256' | 'Ed25519' }>> = {
  ES256: { kty: 'EC', crv: 'P-256' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};

export function isSigningAlgorithm(value: unknown): value is SigningAlgorithm {
  return value === 'ES256' || value === 'EdDSA';
}

/** The protected header, exactly these three members. */
export interface ApprovalTokenHeader {
  alg: SigningAlgorithm;
  kid: string;
  typ: typeof APPROVAL_TOKEN_TYP;
}

export interface ApprovalDecision {
  /** The Countersign request id this decision answers. */
  id: string;
  verdict: 'allow';
  /** `automatic`: policy allowed without people; `approved`: a human quorum approved. */
  mode: DecisionMode;
  /** Hash of the policy set that made the decision. */
  policy_hash: string;
  /** Ids of the policies that determined the decision. */
  policies: string[];
}

export interface ApprovalTokenClaims {
  /** Issuer id, e.g. "countersign:<instance>". */
  iss: string;
  /** The agent id the call was made by. */
  sub: string;
  /** The tool's resource server; exact string match at verification. */
  aud: string;
  /** NumericDate (seconds). */
  iat: number;
  nbf: number;
  exp: number;
  /** 128 random bits, base64url; single use. */
  jti: string;
  /** The tool name the call was made to. */
  tool: string;
  /** base64url(SHA-256(JCS({"tool": tool, "params": params}))); see computeCallDigest. */
  call_sha256: string;
  decision: ApprovalDecision;
  domain: TokenDomain;
  /** Approver assertions (WebAuthn). Carried and signed, not yet checked by the verifier. */
  approvals?: unknown[];
}

/** What verifyApprovalToken returns: the claims of a token that passed every check. */
export type VerifiedApproval = ApprovalTokenClaims;

const BASE64URL_RE = /^[A-Za-z0-9_-]*$/;

function base64urlOfLength(bytes: number) {
  return z.string().refine((s) => BASE64URL_RE.test(s) && fromBase64url(s)?.length === bytes, {
    message: `must be the base64url encoding of exactly ${bytes} bytes`,
  });
}

const numericDate = z.int().nonnegative();
const nonEmpty = z.string().min(1).max(1024);

/**
 * The wire schema of the payload. Unknown members are rejected everywhere. `verdict` is any
 * string here so that a non-allow verdict reports token_not_approved, not token_claims_invalid.
 */
export const approvalTokenClaimsSchema = z.strictObject({
  iss: nonEmpty,
  sub: nonEmpty,
  aud: nonEmpty,
  iat: numericDate,
  nbf: numericDate,
  exp: numericDate,
  jti: base64urlOfLength(16),
  tool: nonEmpty,
  call_sha256: base64urlOfLength(32),
  decision: z.strictObject({
    id: nonEmpty,
    verdict: nonEmpty,
    mode: z.enum(['automatic', 'approved']),
    policy_hash: nonEmpty,
    policies: z.array(nonEmpty).max(256),
  }),
  domain: z.enum(['production', 'test']),
  approvals: z.array(z.unknown()).max(64).optional(),
});

export type ApprovalTokenWireClaims = z.infer<typeof approvalTokenClaimsSchema>;

/**
 * The call digest: base64url(SHA-256(JCS({"tool": tool, "params": params}))).
 * Agents, Countersign and tool servers all compute it with this one function, so member order
 * and number formatting never change it. Throws CountersignError json_* for non-I-JSON input.
 */
export async function computeCallDigest(tool: string, params: JsonValue): Promise<string> {
  return base64url(await sha256(canonicalBytes({ tool, params })));
}

/**
 * The same digest, synchronously, with the SHA-256 the caller passes (a Node caller passes
 * node:crypto's; the default is the plain TypeScript one of shared/sha256.ts). Saves WebCrypto's
 * event-loop round trip where a call is digested on the hot path (the MCP proxy).
 */
export function computeCallDigestSync(tool: string, params: JsonValue, sha256Of: (bytes: Uint8Array) => Uint8Array = sha256Sync): string {
  return base64url(sha256Of(canonicalBytes({ tool, params })));
}
