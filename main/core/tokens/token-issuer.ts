/**
 * Issues approval tokens. The JWS signing input is built here (JCS-canonical header and payload)
 * and signed through the Signer interface, so a PKCS#11 key plugs in unchanged. jose is only
 * used on the verifying side.
 */
import {
  APPROVAL_TOKEN_TYP,
  DEFAULT_TOKEN_TTL_SECONDS,
  MAX_TOKEN_TTL_SECONDS,
  approvalTokenClaimsSchema,
  computeCallDigest,
  isSigningAlgorithm,
} from '../../../shared/approval-token.js';
import type { ApprovalDecision, ApprovalTokenClaims, ApprovalTokenHeader, TokenDomain } from '../../../shared/approval-token.js';
import { canonicalize } from '../../../shared/canonical-json.js';
import type { JsonValue } from '../../../shared/canonical-json.js';
import { randomId } from '../../../shared/encoding.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { signerForOneSignature, verifyWithJwk } from '../custody/signer.js';
import type { Signer } from '../custody/signer.js';

export interface TokenIssuerOptions {
  signer: Signer;
  /** The `iss` claim, e.g. "countersign:<instance>". */
  issuer: string;
  /** Key domain: 'test' for headless CI with virtual approvers; such tokens never verify in production. */
  domain: TokenDomain;
  /** Default lifetime in seconds (default 60, at most 900). */
  ttlSeconds?: number;
  /** Current time in milliseconds; default Date.now. */
  now?: () => number;
}

export interface ApprovalTokenRequest {
  /** The authenticated agent id (`sub`). */
  agentId: string;
  /** The tool's resource server (`aud`). */
  audience: string;
  tool: string;
  params: JsonValue;
  /** The allow decision; `id` is the Countersign request id. */
  decision: Omit<ApprovalDecision, 'verdict'>;
  /** Approver assertions (WebAuthn), carried as-is. */
  approvals?: unknown[];
  /** Overrides the issuer's default lifetime for this token (at most 900 s). */
  ttlSeconds?: number;
  /** The call digest when the caller already computed it over these very params (see callDigest). */
  callSha256?: string;
}

export interface IssuedApprovalToken {
  token: string;
  header: ApprovalTokenHeader;
  claims: ApprovalTokenClaims;
}

function checkTtl(ttl: number, what: string): number {
  if (!Number.isSafeInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
    throw new CountersignError('config_invalid', `${what} must be a whole number of seconds between 1 and ${MAX_TOKEN_TTL_SECONDS}`, {
      details: { ttl: String(ttl) },
    });
  }
  return ttl;
}

function checkSigner(signer: Signer): void {
  if (!isSigningAlgorithm(signer.algorithm) || signer.publicJwk.alg !== signer.algorithm || signer.publicJwk.kid !== signer.keyId) {
    throw new CountersignError('config_invalid', `the signer ${quote(signer.keyId)} does not pin one supported algorithm to its key`);
  }
}

/**
 * base64url(JCS(header)) of the few headers a process signs under (one per key: the header is
 * {alg, kid, typ} with a fixed typ), kept rather than canonicalised and encoded again for every
 * token. Keyed by alg and kid (no alg holds a NUL); a header that does not canonicalise throws
 * as before and is not kept. Bounded, as keys rotate.
 */
const encodedHeaders = new Map<string, string>();
const ENCODED_HEADERS_LIMIT = 16;

function encodedHeader(header: ApprovalTokenHeader): string {
  const key = `${header.alg}\u0000${header.kid}`;
  let encoded = encodedHeaders.get(key);
  if (encoded === undefined) {
    encoded = Buffer.from(canonicalize(header), 'utf8').toString('base64url');
    if (encodedHeaders.size >= ENCODED_HEADERS_LIMIT) encodedHeaders.clear();
    encodedHeaders.set(key, encoded);
  }
  return encoded;
}

/**
 * Sign complete claims as an approval token: base64url(JCS(header)) '.' base64url(JCS(claims)),
 * header exactly {alg, kid, typ}. Claims are validated first; the signature is checked against
 * the signer's published key before the token is returned.
 */
export async function signApprovalToken(signer: Signer, claims: ApprovalTokenClaims): Promise<IssuedApprovalToken> {
  checkSigner(signer);
  const checked = approvalTokenClaimsSchema.safeParse(claims);
  if (!checked.success || claims.decision.verdict !== 'allow') {
    const issue = checked.success ? undefined : checked.error.issues[0];
    throw new CountersignError(
      'internal_error',
      `refusing to sign invalid approval token claims${issue ? ` at ${quote(issue.path.join('.'))}: ${issue.message}` : ''}`,
    );
  }
  const header: ApprovalTokenHeader = { alg: signer.algorithm, kid: signer.keyId, typ: APPROVAL_TOKEN_TYP };
  // Node's base64url: one flat string per part (shared/encoding.ts's works without Buffer). The
  // signing input is ASCII, so its latin1 bytes are its UTF-8 bytes.
  const signingInput = `${encodedHeader(header)}.${Buffer.from(canonicalize(claims), 'utf8').toString('base64url')}`;
  const data = Buffer.from(signingInput, 'latin1');
  let signature: Uint8Array;
  try {
    signature = await signer.sign(data);
  } catch (err) {
    if (err instanceof CountersignError) throw err;
    throw new CountersignError('signer_failed', undefined, { cause: err, details: { kid: signer.keyId } });
  }
  if (!verifyWithJwk(signer.publicJwk, data, signature)) {
    throw new CountersignError('signer_failed', 'the signature does not verify against the published key', {
      details: { kid: signer.keyId },
    });
  }
  const encodedSignature = Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength).toString('base64url');
  return { token: `${signingInput}.${encodedSignature}`, header, claims };
}

export class TokenIssuer {
  readonly signer: Signer;
  readonly issuer: string;
  readonly domain: TokenDomain;
  readonly ttlSeconds: number;
  readonly #now: () => number;

  constructor(options: TokenIssuerOptions) {
    checkSigner(options.signer);
    if (typeof options.issuer !== 'string' || options.issuer.length === 0)
      throw new CountersignError('config_invalid', 'the token issuer id must be a non-empty string');
    if (options.domain !== 'production' && options.domain !== 'test')
      throw new CountersignError('config_invalid', 'the token domain must be "production" or "test"');
    this.signer = options.signer;
    this.issuer = options.issuer;
    this.domain = options.domain;
    this.ttlSeconds = checkTtl(options.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS, 'the token lifetime');
    this.#now = options.now ?? Date.now;
  }

  /** Issue a single-use token approving exactly `tool` with exactly `params`. */
  async issue(request: ApprovalTokenRequest): Promise<IssuedApprovalToken> {
    const ttl = checkTtl(request.ttlSeconds ?? this.ttlSeconds, 'the token lifetime');
    const iat = Math.floor(this.#now() / 1000);
    const claims: ApprovalTokenClaims = {
      iss: this.issuer,
      sub: request.agentId,
      aud: request.audience,
      iat,
      nbf: iat,
      exp: iat + ttl,
      jti: randomId(16),
      tool: request.tool,
      call_sha256: request.callSha256 ?? (await computeCallDigest(request.tool, request.params)),
      decision: {
        id: request.decision.id,
        verdict: 'allow',
        mode: request.decision.mode,
        policy_hash: request.decision.policy_hash,
        policies: [...request.decision.policies],
      },
      domain: this.domain,
    };
    if (request.approvals !== undefined) claims.approvals = [...request.approvals];
    // One key for the header's kid, the signature and the check after it, even mid-rotation.
    return signApprovalToken(await signerForOneSignature(this.signer), claims);
  }
}
