/**
 * Agent signing keys, in WebCrypto so the same code runs in Node, browsers and agent hosts.
 * One algorithm per key: Ed25519 keys sign EdDSA, P-256 keys sign ES256 (raw r||s).
 */
import { CountersignError } from './errors.js';
import { base64url, fromBase64url, utf8, sha256 } from './encoding.js';
import { canonicalize } from './canonical-json.js';
import { webCryptoBytes, type WebCryptoKey } from './webcrypto.js';

export type AgentKeyAlgorithm = 'EdDSA' | 'ES256';

export interface AgentPublicJwk {
  kty: 'OKP' | 'EC';
  crv: 'Ed25519' | 'P-256';
  x: string;
  y?: string;
  alg: AgentKeyAlgorithm;
  kid: string;
}

export interface AgentPrivateJwk extends AgentPublicJwk {
  d: string;
}

export interface AgentKey {
  readonly kid: string;
  readonly alg: AgentKeyAlgorithm;
  readonly publicJwk: AgentPublicJwk;
  sign(bytes: Uint8Array): Promise<Uint8Array>;
}

/** The JWK members WebCrypto imports an agent key from (`d` only for the private key). */
interface KeyMaterial {
  kty: string;
  crv: string;
  x: string;
  y?: string;
  d?: string;
}

function webCryptoParams(alg: AgentKeyAlgorithm): {
  gen: { name: 'Ed25519' } | { name: 'ECDSA'; namedCurve: 'P-256' };
  sign: { name: 'Ed25519' } | { name: 'ECDSA'; hash: 'SHA-256' };
} {
  return alg === 'EdDSA'
    ? { gen: { name: 'Ed25519' }, sign: { name: 'Ed25519' } }
    : { gen: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } };
}

/** RFC 7638 thumbprint over the required public members only. */
export async function agentKeyThumbprint(jwk: Pick<AgentPublicJwk, 'kty' | 'crv' | 'x' | 'y'>): Promise<string> {
  const members = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y ?? '' } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return base64url(await sha256(utf8(canonicalize(members))));
}

export function publicPart(jwk: AgentPrivateJwk | AgentPublicJwk): AgentPublicJwk {
  const out: AgentPublicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, alg: jwk.alg, kid: jwk.kid };
  if (jwk.y !== undefined) out.y = jwk.y;
  return out;
}

/** Generate a new agent key. The private JWK is returned so a CLI can store it (0600). */
export async function generateAgentKey(alg: AgentKeyAlgorithm = 'EdDSA'): Promise<AgentPrivateJwk> {
  const pair = (await globalThis.crypto.subtle.generateKey(webCryptoParams(alg).gen, true, ['sign', 'verify'])) as {
    privateKey: WebCryptoKey;
  };
  const jwk = await globalThis.crypto.subtle.exportKey('jwk', pair.privateKey);
  if (typeof jwk.x !== 'string' || typeof jwk.d !== 'string')
    throw new CountersignError('internal_error', 'key generation returned an incomplete key');
  const base =
    alg === 'EdDSA'
      ? { kty: 'OKP' as const, crv: 'Ed25519' as const, x: jwk.x }
      : { kty: 'EC' as const, crv: 'P-256' as const, x: jwk.x, y: jwk.y ?? '' };
  const kid = await agentKeyThumbprint(base);
  return { ...base, alg, kid, d: jwk.d };
}

/** Load a private JWK into a signing key (the CryptoKey is non-extractable once imported). */
export async function importAgentKey(jwk: AgentPrivateJwk): Promise<AgentKey> {
  const params = webCryptoParams(jwk.alg);
  const material: KeyMaterial = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d };
  if (jwk.y !== undefined) material.y = jwk.y;
  const key = await globalThis.crypto.subtle.importKey('jwk', material, params.gen, false, ['sign']);
  const expectedKid = await agentKeyThumbprint(jwk);
  if (expectedKid !== jwk.kid)
    throw new CountersignError('config_invalid', 'the agent key file has a kid that does not match its public key');
  const publicJwk = publicPart(jwk);
  return {
    kid: jwk.kid,
    alg: jwk.alg,
    publicJwk,
    async sign(bytes: Uint8Array): Promise<Uint8Array> {
      return new Uint8Array(await globalThis.crypto.subtle.sign(params.sign, key, webCryptoBytes(bytes)));
    },
  };
}

/** Verify with WebCrypto (used by the SDK and tests; the gateway uses cached node:crypto keys). */
export async function verifyAgentSignature(jwk: AgentPublicJwk, bytes: Uint8Array, signature: Uint8Array): Promise<boolean> {
  const params = webCryptoParams(jwk.alg);
  const material: KeyMaterial = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  if (jwk.y !== undefined) material.y = jwk.y;
  try {
    const key = await globalThis.crypto.subtle.importKey('jwk', material, params.gen, false, ['verify']);
    return await globalThis.crypto.subtle.verify(params.sign, key, webCryptoBytes(signature), webCryptoBytes(bytes));
  } catch {
    return false;
  }
}

/** Sign a domain-separated object: its `typ` member names the purpose, bytes are JCS. */
export async function signCanonical(key: AgentKey, payload: { typ: string; [member: string]: unknown }): Promise<string> {
  return base64url(await key.sign(utf8(canonicalize(payload))));
}

export function decodeSignature(text: string): Uint8Array | undefined {
  const bytes = fromBase64url(text);
  return bytes !== undefined && bytes.length === 64 ? bytes : undefined;
}
