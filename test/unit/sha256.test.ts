/**
 * The portable synchronous SHA-256 (shared/sha256.ts) the shared audit verifier hashes with
 * gives node:crypto's digest for every padding case (lengths around the 64-byte block and the
 * 56-byte length boundary), a multi-block input and the FIPS 180-4 examples.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { sha256Sync } from '../../shared/sha256.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const reference = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('sha256Sync', () => {
  it('matches the FIPS 180-4 examples', () => {
    expect(hex(sha256Sync(new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(sha256Sync(new TextEncoder().encode('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hex(sha256Sync(new TextEncoder().encode('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
  });

  it('agrees with node:crypto for every length from 0 to 300 bytes and for a 1 MB input', () => {
    for (let n = 0; n <= 300; n++) {
      const data = new Uint8Array(n).map((_, i) => (i * 31 + n) & 0xff);
      expect(hex(sha256Sync(data)), `length ${n}`).toBe(reference(data));
    }
    const big = new Uint8Array(1_000_003).map((_, i) => (i * 7) & 0xff);
    expect(hex(sha256Sync(big))).toBe(reference(big));
  });

  it('hashes a view into a larger buffer by its own bytes only', () => {
    const backing = new Uint8Array(100).map((_, i) => i);
    const view = backing.subarray(10, 70);
    expect(hex(sha256Sync(view))).toBe(reference(Uint8Array.from(view)));
  });
});
