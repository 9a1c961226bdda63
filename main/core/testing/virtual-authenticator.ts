/**
 * Countersign's virtual authenticator: a software WebAuthn authenticator (plus the bit of browser
 * client it needs) for headless test automation. It produces real WebAuthn data structures and
 * real ECDSA P-256 signatures that any WebAuthn relying party library verifies, and it marks every
 * credential it creates with {@link VIRTUAL_AUTHENTICATOR_AAGUID} in a packed self-attestation, so
 * a production configuration can recognise and refuse it.
 *
 * It belongs to the test key domain only: virtual approvers exist so that an agent's approval path
 * can be exercised end to end in CI, and tokens carrying their assertions never verify in
 * production. Private keys are plain software keys held in memory (and, through
 * {@link VirtualAuthenticator.exportState}, in a headless run's data dir): nothing about them is
 * hardware-backed.
 *
 * What it models:
 * - a CTAP2 cross-platform (USB) security key with user presence always given and user
 *   verification as a per-credential capability (default on);
 * - one P-256 key pair per credential (COSE alg -7), a random 32-byte credential id, a signature
 *   counter that starts at 0 and increases by 1 per assertion;
 * - the client side of the ceremony: clientDataJSON `{type, challenge, origin, crossOrigin:false}`.
 *
 * What it deliberately does not check: that the origin belongs to the rpId. A browser would refuse
 * that; the virtual client takes origin and rpId as plain parameters so tests can produce
 * wrong-origin and wrong-rpId responses. It has no discoverable-credential (resident key) lookup:
 * assertions need an allowCredentials list.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import { CountersignError, quote } from '../../../shared/errors.js';
import { VIRTUAL_AUTHENTICATOR_AAGUID } from '../approvals/virtual-authenticator-aaguid.js';

export { VIRTUAL_AUTHENTICATOR_AAGUID, isVirtualAuthenticatorAaguid } from '../approvals/virtual-authenticator-aaguid.js';

/** Version of the {@link VirtualAuthenticatorState} layout. */
export const VIRTUAL_AUTHENTICATOR_STATE_VERSION = 1;

export type UserVerificationRequirement = 'required' | 'preferred' | 'discouraged';

/**
 * Test hooks: ways to make the authenticator misbehave on one call, for negative tests of the
 * verifying side. A real authenticator never does any of this.
 */
export interface VirtualAuthenticatorTestHooks {
  /** Test hook: clear the UV flag on this response, even when user verification was required. */
  withoutUserVerification?: boolean;
  /** Test hook: clear the UP flag on this response. */
  withoutUserPresence?: boolean;
  /**
   * Test hook (registration only): attest with this AAGUID instead of the virtual one, i.e.
   * impersonate another authenticator model, to test AAGUID allowlists and virtual-key refusal.
   */
  impersonateAaguid?: string;
  /**
   * Test hook: hash this rpId into the authenticator data instead of the credential's own rpId
   * (a lying authenticator). The signature is still valid over the resulting data.
   */
  authenticatorDataRpId?: string;
}

export interface CreateCredentialOptions {
  rpId: string;
  origin: string;
  /** The registration challenge, base64url (as in PublicKeyCredentialCreationOptionsJSON). */
  challenge: string;
  user: {
    /** The user handle, base64url (1 to 64 bytes). */
    id: string;
    name: string;
    displayName: string;
  };
  /** Default 'preferred'. */
  userVerification?: UserVerificationRequirement;
  /** Credential ids (base64url) the relying party already knows: the authenticator refuses them. */
  excludeCredentials?: string[];
  /** Whether the new credential can perform user verification (default true). */
  userVerified?: boolean;
  testHooks?: VirtualAuthenticatorTestHooks;
}

export interface GetAssertionOptions {
  rpId: string;
  origin: string;
  /** The authentication challenge, base64url (as in PublicKeyCredentialRequestOptionsJSON). */
  challenge: string;
  /** Credential ids (base64url) the relying party accepts; must not be empty. */
  allowCredentials: string[];
  /** Default 'preferred'. */
  userVerification?: UserVerificationRequirement;
  /** Answer with this credential (it must be in allowCredentials); default the first usable one. */
  credentialId?: string;
  testHooks?: VirtualAuthenticatorTestHooks;
}

/** Public facts about a virtual credential (no key material). */
export interface VirtualCredentialInfo {
  id: string;
  rpId: string;
  userHandle: string;
  userName: string;
  userDisplayName: string;
  signCount: number;
  userVerified: boolean;
}

/** One credential in {@link VirtualAuthenticatorState}. */
export interface VirtualCredentialState extends VirtualCredentialInfo {
  /** The credential's P-256 private key as PKCS#8 DER, base64url. Test key domain only. */
  privateKeyPkcs8: string;
}

/**
 * Persisted virtual approvers, as JSON. It holds private keys in the clear: it is only for the
 * test key domain (headless CI data dirs), never for anything production trusts.
 */
export interface VirtualAuthenticatorState {
  version: typeof VIRTUAL_AUTHENTICATOR_STATE_VERSION;
  keyDomain: 'test';
  aaguid: typeof VIRTUAL_AUTHENTICATOR_AAGUID;
  credentials: VirtualCredentialState[];
}

interface StoredCredential {
  readonly id: string;
  readonly rpId: string;
  readonly userHandle: string;
  readonly userName: string;
  readonly userDisplayName: string;
  readonly userVerified: boolean;
  readonly privateKey: KeyObject;
  signCount: number;
}

const AAGUID_BYTES = Buffer.from(VIRTUAL_AUTHENTICATOR_AAGUID.replaceAll('-', ''), 'hex');
const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_AT = 0x40;
const COSE_KTY_EC2 = 2;
const COSE_ALG_ES256 = -7;
const COSE_CRV_P256 = 1;
const CREDENTIAL_ID_BYTES = 32;
const MAX_USER_HANDLE_BYTES = 64;
const MAX_SIGN_COUNT = 0xffff_ffff;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

function refuse(reason: string, message: string): CountersignError {
  return new CountersignError('config_invalid', message, { details: { reason } });
}

function sha256(data: Buffer | string): Buffer {
  return createHash('sha256').update(data).digest();
}

function decodeBase64url(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || value.length === 0 || !BASE64URL.test(value) || value.length % 4 === 1) {
    throw refuse('invalid_input', `${what} is not a base64url string: ${quote(value)}`);
  }
  return Buffer.from(value, 'base64url');
}

function requireText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0) throw refuse('invalid_input', `${what} must be a non-empty string`);
  return value;
}

function requirement(value: unknown): UserVerificationRequirement {
  if (value === undefined) return 'preferred';
  if (value === 'required' || value === 'preferred' || value === 'discouraged') return value;
  throw refuse('invalid_input', `user verification must be required, preferred or discouraged, not ${quote(value)}`);
}

function credentialIds(value: unknown, what: string): string[] {
  if (!Array.isArray(value)) throw refuse('invalid_input', `${what} must be a list of credential ids`);
  return value.map((id: unknown) => {
    decodeBase64url(id, `a credential id in ${what}`);
    return id as string;
  });
}

/** The flags byte for one response, or a refusal when UV is required but not available. */
function responseFlags(
  capable: boolean,
  needed: UserVerificationRequirement,
  hooks: VirtualAuthenticatorTestHooks | undefined,
  attested: boolean,
): number {
  if (needed === 'required' && !capable && hooks?.withoutUserVerification !== true) {
    throw refuse('user_verification_unavailable', 'user verification is required but the virtual credential cannot verify the user');
  }
  const uv = capable && needed !== 'discouraged' && hooks?.withoutUserVerification !== true;
  const up = hooks?.withoutUserPresence !== true;
  return (up ? FLAG_UP : 0) | (uv ? FLAG_UV : 0) | (attested ? FLAG_AT : 0);
}

function authenticatorData(rpId: string, flags: number, signCount: number, attestedCredentialData?: Buffer): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(signCount);
  const parts = [sha256(rpId), Buffer.from([flags]), counter];
  if (attestedCredentialData !== undefined) parts.push(attestedCredentialData);
  return Buffer.concat(parts);
}

function clientDataJSON(type: 'webauthn.create' | 'webauthn.get', challenge: Buffer, origin: string): Buffer {
  // Member order as browsers write it; the challenge is re-encoded from bytes, as a browser does.
  return Buffer.from(JSON.stringify({ type, challenge: challenge.toString('base64url'), origin, crossOrigin: false }), 'utf8');
}

/** ECDSA P-256 over authData || SHA-256(clientDataJSON), DER-encoded as WebAuthn requires. */
function signResponse(privateKey: KeyObject, authData: Buffer, clientData: Buffer): Buffer {
  return sign('sha256', Buffer.concat([authData, sha256(clientData)]), { key: privateKey, dsaEncoding: 'der' });
}

function keyMaterial(privateKey: KeyObject): { spki: Buffer; cosePublicKey: Uint8Array } {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw refuse('invalid_state', 'a virtual credential key is not an ECDSA P-256 key');
  }
  const publicKey = createPublicKey(privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
    throw new CountersignError('internal_error', 'the virtual credential public key has no coordinates');
  }
  const x = Buffer.from(jwk.x, 'base64url');
  const y = Buffer.from(jwk.y, 'base64url');
  if (x.length !== 32 || y.length !== 32) {
    throw new CountersignError('internal_error', 'the virtual credential public key coordinates are not 32 bytes');
  }
  // COSE_Key, CTAP2 canonical order: kty, alg, crv, x, y.
  const cose = new Map<number, number | Uint8Array>([
    [1, COSE_KTY_EC2],
    [3, COSE_ALG_ES256],
    [-1, COSE_CRV_P256],
    [-2, new Uint8Array(x)],
    [-3, new Uint8Array(y)],
  ]);
  return { spki: publicKey.export({ format: 'der', type: 'spki' }), cosePublicKey: isoCBOR.encode(cose) };
}

function info(credential: StoredCredential): VirtualCredentialInfo {
  return {
    id: credential.id,
    rpId: credential.rpId,
    userHandle: credential.userHandle,
    userName: credential.userName,
    userDisplayName: credential.userDisplayName,
    signCount: credential.signCount,
    userVerified: credential.userVerified,
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function validSignCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_SIGN_COUNT;
}

/**
 * An in-memory software authenticator holding any number of virtual credentials. Every call is
 * synchronous; private keys never leave it except through {@link exportState}.
 */
export class VirtualAuthenticator {
  readonly #credentials = new Map<string, StoredCredential>();

  /**
   * navigator.credentials.create() against this authenticator: makes a new P-256 credential and
   * returns the registration response with a packed self-attestation. Refuses when a credential
   * in excludeCredentials is already on this authenticator for the rpId, or when user
   * verification is required and the new credential cannot perform it.
   */
  createCredential(options: CreateCredentialOptions): RegistrationResponseJSON {
    const rpId = requireText(options.rpId, 'the rpId');
    const origin = requireText(options.origin, 'the origin');
    const challenge = decodeBase64url(options.challenge, 'the challenge');
    if (!isRecord(options.user)) throw refuse('invalid_input', 'the user must be an object');
    const userHandleBytes = decodeBase64url(options.user.id, 'the user id');
    if (userHandleBytes.length > MAX_USER_HANDLE_BYTES) {
      throw refuse('invalid_input', `the user id must be at most ${MAX_USER_HANDLE_BYTES} bytes`);
    }
    const userName = requireText(options.user.name, 'the user name');
    const userDisplayName = typeof options.user.displayName === 'string' ? options.user.displayName : '';
    const needed = requirement(options.userVerification);
    const capable = options.userVerified ?? true;
    for (const excluded of credentialIds(options.excludeCredentials ?? [], 'excludeCredentials')) {
      if (this.#credentials.get(excluded)?.rpId === rpId) {
        throw refuse('credential_excluded', `the authenticator already holds excluded credential ${quote(excluded)}`);
      }
    }
    const flags = responseFlags(capable, needed, options.testHooks, true);

    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    let idBytes = randomBytes(CREDENTIAL_ID_BYTES);
    while (this.#credentials.has(idBytes.toString('base64url'))) idBytes = randomBytes(CREDENTIAL_ID_BYTES);
    const id = idBytes.toString('base64url');
    const { spki, cosePublicKey } = keyMaterial(privateKey);

    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(idBytes.length);
    const aaguidBytes =
      options.testHooks?.impersonateAaguid === undefined
        ? AAGUID_BYTES
        : Buffer.from(options.testHooks.impersonateAaguid.replaceAll('-', ''), 'hex');
    if (aaguidBytes.length !== 16) throw new CountersignError('config_invalid', 'an impersonated aaguid must be a UUID');
    const attestedCredentialData = Buffer.concat([aaguidBytes, idLength, idBytes, cosePublicKey]);
    const authData = authenticatorData(options.testHooks?.authenticatorDataRpId ?? rpId, flags, 0, attestedCredentialData);
    const clientData = clientDataJSON('webauthn.create', challenge, origin);
    const sig = signResponse(privateKey, authData, clientData);
    // Canonical CTAP2 order: fmt, attStmt, authData.
    const attestationObject = isoCBOR.encode(
      new Map<string, string | Uint8Array | Map<string, number | Uint8Array>>([
        ['fmt', 'packed'],
        [
          'attStmt',
          new Map<string, number | Uint8Array>([
            ['alg', COSE_ALG_ES256],
            ['sig', new Uint8Array(sig)],
          ]),
        ],
        ['authData', new Uint8Array(authData)],
      ]),
    );

    this.#credentials.set(id, {
      id,
      rpId,
      userHandle: userHandleBytes.toString('base64url'),
      userName,
      userDisplayName,
      userVerified: capable,
      privateKey,
      signCount: 0,
    });

    return {
      id,
      rawId: id,
      type: 'public-key',
      authenticatorAttachment: 'cross-platform',
      clientExtensionResults: {},
      response: {
        clientDataJSON: clientData.toString('base64url'),
        attestationObject: Buffer.from(attestationObject).toString('base64url'),
        authenticatorData: authData.toString('base64url'),
        transports: ['usb'],
        publicKeyAlgorithm: COSE_ALG_ES256,
        publicKey: spki.toString('base64url'),
      },
    };
  }

  /**
   * navigator.credentials.get() against this authenticator: signs an assertion with a credential
   * that is both listed in allowCredentials and registered for the rpId (else it refuses), and
   * increases that credential's signature counter by one.
   */
  getAssertion(options: GetAssertionOptions): AuthenticationResponseJSON {
    const rpId = requireText(options.rpId, 'the rpId');
    const origin = requireText(options.origin, 'the origin');
    const challenge = decodeBase64url(options.challenge, 'the challenge');
    const allowed = credentialIds(options.allowCredentials, 'allowCredentials');
    if (allowed.length === 0) {
      throw refuse('no_allowed_credential', 'allowCredentials is empty; the virtual authenticator has no discoverable credentials');
    }
    const needed = requirement(options.userVerification);
    const usable = (id: string): StoredCredential | undefined => {
      const credential = this.#credentials.get(id);
      return credential !== undefined && credential.rpId === rpId ? credential : undefined;
    };
    let credential: StoredCredential | undefined;
    if (options.credentialId !== undefined) {
      if (!allowed.includes(options.credentialId)) {
        throw refuse('credential_not_allowed', `credential ${quote(options.credentialId)} is not in allowCredentials`);
      }
      credential = usable(options.credentialId);
      if (credential === undefined) {
        throw refuse('credential_not_allowed', `credential ${quote(options.credentialId)} is not registered for rpId ${quote(rpId)}`);
      }
    } else {
      for (const id of allowed) {
        credential = usable(id);
        if (credential !== undefined) break;
      }
      if (credential === undefined) {
        throw refuse('no_allowed_credential', `no credential in allowCredentials is registered for rpId ${quote(rpId)}`);
      }
    }
    const flags = responseFlags(credential.userVerified, needed, options.testHooks, false);
    if (credential.signCount >= MAX_SIGN_COUNT) {
      throw refuse('sign_count_exhausted', 'the signature counter of the virtual credential is exhausted');
    }
    const signCount = credential.signCount + 1;
    const authData = authenticatorData(options.testHooks?.authenticatorDataRpId ?? rpId, flags, signCount);
    const clientData = clientDataJSON('webauthn.get', challenge, origin);
    const signature = signResponse(credential.privateKey, authData, clientData);
    credential.signCount = signCount;

    return {
      id: credential.id,
      rawId: credential.id,
      type: 'public-key',
      authenticatorAttachment: 'cross-platform',
      clientExtensionResults: {},
      response: {
        clientDataJSON: clientData.toString('base64url'),
        authenticatorData: authData.toString('base64url'),
        signature: signature.toString('base64url'),
        userHandle: credential.userHandle,
      },
    };
  }

  /**
   * Test hook: set a credential's signature counter, e.g. below the value a relying party has
   * stored, to produce a counter regression. The next assertion carries n + 1.
   */
  setCounter(credentialId: string, n: number): void {
    const credential = this.#credentials.get(credentialId);
    if (credential === undefined) throw refuse('credential_unknown', `no virtual credential has id ${quote(credentialId)}`);
    if (!validSignCount(n)) throw refuse('invalid_input', `a signature counter must be an integer from 0 to ${MAX_SIGN_COUNT}`);
    credential.signCount = n;
  }

  /** Whether this authenticator holds a credential with that id. */
  hasCredential(credentialId: string): boolean {
    return this.#credentials.has(credentialId);
  }

  /** The credentials this authenticator holds, in creation order (no key material). */
  listCredentials(): VirtualCredentialInfo[] {
    return [...this.#credentials.values()].map(info);
  }

  /**
   * The authenticator as JSON, private keys included (PKCS#8, base64url), so a headless run can
   * keep its virtual approvers in its data dir. Test key domain only: this is not key custody.
   */
  exportState(): VirtualAuthenticatorState {
    return {
      version: VIRTUAL_AUTHENTICATOR_STATE_VERSION,
      keyDomain: 'test',
      aaguid: VIRTUAL_AUTHENTICATOR_AAGUID,
      credentials: [...this.#credentials.values()].map((credential) => ({
        ...info(credential),
        privateKeyPkcs8: credential.privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64url'),
      })),
    };
  }

  /** Rebuild an authenticator from {@link exportState} output (already JSON-parsed). */
  static importState(state: unknown): VirtualAuthenticator {
    const invalid = (message: string): CountersignError => refuse('invalid_state', `virtual authenticator state: ${message}`);
    if (!isRecord(state)) throw invalid('not an object');
    if (state.version !== VIRTUAL_AUTHENTICATOR_STATE_VERSION) throw invalid(`unsupported version ${quote(state.version)}`);
    if (state.keyDomain !== 'test') throw invalid('the key domain must be "test"');
    if (state.aaguid !== VIRTUAL_AUTHENTICATOR_AAGUID) throw invalid(`unexpected aaguid ${quote(state.aaguid)}`);
    if (!Array.isArray(state.credentials)) throw invalid('credentials must be a list');
    const authenticator = new VirtualAuthenticator();
    state.credentials.forEach((entry: unknown, index) => {
      if (!isRecord(entry)) throw invalid(`credential ${index} is not an object`);
      const { id, rpId, userHandle, userName, userDisplayName, signCount, userVerified, privateKeyPkcs8 } = entry;
      if (typeof rpId !== 'string' || rpId.length === 0) throw invalid(`credential ${index} has no rpId`);
      if (typeof userName !== 'string' || typeof userDisplayName !== 'string') throw invalid(`credential ${index} has no user name`);
      if (!validSignCount(signCount)) throw invalid(`credential ${index} has an invalid signature counter`);
      if (typeof userVerified !== 'boolean') throw invalid(`credential ${index} has no userVerified flag`);
      let idBytes: Buffer;
      let userHandleBytes: Buffer;
      let privateKey: KeyObject;
      try {
        idBytes = decodeBase64url(id, 'the credential id');
        userHandleBytes = decodeBase64url(userHandle, 'the user handle');
        privateKey = createPrivateKey({ key: decodeBase64url(privateKeyPkcs8, 'the private key'), format: 'der', type: 'pkcs8' });
      } catch (cause) {
        throw new CountersignError('config_invalid', `virtual authenticator state: credential ${index} is malformed`, {
          cause,
          details: { reason: 'invalid_state' },
        });
      }
      if (idBytes.length === 0 || idBytes.length > 1023) throw invalid(`credential ${index} has an id of ${idBytes.length} bytes`);
      if (userHandleBytes.length > MAX_USER_HANDLE_BYTES)
        throw invalid(`credential ${index} has a user handle over ${MAX_USER_HANDLE_BYTES} bytes`);
      const canonicalId = idBytes.toString('base64url');
      if (canonicalId !== id) throw invalid(`credential ${index} id is not canonical base64url`);
      if (authenticator.#credentials.has(canonicalId)) throw invalid(`credential ${quote(canonicalId)} appears twice`);
      keyMaterial(privateKey); // refuses anything but a P-256 key
      authenticator.#credentials.set(canonicalId, {
        id: canonicalId,
        rpId,
        userHandle: userHandleBytes.toString('base64url'),
        userName,
        userDisplayName,
        userVerified,
        privateKey,
        signCount,
      });
    });
    return authenticator;
  }
}
