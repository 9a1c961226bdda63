/**
 * The audit log's node:crypto Merkle hasher (one-shot hashes over one buffer, leaves hashed
 * straight from a record's text, as bytes or as the append's hex, and in place inside a line whose byte before the record it
 * borrows and puts back) gives exactly the RFC 9162 hashes of the shared reference hasher, for
 * records with multi-byte UTF-8 and for every size of input the log meets.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { merkleHasher } from '../../main/core/audit/audit-log.js';
import { MerkleHasher } from '../../shared/merkle.js';
import { prng } from '../helpers/prng.js';

const reference = new MerkleHasher((data) => new Uint8Array(createHash('sha256').update(data).digest()));
const bytes = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** The append's hex forms (leaf of a record's text, node of two hex hashes). */
const hexHasher = merkleHasher as unknown as { leafHexOfText(text: string): string; nodeHex(left: string, right: string): string };

describe('the audit log hasher', () => {
  it('hashes leaves and nodes as the reference does, for 500 generated inputs', () => {
    const rng = prng(0x4a5);
    const alphabet = ['a', '{', '"', 'é', '€', '😀', '\n', '0'];
    for (let i = 0; i < 500; i++) {
      const record = Array.from({ length: Math.floor(rng() * 900) }, () => alphabet[Math.floor(rng() * alphabet.length)]).join('');
      const utf8 = new Uint8Array(Buffer.from(record, 'utf8'));
      expect(bytes(merkleHasher.leaf(utf8))).toBe(bytes(reference.leaf(utf8)));
      const fromText = (merkleHasher as unknown as { leafOfText(text: string): Uint8Array }).leafOfText(record);
      expect(bytes(fromText)).toBe(bytes(reference.leaf(utf8)));
      // The append's form: the same hash as hex, stored unhexed.
      expect(hexHasher.leafHexOfText(record)).toBe(bytes(reference.leaf(utf8)));
      // Inside a line, after a byte it borrows for the prefix and must put back.
      const line = Buffer.concat([Buffer.from('{"record":'), utf8, Buffer.from('}')]);
      const before = Buffer.from(line);
      expect(bytes(merkleHasher.leafInPlace(line, 9, line.length - 1))).toBe(bytes(reference.leaf(utf8)));
      expect(bytes(reference.leafInPlace(line, 9, line.length - 1))).toBe(bytes(reference.leaf(utf8)));
      expect(line.equals(before)).toBe(true);
      const left = reference.leaf(utf8);
      const right = reference.leaf(new Uint8Array([i & 0xff]));
      expect(bytes(merkleHasher.node(left, right))).toBe(bytes(reference.node(left, right)));
      expect(hexHasher.nodeHex(bytes(left), bytes(right))).toBe(bytes(reference.node(left, right)));
    }
  });

  it('hashes the empty leaf as SHA-256 of the single prefix byte', () => {
    expect(bytes(merkleHasher.leaf(new Uint8Array(0)))).toBe(createHash('sha256').update(Buffer.of(0)).digest('hex'));
  });

  it('hashes long multi-byte records past its reused buffer as the reference does, and short ones and nodes after them (review8 F4)', () => {
    // The record's text is written into a reused buffer grown for its UTF-8 length: one sized by
    // its UTF-16 length would cut the text without an error, a wrong leaf and a false tamper alarm later.
    const leafOfText = (text: string) => (merkleHasher as unknown as { leafOfText(text: string): Uint8Array }).leafOfText(text);
    const l = reference.leaf(new Uint8Array([1]));
    const r = reference.leaf(new Uint8Array([2]));
    for (const record of ['€'.repeat(1_400), '😀'.repeat(3_000), 'a'.repeat(5_000) + 'é'.repeat(5_000), '{"a":"x"}', '€'.repeat(20_000)]) {
      expect(bytes(leafOfText(record))).toBe(bytes(reference.leaf(new Uint8Array(Buffer.from(record, 'utf8')))));
      expect(bytes(merkleHasher.node(l, r))).toBe(bytes(reference.node(l, r)));
      expect(hexHasher.leafHexOfText(record)).toBe(bytes(reference.leaf(new Uint8Array(Buffer.from(record, 'utf8')))));
      expect(hexHasher.nodeHex(bytes(l), bytes(r))).toBe(bytes(reference.node(l, r)));
    }
  });
});
