/**
 * RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing and proof verification, §2.1.
 * Leaf hash = SHA-256(0x00 || entry), node hash = SHA-256(0x01 || left || right). Pure: the
 * caller passes a synchronous SHA-256 (node:crypto in the core and CLI), so this file runs in
 * any JavaScript runtime. docs/audit.md describes how the audit log uses it.
 */

export type Sha256 = (data: Uint8Array) => Uint8Array;

export const HASH_BYTES = 32;

const LEAF_PREFIX = 0x00;
const NODE_PREFIX = 0x01;

export class MerkleHasher {
  constructor(private readonly sha256: Sha256) {}

  /** MTH({}) = SHA-256() */
  emptyRoot(): Uint8Array {
    return this.sha256(new Uint8Array(0));
  }

  leaf(entry: Uint8Array): Uint8Array {
    const data = new Uint8Array(1 + entry.length);
    data[0] = LEAF_PREFIX;
    data.set(entry, 1);
    return this.sha256(data);
  }

  /**
   * leaf(bytes[at + 1, end)): the leaf hash of an entry that lies inside a larger buffer, right
   * after byte `at`. A hasher may write the leaf prefix over bytes[at] while it hashes (and puts
   * it back before returning) instead of copying the entry; this one copies.
   */
  leafInPlace(bytes: Uint8Array, at: number, end: number): Uint8Array {
    return this.leaf(bytes.subarray(at + 1, end));
  }

  node(left: Uint8Array, right: Uint8Array): Uint8Array {
    const data = new Uint8Array(1 + left.length + right.length);
    data[0] = NODE_PREFIX;
    data.set(left, 1);
    data.set(right, 1 + left.length);
    return this.sha256(data);
  }
}

/** Whether n is a power of two (exact for every safe integer, unlike Math.log2). */
export function isPowerOfTwo(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 1) return false;
  let k = 1;
  while (k < n) k *= 2;
  return k === n;
}

/** The largest power of two strictly smaller than n (n > 1). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

const isSize = (n: number) => Number.isSafeInteger(n) && n >= 0;
const wellFormed = (hashes: readonly Uint8Array[]) => hashes.every((h) => h instanceof Uint8Array && h.length === HASH_BYTES);

/**
 * Incremental root computation over leaf hashes appended in order (a compact range): O(log n)
 * memory, for recomputing a whole log (the offline verifier) without holding it.
 */
export class MerkleAccumulator {
  /** Subtree roots of the set bits of `size`, lowest level first (undefined where the bit is 0). */
  private readonly levels: Array<Uint8Array | undefined> = [];
  size = 0;

  constructor(private readonly hasher: MerkleHasher) {}

  /**
   * Continue from a tree of `size` leaves given its complete-subtree roots, largest first (one
   * per set bit of `size`, the compact range of RFC 9162's MTH decomposition).
   */
  static resume(hasher: MerkleHasher, size: number, subtreeRoots: readonly Uint8Array[]): MerkleAccumulator {
    const acc = new MerkleAccumulator(hasher);
    const bits: number[] = [];
    for (let level = 0, rest = size; rest > 0; level++, rest = Math.floor(rest / 2)) if (rest % 2 === 1) bits.push(level);
    if (bits.length !== subtreeRoots.length)
      throw new Error(`a tree of ${size} leaves has ${bits.length} complete subtrees, not ${subtreeRoots.length}`);
    bits.reverse().forEach((level, i) => {
      acc.levels[level] = subtreeRoots[i]!;
    });
    acc.size = size;
    return acc;
  }

  /**
   * Append one leaf. `onSubtree` hears every complete subtree the leaf completes (its level above
   * the leaves, its index at that level, its hash), so a store can keep them for proofs.
   */
  pushLeafHash(leafHash: Uint8Array, onSubtree?: (level: number, index: number, hash: Uint8Array) => void): void {
    let h = leafHash;
    let level = 0;
    while (this.levels[level] !== undefined) {
      h = this.hasher.node(this.levels[level]!, h);
      this.levels[level] = undefined;
      level++;
      onSubtree?.(level, Math.floor(this.size / 2 ** level), h);
    }
    this.levels[level] = h;
    this.size++;
  }

  /** An independent copy: append to it, and keep it only once what it stands for is stored. */
  clone(): MerkleAccumulator {
    const copy = new MerkleAccumulator(this.hasher);
    copy.levels.push(...this.levels);
    copy.size = this.size;
    return copy;
  }

  root(): Uint8Array {
    let root: Uint8Array | undefined;
    for (const h of this.levels) {
      if (h === undefined) continue;
      root = root === undefined ? h : this.hasher.node(h, root);
    }
    return root ?? this.hasher.emptyRoot();
  }
}

/** MTH over a list of leaf hashes (small lists: tests and reference checks). */
export function rootOfLeafHashes(hasher: MerkleHasher, leafHashes: readonly Uint8Array[]): Uint8Array {
  const acc = new MerkleAccumulator(hasher);
  for (const h of leafHashes) acc.pushLeafHash(h);
  return acc.root();
}

/**
 * RFC 9162 §2.1.3.2: verify that `leafHash` is leaf `index` of the tree of `size` leaves whose
 * root is `root`. Every malformed input (index ≥ size, wrong hash lengths, a proof too short,
 * too long or not fully consumed) returns false.
 */
export function verifyInclusion(
  hasher: MerkleHasher,
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isSize(index) || !isSize(size) || index >= size) return false;
  if (!wellFormed([leafHash, root, ...proof])) return false;
  let r = leafHash;
  const complete = walkPath(
    index,
    size - 1,
    proof,
    (p) => {
      r = hasher.node(p, r);
    },
    (p) => {
      r = hasher.node(r, p);
    },
  );
  return complete && equalBytes(r, root);
}

/**
 * The path walk both RFC 9162 verifications share (§2.1.3.2 step 3, §2.1.4.2 step 6): `left(p)`
 * for a sibling on the left, `right(p)` for one on the right. False if the path is longer than
 * the tree allows or does not end at the root (sn = 0).
 */
function walkPath(
  fn0: number,
  sn0: number,
  path: readonly Uint8Array[],
  left: (p: Uint8Array) => void,
  right: (p: Uint8Array) => void,
): boolean {
  let fn = fn0;
  let sn = sn0;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      left(p);
      if (fn % 2 === 0) {
        do {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        } while (fn % 2 === 0 && fn !== 0);
      }
    } else {
      right(p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0;
}

/**
 * RFC 9162 §2.1.4.2: verify that the tree of `size2` leaves with root `root2` extends the tree
 * of `size1` leaves with root `root1`. size1 = size2 needs an empty proof and equal roots;
 * size1 = 0 is consistent with anything (and needs an empty proof); size1 > size2 is never.
 */
export function verifyConsistency(
  hasher: MerkleHasher,
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): boolean {
  if (!isSize(size1) || !isSize(size2) || size1 > size2) return false;
  if (!wellFormed([root1, root2, ...proof])) return false;
  if (size1 === size2) return proof.length === 0 && equalBytes(root1, root2);
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  const complete = walkPath(
    fn,
    sn,
    path.slice(1),
    (c) => {
      fr = hasher.node(c, fr);
      sr = hasher.node(c, sr);
    },
    (c) => {
      sr = hasher.node(sr, c);
    },
  );
  return complete && equalBytes(fr, root1) && equalBytes(sr, root2);
}

/** The level (log2) of a power of two. */
function levelOfPower(n: number): number {
  let level = 0;
  for (let k = 1; k < n; k *= 2) level++;
  return level;
}

/**
 * MTH of leaves [start, end) from complete subtrees: `subtree(level, index)` is the hash of the
 * complete subtree of 2^level leaves starting at leaf index × 2^level (level 0: the leaf hash).
 * The one decomposition every store uses to answer `rangeHash` from the subtrees it keeps.
 */
export function rangeHashOfSubtrees(
  hasher: MerkleHasher,
  start: number,
  end: number,
  subtree: (level: number, index: number) => Uint8Array,
): Uint8Array {
  const n = end - start;
  if (n <= 0) return hasher.emptyRoot();
  if (isPowerOfTwo(n) && start % n === 0) return subtree(levelOfPower(n), start / n);
  const k = splitPoint(n);
  return hasher.node(rangeHashOfSubtrees(hasher, start, start + k, subtree), rangeHashOfSubtrees(hasher, start + k, end, subtree));
}

/**
 * Proof generation over a hash source: `rangeHash(start, end)` must return MTH of leaves
 * [start, end) (the audit store answers from its stored complete subtrees). RFC 9162 §2.1.3.1
 * (PATH) and §2.1.4.1 (SUBPROOF), leaf-to-root order.
 */
export function inclusionPath(index: number, size: number, rangeHash: (start: number, end: number) => Uint8Array): Uint8Array[] {
  const path: Uint8Array[] = [];
  const walk = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, start, start + k);
      path.push(rangeHash(start + k, end));
    } else {
      walk(m - k, start + k, end);
      path.push(rangeHash(start, start + k));
    }
  };
  walk(index, 0, size);
  return path;
}

export function consistencyPath(size1: number, size2: number, rangeHash: (start: number, end: number) => Uint8Array): Uint8Array[] {
  const proof: Uint8Array[] = [];
  const sub = (m: number, start: number, end: number, complete: boolean): void => {
    const n = end - start;
    if (m === n) {
      if (!complete) proof.push(rangeHash(start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      sub(m, start, start + k, complete);
      proof.push(rangeHash(start + k, end));
    } else {
      sub(m - k, start + k, end, false);
      proof.push(rangeHash(start, start + k));
    }
  };
  if (size1 > 0 && size1 < size2) sub(size1, 0, size2, true);
  return proof;
}
