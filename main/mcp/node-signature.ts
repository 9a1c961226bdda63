/**
 * Synchronous signatures with node:crypto for the MCP proxy, whose every call is signed once and
 * checked once: WebCrypto's sign and verify are each a round trip through libuv's thread pool (a
 * scheduling slice on a loaded machine). `nodeVerifySignature` is `verifyApprovalToken`'s
 * `verifySignature` option (public keys imported once per exact key, kept, bounded);
 * `nodeAgentKey` is the proxy's agent key, signing its call envelopes in the calling thread.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import type { TrustedSigningKey } from '../../shared/verify-approval-token.js';
import { importAgentKey, type AgentKey, type AgentPrivateJwk } from '../../shared/agent-keys.js';
import { CountersignError } from '../../shared/errors.js';

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

/**
 * An agent key that signs synchronously with node:crypto (the same signatures: Ed25519 is
 * deterministic, ES256 raw r||s). The key file is checked exactly as `importAgentKey` checks it
 * (it imports, its kid is its thumbprint), and a probe signature must verify with the file's
 * public part. The private key object lives only in this closure: nothing exports it, as nothing
 * can export the non-extractable CryptoKey of `importAgentKey`; the key material was read from the
 * same file into this process either way.
 */
export async function nodeAgentKey(jwk: AgentPrivateJwk): Promise<AgentKey> {
  const checked = await importAgentKey(jwk);
  const material =
    jwk.y === undefined ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d };
  const privateKey = createPrivateKey({ key: material, format: 'jwk' });
  const signNow = (bytes: Uint8Array): Uint8Array =>
    new Uint8Array(
      jwk.alg === 'ES256' ? sign('sha256', bytes, { key: privateKey, dsaEncoding: 'ieee-p1363' }) : sign(null, bytes, privateKey),
    );
  const probe = new TextEncoder().encode('countersign agent key probe');
  if (!nodeVerifySignature(checked.publicJwk, probe, signNow(probe)))
    throw new CountersignError('config_invalid', 'the agent key file has a private key that does not match its public key');
  return {
    kid: checked.kid,
    alg: checked.alg,
    publicJwk: checked.publicJwk,
    sign: (bytes) => {
      try {
        return Promise.resolve(signNow(bytes));
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
    },
  };
}
