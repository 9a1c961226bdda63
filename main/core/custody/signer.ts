/**
 * The one signing interface. The software signer (first runs) and the PKCS#11 signer (the real
 * path) both implement it, so token issuance and audit checkpoints never know which one they use.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { PublicJwk, SigningAlgorithm } from '../../../shared/approval-token.js';
import { ALGORITHM_KEY_TYPES } from '../../../shared/approval-token.js';
import { canonicalize } from '../../../shared/canonical-json.js';

export type { PublicJwk, SigningAlgorithm } from '../../../shared/approval-token.js';

export type SignerCustody = 'software' | 'pkcs11';

export interface Signer {
  /** RFC 7638 JWK thumbprint (base64url) of the public key. */
  readonly keyId: string;
  /** One pinned algorithm per key. */
  readonly algorithm: SigningAlgorithm;
  readonly publicJwk: PublicJwk;
  readonly custody: SignerCustody;
  /** Returns the JWS-format signature (ES256: raw r||s, 64 bytes; EdDSA: 64 bytes) over `data`. */
  sign(data: Uint8Array): Promise<Uint8Array>;
  /**
   * A signer whose key can change while the server runs (a rotation it adopts) returns the one
   * key-fixed signer to use for the next signature, so that the key id written into what is
   * signed and the key that signs it are always the same. Fixed signers do not implement it.
   */
  forSignature?(): Promise<Signer>;
}

/** The key-fixed signer for one signature (see Signer.forSignature). */
export function signerForOneSignature(signer: Signer): Promise<Signer> {
  return signer.forSignature === undefined ? Promise.resolve(signer) : signer.forSignature();
}

/** The members RFC 7638 hashes, in lexicographic order (JCS sorts them anyway). */
type ThumbprintInput = Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>;

/** RFC 7638 JWK thumbprint (SHA-256, base64url) over the required public members only. */
export function jwkThumbprint(jwk: ThumbprintInput): string {
  const members = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y ?? '' } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return createHash('sha256').update(canonicalize(members), 'utf8').digest('base64url');
}

/**
 * Verify a JWS-format signature against a public JWK with the JWK's pinned algorithm.
 * Returns false (never throws) for a bad signature, a malformed key or a key/alg mismatch.
 */
export function verifyWithJwk(jwk: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y' | 'alg'>, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    const expected = ALGORITHM_KEY_TYPES[jwk.alg];
    if (expected === undefined || jwk.kty !== expected.kty || jwk.crv !== expected.crv) return false;
    if (signature.length !== 64) return false;
    const key = publicKeyOf(jwk);
    if (jwk.alg === 'ES256') return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    return verify(null, data, key, signature);
  } catch {
    return false;
  }
}

/**
 * Importing a JWK costs as much as an ECDSA verification, and every released signature is
 * verified, so the few signing keys in use are imported once. Bounded: a key is only ever
 * added here by a signer or a verifier configured with it.
 */
const importedKeys = new Map<string, KeyObject>();
const MAX_IMPORTED_KEYS = 64;

function publicKeyOf(jwk: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>): KeyObject {
  const members = jwk.kty === 'EC' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  const cacheKey = `${members.kty}|${members.crv}|${members.x}|${members.y ?? ''}`;
  let key = importedKeys.get(cacheKey);
  if (key === undefined) {
    key = createPublicKey({ key: members, format: 'jwk' });
    if (importedKeys.size >= MAX_IMPORTED_KEYS) importedKeys.clear();
    importedKeys.set(cacheKey, key);
  }
  return key;
}
