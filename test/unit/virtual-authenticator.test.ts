// The virtual authenticator against @simplewebauthn/server's real verification: what it produces
// verifies, and every tampering a relying party must catch is caught.
import { createHash, createPublicKey, verify } from 'node:crypto';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import type { AuthenticationResponseJSON, WebAuthnCredential } from '@simplewebauthn/server';
import { decodeAttestationObject, isoBase64URL, parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import { describe, expect, it } from 'vitest';
import {
  VIRTUAL_AUTHENTICATOR_AAGUID,
  VirtualAuthenticator,
  isVirtualAuthenticatorAaguid,
} from '../../main/core/testing/virtual-authenticator.js';
import type { VirtualAuthenticatorTestHooks } from '../../main/core/testing/virtual-authenticator.js';

const RP_ID = 'localhost';
const ORIGIN = 'http://localhost:7345';

async function registrationOptions(excludeCredentials: string[] = []) {
  return generateRegistrationOptions({
    rpName: 'Countersign',
    rpID: RP_ID,
    userName: 'alice@example.com',
    userDisplayName: 'Alice',
    attestationType: 'direct',
    authenticatorSelection: { authenticatorAttachment: 'cross-platform', residentKey: 'discouraged', userVerification: 'required' },
    excludeCredentials: excludeCredentials.map((id) => ({ id })),
    supportedAlgorithmIDs: [-7],
  });
}

/** The full registration ceremony; returns what a relying party stores. */
async function register(authenticator: VirtualAuthenticator): Promise<{ credential: WebAuthnCredential; userHandle: string }> {
  const options = await registrationOptions();
  const response = authenticator.createCredential({
    rpId: RP_ID,
    origin: ORIGIN,
    challenge: options.challenge,
    user: options.user,
    userVerification: options.authenticatorSelection?.userVerification,
  });
  const verification = await verifyRegistrationResponse({
    response,
    expectedChallenge: options.challenge,
    expectedOrigin: ORIGIN,
    expectedRPID: RP_ID,
    requireUserVerification: true,
    supportedAlgorithmIDs: [-7],
  });
  if (!verification.verified) throw new Error('registration did not verify');
  return { credential: verification.registrationInfo.credential, userHandle: options.user.id };
}

interface AssertOptions {
  origin?: string;
  rpId?: string;
  challenge?: string;
  testHooks?: VirtualAuthenticatorTestHooks;
  requireUserVerification?: boolean;
}

/** The full authentication ceremony: options, assertion, verification (which may throw). */
async function authenticate(authenticator: VirtualAuthenticator, credential: WebAuthnCredential, opts: AssertOptions = {}) {
  const options = await generateAuthenticationOptions({
    rpID: RP_ID,
    allowCredentials: [{ id: credential.id }],
    userVerification: 'required',
  });
  const response = authenticator.getAssertion({
    rpId: opts.rpId ?? RP_ID,
    origin: opts.origin ?? ORIGIN,
    challenge: opts.challenge ?? options.challenge,
    allowCredentials: (options.allowCredentials ?? []).map((entry) => entry.id),
    userVerification: options.userVerification,
    testHooks: opts.testHooks,
  });
  return {
    response,
    verify: (overrides: { response?: AuthenticationResponseJSON; counter?: number } = {}) =>
      verifyAuthenticationResponse({
        response: overrides.response ?? response,
        expectedChallenge: options.challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        credential: { ...credential, counter: overrides.counter ?? credential.counter },
        requireUserVerification: opts.requireUserVerification ?? true,
      }),
  };
}

function flipBit(base64url: string, byteFromEnd: number, mask = 0x01): string {
  const bytes = Buffer.from(base64url, 'base64url');
  const index = bytes.length - 1 - byteFromEnd;
  bytes.writeUInt8(bytes.readUInt8(index) ^ mask, index);
  return bytes.toString('base64url');
}

describe('virtual authenticator: registration', () => {
  it('produces a packed self-attested P-256 credential that @simplewebauthn verifies, marked with the virtual AAGUID', async () => {
    const authenticator = new VirtualAuthenticator();
    const options = await registrationOptions();
    const response = authenticator.createCredential({
      rpId: RP_ID,
      origin: ORIGIN,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    });
    const verification = await verifyRegistrationResponse({
      response,
      expectedChallenge: options.challenge,
      expectedOrigin: ORIGIN,
      expectedRPID: RP_ID,
      requireUserVerification: true,
      supportedAlgorithmIDs: [-7],
    });
    expect(verification.verified).toBe(true);
    if (!verification.verified) return;
    const infoOut = verification.registrationInfo;
    expect(infoOut.fmt).toBe('packed');
    expect(infoOut.aaguid).toBe(VIRTUAL_AUTHENTICATOR_AAGUID);
    expect(isVirtualAuthenticatorAaguid(infoOut.aaguid)).toBe(true);
    expect(infoOut.userVerified).toBe(true);
    expect(infoOut.credentialDeviceType).toBe('singleDevice');
    expect(infoOut.credentialBackedUp).toBe(false);
    expect(infoOut.credential.id).toBe(response.id);
    expect(infoOut.credential.counter).toBe(0);
    expect(infoOut.credential.transports).toEqual(['usb']);
    expect(infoOut.origin).toBe(ORIGIN);
    expect(infoOut.rpID).toBe(RP_ID);
    expect(Buffer.from(response.id, 'base64url')).toHaveLength(32);
    expect(response.authenticatorAttachment).toBe('cross-platform');
    expect(response.response.publicKeyAlgorithm).toBe(-7);

    // Self attestation: packed, alg ES256, no x5c, and the signature is the credential's own.
    const attestation = decodeAttestationObject(isoBase64URL.toBuffer(response.response.attestationObject));
    const attStmt = attestation.get('attStmt');
    expect(attestation.get('fmt')).toBe('packed');
    expect(attStmt.get('alg')).toBe(-7);
    expect(attStmt.get('x5c')).toBeUndefined();
    const sig = attStmt.get('sig');
    expect(sig).toBeInstanceOf(Uint8Array);
    const authData = attestation.get('authData');
    const clientDataHash = createHash('sha256').update(Buffer.from(response.response.clientDataJSON, 'base64url')).digest();
    const publicKey = createPublicKey({ key: Buffer.from(response.response.publicKey ?? '', 'base64url'), format: 'der', type: 'spki' });
    expect(
      verify('sha256', Buffer.concat([authData, clientDataHash]), { key: publicKey, dsaEncoding: 'der' }, sig ?? new Uint8Array()),
    ).toBe(true);
    expect(Buffer.from(response.response.authenticatorData ?? '', 'base64url').equals(Buffer.from(authData))).toBe(true);

    // The authenticator data layout: rpIdHash, UP|UV|AT, counter 0, attested credential data.
    const parsed = parseAuthenticatorData(authData);
    expect(Buffer.from(parsed.rpIdHash).equals(createHash('sha256').update(RP_ID).digest())).toBe(true);
    expect(parsed.flags.flagsInt).toBe(0x45);
    expect(parsed.counter).toBe(0);

    const clientData = JSON.parse(Buffer.from(response.response.clientDataJSON, 'base64url').toString('utf8')) as unknown;
    expect(clientData).toEqual({ type: 'webauthn.create', challenge: options.challenge, origin: ORIGIN, crossOrigin: false });
    expect(authenticator.listCredentials()).toEqual([
      {
        id: response.id,
        rpId: RP_ID,
        userHandle: options.user.id,
        userName: 'alice@example.com',
        userDisplayName: 'Alice',
        signCount: 0,
        userVerified: true,
      },
    ]);
  });

  it('is refused by the relying party for a wrong challenge, origin or rpId, or without user verification', async () => {
    const authenticator = new VirtualAuthenticator();
    const options = await registrationOptions();
    const base = { rpId: RP_ID, origin: ORIGIN, challenge: options.challenge, user: options.user, userVerification: 'required' as const };
    const check = (response: ReturnType<VirtualAuthenticator['createCredential']>) =>
      verifyRegistrationResponse({
        response,
        expectedChallenge: options.challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        requireUserVerification: true,
      });
    const other = await registrationOptions();
    await expect(check(authenticator.createCredential({ ...base, challenge: other.challenge }))).rejects.toThrow(
      /unexpected registration response challenge/i,
    );
    await expect(check(authenticator.createCredential({ ...base, origin: 'http://localhost:7346' }))).rejects.toThrow(
      /unexpected registration response origin/i,
    );
    // Only the rpId differs (origin checks come first in the verifier).
    await expect(check(authenticator.createCredential({ ...base, rpId: 'evil.example' }))).rejects.toThrow(/unexpected rp id hash/i);
    await expect(check(authenticator.createCredential({ ...base, testHooks: { withoutUserVerification: true } }))).rejects.toThrow(
      /user verification was required/i,
    );
    await expect(check(authenticator.createCredential({ ...base, testHooks: { withoutUserPresence: true } }))).rejects.toThrow(
      /user presence was required/i,
    );
  });

  it('refuses a credential listed in excludeCredentials, and UV it cannot perform', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    const options = await registrationOptions([credential.id]);
    expect(() =>
      authenticator.createCredential({
        rpId: RP_ID,
        origin: ORIGIN,
        challenge: options.challenge,
        user: options.user,
        excludeCredentials: (options.excludeCredentials ?? []).map((entry) => entry.id),
      }),
    ).toThrow(expect.objectContaining({ code: 'config_invalid', details: { reason: 'credential_excluded' } }));
    expect(() =>
      authenticator.createCredential({
        rpId: RP_ID,
        origin: ORIGIN,
        challenge: options.challenge,
        user: options.user,
        userVerification: 'required',
        userVerified: false,
      }),
    ).toThrow(expect.objectContaining({ code: 'config_invalid', details: { reason: 'user_verification_unavailable' } }));
    expect(() => authenticator.createCredential({ rpId: RP_ID, origin: ORIGIN, challenge: 'not base64url!', user: options.user })).toThrow(
      expect.objectContaining({ code: 'config_invalid' }),
    );
    expect(authenticator.listCredentials()).toHaveLength(1);
  });
});

describe('virtual authenticator: assertions', () => {
  it('signs assertions that verify, with the counter increasing by one each time', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential, userHandle } = await register(authenticator);
    const first = await authenticate(authenticator, credential);
    const result = await first.verify();
    expect(result.verified).toBe(true);
    expect(result.authenticationInfo.newCounter).toBe(1);
    expect(result.authenticationInfo.userVerified).toBe(true);
    expect(result.authenticationInfo.credentialID).toBe(credential.id);
    expect(first.response.response.userHandle).toBe(userHandle);
    expect(first.response.id).toBe(credential.id);
    const clientData = JSON.parse(Buffer.from(first.response.response.clientDataJSON, 'base64url').toString('utf8')) as {
      type: string;
      crossOrigin: boolean;
    };
    expect(clientData.type).toBe('webauthn.get');
    expect(clientData.crossOrigin).toBe(false);
    expect(parseAuthenticatorData(isoBase64URL.toBuffer(first.response.response.authenticatorData)).flags.flagsInt).toBe(0x05);

    credential.counter = result.authenticationInfo.newCounter;
    const second = await (await authenticate(authenticator, credential)).verify();
    expect(second.verified).toBe(true);
    expect(second.authenticationInfo.newCounter).toBe(2);
    expect(authenticator.listCredentials()[0]?.signCount).toBe(2);
  });

  it('fails verification for a wrong challenge', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    const stale = await generateAuthenticationOptions({ rpID: RP_ID });
    const ceremony = await authenticate(authenticator, credential, { challenge: stale.challenge });
    await expect(ceremony.verify()).rejects.toThrow(/unexpected authentication response challenge/i);
  });

  it('fails verification for a wrong origin (another port on localhost)', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    const ceremony = await authenticate(authenticator, credential, { origin: 'http://localhost:7346' });
    await expect(ceremony.verify()).rejects.toThrow(/unexpected authentication response origin "http:\/\/localhost:7346"/i);
  });

  it('fails verification when the authenticator data names another rpId', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    const ceremony = await authenticate(authenticator, credential, { testHooks: { authenticatorDataRpId: 'evil.example' } });
    await expect(ceremony.verify()).rejects.toThrow(/unexpected rp id hash/i);
  });

  it('reports verified: false (no throw) for a flipped signature bit or tampered authenticator data', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    const ceremony = await authenticate(authenticator, credential);
    // Last byte of the DER signature is inside s: the DER stays well-formed, the signature does not.
    const badSignature = {
      ...ceremony.response,
      response: { ...ceremony.response.response, signature: flipBit(ceremony.response.response.signature, 0) },
    };
    expect((await ceremony.verify({ response: badSignature })).verified).toBe(false);
    // Counter 1 raised to 257: passes the counter check, breaks the signature.
    const raised = {
      ...ceremony.response,
      response: { ...ceremony.response.response, authenticatorData: flipBit(ceremony.response.response.authenticatorData, 1) },
    };
    expect(parseAuthenticatorData(isoBase64URL.toBuffer(raised.response.authenticatorData)).counter).toBe(257);
    expect((await ceremony.verify({ response: raised })).verified).toBe(false);
    expect((await ceremony.verify()).verified).toBe(true);
  });

  it('detects a counter regression (and a repeated counter) before checking the signature', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    for (let i = 0; i < 3; i += 1) {
      const result = await (await authenticate(authenticator, credential)).verify();
      credential.counter = result.authenticationInfo.newCounter;
    }
    expect(credential.counter).toBe(3);
    authenticator.setCounter(credential.id, 0); // next assertion carries 1
    await expect((await authenticate(authenticator, credential)).verify()).rejects.toThrow(
      'Response counter value 1 was lower than expected 3',
    );
    authenticator.setCounter(credential.id, 2); // next assertion carries 3 == stored: also refused, same wording
    await expect((await authenticate(authenticator, credential)).verify()).rejects.toThrow(
      'Response counter value 3 was lower than expected 3',
    );
    // Back above the stored value, it verifies again.
    const recovered = await (await authenticate(authenticator, credential)).verify();
    expect(recovered.authenticationInfo.newCounter).toBe(4);
    expect(() => authenticator.setCounter(credential.id, -1)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(() => authenticator.setCounter('AAAA', 1)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
  });

  it('fails verification when user verification is required but the UV flag is missing', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    const ceremony = await authenticate(authenticator, credential, { testHooks: { withoutUserVerification: true } });
    expect(parseAuthenticatorData(isoBase64URL.toBuffer(ceremony.response.response.authenticatorData)).flags.uv).toBe(false);
    await expect(ceremony.verify()).rejects.toThrow(/user verification required, but user could not be verified/i);
    // The same assertion verifies when the relying party does not require UV, and says so.
    const lenient = await authenticate(authenticator, credential, {
      testHooks: { withoutUserVerification: true },
      requireUserVerification: false,
    });
    const result = await lenient.verify();
    expect(result.verified).toBe(true);
    expect(result.authenticationInfo.userVerified).toBe(false);
    const noPresence = await authenticate(authenticator, credential, { testHooks: { withoutUserPresence: true } });
    await expect(noPresence.verify()).rejects.toThrow(/user not present/i);
  });

  it('answers only with a credential in allowCredentials that is registered for the rpId', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential: alice } = await register(authenticator);
    const { credential: bob } = await register(authenticator);
    const options = await generateAuthenticationOptions({
      rpID: RP_ID,
      allowCredentials: [{ id: alice.id }],
      userVerification: 'required',
    });
    const allow = (options.allowCredentials ?? []).map((entry) => entry.id);
    const base = {
      rpId: RP_ID,
      origin: ORIGIN,
      challenge: options.challenge,
      allowCredentials: allow,
      userVerification: 'required' as const,
    };
    expect(authenticator.getAssertion(base).id).toBe(alice.id);
    expect(() => authenticator.getAssertion({ ...base, credentialId: bob.id })).toThrow(
      expect.objectContaining({ code: 'config_invalid', details: { reason: 'credential_not_allowed' } }),
    );
    expect(() => authenticator.getAssertion({ ...base, allowCredentials: ['A'.repeat(43)] })).toThrow(
      expect.objectContaining({ code: 'config_invalid', details: { reason: 'no_allowed_credential' } }),
    );
    expect(() => authenticator.getAssertion({ ...base, allowCredentials: [] })).toThrow(
      expect.objectContaining({ code: 'config_invalid', details: { reason: 'no_allowed_credential' } }),
    );
    // Alice's credential is scoped to localhost: asked for another rpId, it does not answer.
    expect(() => authenticator.getAssertion({ ...base, rpId: 'evil.example', origin: 'http://evil.example' })).toThrow(
      expect.objectContaining({ code: 'config_invalid', details: { reason: 'no_allowed_credential' } }),
    );
    expect(() => authenticator.getAssertion({ ...base, rpId: 'evil.example', credentialId: alice.id })).toThrow(
      expect.objectContaining({ code: 'config_invalid', details: { reason: 'credential_not_allowed' } }),
    );
    // A credential without UV capability refuses a UV-required request, answers a preferred one without UV.
    const noUv = new VirtualAuthenticator();
    const regOptions = await registrationOptions();
    const created = noUv.createCredential({
      rpId: RP_ID,
      origin: ORIGIN,
      challenge: regOptions.challenge,
      user: regOptions.user,
      userVerified: false,
    });
    const noUvBase = { ...base, allowCredentials: [created.id] };
    expect(() => noUv.getAssertion(noUvBase)).toThrow(expect.objectContaining({ details: { reason: 'user_verification_unavailable' } }));
    const preferred = noUv.getAssertion({ ...noUvBase, userVerification: 'preferred' });
    expect(parseAuthenticatorData(isoBase64URL.toBuffer(preferred.response.authenticatorData)).flags.flagsInt).toBe(0x01);
  });
});

describe('virtual authenticator: persisted state', () => {
  it('round-trips through JSON and keeps producing verifying assertions with a continuing counter', async () => {
    const authenticator = new VirtualAuthenticator();
    const { credential } = await register(authenticator);
    credential.counter = (await (await authenticate(authenticator, credential)).verify()).authenticationInfo.newCounter;

    const json = JSON.stringify(authenticator.exportState());
    const state = JSON.parse(json) as ReturnType<VirtualAuthenticator['exportState']>;
    expect(state.keyDomain).toBe('test');
    expect(state.aaguid).toBe(VIRTUAL_AUTHENTICATOR_AAGUID);
    expect(state.credentials).toHaveLength(1);
    expect(state.credentials[0]?.signCount).toBe(1);

    const restored = VirtualAuthenticator.importState(JSON.parse(json));
    expect(restored.listCredentials()).toEqual(authenticator.listCredentials());
    const result = await (await authenticate(restored, credential)).verify();
    expect(result.verified).toBe(true);
    expect(result.authenticationInfo.newCounter).toBe(2);
    expect(JSON.stringify(restored.exportState())).not.toBe(json); // the counter moved on
  });

  it('refuses malformed state', async () => {
    const authenticator = new VirtualAuthenticator();
    await register(authenticator);
    const state = authenticator.exportState();
    const entry = state.credentials[0];
    if (entry === undefined) throw new Error('no credential exported');
    const bad: unknown[] = [
      null,
      { ...state, version: 2 },
      { ...state, keyDomain: 'production' },
      { ...state, aaguid: '00000000-0000-0000-0000-000000000000' },
      { ...state, credentials: [entry, entry] },
      { ...state, credentials: [{ ...entry, privateKeyPkcs8: 'AAAA' }] },
      { ...state, credentials: [{ ...entry, signCount: -1 }] },
      { ...state, credentials: [{ ...entry, rpId: '' }] },
    ];
    for (const value of bad) {
      expect(() => VirtualAuthenticator.importState(value)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    }
  });
});
