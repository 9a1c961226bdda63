/**
 * Synchronous JWS signature checks with node:crypto, for `verifyApprovalToken`'s
 * `verifySignature` option: the MCP proxy checks a token on every forwarded call, and WebCrypto's
 * verify is a round trip through libuv's thread pool (a scheduling slice on a loaded machine).
 * Public keys are imported once per exact key (all public members) and kept, bounded.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { TrustedSigningKey } from '../../shared/verify-approval-token.js';

const MAX_KEYS = 64;
const keys = new Map<string, KeyObject>();

function publicKey(jwk: TrustedSigningKey): KeyObject {
  const id = JSON.stringify([jwk.alg, jwk.kty, jwk.crv, jwk.x, jwk.y]);
  let key = keys.get(id);
  if (key === undefined) {
    if (keys.size >= MAX_KEYS) keys.clear();
    const members = jwk.y === undefined ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
    key = createPublicKey({ key: members, format: 'jwk' });
    keys.set(id, key);
  }
  return key;
}

/** True when `signature` is `jwk`'s signature over `signingInput` under its pinned algorithm. */
export function nodeVerifySignature(jwk: TrustedSigningKey, signingInput: Uint8Array, signature: Uint8Array): boolean {
  const key = publicKey(jwk);
  switch (jwk.alg) {
    case 'ES256':
      // JWS carries P-256 signatures as raw r||s (64 bytes), not DER.
      return signature.length === 64 && verify('sha256', signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'EdDSA':
      return signature.length === 64 && verify(null, signingInput, key, signature);
    default:
      return false;
  }
}
