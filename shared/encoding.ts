/** Byte/text helpers that work the same in Node, browsers and tool servers (no Buffer). */
import { webCryptoBytes } from './webcrypto.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Strict UTF-8 decoding: throws TypeError on invalid sequences. */
export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** The alphabet's character codes, by 6-bit value. */
const B64URL_CODES = new Uint8Array(64);
/** The 6-bit value of each character code below 128; -1 for a character outside the alphabet. */
const B64URL_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  B64URL_CODES[i] = B64URL.charCodeAt(i);
  B64URL_VALUES[B64URL.charCodeAt(i)] = i;
}

/**
 * base64url without padding (RFC 4648 section 5). The characters are written into one byte array
 * and decoded once: building the string four characters at a time allocated about 70 bytes per
 * input byte (a token's 477 bytes: 25 KB on every decision, issue #12), this about 2.
 */
export function base64url(bytes: Uint8Array): string {
  const length = bytes.length;
  const whole = length - (length % 3);
  const out = new Uint8Array(Math.ceil((length * 4) / 3));
  let o = 0;
  let i = 0;
  for (; i < whole; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out[o++] = B64URL_CODES[n >>> 18]!;
    out[o++] = B64URL_CODES[(n >>> 12) & 63]!;
    out[o++] = B64URL_CODES[(n >>> 6) & 63]!;
    out[o++] = B64URL_CODES[n & 63]!;
  }
  const rest = length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out[o++] = B64URL_CODES[n >>> 18]!;
    out[o++] = B64URL_CODES[(n >>> 12) & 63]!;
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out[o++] = B64URL_CODES[n >>> 18]!;
    out[o++] = B64URL_CODES[(n >>> 12) & 63]!;
    out[o++] = B64URL_CODES[(n >>> 6) & 63]!;
  }
  // ASCII is UTF-8: the one decoder every runtime has (a Node built without full ICU has no latin1).
  return decoder.decode(out);
}

/** Strict base64url (no padding, canonical trailing bits); returns undefined when malformed. */
export function fromBase64url(text: string): Uint8Array | undefined {
  if (text.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let buffer = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    // Any code unit outside the alphabet (a surrogate half too) makes the text malformed.
    const code = text.charCodeAt(i);
    const v = code < 128 ? B64URL_VALUES[code]! : -1;
    if (v < 0) return undefined;
    buffer = ((buffer << 6) | v) & 0xffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (buffer >> bits) & 0xff;
    }
  }
  // Non-zero leftover bits mean a non-canonical encoding (two strings for one value).
  if ((buffer & ((1 << bits) - 1)) !== 0) return undefined;
  return out.subarray(0, o);
}

export function hex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Random bytes from WebCrypto (Node 20 and browsers). */
export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  globalThis.crypto.getRandomValues(out);
  return out;
}

/**
 * Public identifiers (request ids, token ids: sent to the agent and recorded, never secrets) are
 * drawn from a pool refilled from WebCrypto 4 KiB at a time, as Node's randomUUID does: one
 * getRandomValues call costs about 8 µs whatever its length, and every decision makes two ids.
 */
const ID_POOL = new Uint8Array(4096);
let idPoolOffset = ID_POOL.length;

/** `bytes` (1-64) CSPRNG bytes as base64url, for identifiers only (see ID_POOL): keys and secrets use randomBytes. */
export function randomId(bytes: number): string {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 64) throw new RangeError('an id is 1 to 64 random bytes');
  if (idPoolOffset + bytes > ID_POOL.length) {
    globalThis.crypto.getRandomValues(ID_POOL);
    idPoolOffset = 0;
  }
  const id = base64url(ID_POOL.subarray(idPoolOffset, idPoolOffset + bytes));
  idPoolOffset += bytes;
  return id;
}

export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', webCryptoBytes(bytes)));
}
