/**
 * Which authenticator a registered security key is (make and model from its AAGUID), and the one
 * rule for which authenticators the desk accepts: roaming security keys, never a built-in platform
 * authenticator. Used by the core (refusing at registration) and the renderer (showing keys).
 *
 * The table is small on purpose: only entries checked against the FIDO Metadata Service names
 * (as published in MDS-derived lists) or the vendor's own AAGUID list. An unknown AAGUID is shown
 * as "unknown model", never guessed.
 */

export type AuthenticatorKind = 'security-key' | 'platform' | 'test';

export interface AuthenticatorModel {
  readonly make: string;
  readonly model: string;
  readonly kind: AuthenticatorKind;
}

/** AAGUID (lowercase UUID) -> make and model. */
export const KNOWN_AUTHENTICATORS: Readonly<Record<string, AuthenticatorModel>> = {
  // Yubico (FIDO MDS names; Yubico's "YubiKey Hardware FIDO2 AAGUIDs" page)
  'cb69481e-8ff7-4039-93ec-0a2729a154a8': { make: 'Yubico', model: 'YubiKey 5 Series (firmware 5.1)', kind: 'security-key' },
  'ee882879-721c-4913-9775-3dfcce97072a': { make: 'Yubico', model: 'YubiKey 5 Series (firmware 5.2, 5.4)', kind: 'security-key' },
  'fa2b99dc-9e39-4257-8f92-4a30d23c4118': { make: 'Yubico', model: 'YubiKey 5 Series with NFC (firmware 5.1)', kind: 'security-key' },
  '2fc0579f-8113-47ea-b116-bb5a8db9202a': { make: 'Yubico', model: 'YubiKey 5 Series with NFC', kind: 'security-key' },
  '19083c3d-8383-4b18-bc03-8f1c9ab2fd1b': { make: 'Yubico', model: 'YubiKey 5 Series', kind: 'security-key' },
  'a25342c0-3cdc-4414-8e46-f4807fca511c': { make: 'Yubico', model: 'YubiKey 5 Series with NFC', kind: 'security-key' },
  '73bb0cd4-e502-49b8-9c6f-b59445bf720b': { make: 'Yubico', model: 'YubiKey 5 FIPS Series', kind: 'security-key' },
  // Google (FIDO MDS)
  '42b4fb4a-2866-43b2-9bf7-6c6669c2e5d3': { make: 'Google', model: 'Titan Security Key v2', kind: 'security-key' },
  // Feitian (FIDO MDS)
  '833b721a-ff5f-4d00-bb2e-bdda3ec01e29': { make: 'Feitian', model: 'ePass FIDO2 Authenticator', kind: 'security-key' },
  '234cd403-35a2-4cc2-8015-77ea280c77f5': { make: 'Feitian', model: 'ePass FIDO2-NFC Series', kind: 'security-key' },
  // SoloKeys (FIDO MDS)
  '8876631b-d4a0-427f-5773-0ec71c9e0279': { make: 'SoloKeys', model: 'Solo Secp256R1 FIDO2 CTAP2 Authenticator', kind: 'security-key' },
  '8976631b-d4a0-427f-5773-0ec71c9e0279': { make: 'SoloKeys', model: 'Solo Tap Secp256R1 FIDO2 CTAP2 Authenticator', kind: 'security-key' },
  // Built-in platform authenticators (FIDO MDS / passkey AAGUID lists): refused by the desk
  '08987058-cadc-4b81-b6e1-30de50dcbe96': { make: 'Microsoft', model: 'Windows Hello', kind: 'platform' },
  '9ddd1817-af5a-4672-a2b9-3e3dd95000a9': { make: 'Microsoft', model: 'Windows Hello', kind: 'platform' },
  '6028b017-b1d4-4c02-b4b3-afcdafc96bb2': { make: 'Microsoft', model: 'Windows Hello', kind: 'platform' },
  'adce0002-35bc-c60a-648b-0b25f1f05503': { make: 'Google', model: 'Chrome on Mac', kind: 'platform' },
  // Chromium's CDP virtual authenticator (tests only; refused in the production key domain)
  '01020304-0506-0708-0102-030405060708': { make: 'Chromium', model: 'virtual authenticator (tests)', kind: 'test' },
};

/** The make and model an AAGUID names, or undefined when the table does not know it. */
export function describeAuthenticator(aaguid: string): AuthenticatorModel | undefined {
  return Object.hasOwn(KNOWN_AUTHENTICATORS, aaguid.toLowerCase()) ? KNOWN_AUTHENTICATORS[aaguid.toLowerCase()] : undefined;
}

/** One line for a key's make and model ("Yubico YubiKey 5 Series", or "unknown model (aaguid)"). */
export function authenticatorLabel(aaguid: string): string {
  const known = describeAuthenticator(aaguid);
  return known === undefined ? `unknown model (${aaguid})` : `${known.make} ${known.model}`;
}

/** What a registration says about where its authenticator lives (client-reported, and the AAGUID). */
export interface RegistrationTraits {
  /** PublicKeyCredential.authenticatorAttachment, when the browser reported it. */
  readonly attachment?: string | undefined;
  /** AuthenticatorAttestationResponse.getTransports(). */
  readonly transports?: readonly string[] | undefined;
  /** From the attested credential data (known only after the attestation was parsed). */
  readonly aaguid?: string | undefined;
}

/**
 * Whether a registration comes from a built-in platform authenticator (refused: approvals need a
 * roaming security key the person carries). Any one sign is enough: attachment "platform", an
 * "internal" transport, or an AAGUID the table knows as a platform authenticator.
 */
export function isPlatformRegistration(traits: RegistrationTraits): boolean {
  if (traits.attachment === 'platform') return true;
  if ((traits.transports ?? []).includes('internal')) return true;
  return traits.aaguid !== undefined && describeAuthenticator(traits.aaguid)?.kind === 'platform';
}

/**
 * Whether a WebAuthn signature counter `reported` fails to advance past `stored`: a cloned key
 * or a replayed assertion. A counter of 0 on both sides means the authenticator keeps none.
 */
export function counterRegressed(stored: number, reported: number): boolean {
  return (reported > 0 || stored > 0) && reported <= stored;
}
