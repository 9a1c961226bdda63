/**
 * WebCrypto types that shared/ can use under every tsconfig. shared/ is typechecked with the DOM
 * lib (its own, the renderer's and the shell's tsconfigs) and with @types/node and no DOM (core's),
 * and neither declares the other's global names (CryptoKey, BufferSource, JsonWebKey), so the key
 * type is derived from the global `crypto` both of them type.
 */

/** A key WebCrypto imported or generated. */
export type WebCryptoKey = Parameters<typeof globalThis.crypto.subtle.exportKey>[1];

/**
 * Bytes as WebCrypto takes them under both libs: the DOM lib's BufferSource refuses a view that
 * may sit on a SharedArrayBuffer, which the plain `Uint8Array` type allows; ours never do.
 */
export function webCryptoBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>;
}
