/**
 * The audit append's byte writer (shared/canonical-utf8.ts) against the one canonical form
 * (shared/canonical-json.ts): the same bytes for every value canonicalize writes (the JCS
 * vectors and thousands of generated values and audit-shaped records), and a refusal (so the
 * caller runs canonicalize, which throws the code) for every value canonicalize refuses.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalize, canonicalizeWith, parseStrictJson, type JsonValue } from '../../shared/canonical-json.js';
import { CanonicalUtf8Writer } from '../../shared/canonical-utf8.js';
import { utf8 } from '../../shared/encoding.js';
import { CountersignError } from '../../shared/errors.js';
import { prng } from '../helpers/prng.js';
import { int, pick, randomString, randomValue, setKey } from '../helpers/random-json.js';

interface JcsVectors {
  cases: Array<{ name: string; input: string; expected: string; rejectedBy?: string }>;
  numbers: Array<{ ieee754: string; expected: string }>;
}
const jcs = JSON.parse(readFileSync(new URL('../vectors/jcs.json', import.meta.url), 'utf8')) as JcsVectors;

/** What the writer wrote after `offset`, or undefined when it gave up. */
function written(writer: CanonicalUtf8Writer, end: number | undefined, offset: number): Uint8Array | undefined {
  return end === undefined ? undefined : writer.bytes.slice(offset, end);
}

/** canonicalize's bytes, or the error code it throws. */
function reference(f: () => string): { bytes: Uint8Array } | { code: string } {
  try {
    return { bytes: utf8(f()) };
  } catch (error) {
    if (error instanceof CountersignError) return { code: error.code };
    throw error;
  }
}

/** Same bytes, or a refusal where canonicalize threw (compared cheaply: thousands of values run). */
function expectSameAsReference(actual: Uint8Array | undefined, expected: { bytes: Uint8Array } | { code: string }): void {
  if ('code' in expected) {
    if (actual !== undefined) expect.fail(`the writer wrote ${Buffer.from(actual).toString()} where canonicalize threw ${expected.code}`);
  } else if (actual === undefined || !Buffer.from(actual).equals(expected.bytes)) {
    expect(actual && Buffer.from(actual).toString()).toBe(Buffer.from(expected.bytes).toString());
  }
}

function fromIeeeHex(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

describe('the canonical UTF-8 writer', () => {
  const writer = new CanonicalUtf8Writer(16);

  it.each(jcs.cases.filter((c) => c.rejectedBy === undefined))('writes the JCS vector $name byte for byte', ({ input, expected }) => {
    expect(written(writer, writer.write(parseStrictJson(input), 0), 0)).toEqual(utf8(expected));
    // And after a prefix it leaves alone (the audit leaf's 0x00 goes there).
    writer.bytes[0] = 0x42;
    expect(written(writer, writer.write(parseStrictJson(input), 1), 1)).toEqual(utf8(expected));
    expect(writer.bytes[0]).toBe(0x42);
  });

  it.each(jcs.numbers)('writes the RFC 8785 number $ieee754 as $expected', ({ ieee754, expected }) => {
    const value = fromIeeeHex(ieee754);
    expect(written(writer, writer.write([value], 0), 0)).toEqual(utf8(`[${expected}]`));
  });

  it('gives up on every value canonicalize refuses, and nowhere else', () => {
    const deep: JsonValue[] = [];
    let inner = deep;
    for (let i = 0; i < 64; i++) {
      const next: JsonValue[] = [];
      inner.push(next);
      inner = next;
    }
    const refused: unknown[] = [
      '\ud800',
      'a\udc00b',
      { '\udbff': 1 },
      ['\ud83d'],
      Number.NaN,
      Number.POSITIVE_INFINITY,
      2 ** 53,
      -(2 ** 60),
      undefined,
      [1, undefined],
      () => 1,
      10n,
      Symbol('s'),
      new Date(0),
      new Map(),
      JSON.parse('{"__proto__": 1}') as unknown,
      deep,
    ];
    for (const value of refused) {
      expect('code' in reference(() => canonicalize(value))).toBe(true);
      expect(writer.write(value, 0)).toBeUndefined();
    }
    // Just inside the limits it writes.
    expect(written(writer, writer.write(deep[0], 0), 0)).toEqual(utf8(canonicalize(deep[0])));
    expect(written(writer, writer.write([2 ** 53 - 1, -0, '\ud83d\ude00'], 0), 0)).toEqual(utf8('[9007199254740991,0,"😀"]'));
  });

  it('writes every one of 5,000 generated values as canonicalize does (or gives up where it throws)', () => {
    const rng = prng(0x5eed);
    for (let i = 0; i < 5_000; i++) {
      const value = randomValue(rng, 0);
      expectSameAsReference(
        written(writer, writer.write(value, 0), 0),
        reference(() => canonicalize(value)),
      );
    }
  });

  it('writes every one of 2,000 generated strings with lone surrogates, controls and escapes as canonicalize does', () => {
    const rng = prng(0x51);
    const units = ['\ud800', '\udbff', '\udc00', '\udfff', '\u0000', '\u001f', '"', '\\', '\u007f', '\u0800', '\uffff', 'x'];
    for (let i = 0; i < 2_000; i++) {
      let text = randomString(rng, 20);
      for (let k = int(rng, 3); k > 0; k--) text += pick(rng, units) + randomString(rng, 4);
      expectSameAsReference(
        written(writer, writer.write({ [text]: text }, 0), 0),
        reference(() => canonicalize({ [text]: text })),
      );
    }
  });

  it('writes members and extra members as canonicalizeWith does, over 2,000 generated audit-shaped records', () => {
    const rng = prng(0xa0d17);
    let usedFastPath = 0;
    for (let i = 0; i < 2_000; i++) {
      const members: Record<string, unknown> = {};
      for (const name of ['requestId', 'agentId', 'tool', 'reasons', 'risk', 'params', 'token']) {
        if (rng() < 0.8) setKey(members, name, randomValue(rng, 1));
      }
      // Now and then a name the log adds itself: canonicalizeWith refuses the duplicate.
      if (rng() < 0.05) members.seq = 1;
      const extra = {
        kind: pick(rng, ['decision.allow', 'decision.deny', 'config.loaded']),
        at: int(rng, 2 ** 41),
        seq: 1 + int(rng, 2 ** 30),
      };
      const offset = 1;
      const actual = written(writer, writer.writeWith(members, extra, offset), offset);
      expectSameAsReference(
        actual,
        reference(() => canonicalizeWith(members, extra)),
      );
      if (actual !== undefined) usedFastPath++;
    }
    expect(usedFastPath).toBeGreaterThan(1_500);
  });

  it('grows past its first buffer and keeps what was before the offset', () => {
    const small = new CanonicalUtf8Writer(4);
    small.bytes[0] = 7;
    const long = { text: 'é'.repeat(5_000), list: Array.from({ length: 300 }, (_, i) => i) };
    expect(written(small, small.writeWith(long, { seq: 1 }, 1), 1)).toEqual(utf8(canonicalizeWith(long, { seq: 1 })));
    expect(small.bytes[0]).toBe(7);
  });
});
