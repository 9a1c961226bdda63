/**
 * The AAGUID that marks Countersign's virtual authenticator (main/core/testing/). It lives here,
 * beside the attestation policy that refuses it in production, so the approver directory can
 * recognise a virtual key without importing the test key domain (docs/adr/0005-layering.md).
 */

/**
 * The AAGUID of Countersign's virtual authenticator (a fixed random version-4 UUID generated for
 * this purpose). Every credential the virtual authenticator creates carries it in its attested
 * credential data and its packed self-attestation. It identifies a software test authenticator:
 * production configurations refuse credentials with this AAGUID.
 */
export const VIRTUAL_AUTHENTICATOR_AAGUID = 'b0d00328-73ec-465c-804d-e4e3a6003f21';

/** True when an AAGUID (as a UUID string, any case) is the virtual authenticator's. */
export function isVirtualAuthenticatorAaguid(aaguid: string): boolean {
  return aaguid.toLowerCase() === VIRTUAL_AUTHENTICATOR_AAGUID;
}
