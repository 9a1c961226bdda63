/**
 * base64url (shared/encoding.ts): every token, signature, id and digest on the wire goes through
 * it, so its output must stay byte for byte what RFC 4648 section 5 says (checked against Node's
 * own encoder, which the code under test does not use) and its decoder must stay strict.
 */
import { describe, expect, it } from 'vitest';
import { base64url, fromBase64url } from '../../shared/encoding.js';
import { prng } from '../helpers/prng.js';

describe('base64url', () => {
  it("writes exactly Node's base64url for every length from 0 to 600 bytes, and reads it back", () => {
    const rng = prng(1205);
    for (let length = 0; length <= 600; length++) {
      const bytes = new Uint8Array(length);
      for (let i = 0; i < length; i++) bytes[i] = Math.floor(rng() * 256);
      const text = base64url(bytes);
      expect(text).toBe(Buffer.from(bytes).toString('base64url'));
      expect(fromBase64url(text)).toEqual(bytes);
    }
  });

  it('writes every byte value, and encodes a view at an offset of a larger buffer', () => {
    const all = new Uint8Array(256).map((_, i) => i);
    expect(base64url(all)).toBe(Buffer.from(all).toString('base64url'));
    const view = all.subarray(7, 100);
    expect(base64url(view)).toBe(Buffer.from(view).toString('base64url'));
  });

  it('refuses text outside the alphabet, padding, impossible lengths and non-canonical trailing bits', () => {
    for (const bad of [
      'AB=',
      'AB==',
      'A',
      'ABCDE',
      'AB+C',
      'AB/C',
      'AB C',
      'AB\u00e9C',
      'AB\ud83d\ude00',
      'AB\ud83d',
      'AF',
      'AAB',
      '\u0100AAA',
    ])
      expect(fromBase64url(bad), bad).toBeUndefined();
    expect(fromBase64url('')).toEqual(new Uint8Array(0));
    expect(fromBase64url('AA')).toEqual(new Uint8Array([0]));
    expect(fromBase64url('AAE')).toEqual(new Uint8Array([0, 1]));
  });
});
