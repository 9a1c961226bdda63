/**
 * The synchronous ES256 assertion check (main/core/approvals/es256-assertion.ts) held to
 * @simplewebauthn/server's verifyAuthenticationResponse: both verify the same valid and altered
 * assertions (client data, authenticator data, signature, counter, user verification), made here
 * by a P-256 key as a security key would make them, and must give the same verdict on each.
 */
import { describe, expect, it } from 'vitest';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { verifyAuthenticationResponse } from '@simplewebauthn/server';
import * as helpers from '@simplewebauthn/server/helpers';
import { verifyEs256Assertion } from '../../main/core/approvals/es256-assertion.js';

const RP_ID = 'localhost';
const ORIGIN = 'http://localhost:7345';
const CHALLENGE = Buffer.alloc(32, 7).toString('base64url');
const CREDENTIAL_ID = Buffer.alloc(32, 9).toString('base64url');

interface KeyPair {
  privateKey: KeyObject;
  jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  cose: Uint8Array;
}

function keyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { x, y } = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
  const cose = helpers.isoCBOR.encode(
    new Map<number, number | Uint8Array>([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, new Uint8Array(Buffer.from(x, 'base64url'))],
      [-3, new Uint8Array(Buffer.from(y, 'base64url'))],
    ]),
  );
  return { privateKey, jwk: { kty: 'EC', crv: 'P-256', x, y }, cose };
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;
const FLAG_ED = 0x80;

interface Shape {
  clientData?: Record<string, unknown>;
  /** Replaces the client data bytes outright (not JSON, not an object). */
  clientDataText?: string;
  rpId?: string;
  flags?: number;
  counter?: number;
  /** Bytes after the counter (attested data, extensions or garbage). */
  tail?: Buffer;
  signer?: KeyPair;
  /** Alters the signature after signing. */
  signature?: (der: Buffer) => Buffer;
  /** Signs other bytes than authenticatorData || SHA-256(clientDataJSON). */
  signOther?: boolean;
}

function assertion(key: KeyPair, shape: Shape = {}) {
  const clientDataText =
    shape.clientDataText ??
    JSON.stringify(shape.clientData ?? { type: 'webauthn.get', challenge: CHALLENGE, origin: ORIGIN, crossOrigin: false });
  const clientDataJSON = Buffer.from(clientDataText, 'utf8');
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(shape.counter ?? 5);
  const authData = Buffer.concat([
    createHash('sha256')
      .update(shape.rpId ?? RP_ID)
      .digest(),
    Buffer.from([shape.flags ?? FLAG_UP | FLAG_UV]),
    counter,
    shape.tail ?? Buffer.alloc(0),
  ]);
  const message = shape.signOther
    ? Buffer.from('something else')
    : Buffer.concat([authData, createHash('sha256').update(clientDataJSON).digest()]);
  let signature: Buffer = sign('sha256', message, (shape.signer ?? key).privateKey);
  if (shape.signature) signature = shape.signature(signature);
  return {
    clientDataJSON: clientDataJSON.toString('base64url'),
    authenticatorData: authData.toString('base64url'),
    signature: signature.toString('base64url'),
  };
}

async function libraryVerdict(
  key: KeyPair,
  response: ReturnType<typeof assertion>,
  stored: number,
  uv: boolean,
): Promise<number | 'refused'> {
  try {
    const verified = await verifyAuthenticationResponse({
      response: { id: CREDENTIAL_ID, rawId: CREDENTIAL_ID, type: 'public-key', response, clientExtensionResults: {} },
      expectedChallenge: CHALLENGE,
      expectedOrigin: [ORIGIN],
      expectedRPID: RP_ID,
      expectedType: 'webauthn.get',
      credential: { id: CREDENTIAL_ID, publicKey: new Uint8Array(key.cose), counter: stored },
      requireUserVerification: uv,
    });
    return verified.verified ? verified.authenticationInfo.newCounter : 'refused';
  } catch {
    return 'refused';
  }
}

function ownVerdict(key: KeyPair, response: ReturnType<typeof assertion>, stored: number, uv: boolean): number | 'refused' {
  try {
    return verifyEs256Assertion(helpers, {
      response,
      expectedChallenge: CHALLENGE,
      expectedOrigins: [ORIGIN],
      expectedRpId: RP_ID,
      publicJwk: key.jwk,
      counter: stored,
      requireUserVerification: uv,
    });
  } catch {
    return 'refused';
  }
}

const base = { type: 'webauthn.get', challenge: CHALLENGE, origin: ORIGIN, crossOrigin: false };
const other = keyPair();
const extensions = Buffer.from(helpers.isoCBOR.encode(new Map([['credProps', true]])));

/** name, the assertion's shape, the stored counter, user verification required, the expected verdict. */
const CASES: Array<[string, Shape, number, boolean, 'accepted' | 'refused']> = [
  ['a valid assertion', {}, 4, true, 'accepted'],
  ['a valid assertion from a key that keeps no counter', { counter: 0 }, 0, true, 'accepted'],
  ['a counter equal to the stored one', { counter: 4 }, 4, true, 'refused'],
  ['a counter below the stored one', { counter: 3 }, 4, true, 'refused'],
  ['a zero counter once one was stored', { counter: 0 }, 4, true, 'refused'],
  ['a registration client data type', { clientData: { ...base, type: 'webauthn.create' } }, 0, true, 'refused'],
  ['another challenge', { clientData: { ...base, challenge: Buffer.alloc(32, 8).toString('base64url') } }, 0, true, 'refused'],
  ['another origin', { clientData: { ...base, origin: 'http://localhost:7346' } }, 0, true, 'refused'],
  ['no origin', { clientData: { type: 'webauthn.get', challenge: CHALLENGE } }, 0, true, 'refused'],
  ['cross-origin without a top origin', { clientData: { ...base, crossOrigin: true } }, 0, true, 'accepted'],
  ['cross-origin with a top origin', { clientData: { ...base, crossOrigin: true, topOrigin: 'http://evil.example' } }, 0, true, 'refused'],
  ['a top origin without cross-origin', { clientData: { ...base, topOrigin: 'http://evil.example' } }, 0, true, 'refused'],
  ['a token binding present', { clientData: { ...base, tokenBinding: { status: 'present', id: 'abc' } } }, 0, true, 'accepted'],
  ['a token binding of unknown status', { clientData: { ...base, tokenBinding: { status: 'bogus' } } }, 0, true, 'refused'],
  ['a token binding that is text', { clientData: { ...base, tokenBinding: 'present' } }, 0, true, 'refused'],
  ['client data that is not JSON', { clientDataText: '{"type":' }, 0, true, 'refused'],
  ['client data that is null', { clientDataText: 'null' }, 0, true, 'refused'],
  ['another rpId hash', { rpId: 'example.com' }, 0, true, 'refused'],
  ['no user presence', { flags: FLAG_UV }, 0, true, 'refused'],
  ['no user verification when required', { flags: FLAG_UP }, 0, true, 'refused'],
  ['no user verification when preferred', { flags: FLAG_UP }, 0, false, 'accepted'],
  ['extension data', { flags: FLAG_UP | FLAG_UV | FLAG_ED, tail: extensions }, 0, true, 'accepted'],
  ['extension data flagged but absent', { flags: FLAG_UP | FLAG_UV | FLAG_ED }, 0, true, 'refused'],
  ['attested data flagged but absent', { flags: FLAG_UP | FLAG_UV | FLAG_AT }, 0, true, 'refused'],
  ['bytes left over after the counter', { tail: Buffer.from([0, 1, 2]) }, 0, true, 'refused'],
  ['a signature by another key', { signer: other }, 0, true, 'refused'],
  ['a signature over other bytes', { signOther: true }, 0, true, 'refused'],
  [
    'a signature with its last bit flipped',
    { signature: (s) => Buffer.concat([s.subarray(0, -1), Buffer.from([s[s.length - 1]! ^ 1])]) },
    0,
    true,
    'refused',
  ],
  ['a signature cut short', { signature: (s) => s.subarray(0, s.length - 2) }, 0, true, 'refused'],
  ['an empty signature', { signature: () => Buffer.alloc(0) }, 0, true, 'refused'],
];

describe('the synchronous ES256 assertion check', () => {
  const key = keyPair();
  it.each(CASES)('gives the library verdict on %s', async (_name, shape, stored, uv, expected) => {
    const response = assertion(key, shape);
    const library = await libraryVerdict(key, response, stored, uv);
    const own = ownVerdict(key, response, stored, uv);
    // The case is what it says (the library's verdict), and the synchronous check agrees, counter included.
    expect(library === 'refused' ? 'refused' : 'accepted').toBe(expected);
    expect(own).toEqual(library);
  });

  it('refuses, where the library does, a valid signature re-encoded with trailing bytes', async () => {
    const response = assertion(key, { signature: (s) => Buffer.concat([s, Buffer.from([0])]) });
    const own = ownVerdict(key, response, 0, true);
    const library = await libraryVerdict(key, response, 0, true);
    // Stricter is allowed (DER is exact); looser is not.
    expect(own).toBe('refused');
    if (library === 'refused') expect(own).toEqual(library);
  });
});
