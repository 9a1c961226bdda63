/** Pooled random identifiers (shared/encoding.ts randomId): the request ids and token ids of every decision. */
import { describe, expect, it } from 'vitest';
import { fromBase64url, randomId } from '../../shared/encoding.js';

describe('randomId', () => {
  it('gives base64url text of the requested number of bytes', () => {
    for (const bytes of [1, 16, 33, 64]) {
      const id = randomId(bytes);
      expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(fromBase64url(id)).toHaveLength(bytes);
    }
  });

  it('never repeats an id across many refills of its pool', () => {
    // 20,000 ids of 16 bytes draw the 4 KiB pool about 80 times; an offset that did not advance,
    // or a pool that was not refilled, would hand out the same bytes again.
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(randomId(16));
    expect(seen.size).toBe(20_000);
    // Ids that straddle a refill (odd lengths that do not divide the pool) are distinct too.
    const odd = new Set<string>();
    for (let i = 0; i < 5_000; i++) odd.add(randomId(33));
    expect(odd.size).toBe(5_000);
  });

  it('refuses lengths outside 1 to 64 bytes', () => {
    for (const bytes of [0, -1, 65, 1.5, Number.NaN]) expect(() => randomId(bytes)).toThrow(RangeError);
  });
});
