/**
 * A WebAuthn assertion verified in one synchronous step, for the one key type approver keys may
 * have (ES256 on P-256, approver-directory.ts): the checks of @simplewebauthn/server's
 * verifyAuthenticationResponse, in its order, with the library's own parsers for the client data
 * and the authenticator data, and node:crypto for the digests and the signature.
 *
 * Why not the library's verify: it runs each digest, the key import and the signature check as
 * WebCrypto jobs on libuv's thread pool, four round trips per tap, and on a busy machine each one
 * waits for a pool thread and then for the event loop (bench desk-approval: that stage's p50 was
 * ten times the same call's cost alone). Here the whole check costs about one ECDSA verification,
 * on the calling thread. test/unit/es256-assertion.test.ts runs both on the same valid and altered
 * assertions and requires the same verdict on every one, so a check the library makes cannot be
 * left out here unnoticed.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type * as WebAuthnHelpersModule from '@simplewebauthn/server/helpers';

/** The library helpers used here (passed in: the module is loaded at the first ceremony, webauthn-library.ts). */
type Helpers = Pick<typeof WebAuthnHelpersModule, 'decodeClientDataJSON' | 'parseAuthenticatorData'>;

export interface Es256AssertionInput {
  /** The response's parts as sent (base64url), already read strictly (ceremony.ts assertionResponseSchema). */
  response: { clientDataJSON: string; authenticatorData: string; signature: string };
  expectedChallenge: string;
  expectedOrigins: readonly string[];
  expectedRpId: string;
  /** The key's public key as registered (approver keys are P-256 only). */
  publicJwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  /** The stored signature counter. */
  counter: number;
  requireUserVerification: boolean;
}

/** Thrown for any assertion that does not verify (the caller words the refusal). */
export class AssertionRefused extends Error {}

/** The refusal's message when everything but the signature checked out. */
export const SIGNATURE_REFUSED = 'the signature does not verify';

const TOKEN_BINDING_STATUSES = ['present', 'supported', 'notSupported'];

/** Public keys by their coordinates: a key object is made once per key, not at every tap (bounded). */
const keys = new Map<string, KeyObject>();
const MAX_KEYS = 1024;

function keyOf(jwk: Es256AssertionInput['publicJwk']): KeyObject {
  const id = `${jwk.x}.${jwk.y}`;
  let key = keys.get(id);
  if (key === undefined) {
    key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, format: 'jwk' });
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value!);
    keys.set(id, key);
  }
  return key;
}

/**
 * The assertion's new signature counter, once every check passed: client data type, challenge,
 * cross-origin and top origin, origin, token binding, rpId hash, user presence and (when
 * required) verification, the counter, and the ES256 signature over authenticatorData ||
 * SHA-256(clientDataJSON). Throws AssertionRefused otherwise.
 */
export function verifyEs256Assertion(helpers: Helpers, input: Es256AssertionInput): number {
  const refuse = (why: string): never => {
    throw new AssertionRefused(why);
  };
  let decoded: unknown;
  try {
    decoded = helpers.decodeClientDataJSON(input.response.clientDataJSON);
  } catch {
    return refuse('the client data is not JSON');
  }
  if (typeof decoded !== 'object' || decoded === null) return refuse('the client data is not an object');
  const { type, challenge, origin, crossOrigin, topOrigin, tokenBinding } = decoded as Record<string, unknown>;
  if (type !== 'webauthn.get') refuse(`unexpected client data type ${String(type)}`);
  if (challenge !== input.expectedChallenge) refuse('unexpected challenge');
  // As the library: a cross-origin response is refused when it names its top origin (none is
  // expected here), and a top origin without crossOrigin is a browser fault, refused too.
  if (topOrigin) refuse(crossOrigin ? 'unexpected cross-origin response' : 'a top origin without crossOrigin');
  if (typeof origin !== 'string' || !input.expectedOrigins.includes(origin)) refuse('unexpected origin');
  if (tokenBinding) {
    if (typeof tokenBinding !== 'object') refuse('the token binding is not an object');
    if (!TOKEN_BINDING_STATUSES.includes((tokenBinding as { status?: unknown }).status as string))
      refuse('unexpected token binding status');
  }
  const authData = Buffer.from(input.response.authenticatorData, 'base64url');
  let parsed: ReturnType<Helpers['parseAuthenticatorData']>;
  try {
    parsed = helpers.parseAuthenticatorData(new Uint8Array(authData));
  } catch {
    return refuse('the authenticator data is malformed');
  }
  const rpIdHash = createHash('sha256').update(input.expectedRpId, 'utf8').digest();
  if (!rpIdHash.equals(Buffer.from(parsed.rpIdHash))) refuse('unexpected rpId hash');
  if (!parsed.flags.up) refuse('user not present');
  if (input.requireUserVerification && !parsed.flags.uv) refuse('user verification required');
  const counter = parsed.counter;
  if ((counter > 0 || input.counter > 0) && counter <= input.counter) refuse('the counter did not advance');
  const clientDataHash = createHash('sha256').update(Buffer.from(input.response.clientDataJSON, 'base64url')).digest();
  const signed = Buffer.concat([authData, clientDataHash]);
  const signature = Buffer.from(input.response.signature, 'base64url');
  let valid = false;
  try {
    valid = verify('sha256', signed, { key: keyOf(input.publicJwk), dsaEncoding: 'der' }, signature);
  } catch {
    valid = false;
  }
  if (!valid) refuse(SIGNATURE_REFUSED);
  return counter;
}
