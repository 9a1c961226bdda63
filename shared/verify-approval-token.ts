/**
 * Tool-side verification of Countersign approval tokens. Pure TypeScript (WebCrypto via jose),
 * so it runs in Node, Deno, Bun, browsers and edge runtimes. docs/tokens.md lists the steps.
 */
import { compactVerify, importJWK } from 'jose';
import {
  ALGORITHM_KEY_TYPES,
  APPROVAL_TOKEN_TYP,
  DEFAULT_CLOCK_TOLERANCE_SECONDS,
  MAX_CLOCK_TOLERANCE_SECONDS,
  MAX_TOKEN_LENGTH,
  MAX_TOKEN_TTL_SECONDS,
  approvalTokenClaimsSchema,
  computeCallDigest,
  isSigningAlgorithm,
} from './approval-token.js';
import type { SigningAlgorithm, TokenDomain, VerifiedApproval } from './approval-token.js';
import { parseStrictJson } from './canonical-json.js';
import type { JsonValue } from './canonical-json.js';
import { fromBase64url, fromUtf8 } from './encoding.js';
import { CountersignError, isCountersignError, quote } from './errors.js';
import type { ErrorCode } from './errors.js';

/** Single-use record of token ids. Must be shared by every verifier instance of one audience. */
export interface JtiStore {
  /**
   * Atomically mark `jti` used; return false if it was already used.
   * `expiresAt` is epoch seconds after which the token can no longer verify (exp plus the
   * clock tolerance), so the entry may be forgotten from then on. Throw to fail closed.
   */
  consume(jti: string, expiresAt: number): Promise<boolean> | boolean;
}

/** A JWKS entry as received from configuration or the network. Only `alg`-pinned keys are used. */
export interface JwkLike {
  readonly kty?: unknown;
  readonly crv?: unknown;
  readonly x?: unknown;
  readonly y?: unknown;
  readonly d?: unknown;
  readonly kid?: unknown;
  readonly alg?: unknown;
  readonly use?: unknown;
}

export interface VerifyApprovalTokenOptions {
  /** The call the tool server is ABOUT to execute (not the one the agent says it made). */
  call: { tool: string; params: JsonValue };
  /**
   * `computeCallDigest(call.tool, call.params)` when the caller has already computed it from this
   * very `call` object (the MCP proxy digests each call once, synchronously, and forwards that same
   * frozen object): the token's `call_sha256` is compared with it instead of canonicalising and
   * hashing the call a second time. Never pass a digest of anything else.
   */
  callDigest?: string;
  /** This tool server's audience string; exact match. */
  audience: string;
  /** Trusted JWKS. Each key must carry its own `alg`; keys without one are ignored. */
  keys: { readonly keys: readonly JwkLike[] };
  jtiStore: JtiStore;
  /** If set, `iss` must equal it. */
  issuer?: string;
  /** Default 'production': a test-domain token never verifies there. */
  domain?: TokenDomain;
  /** Default 5, capped at 60. */
  clockToleranceSeconds?: number;
  /** Default 900: reject tokens whose exp - iat exceeds it. */
  maxLifetimeSeconds?: number;
  /** Current time in milliseconds; default Date.now. */
  now?: () => number;
  /**
   * Checks the JWS signature instead of WebCrypto (jose's `compactVerify`), for a caller with a
   * synchronous primitive: the MCP proxy passes node:crypto's `verify` with cached key objects
   * (main/mcp/node-signature.ts), which saves the thread-pool round trip of every call. Given the
   * key (already chosen by `kid`, its `alg` pinned and equal to the header's), the JWS signing
   * input (the ASCII of `header.payload`) and the decoded signature (ES256: raw r||s); returns
   * whether the signature verifies. Everything else is checked here as without it.
   */
  verifySignature?: (key: TrustedSigningKey, signingInput: Uint8Array, signature: Uint8Array) => boolean;
}

/** A trusted public key as the verifier hands it to `verifySignature`. */
export interface TrustedSigningKey {
  readonly kty: 'EC' | 'OKP';
  readonly crv: 'P-256' | 'Ed25519';
  readonly x: string;
  readonly y?: string;
  readonly kid: string;
  readonly alg: SigningAlgorithm;
}

function fail(code: ErrorCode, message?: string, details?: Record<string, string | number | boolean>, cause?: unknown): never {
  throw new CountersignError(code, message, { details, cause });
}

type TrustedKey = { -readonly [K in keyof TrustedSigningKey]: TrustedSigningKey[K] };

/** Usable keys only: alg pinned to a supported algorithm, matching key type, public only. */
function trustedKeys(jwks: VerifyApprovalTokenOptions['keys']): Map<string, TrustedKey> {
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray(jwks.keys)) {
    fail('config_invalid', 'the trusted keys must be a JWKS object with a "keys" array');
  }
  const out = new Map<string, TrustedKey>();
  const entries: readonly unknown[] = jwks.keys;
  for (const entry of entries) {
    if (typeof entry !== 'object' || entry === null) continue;
    const jwk = entry as JwkLike;
    const { kty, crv, x, y, d, kid, alg, use } = jwk;
    if (!isSigningAlgorithm(alg)) continue; // no alg (or an unsupported one): ignored
    if (typeof kid !== 'string' || kid.length === 0) continue;
    if (d !== undefined) continue; // never treat private key material as a trust anchor
    if (use !== undefined && use !== 'sig') continue;
    const expected = ALGORITHM_KEY_TYPES[alg];
    if (kty !== expected.kty || crv !== expected.crv || typeof x !== 'string') continue;
    if (kty === 'EC' && typeof y !== 'string') continue;
    if (out.has(kid)) fail('config_invalid', `the trusted keys contain kid ${quote(kid)} more than once`);
    const key: TrustedKey = { kty: expected.kty, crv: expected.crv, x, kid, alg };
    if (kty === 'EC' && typeof y === 'string') key.y = y;
    out.set(kid, key);
  }
  return out;
}

function decodeSegment(segment: string, what: string, allowEmpty = false): Uint8Array {
  const bytes = fromBase64url(segment);
  if (bytes === undefined) fail('token_malformed', `the token ${what} is not valid base64url`);
  if (bytes.length === 0 && !allowEmpty) fail('token_malformed', `the token ${what} is empty`);
  return bytes;
}

function parseHeader(bytes: Uint8Array): { alg: string; kid: string; typ: string } {
  let value: JsonValue;
  try {
    value = parseStrictJson(fromUtf8(bytes));
  } catch (err) {
    fail('token_malformed', 'the token header is not strict JSON', undefined, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('token_malformed', 'the token header is not a JSON object');
  const names = Object.keys(value).sort();
  if (names.length !== 3 || names[0] !== 'alg' || names[1] !== 'kid' || names[2] !== 'typ') {
    fail('token_malformed', 'the token header must contain exactly "alg", "kid" and "typ"', { members: names.slice(0, 8).join(',') });
  }
  const { alg, kid, typ } = value as Record<string, JsonValue>;
  if (typeof alg !== 'string' || typeof kid !== 'string' || typeof typ !== 'string') {
    fail('token_malformed', 'the token header members must be strings');
  }
  return { alg, kid, typ };
}

function normalizeTolerance(value: number | undefined): number {
  if (value === undefined) return DEFAULT_CLOCK_TOLERANCE_SECONDS;
  if (!Number.isFinite(value) || value < 0) fail('config_invalid', 'clockToleranceSeconds must be a non-negative number');
  return Math.min(Math.floor(value), MAX_CLOCK_TOLERANCE_SECONDS);
}

function normalizeMaxLifetime(value: number | undefined): number {
  if (value === undefined) return MAX_TOKEN_TTL_SECONDS;
  if (!Number.isFinite(value) || value <= 0) fail('config_invalid', 'maxLifetimeSeconds must be a positive number');
  return value;
}

/**
 * Verify an approval token for the call about to be executed. Resolves with the claims, or
 * rejects with a CountersignError whose code names the first failed check. The jti is consumed
 * last, only once everything else has passed, so a forged or mismatched token burns nothing.
 */
export async function verifyApprovalToken(token: string, options: VerifyApprovalTokenOptions): Promise<VerifiedApproval> {
  // Options first: a misconfigured verifier must fail loudly, whatever the token.
  if (typeof options.audience !== 'string' || options.audience.length === 0) fail('config_invalid', 'audience must be a non-empty string');
  if (typeof options.call !== 'object' || options.call === null || typeof options.call.tool !== 'string') {
    fail('config_invalid', 'call must name the tool about to be executed');
  }
  const domain: TokenDomain = options.domain ?? 'production';
  if (domain !== 'production' && domain !== 'test') fail('config_invalid', `domain must be "production" or "test"`);
  if (options.callDigest !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(options.callDigest))
    fail('config_invalid', 'callDigest must be the base64url SHA-256 digest of the call (43 characters)');
  const tolerance = normalizeTolerance(options.clockToleranceSeconds);
  const maxLifetime = normalizeMaxLifetime(options.maxLifetimeSeconds);
  const keys = trustedKeys(options.keys);
  const nowMs = (options.now ?? Date.now)();
  if (!Number.isFinite(nowMs)) fail('config_invalid', 'now() must return milliseconds since the epoch');
  const now = Math.floor(nowMs / 1000);

  // 1. Compact serialization, strictly decoded.
  if (typeof token !== 'string' || token.length === 0) fail('token_malformed', 'the token is empty');
  if (token.length > MAX_TOKEN_LENGTH) fail('token_malformed', 'the token is too long', { max: MAX_TOKEN_LENGTH });
  const parts = token.split('.');
  if (parts.length !== 3) fail('token_malformed', 'a compact JWS has exactly three parts', { parts: parts.length });
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const headerBytes = decodeSegment(headerPart, 'header');
  const payloadBytes = decodeSegment(payloadPart, 'payload');
  // An empty signature is well-formed (alg "none" style); it fails the algorithm or signature check.
  const signatureBytes = decodeSegment(signaturePart, 'signature', true);

  // 2. Header: exactly {alg, kid, typ}.
  const header = parseHeader(headerBytes);
  if (header.typ !== APPROVAL_TOKEN_TYP)
    fail('token_typ_invalid', `the token type is ${quote(header.typ)}, expected ${quote(APPROVAL_TOKEN_TYP)}`);
  const jwk = keys.get(header.kid);
  if (jwk === undefined) fail('token_kid_unknown', `the token key id ${quote(header.kid)} is not among the trusted keys`);
  if (header.alg !== jwk.alg) {
    fail('token_alg_not_allowed', `the token algorithm ${quote(header.alg)} is not the one pinned for key ${quote(jwk.kid)} (${jwk.alg})`);
  }

  // 3. Signature, with the key's pinned algorithm only.
  if (options.verifySignature !== undefined) {
    let valid = false;
    let cause: unknown;
    try {
      valid = options.verifySignature(jwk, new TextEncoder().encode(`${headerPart}.${payloadPart}`), signatureBytes);
    } catch (err) {
      cause = err;
    }
    if (valid !== true) fail('token_signature_invalid', undefined, { kid: jwk.kid }, cause);
  } else {
    try {
      await compactVerify(token, await importedKey(jwk), { algorithms: [jwk.alg] });
    } catch (err) {
      fail('token_signature_invalid', undefined, { kid: jwk.kid }, err);
    }
  }

  // 4. Claims: strict JSON, strict schema.
  let payload: JsonValue;
  try {
    payload = parseStrictJson(fromUtf8(payloadBytes));
  } catch (err) {
    fail('token_claims_invalid', 'the token payload is not strict JSON', undefined, err);
  }
  const parsed = approvalTokenClaimsSchema.safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined ? '' : ` at ${quote(issue.path.join('.') || '(root)')}`;
    fail('token_claims_invalid', `the token claims are invalid${where}: ${issue?.message ?? 'unknown issue'}`);
  }
  const claims = parsed.data;

  // 5. Audience, issuer, domain.
  if (claims.aud !== options.audience) {
    fail('token_audience_mismatch', `the token was issued for audience ${quote(claims.aud)}, not ${quote(options.audience)}`);
  }
  if (options.issuer !== undefined && claims.iss !== options.issuer) {
    fail('token_claims_invalid', `the token was issued by ${quote(claims.iss)}, not ${quote(options.issuer)}`, { claim: 'iss' });
  }
  if (claims.domain !== domain) {
    fail('token_audience_mismatch', `the token belongs to the ${claims.domain} domain; this verifier accepts ${domain} tokens only`, {
      claim: 'domain',
    });
  }

  // 6. Time.
  if (now >= claims.exp + tolerance) fail('token_expired', undefined, { exp: claims.exp, now });
  if (claims.nbf > now + tolerance) fail('token_not_yet_valid', undefined, { nbf: claims.nbf, now });
  if (claims.iat > now + tolerance) fail('token_not_yet_valid', 'the token was issued in the future', { iat: claims.iat, now });

  // 7. Lifetime.
  if (claims.exp <= claims.iat || claims.nbf > claims.exp) fail('token_claims_invalid', 'the token validity window is empty or inverted');
  if (claims.exp - claims.iat > maxLifetime) {
    fail('token_claims_invalid', `the token lifetime exceeds ${maxLifetime} seconds`, { claim: 'exp', lifetime: claims.exp - claims.iat });
  }

  // 8. The exact call.
  if (claims.tool !== options.call.tool)
    fail('token_tool_mismatch', `the token approves tool ${quote(claims.tool)}, not ${quote(options.call.tool)}`);
  const digest = options.callDigest ?? (await computeCallDigest(options.call.tool, options.call.params));
  if (digest !== claims.call_sha256) fail('token_digest_mismatch');

  // 9. Decision.
  if (claims.decision.verdict !== 'allow') fail('token_not_approved', `the token carries verdict ${quote(claims.decision.verdict)}`);

  // 10. Last: single use.
  let fresh: boolean;
  try {
    fresh = await options.jtiStore.consume(claims.jti, claims.exp + tolerance);
  } catch (err) {
    if (isCountersignError(err)) throw err;
    fail('store_failed', 'the token replay store could not record the token id', undefined, err);
  }
  if (fresh !== true) fail('token_replayed', undefined, { jti: claims.jti });

  const result: VerifiedApproval = {
    ...claims,
    decision: { ...claims.decision, verdict: 'allow' },
  };
  return result;
}

/**
 * Imported public keys, by their exact members: importing a JWK costs more than the signature
 * check itself, and a verifier sees the same few keys on every call. Bounded; a key is only ever
 * looked up by all of its public members, so a different key can never be returned.
 */
const importedKeys = new Map<string, Promise<Awaited<ReturnType<typeof importJWK>>>>();
const MAX_IMPORTED_KEYS = 64;

function importedKey(jwk: {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  alg: string;
}): Promise<Awaited<ReturnType<typeof importJWK>>> {
  const { kty, crv, x, y } = jwk;
  const id = JSON.stringify([jwk.alg, kty, crv, x, y]);
  let key = importedKeys.get(id);
  if (key === undefined) {
    if (importedKeys.size >= MAX_IMPORTED_KEYS) importedKeys.clear();
    key = importJWK(y === undefined ? { kty, crv, x } : { kty, crv, x, y }, jwk.alg);
    importedKeys.set(id, key);
    // A key that does not import is not remembered: the next call fails the same way, afresh.
    key.catch(() => importedKeys.delete(id));
  }
  return key;
}

export interface MemoryJtiStoreOptions {
  /** Upper bound on remembered ids; when full of unexpired ids, consume throws (fail closed). */
  maxEntries?: number;
  /** Current time in milliseconds; default Date.now. */
  now?: () => number;
}

/**
 * In-process JtiStore. Suitable for a single tool-server process; several processes serving one
 * audience need a shared store (e.g. Redis SET NX with expiry, or a database unique key).
 * Expired entries are pruned; when the store is full of live entries it refuses new ids by
 * throwing store_failed, so a flood can never evict a live id and re-open a replay window.
 */
export class MemoryJtiStore implements JtiStore {
  readonly maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, number>();
  #nextPruneAt = 0;

  constructor(options: MemoryJtiStoreOptions = {}) {
    const max = options.maxEntries ?? 100_000;
    if (!Number.isSafeInteger(max) || max < 1) throw new CountersignError('config_invalid', 'maxEntries must be a positive integer');
    this.maxEntries = max;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#entries.size;
  }

  consume(jti: string, expiresAt: number): boolean {
    if (typeof jti !== 'string' || jti.length === 0) throw new CountersignError('store_failed', 'the token id must be a non-empty string');
    if (!Number.isFinite(expiresAt)) throw new CountersignError('store_failed', 'expiresAt must be epoch seconds');
    const now = Math.floor(this.#now() / 1000);
    if (now >= this.#nextPruneAt || this.#entries.size >= this.maxEntries) this.prune(now);
    // An id still present is live by this store's clock (expired ones were just pruned).
    if (this.#entries.has(jti)) return false;
    if (this.#entries.size >= this.maxEntries) {
      throw new CountersignError('store_failed', `the token replay store is full (${this.maxEntries} live ids); refusing the token`);
    }
    this.#entries.set(jti, expiresAt);
    return true;
  }

  /** Forget ids whose tokens can no longer verify. */
  prune(nowSeconds = Math.floor(this.#now() / 1000)): void {
    for (const [jti, expiresAt] of this.#entries) {
      if (expiresAt <= nowSeconds) this.#entries.delete(jti);
    }
    this.#nextPruneAt = nowSeconds + 30;
  }
}
