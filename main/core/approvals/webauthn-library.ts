/**
 * @simplewebauthn/server, loaded once at the first ceremony that needs it and then reused. It is
 * not imported at start (approver-directory.ts says why); an `import()` at every key tap would
 * resolve the specifier through the module loader again each time, which costs a tap more than
 * the signature check itself when the loader is busy (bench desk-approval).
 */
import type * as WebAuthnServerModule from '@simplewebauthn/server';
import type * as WebAuthnHelpersModule from '@simplewebauthn/server/helpers';

type WebAuthnServer = typeof WebAuthnServerModule;
type WebAuthnHelpers = typeof WebAuthnHelpersModule;

let server: Promise<WebAuthnServer> | undefined;
let helpers: Promise<WebAuthnHelpers> | undefined;

/** The library's ceremony functions (generate and verify options and responses). */
export function webauthnServer(): Promise<WebAuthnServer> {
  return (server ??= import('@simplewebauthn/server'));
}

/** The library's helpers (COSE keys, CBOR). */
export function webauthnHelpers(): Promise<WebAuthnHelpers> {
  return (helpers ??= import('@simplewebauthn/server/helpers'));
}
