/**
 * RFC 9162 Merkle hashing and proofs (shared/merkle.ts): the Certificate Transparency
 * reference vectors, a naive reference implementation for every tree shape up to 40 leaves,
 * and a systematic mutation suite — every mutated proof must be rejected.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../main/core/app.js';
import { subtreesOf } from '../../main/core/audit/pg-audit-leader.js';
import {
  MerkleAccumulator,
  MerkleHasher,
  consistencyPath,
  inclusionPath,
  rangeHashOfSubtrees,
  rootOfLeafHashes,
  splitPoint,
  verifyConsistency,
  verifyInclusion,
} from '../../shared/merkle.js';

const sha256 = (d: Uint8Array) => new Uint8Array(createHash('sha256').update(d).digest());
const H = new MerkleHasher(sha256);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

const vectors = JSON.parse(readFileSync(join(REPO_ROOT, 'test', 'vectors', 'merkle.json'), 'utf8')) as {
  leaves: string[];
  roots: string[];
  inclusion: Array<{ index: number; size: number; proof: string[] }>;
};

/** The RFC's recursive definition, straight from the text: the reference the fast code is checked against. */
function mth(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return H.emptyRoot();
  if (leaves.length === 1) return leaves[0]!;
  const k = splitPoint(leaves.length);
  return H.node(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

const leavesOf = (n: number) => Array.from({ length: n }, (_, i) => H.leaf(new Uint8Array([i & 0xff, i >> 8, 7])));
const rangeHashOf = (leaves: Uint8Array[]) => (start: number, end: number) => mth(leaves.slice(start, end));

describe('RFC 9162 reference vectors', () => {
  const leaves = vectors.leaves.map((l) => H.leaf(unhex(l)));

  it('roots for every size 0..8', () => {
    for (let n = 0; n <= 8; n++) expect(hex(rootOfLeafHashes(H, leaves.slice(0, n))), `size ${n}`).toBe(vectors.roots[n]);
  });

  it('inclusion proofs: generated equal the published ones, and verify', () => {
    for (const v of vectors.inclusion) {
      const proof = inclusionPath(v.index, v.size, rangeHashOf(leaves));
      expect(proof.map(hex)).toEqual(v.proof);
      expect(verifyInclusion(H, v.index, v.size, leaves[v.index]!, v.proof.map(unhex), unhex(vectors.roots[v.size]!))).toBe(true);
    }
  });
});

describe('every tree shape up to 40 leaves', () => {
  const all = leavesOf(40);

  it('the accumulator, the reference and the vectors agree on every root', () => {
    const acc = new MerkleAccumulator(H);
    for (let n = 1; n <= 40; n++) {
      acc.pushLeafHash(all[n - 1]!);
      expect(hex(acc.root())).toBe(hex(mth(all.slice(0, n))));
    }
  });

  it('every inclusion proof in every tree verifies', () => {
    for (let n = 1; n <= 40; n++) {
      const root = mth(all.slice(0, n));
      for (let i = 0; i < n; i++) {
        expect(verifyInclusion(H, i, n, all[i]!, inclusionPath(i, n, rangeHashOf(all)), root), `${i}/${n}`).toBe(true);
      }
    }
  });

  it('the subtrees the accumulator reports as each leaf completes them answer every range, as a store keeping them answers proofs', () => {
    let acc = new MerkleAccumulator(H);
    const kept = new Map<string, Uint8Array>();
    for (let i = 0; i < 40; i++) {
      kept.set(`0/${i}`, all[i]!);
      // Grown on a copy, kept once stored (as the team audit leader does after its COMMIT); the original is untouched.
      const before = hex(acc.root());
      const next = acc.clone();
      next.pushLeafHash(all[i]!, (level, idx, hash) => {
        expect(kept.has(`${level}/${idx}`), `${level}/${idx} reported twice`).toBe(false);
        expect(hex(hash)).toBe(hex(mth(all.slice(idx * 2 ** level, (idx + 1) * 2 ** level))));
        kept.set(`${level}/${idx}`, hash);
      });
      expect([acc.size, hex(acc.root())]).toEqual([i, before]);
      expect(hex(next.root())).toBe(hex(mth(all.slice(0, i + 1))));
      acc = next;
    }
    // Every complete subtree above the leaves, once each: 40 leaves minus their set bits (40 = 0b101000: 2).
    expect(kept.size - 40).toBe(subtreesOf(40));
    expect(subtreesOf(40)).toBe(38);
    const fromKept = (start: number, end: number) => rangeHashOfSubtrees(H, start, end, (level, idx) => kept.get(`${level}/${idx}`)!);
    for (let n = 1; n <= 40; n++)
      for (let i = 0; i < n; i++)
        expect(inclusionPath(i, n, fromKept).map(hex), `${i}/${n}`).toEqual(inclusionPath(i, n, rangeHashOf(all)).map(hex));
  });

  it('every consistency proof between every pair of sizes verifies', () => {
    for (let n = 1; n <= 40; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = consistencyPath(m, n, rangeHashOf(all));
        expect(verifyConsistency(H, m, n, proof, mth(all.slice(0, m)), mth(all.slice(0, n))), `${m}→${n}`).toBe(true);
      }
    }
  });
});

/** One bit flipped in byte `byte` of a copy of `h`. */
const flip = (h: Uint8Array, byte = 0, bit = 0) => {
  const c = new Uint8Array(h);
  c[byte]! ^= 1 << bit;
  return c;
};

describe('mutation suite: every mutated inclusion proof is rejected', () => {
  const all = leavesOf(64);
  const cases: Array<[number, number]> = [];
  for (const n of [1, 2, 3, 5, 7, 8, 9, 16, 17, 24]) for (const i of [0, 1, n - 2, n - 1, n >> 1]) if (i >= 0 && i < n) cases.push([i, n]);

  it.each(cases)('leaf %i of %i', (i, n) => {
    const root = mth(all.slice(0, n));
    const proof = inclusionPath(i, n, rangeHashOf(all));
    const leaf = all[i]!;
    expect(verifyInclusion(H, i, n, leaf, proof, root)).toBe(true);
    const rejected = (what: string, ok: boolean) => expect(ok, what).toBe(false);
    // wrong index (the same leaf, or that index's own leaf, with this proof)
    for (const j of [i - 1, i + 1, n, -1, i + n]) {
      if (j === i) continue;
      rejected(`index ${j}`, verifyInclusion(H, j, n, leaf, proof, root));
      if (j >= 0 && j < all.length) rejected(`index ${j} with its own leaf`, verifyInclusion(H, j, n, all[j]!, proof, root));
    }
    // wrong size: this proof against the honest root of another size (the root comes signed with its size)
    for (const m of [n - 1, n + 1, 2 * n, 0]) {
      if (m === n || m > all.length) continue;
      rejected(`size ${m}`, verifyInclusion(H, i, m, leaf, proof, mth(all.slice(0, m))));
    }
    rejected('size and root that do not belong together', verifyInclusion(H, i, n + 1, leaf, proof, mth(all.slice(0, n + 2))));
    rejected('non-integer index', verifyInclusion(H, i + 0.5, n, leaf, proof, root));
    // wrong leaf, wrong root, swapped roles
    rejected('flipped leaf', verifyInclusion(H, i, n, flip(leaf), proof, root));
    rejected('flipped root', verifyInclusion(H, i, n, leaf, proof, flip(root, 31, 7)));
    if (n > 1) rejected('leaf and root swapped', verifyInclusion(H, i, n, root, proof, leaf));
    // truncated, extended, reordered proof
    if (proof.length > 0) {
      rejected('truncated', verifyInclusion(H, i, n, leaf, proof.slice(0, -1), root));
      rejected('first element dropped', verifyInclusion(H, i, n, leaf, proof.slice(1), root));
    }
    rejected('extended (not fully consumed)', verifyInclusion(H, i, n, leaf, [...proof, leaf], root));
    if (proof.length > 0) rejected('extended with a copy', verifyInclusion(H, i, n, leaf, [...proof, ...proof.slice(-1)], root));
    if (proof.length > 1) rejected('reversed', verifyInclusion(H, i, n, leaf, [...proof].reverse(), root));
    // one bit flipped in each element, at its first, middle and last byte
    proof.forEach((_, k) => {
      for (const [byte, bit] of [
        [0, 0],
        [15, 3],
        [31, 7],
      ] as const) {
        const mutated = proof.map((p, x) => (x === k ? flip(p, byte, bit) : p));
        rejected(`element ${k} byte ${byte} bit ${bit}`, verifyInclusion(H, i, n, leaf, mutated, root));
      }
    });
    // malformed element lengths
    if (proof.length > 0) rejected('short element', verifyInclusion(H, i, n, leaf, [proof[0]!.slice(0, 31), ...proof.slice(1)], root));
  });
});

describe('mutation suite: every mutated consistency proof is rejected', () => {
  const all = leavesOf(64);
  const cases: Array<[number, number]> = [];
  for (const n of [2, 3, 5, 7, 8, 9, 16, 17, 24]) for (const m of [1, 2, 3, 4, n - 1, n >> 1]) if (m >= 1 && m < n) cases.push([m, n]);

  it.each(cases)('%i → %i', (m, n) => {
    const r1 = mth(all.slice(0, m));
    const r2 = mth(all.slice(0, n));
    const proof = consistencyPath(m, n, rangeHashOf(all));
    expect(verifyConsistency(H, m, n, proof, r1, r2)).toBe(true);
    const rejected = (what: string, ok: boolean) => expect(ok, what).toBe(false);
    rejected('size1 > size2', verifyConsistency(H, n, m, proof, r2, r1));
    rejected('swapped roots', verifyConsistency(H, m, n, proof, r2, r1));
    // wrong sizes, each with the honest root of that size
    for (const s of [m - 1, m + 1])
      if (s >= 1 && s < n) rejected(`size1 ${s}`, verifyConsistency(H, s, n, proof, mth(all.slice(0, s)), r2));
    for (const s of [n - 1, n + 1])
      if (s > m && s <= all.length) rejected(`size2 ${s}`, verifyConsistency(H, m, s, proof, r1, mth(all.slice(0, s))));
    rejected('flipped root1', verifyConsistency(H, m, n, proof, flip(r1), r2));
    rejected('flipped root2', verifyConsistency(H, m, n, proof, r1, flip(r2, 31, 7)));
    rejected('empty proof', verifyConsistency(H, m, n, [], r1, r2));
    rejected('truncated', verifyConsistency(H, m, n, proof.slice(0, -1), r1, r2));
    rejected('first element dropped', verifyConsistency(H, m, n, proof.slice(1), r1, r2));
    rejected('extended (not fully consumed)', verifyConsistency(H, m, n, [...proof, r1], r1, r2));
    proof.forEach((_, k) => {
      for (const [byte, bit] of [
        [0, 0],
        [15, 3],
        [31, 7],
      ] as const) {
        const mutated = proof.map((p, x) => (x === k ? flip(p, byte, bit) : p));
        rejected(`element ${k} byte ${byte} bit ${bit}`, verifyConsistency(H, m, n, mutated, r1, r2));
      }
    });
  });

  it('edge cases: equal sizes need an empty proof and equal roots; size 0 needs an empty proof', () => {
    const r = mth(all.slice(0, 5));
    expect(verifyConsistency(H, 5, 5, [], r, r)).toBe(true);
    expect(verifyConsistency(H, 5, 5, [r], r, r)).toBe(false);
    expect(verifyConsistency(H, 5, 5, [], r, flip(r))).toBe(false);
    expect(verifyConsistency(H, 0, 5, [], H.emptyRoot(), r)).toBe(true);
    expect(verifyConsistency(H, 0, 5, [r], H.emptyRoot(), r)).toBe(false);
    expect(verifyConsistency(H, -1, 5, [], r, r)).toBe(false);
  });
});

describe('sizes far beyond any test tree', () => {
  it('isPowerOfTwo is exact where Math.log2 rounds (2^49 + 1, 2^50 + 1)', async () => {
    const { isPowerOfTwo } = await import('../../shared/merkle.js');
    expect(Number.isInteger(Math.log2(2 ** 49 + 1))).toBe(true); // the trap
    expect(isPowerOfTwo(2 ** 49 + 1)).toBe(false);
    expect(isPowerOfTwo(2 ** 50 + 1)).toBe(false);
    expect(isPowerOfTwo(2 ** 50)).toBe(true);
    expect(isPowerOfTwo(2 ** 31)).toBe(true);
    expect(isPowerOfTwo(0)).toBe(false);
    expect(isPowerOfTwo(3)).toBe(false);
  });
});
