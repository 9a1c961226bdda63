/** The JWKS tool servers trust: public members only, each key pinned to its one algorithm. */
import type { PublicJwk, Signer } from '../custody/signer.js';
import { CountersignError, quote } from '../../../shared/errors.js';

export interface Jwks {
  keys: PublicJwk[];
}

/**
 * Publish the public keys of `signers` (e.g. the current key plus the previous one during a
 * rotation). The same key listed twice appears once; two different keys with one kid are refused.
 */
export function jwksFor(signers: readonly Signer[]): Jwks {
  const byKid = new Map<string, PublicJwk>();
  for (const signer of signers) {
    const { kty, crv, x, y, kid, alg } = signer.publicJwk;
    const jwk: PublicJwk = y === undefined ? { kty, crv, x, kid, alg, use: 'sig' } : { kty, crv, x, y, kid, alg, use: 'sig' };
    const existing = byKid.get(kid);
    if (existing !== undefined) {
      if (existing.x !== jwk.x || existing.y !== jwk.y || existing.alg !== jwk.alg || existing.crv !== jwk.crv) {
        throw new CountersignError('config_invalid', `two different signing keys share the key id ${quote(kid)}`);
      }
      continue;
    }
    byKid.set(kid, jwk);
  }
  return { keys: [...byKid.values()] };
}
