/**
 * The audit append's text writer (shared/canonical-text.ts) against the one canonical form
 * (shared/canonical-json.ts): the same bytes for every value canonicalize writes (the JCS
 * vectors and thousands of generated values and audit-shaped records, many of one shape so the
 * writer's shape cache is what writes them), and a refusal (so the caller runs canonicalize,
 * which throws the code) for every value canonicalize refuses.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { canonicalize, canonicalizeWith, parseStrictJson, type JsonValue } from '../../shared/canonical-json.js';
import { CanonicalTextWriter } from '../../shared/canonical-text.js';
import { utf8 } from '../../shared/encoding.js';
import { CountersignError } from '../../shared/errors.js';
import { prng } from '../helpers/prng.js';
import { int, pick, randomString, randomValue, setKey } from '../helpers/random-json.js';

interface JcsVectors {
  cases: Array<{ name: string; input: string; expected: string; rejectedBy?: string }>;
  numbers: Array<{ ieee754: string; expected: string }>;
}
const jcs = JSON.parse(readFileSync(new URL('../vectors/jcs.json', import.meta.url), 'utf8')) as JcsVectors;

/** The UTF-8 bytes of what the writer wrote, or undefined when it gave up. */
function written(text: string | undefined): Uint8Array | undefined {
  return text === undefined ? undefined : utf8(text);
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

describe('the canonical text writer', () => {
  const writer = new CanonicalTextWriter();

  it.each(jcs.cases.filter((c) => c.rejectedBy === undefined))('writes the JCS vector $name byte for byte', ({ input, expected }) => {
    expect(written(writer.write(parseStrictJson(input)))).toEqual(utf8(expected));
    // A second time, from the shapes it has kept.
    expect(written(writer.write(parseStrictJson(input)))).toEqual(utf8(expected));
  });

  it.each(jcs.numbers)('writes the RFC 8785 number $ieee754 as $expected', ({ ieee754, expected }) => {
    const value = fromIeeeHex(ieee754);
    expect(written(writer.write([value]))).toEqual(utf8(`[${expected}]`));
    expect(written(writer.write({ n: value }))).toEqual(utf8(`{"n":${expected}}`));
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
      expect(writer.write(value)).toBeUndefined();
    }
    // Just inside the limits it writes.
    expect(written(writer.write(deep[0]))).toEqual(utf8(canonicalize(deep[0])));
    expect(written(writer.write([2 ** 53 - 1, -0, '\ud83d\ude00', -(2 ** 53 - 1)]))).toEqual(
      utf8('[9007199254740991,0,"😀",-9007199254740991]'),
    );
  });

  it('writes every one of 5,000 generated values as canonicalize does (or gives up where it throws)', () => {
    const rng = prng(0x5eed);
    for (let i = 0; i < 5_000; i++) {
      const value = randomValue(rng, 0);
      expectSameAsReference(
        written(writer.write(value)),
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
        written(writer.write({ [text]: text })),
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
      const actual = written(writer.writeWith(members, extra));
      expectSameAsReference(
        actual,
        reference(() => canonicalizeWith(members, extra)),
      );
      if (actual !== undefined) usedFastPath++;
    }
    expect(usedFastPath).toBeGreaterThan(1_500);
  });

  it('writes 3,000 records of a few shapes as canonicalizeWith does, whatever their values', () => {
    // The audit append's case: the same shapes again and again, from the writer's kept order.
    const rng = prng(0x5a9e);
    const shapes = [
      ['requestId', 'agentId', 'tool', 'params', 'reasons', 'risk', 'token'],
      ['agentId', 'tool', 'requestId'],
      ['z', 'a', '10', '9', '\u00e9', 'A', '\ud83d\ude00'],
      [],
    ];
    for (let i = 0; i < 3_000; i++) {
      const members: Record<string, unknown> = {};
      for (const name of pick(rng, shapes)) setKey(members, name, rng() < 0.5 ? randomString(rng, 12) : randomValue(rng, 2));
      const extra = { kind: 'decision.allow', at: int(rng, 2 ** 53), seq: 1 + int(rng, 2 ** 30) };
      expectSameAsReference(
        written(writer.writeWith(members, extra)),
        reference(() => canonicalizeWith(members, extra)),
      );
    }
  });

  it('writes objects of the same names in another order, or under other extra names, as canonicalize does', () => {
    const fresh = new CanonicalTextWriter();
    const values = [{ b: 1, a: 2 }, { a: 2, b: 1 }, { b: 1 }, { a: 1, b: 2, c: 3 }];
    for (const value of values) expect(fresh.write(value)).toBe(canonicalize(value));
    expect(fresh.writeWith({ a: 1 }, { b: 2 })).toBe(canonicalizeWith({ a: 1 }, { b: 2 }));
    expect(fresh.writeWith({ a: 1, b: 2 }, {})).toBe(canonicalizeWith({ a: 1, b: 2 }, {}));
    expect(fresh.writeWith({}, { a: 1, b: 2 })).toBe(canonicalizeWith({}, { a: 1, b: 2 }));
    // A name in both: canonicalizeWith refuses it, so the writer gives up, the first time and from its cache.
    expect(fresh.writeWith({ a: 1, seq: 1 }, { seq: 2 })).toBeUndefined();
    expect(fresh.writeWith({ a: 1, seq: 1 }, { seq: 2 })).toBeUndefined();
  });

  it('writes past its bound on kept shapes as before (each one sorted again)', () => {
    const fresh = new CanonicalTextWriter();
    const rng = prng(0xb0d);
    for (let i = 0; i < 1_500; i++) {
      const value: Record<string, unknown> = {};
      for (let k = 0; k < 4; k++) setKey(value, `k${int(rng, 1_000)}`, int(rng, 10));
      expect(fresh.write(value)).toBe(canonicalize(value));
    }
    // An object of more names than a kept shape may have, written twice.
    const wide: Record<string, number> = {};
    for (let k = 0; k < 200; k++) wide[`n${(k * 7919) % 200}`] = k;
    expect(fresh.write(wide)).toBe(canonicalize(wide));
    expect(fresh.write(wide)).toBe(canonicalize(wide));
  });

  it('keeps a shape once, keeps none past 64 names or past 512 shapes, and writes the same text either way', () => {
    const fresh = new CanonicalTextWriter();
    const named = (count: number, prefix: string) => {
      const value: Record<string, number> = {};
      for (let k = 0; k < count; k++) value[`${prefix}${(k * 7919) % count}`] = k;
      return value;
    };
    expect(fresh.keptShapes).toBe(0);
    expect(fresh.write({ b: 1, a: 2 })).toBe(canonicalize({ b: 1, a: 2 }));
    expect(fresh.write({ b: 3, a: 4 })).toBe(canonicalize({ b: 3, a: 4 }));
    expect(fresh.keptShapes).toBe(1);
    // The same member names with extra names are another shape.
    expect(fresh.writeWith({ b: 1, a: 2 }, { c: 3 })).toBe(canonicalizeWith({ b: 1, a: 2 }, { c: 3 }));
    expect(fresh.keptShapes).toBe(2);
    // 64 names: kept. 65 (alone, or nested in a kept object), and 64 + 1 extra: not kept.
    const at64 = named(64, 'm');
    expect(fresh.write(at64)).toBe(canonicalize(at64));
    expect(fresh.keptShapes).toBe(3);
    const past = named(65, 'p');
    expect(fresh.write(past)).toBe(canonicalize(past));
    expect(fresh.write(past)).toBe(canonicalize(past));
    expect(fresh.keptShapes).toBe(3);
    expect(fresh.write({ outer: past })).toBe(canonicalize({ outer: past }));
    expect(fresh.keptShapes).toBe(4);
    expect(fresh.writeWith(named(64, 'w'), { extra: 1 })).toBe(canonicalizeWith(named(64, 'w'), { extra: 1 }));
    expect(fresh.keptShapes).toBe(4);
    // Up to 512 shapes; a later one is written (sorted again) and not kept.
    for (let i = 0; fresh.keptShapes < 512; i++) {
      const value = { [`z${i}`]: i, [`y${i}`]: i };
      expect(fresh.write(value)).toBe(canonicalize(value));
    }
    for (let i = 0; i < 100; i++) {
      const value = { [`x${i}`]: i, [`w${i}`]: i };
      expect(fresh.write(value)).toBe(canonicalize(value));
    }
    expect(fresh.keptShapes).toBe(512);
  });

  it('writes integers across the safe range, and fractions, with the digits String() gives', () => {
    const rng = prng(0x1d);
    const edges = [0x3fffffff, 0x40000000, 99_999_999, 100_000_000, 1e8 * 2 ** 20 - 1, 2 ** 53 - 2, 2 ** 53 - 1, 1_790_000_000_000];
    const numbers = [...edges, ...edges.map((n) => -n)];
    for (let i = 0; i < 5_000; i++) {
      const n = Math.floor(rng() * 2 ** (1 + int(rng, 53)));
      numbers.push(n, -n, n + 0.5, n / 7);
    }
    const safe = numbers.filter((x) => Math.abs(x) <= Number.MAX_SAFE_INTEGER);
    expect(safe.filter((n) => writer.write(n) !== canonicalize(n))).toEqual([]);
    expect(writer.write(safe)).toBe(canonicalize(safe));
  });

  it('writes a string value that needs an escape, beside plain ones, as canonicalize does', () => {
    const value = { a: 'plain', b: 'say "hi"\n', c: ['tab\there', 'back\\slash', '\u0001'], d: { e: 'plain again' } };
    expect(writer.write(value)).toBe(canonicalize(value));
    expect(writer.write({ a: 'plain' })).toBe('{"a":"plain"}');
  });

  it('writes a record whose only escaped string is its last, nested one as canonicalize does, and the next plain one raw', () => {
    // Each string is checked as it is written: one needing an escape anywhere (here the last one
    // written, deep in an array) writes the record again, escaping; the next record starts clean.
    for (const late of ['"', '\\', '\n', '\u001f', 'x"y']) {
      const value = { a: 'plain', b: ['plain', { c: ['plain', `end${late}`] }], z: 1 };
      expect(writer.writeWith(value, { kind: 'k', seq: 2 })).toBe(canonicalizeWith(value, { kind: 'k', seq: 2 }));
      expect(writer.writeWith({ a: 'plain', b: ['x'], z: 2 }, { kind: 'k', seq: 3 })).toBe(
        '{"a":"plain","b":["x"],"kind":"k","seq":3,"z":2}',
      );
    }
  });

  it('writes what canonicalize writes, or nothing where it throws, with one writer kept across 20,000 values of awkward names (review8 F3)', () => {
    // One long-lived writer takes the shape cache's path: values whose members share names, orders
    // and counts with earlier ones (the record's own kind/at/seq nested again among them) must
    // never be written with another shape's names.
    const NAMES = [
      '1',
      '01',
      '-1',
      '10',
      '2',
      'a',
      'A',
      'é',
      '\uffff',
      '😀',
      '\u2028',
      '"q"',
      'back\\slash',
      'tab\t',
      '\u007f',
      'constructor',
      'toString',
      'kind',
      'at',
      'seq',
      'requestId',
      '',
    ];
    const NUMBERS = [
      0,
      -0,
      1,
      -1,
      0.1 + 0.2,
      1e21,
      1e-7,
      -1e-7,
      5e-324,
      2 ** 30,
      2 ** 31,
      1e15 + 0.5,
      9007199254740991,
      -9007199254740991,
      1.5e300,
    ];
    const STRINGS = ['', 'plain', 'quote"', 'nl\n', '\u0000', '\u001f', '\u2028\u2029', '😀', '\ud83d', 'é', 'x'.repeat(300)];
    const rnd = prng(0x5e8);
    const one = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
    const value = (depth: number): unknown => {
      const r = rnd();
      if (depth > 3 || r < 0.35) return rnd() < 0.5 ? one(NUMBERS) : one(STRINGS);
      if (r < 0.45) return [value(depth + 1), value(depth + 1)];
      if (r < 0.5) return rnd() < 0.5 ? null : rnd() < 0.5;
      const o: Record<string, unknown> = {};
      const n = 1 + Math.floor(rnd() * 6);
      for (let i = 0; i < n; i++) o[one(NAMES)] = value(depth + 1);
      return o;
    };
    const orUndefined = (f: () => string): string | undefined => {
      try {
        return f();
      } catch {
        return undefined;
      }
    };
    const writer = new CanonicalTextWriter();
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const v = value(0);
      const expected = orUndefined(() => canonicalize(v));
      if (expected === undefined) refused++;
      expect(writer.write(v), JSON.stringify(v)).toBe(expected);
      if (typeof v !== 'object' || v === null || Array.isArray(v)) continue;
      const members = v as Record<string, unknown>;
      const extra = { kind: 'decision.allow', at: 1_790_000_000_000 + i, seq: i + 1 };
      expect(writer.writeWith(members, extra), JSON.stringify(v)).toBe(orUndefined(() => canonicalizeWith(members, extra)));
      const nested = { wrap: { ...members } };
      expect(writer.write(nested), JSON.stringify(v)).toBe(orUndefined(() => canonicalize(nested)));
    }
    expect(refused).toBeGreaterThan(100);
  });
});
