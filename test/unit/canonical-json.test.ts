import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { z } from 'zod';
import {
  assertIJson,
  canonicalBytes,
  canonicalize,
  canonicalizeWith,
  parseStrictJson,
  type JsonValue,
  type StrictParseOptions,
} from '../../shared/canonical-json.js';
import { utf8 } from '../../shared/encoding.js';
import { CountersignError, isErrorCode, type ErrorCode } from '../../shared/errors.js';
import { prng } from '../helpers/prng.js';
import { int, pick, randomValue, setKey, type Rng } from '../helpers/random-json.js';

// ---------------------------------------------------------------------------------------
// Vector files (also consumed by the agent SDK tests: keep them self-describing)
// ---------------------------------------------------------------------------------------

interface JcsCase {
  name: string;
  source: string;
  note?: string;
  input: string;
  expected: string;
  rejectedBy?: ErrorCode;
  rejectedNote?: string;
}
interface JcsNumber {
  ieee754: string;
  expected: string;
  comment?: string;
}
interface JcsVectors {
  description: string;
  cases: JcsCase[];
  numbers: JcsNumber[];
}
interface InvalidCase {
  name: string;
  input: string;
  code: ErrorCode;
  options?: StrictParseOptions;
  note?: string;
}
interface InvalidVectors {
  description: string;
  cases: InvalidCase[];
}

function loadVectors<T>(file: string): T {
  // JSON.parse on purpose: the vector files hold lone surrogates in escaped form, and the
  // parser under test must not be the one that reads its own expectations.
  return JSON.parse(readFileSync(new URL(`../vectors/${file}`, import.meta.url), 'utf8')) as T;
}

const jcs = loadVectors<JcsVectors>('jcs.json');
const invalid = loadVectors<InvalidVectors>('ijson-invalid.json');

function thrown(fn: () => unknown): CountersignError {
  try {
    fn();
  } catch (error) {
    if (error instanceof CountersignError) return error;
    throw error;
  }
  throw new Error('expected a CountersignError, but nothing was thrown');
}

function fromIeeeHex(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

/**
 * Independent reference used only to cross-check: sorted keys (code-unit order) and
 * JSON.stringify for the leaves. It does no validation.
 */
function referenceCanonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(referenceCanonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${referenceCanonical(record[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

describe('vector files', () => {
  it('are well formed and self-describing', () => {
    expect(jcs.description).toMatch(/RFC 8785/);
    expect(invalid.description).toMatch(/reject/);
    const names = [...jcs.cases, ...invalid.cases].map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    for (const c of jcs.cases) {
      expect(typeof c.input).toBe('string');
      expect(typeof c.expected).toBe('string');
      expect(c.source.length).toBeGreaterThan(0);
      if (c.source === 'countersign') expect(c.note, c.name).toBeTruthy();
      if (c.rejectedBy !== undefined) expect(isErrorCode(c.rejectedBy)).toBe(true);
    }
    for (const c of invalid.cases) expect(isErrorCode(c.code), c.name).toBe(true);
    expect(jcs.cases.length).toBeGreaterThanOrEqual(20);
    expect(jcs.numbers.length).toBeGreaterThanOrEqual(10);
    expect(invalid.cases.length).toBeGreaterThanOrEqual(100);
  });

  it.each(jcs.cases)('transcription of $name agrees with an independent reference', (c) => {
    // Checks the vector itself (as JSON.parse reads it), not the code under test.
    expect(referenceCanonical(JSON.parse(c.input))).toBe(c.expected);
  });
});

describe('RFC 8785 canonicalization vectors (test/vectors/jcs.json)', () => {
  it.each(jcs.cases)('$name', (c) => {
    if (c.rejectedBy !== undefined) {
      expect(thrown(() => parseStrictJson(c.input)).code).toBe(c.rejectedBy);
      expect(thrown(() => canonicalize(JSON.parse(c.input))).code).toBe(c.rejectedBy);
      return;
    }
    const parsed = parseStrictJson(c.input);
    expect(canonicalize(parsed)).toBe(c.expected);
    // The canonical form is a fixed point and is what an in-memory value gives too.
    expect(canonicalize(parseStrictJson(c.expected))).toBe(c.expected);
    expect(canonicalize(JSON.parse(c.input))).toBe(c.expected);
    expect(parsed).toEqual(JSON.parse(c.input));
    expect(canonicalBytes(parsed)).toEqual(utf8(c.expected));
  });

  it.each(jcs.numbers)('RFC 8785 appendix B: $ieee754 -> $expected', ({ ieee754, expected }) => {
    const value = fromIeeeHex(ieee754);
    expect(canonicalize(value)).toBe(expected);
    expect(canonicalize([value])).toBe(`[${expected}]`);
    const reparsed = parseStrictJson(expected);
    // -0 canonicalizes to "0", which reads back as +0; every other row round-trips bit-exact.
    expect(reparsed).toBe(Object.is(value, -0) ? 0 : value);
  });
});

describe('I-JSON rejections (test/vectors/ijson-invalid.json)', () => {
  it.each(invalid.cases)('$name -> $code', (c) => {
    const error = thrown(() => parseStrictJson(c.input, c.options));
    expect(error.code).toBe(c.code);
    expect(error.message).toMatch(/^[a-z]/);
    expect(error.message).toMatch(/ at offset \d+$/);
    const offset = error.details?.offset;
    expect(typeof offset).toBe('number');
    expect(offset).toBeGreaterThanOrEqual(0);
    expect(offset).toBeLessThanOrEqual(c.input.length);
    expect(error.message.endsWith(`at offset ${String(offset)}`)).toBe(true);
  });

  it.each(invalid.cases.filter((c) => ['json_unsafe_integer', 'json_non_finite', 'json_too_deep'].includes(c.code)))(
    'the in-memory value of $name is rejected the same way',
    (c) => {
      let value: unknown;
      try {
        value = JSON.parse(c.input);
      } catch {
        return; // e.g. unclosed input: there is no in-memory value to check
      }
      expect(thrown(() => assertIJson(value, c.options)).code).toBe(c.code);
      if (c.options === undefined) expect(thrown(() => canonicalize(value)).code).toBe(c.code);
    },
  );
});

// ---------------------------------------------------------------------------------------
// Parser details
// ---------------------------------------------------------------------------------------

describe('parseStrictJson', () => {
  it('parses every JSON type, top-level scalars included', () => {
    expect(parseStrictJson('null')).toBeNull();
    expect(parseStrictJson(' true ')).toBe(true);
    expect(parseStrictJson('false')).toBe(false);
    expect(parseStrictJson('-12.5e-1')).toBe(-1.25);
    expect(parseStrictJson('"a\\"b"')).toBe('a"b');
    expect(parseStrictJson('{"a":[1,{"b":null}],"c":"d"}')).toEqual({ a: [1, { b: null }], c: 'd' });
    expect(parseStrictJson('[]')).toEqual([]);
    expect(parseStrictJson('{}')).toEqual({});
    expect(Object.is(parseStrictJson('-0'), -0)).toBe(true);
    expect(parseStrictJson('"\\u007f\u007f"')).toBe('\u007f\u007f');
  });

  it('refuses a __proto__ member at any depth, escaped or not, and never changes a prototype', () => {
    for (const text of ['{"__proto__":{"polluted":true},"a":1}', '[{"__proto__":null}]', '{"a":{"b":[{"\\u005f_proto__":1}]}}']) {
      expect(thrown(() => parseStrictJson(text)).code).toBe('json_reserved_member');
    }
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    // The offset points at the member name.
    expect(thrown(() => parseStrictJson('{"a":1,"__proto__":2}')).details?.offset).toBe(7);
  });

  it('refuses to canonicalize an own __proto__ member (one rule in both directions)', () => {
    const value = JSON.parse('{"a":{"__proto__":{"polluted":true}}}') as unknown;
    expect(Object.keys((value as { a: object }).a)).toEqual(['__proto__']);
    const error = thrown(() => canonicalize(value));
    expect(error.code).toBe('json_reserved_member');
    expect(error.details?.path).toBe('/a/__proto__');
    expect(thrown(() => assertIJson(value)).code).toBe('json_reserved_member');
  });

  it('builds ordinary objects that schema libraries accept', () => {
    const schema = z.object({ tool: z.string(), args: z.record(z.string(), z.number()) });
    const parsed = parseStrictJson('{"tool":"fs.read","args":{"toString":1,"constructor":2}}');
    expect(schema.parse(parsed)).toEqual({ tool: 'fs.read', args: { toString: 1, constructor: 2 } });
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
  });

  it('does not mistake Object.prototype names for duplicates', () => {
    const text = '{"toString":1,"constructor":2,"hasOwnProperty":3,"valueOf":4,"__defineGetter__":5}';
    expect(parseStrictJson(text)).toEqual(JSON.parse(text));
  });

  it('reports the offset of the problem', () => {
    const at = (text: string): unknown => thrown(() => parseStrictJson(text)).details?.offset;
    expect(at('{"a":1,"a":2}')).toBe(7);
    expect(at('{"a":1,"\\u0061":2}')).toBe(7);
    expect(at('[1,]')).toBe(3);
    expect(at('[1 2]')).toBe(3);
    expect(at('"ab\\ud800"')).toBe(3);
    expect(at('"ab\udc00"')).toBe(3);
    expect(at(' 01')).toBe(1);
    expect(at('[9007199254740992]')).toBe(1);
    expect(at('[1e400]')).toBe(1);
    expect(at('"a\u0001"')).toBe(2);
    expect(at('"\\x"')).toBe(1);
    expect(at('{} x')).toBe(3);
    expect(at('')).toBe(0);
    expect(at('   ')).toBe(3);
    expect(thrown(() => parseStrictJson('[[[]]]', { maxDepth: 2 })).details?.offset).toBe(2);
  });

  it('writes lowercase messages that quote user input', () => {
    expect(thrown(() => parseStrictJson('{"a\\"b":1,"a\\"b":2}')).message).toBe('duplicate member name "a\\"b" at offset 10');
    expect(thrown(() => parseStrictJson('[12345678901234567890]')).message).toBe(
      'number "12345678901234567890" is outside the safe integer range at offset 1',
    );
    expect(thrown(() => parseStrictJson('x')).message).toBe('expected a JSON value, found character "x" at offset 0');
    expect(thrown(() => parseStrictJson('"\\ud800"')).message).toBe('unpaired surrogate escape "\\\\ud800" at offset 1');
    // Very long user input is clipped by quote().
    const long = `{"${'k'.repeat(500)}":1,"${'k'.repeat(500)}":2}`;
    expect(thrown(() => parseStrictJson(long)).message.length).toBeLessThan(150);
  });

  it('accepts exactly maxDepth levels', () => {
    const arrays = (n: number): string => '['.repeat(n) + ']'.repeat(n);
    const objects = (n: number): string => '{"a":'.repeat(n) + '0' + '}'.repeat(n);
    expect(() => parseStrictJson(arrays(64))).not.toThrow();
    expect(() => parseStrictJson(objects(64))).not.toThrow();
    expect(thrown(() => parseStrictJson(arrays(65))).code).toBe('json_too_deep');
    expect(thrown(() => parseStrictJson(objects(65))).code).toBe('json_too_deep');
    expect(() => parseStrictJson(arrays(3), { maxDepth: 3 })).not.toThrow();
    expect(thrown(() => parseStrictJson(arrays(4), { maxDepth: 3 })).code).toBe('json_too_deep');
    expect(parseStrictJson('1', { maxDepth: 0 })).toBe(1);
    expect(() => parseStrictJson(arrays(1000), { maxDepth: 1000 })).not.toThrow();
  });

  it('never overflows the stack on hostile nesting', () => {
    const error = thrown(() => parseStrictJson('['.repeat(200_000)));
    expect(error.code).toBe('json_too_deep');
    expect(thrown(() => parseStrictJson('{"a":'.repeat(200_000))).code).toBe('json_too_deep');
  });

  it('rejects bad options and non-string input', () => {
    expect(() => parseStrictJson('1', { maxDepth: -1 })).toThrow(RangeError);
    expect(() => parseStrictJson('1', { maxDepth: 1.5 })).toThrow(RangeError);
    expect(() => parseStrictJson('1', { maxDepth: Number.POSITIVE_INFINITY })).toThrow(RangeError);
    expect(() => assertIJson(1, { maxDepth: 100_000 })).toThrow(RangeError);
    expect(thrown(() => parseStrictJson(undefined as unknown as string)).code).toBe('json_invalid');
  });

  it('accepts the whole safe integer range and large strings', () => {
    expect(parseStrictJson('9007199254740991')).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseStrictJson('-9007199254740991')).toBe(-Number.MAX_SAFE_INTEGER);
    expect(parseStrictJson('9007199254740991.4')).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseStrictJson('1.7976931348623157e-308')).toBe(1.7976931348623157e-308);
    const big = 'x'.repeat(100_000) + '\\n' + '\u00e9'.repeat(1000) + '\ud83d\ude00';
    expect(parseStrictJson(`"${big}"`)).toBe(JSON.parse(`"${big}"`));
  });
});

// ---------------------------------------------------------------------------------------
// In-memory validation and canonicalization
// ---------------------------------------------------------------------------------------

class Point {
  constructor(
    public x = 1,
    public y = 2,
  ) {}
}

const sparse: unknown[] = [1];
sparse[2] = 3;

const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

const inMemoryRejections: Array<[string, unknown, ErrorCode]> = [
  ['NaN', Number.NaN, 'json_non_finite'],
  ['Infinity', Number.POSITIVE_INFINITY, 'json_non_finite'],
  ['-Infinity in an array', [Number.NEGATIVE_INFINITY], 'json_non_finite'],
  ['2^53', 2 ** 53, 'json_unsafe_integer'],
  ['-(2^53)', -(2 ** 53), 'json_unsafe_integer'],
  ['1e300', { n: 1e300 }, 'json_unsafe_integer'],
  ['Number.MAX_VALUE', Number.MAX_VALUE, 'json_unsafe_integer'],
  ['undefined', undefined, 'json_unsupported_value'],
  ['undefined member', { a: undefined }, 'json_unsupported_value'],
  ['array hole', sparse, 'json_unsupported_value'],
  ['function', { f: () => 1 }, 'json_unsupported_value'],
  ['bigint', 1n, 'json_unsupported_value'],
  ['symbol', [Symbol('s')], 'json_unsupported_value'],
  ['Date', new Date(0), 'json_unsupported_value'],
  ['Map', new Map(), 'json_unsupported_value'],
  ['Set', new Set(), 'json_unsupported_value'],
  ['RegExp', /x/, 'json_unsupported_value'],
  ['class instance', new Point(), 'json_unsupported_value'],
  ['boxed number', Object(1) as unknown, 'json_unsupported_value'],
  ['boxed string', Object('s') as unknown, 'json_unsupported_value'],
  ['Uint8Array', new Uint8Array(2), 'json_unsupported_value'],
  ['Error', new Error('x'), 'json_unsupported_value'],
  ['lone high surrogate', 'a\ud800', 'json_lone_surrogate'],
  ['lone low surrogate', ['\udc00b'], 'json_lone_surrogate'],
  ['reversed pair', '\ude00\ud83d', 'json_lone_surrogate'],
  ['lone surrogate in a key', { '\ud800': 1 }, 'json_lone_surrogate'],
  ['too deep', JSON.parse('['.repeat(65) + ']'.repeat(65)), 'json_too_deep'],
  ['cyclic', cyclic, 'json_too_deep'],
];

describe('assertIJson', () => {
  it('accepts JSON values, null-prototype objects and -0', () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare.b = 1;
    bare.a = [true, null, 'x', -0, 0.5, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    expect(() => assertIJson(bare)).not.toThrow();
    expect(() => assertIJson('\ud83d\ude00')).not.toThrow();
    expect(() => assertIJson([])).not.toThrow();
    expect(canonicalize(bare)).toBe('{"a":[true,null,"x",0,0.5,9007199254740991,-9007199254740991],"b":1}');
  });

  it.each(inMemoryRejections)('rejects %s (canonicalize too)', (_name, value, code) => {
    const error = thrown(() => assertIJson(value));
    expect(error.code).toBe(code);
    expect(error.message).toMatch(/^[a-z]/);
    expect(thrown(() => canonicalize(value)).code).toBe(code);
    expect(thrown(() => canonicalBytes(value)).code).toBe(code);
  });

  it('names the path of the offending value as a JSON pointer', () => {
    const error = thrown(() => assertIJson({ a: [1, { 'b/c~': Number.NaN }] }));
    expect(error.details?.path).toBe('/a/1/b~1c~0');
    expect(error.message).toBe('number NaN is not finite at path "/a/1/b~1c~0"');
    expect(thrown(() => assertIJson(undefined)).details?.path).toBe('');
    expect(thrown(() => assertIJson(undefined)).message).toBe(
      'undefined (or an array hole) cannot be represented in JSON at the top level',
    );
    // details stay valid I-JSON even when the culprit is a bad member name.
    const bad = thrown(() => canonicalize({ ok: { 'x\ud800': 1 } }));
    expect(bad.code).toBe('json_lone_surrogate');
    expect(bad.details?.path).toBe('/ok/x\ufffd');
    expect(() => canonicalize(bad.details)).not.toThrow();
    expect(() => canonicalize(bad.message)).not.toThrow();
    const long = thrown(() => assertIJson({ ['k'.repeat(1000)]: Number.NaN })).details?.path;
    expect(typeof long === 'string' && long.length < 210).toBe(true);
    expect(thrown(() => canonicalize({ z: { y: [0, 2 ** 60] } })).details?.path).toBe('/z/y/1');
  });

  it('honours maxDepth', () => {
    const nested = JSON.parse('[[[1]]]') as unknown;
    expect(() => assertIJson(nested, { maxDepth: 3 })).not.toThrow();
    expect(thrown(() => assertIJson(nested, { maxDepth: 2 })).code).toBe('json_too_deep');
    expect(() => assertIJson(JSON.parse('['.repeat(64) + ']'.repeat(64)))).not.toThrow();
    expect(() => canonicalize(JSON.parse('['.repeat(64) + ']'.repeat(64)))).not.toThrow();
  });
});

describe('canonicalize', () => {
  it('serializes scalars like ECMAScript', () => {
    expect(canonicalize(-0)).toBe('0');
    expect(canonicalize(0)).toBe('0');
    expect(canonicalize(1e-7)).toBe('1e-7');
    expect(canonicalize(123.456)).toBe('123.456');
    expect(canonicalize(null)).toBe('null');
    expect(canonicalize(true)).toBe('true');
    expect(canonicalize('\u2028</script>\u00e9')).toBe('"\u2028</script>\u00e9"');
    expect(canonicalize('\u0000\u001f"\\')).toBe('"\\u0000\\u001f\\"\\\\"');
  });

  it('sorts members by UTF-16 code units, not code points or locale', () => {
    const value = { '\uffff': 1, '\ud83d\ude00': 2, é: 3, e: 4, E: 5, '': 6, '10': 7, '9': 8 };
    expect(canonicalize(value)).toBe('{"":6,"10":7,"9":8,"E":5,"e":4,"é":3,"\ud83d\ude00":2,"\uffff":1}');
  });

  it('orders objects of 0 to 60 awkward names as the default sort does, either side of its insertion-sort bound', () => {
    // Names that sort differently by code point, by locale or as integers: surrogate pairs, the
    // top of the BMP, integer-like names (which Object.keys lists first), prefixes, the empty name.
    const alphabet = ['', 'a', 'A', 'é', 'e', '\uffff', '\ud83d\ude00', '\ud83d\ude01', '0', '1', '9', '10', '-1', 'ab', 'a b', '_'];
    const rng = prng(0x50f7);
    for (let size = 0; size <= 60; size++) {
      for (let round = 0; round < 3; round++) {
        const value: Record<string, number> = {};
        while (Object.keys(value).length < size) {
          const name = `${pick(rng, alphabet)}${pick(rng, alphabet)}${int(rng, 2) === 0 ? '' : pick(rng, alphabet)}`;
          value[name] = Object.keys(value).length;
        }
        expect(canonicalize(value)).toBe(referenceCanonical(value));
        const names = Object.keys(value);
        expect(Object.keys(JSON.parse(canonicalize(value)) as object).sort()).toEqual([...names].sort());
        expect(canonicalize(value)).toBe(
          `{${[...names]
            .sort()
            .map((n) => `${JSON.stringify(n)}:${value[n]}`)
            .join(',')}}`,
        );
      }
    }
  });

  it('ignores insertion order, keeps array order and does not mutate its input', () => {
    const a = { z: 1, a: [3, 2, 1], m: { y: 1, x: 2 } };
    const b = { m: { x: 2, y: 1 }, a: [3, 2, 1], z: 1 };
    const before = JSON.stringify(a);
    expect(canonicalize(a)).toBe(canonicalize(b));
    expect(canonicalize(a)).toBe('{"a":[3,2,1],"m":{"x":2,"y":1},"z":1}');
    expect(JSON.stringify(a)).toBe(before);
    expect(canonicalize([2, 1])).not.toBe(canonicalize([1, 2]));
  });

  it('reads each property once, so a getter cannot show the validator a different value', () => {
    let reads = 0;
    const tricky = {
      get a(): unknown {
        reads++;
        return reads === 1 ? 1 : Number.NaN;
      },
    };
    expect(canonicalize(tricky)).toBe('{"a":1}');
    expect(reads).toBe(1);
  });

  it('produces UTF-8 bytes without a BOM', () => {
    expect(Array.from(canonicalBytes({ '€': 'é' }))).toEqual([0x7b, 0x22, 0xe2, 0x82, 0xac, 0x22, 0x3a, 0x22, 0xc3, 0xa9, 0x22, 0x7d]);
    expect(Array.from(canonicalBytes('\ud83d\ude00'))).toEqual([0x22, 0xf0, 0x9f, 0x98, 0x80, 0x22]);
  });
});

// ---------------------------------------------------------------------------------------
// Property-style tests with a seeded PRNG
// ---------------------------------------------------------------------------------------

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

function uEscape(rng: Rng, unit: number): string {
  const hex = unit.toString(16).padStart(4, '0');
  return `\\u${rng() < 0.5 ? hex : hex.toUpperCase()}`;
}

/** Serializes with random whitespace, escapes and number spellings: same value, other text. */
function noisyText(rng: Rng, value: JsonValue): string {
  const ws = (): string => (rng() < 0.6 ? '' : pick(rng, [' ', '\n', '\t', '\r\n', '  ', ' \t\r\n']));
  if (value === null || typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    const roll = rng();
    if (roll < 0.3) return value.toExponential().replace('e', rng() < 0.5 ? 'e' : 'E');
    if (roll < 0.4 && Number.isInteger(value)) return `${value.toFixed(0)}.0${rng() < 0.5 ? 'e0' : ''}`;
    return String(value);
  }
  if (typeof value === 'string') {
    let out = '"';
    for (const ch of value) {
      const code = ch.charCodeAt(0);
      if (SHORT_ESCAPES[ch] !== undefined && (code >= 0x20 || rng() < 0.5)) out += SHORT_ESCAPES[ch];
      else if (code < 0x20) out += uEscape(rng, code);
      else if (ch === '/' && rng() < 0.5) out += '\\/';
      else if (rng() < 0.15) for (let k = 0; k < ch.length; k++) out += uEscape(rng, ch.charCodeAt(k));
      else out += ch;
    }
    return out + '"';
  }
  if (Array.isArray(value)) {
    return `${ws()}[${ws()}${value.map((v) => ws() + noisyText(rng, v) + ws()).join(',')}${ws()}]${ws()}`;
  }
  const members = Object.keys(value).map((k) => `${ws()}${noisyText(rng, k)}${ws()}:${ws()}${noisyText(rng, value[k]!)}${ws()}`);
  return `${ws()}{${members.join(',')}${ws()}}${ws()}`;
}

describe('canonicalizeWith', () => {
  it('refuses a name present in both (json_duplicate_key) and what canonicalize refuses, with the same codes', () => {
    const codeOf = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (error) {
        return error instanceof CountersignError ? error.code : 'not a CountersignError';
      }
      return undefined;
    };
    expect(codeOf(() => canonicalizeWith({ kind: 'a' }, { kind: 'b' }))).toBe('json_duplicate_key');
    expect(codeOf(() => canonicalizeWith({ a: Number.NaN }, { seq: 1 }))).toBe('json_non_finite');
    expect(codeOf(() => canonicalizeWith({ a: 2 ** 60 }, { seq: 1 }))).toBe('json_unsafe_integer');
    expect(codeOf(() => canonicalizeWith({ a: 1 }, { seq: 2 ** 60 }))).toBe('json_unsafe_integer');
    expect(codeOf(() => canonicalizeWith({ a: '\ud800' }, { seq: 1 }))).toBe('json_lone_surrogate');
    expect(codeOf(() => canonicalizeWith(new Date() as unknown as Record<string, unknown>, { seq: 1 }))).toBe('json_unsupported_value');
  });
});

describe('properties over 400 seeded random values', () => {
  const rng = prng(0xc0ffee);
  const values = Array.from({ length: 400 }, () => randomValue(rng, 0));

  it('parseStrictJson(canonicalize(v)) deep-equals v', () => {
    for (const v of values) expect(parseStrictJson(canonicalize(v))).toEqual(v);
  });

  it('is idempotent and matches the independent reference', () => {
    for (const v of values) {
      const c = canonicalize(v);
      expect(canonicalize(parseStrictJson(c))).toBe(c);
      expect(c).toBe(referenceCanonical(v));
      expect(JSON.parse(c)).toEqual(v);
    }
  });

  it('canonicalizeWith(members, extra) equals canonicalize of the merged object', () => {
    const extraRng = prng(7);
    let objects = 0;
    for (const v of values) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) continue;
      objects++;
      const extra: Record<string, JsonValue> = {};
      // Names that sort before, between and after the object's own, none of them its own.
      for (const name of ['', 'at', 'kind', 'seq', '\u{1f600}', `m${Math.floor(extraRng() * 1e6)}`])
        if (!Object.hasOwn(v, name)) extra[name] = randomValue(extraRng, 1);
      expect(canonicalizeWith(v, extra)).toBe(canonicalize({ ...v, ...extra }));
      expect(canonicalizeWith(v, {})).toBe(canonicalize(v));
    }
    expect(objects).toBeGreaterThan(20);
  });

  it('agrees with JSON.parse on differently spelled texts without duplicates', () => {
    const textRng = prng(42);
    for (const v of values) {
      const text = noisyText(textRng, v);
      const strict = parseStrictJson(text);
      expect(strict).toEqual(JSON.parse(text));
      expect(strict).toEqual(v);
      expect(canonicalize(strict)).toBe(canonicalize(v));
    }
  });

  it('refuses a __proto__ member inserted into any object of any value, in text and in memory', () => {
    const insertRng = prng(0x9e37);
    let inserted = 0;
    for (const v of values) {
      const copy = JSON.parse(JSON.stringify(v)) as JsonValue;
      const objects: Record<string, unknown>[] = [];
      const walk = (x: unknown): void => {
        if (Array.isArray(x)) x.forEach(walk);
        else if (typeof x === 'object' && x !== null) {
          objects.push(x as Record<string, unknown>);
          Object.values(x).forEach(walk);
        }
      };
      walk(copy);
      if (objects.length === 0) continue;
      setKey(objects[int(insertRng, objects.length)]!, '__proto__', { amount: '1.00' });
      inserted++;
      expect(thrown(() => canonicalize(copy)).code).toBe('json_reserved_member');
      expect(thrown(() => parseStrictJson(noisyText(insertRng, copy))).code).toBe('json_reserved_member');
    }
    expect(inserted).toBeGreaterThan(100);
  });

  it('agrees with JSON.parse on accept/reject for mutated texts', () => {
    const mutRng = prng(7);
    const inserts = [
      '{',
      '}',
      '[',
      ']',
      ',',
      ':',
      '"',
      '\\',
      '0',
      '1',
      '-',
      '+',
      'e',
      '.',
      'u',
      ' ',
      '\u0000',
      '\ud800',
      'n',
      'x',
      '\ufeff',
    ];
    let rejected = 0;
    for (let round = 0; round < 1500; round++) {
      const base = noisyText(mutRng, values[round % values.length]!);
      const at = int(mutRng, base.length + 1);
      const op = int(mutRng, 3);
      const text =
        op === 0
          ? base.slice(0, at) + base.slice(at + 1)
          : op === 1
            ? base.slice(0, at) + pick(mutRng, inserts) + base.slice(at)
            : base.slice(0, at) + pick(mutRng, inserts) + base.slice(at + 1);
      let loose: { ok: true; value: unknown } | { ok: false };
      try {
        loose = { ok: true, value: JSON.parse(text) };
      } catch {
        loose = { ok: false };
      }
      let strict: { ok: true; value: unknown } | { ok: false; error: unknown };
      try {
        strict = { ok: true, value: parseStrictJson(text) };
      } catch (error) {
        strict = { ok: false, error };
      }
      if (strict.ok) {
        // Whatever the strict parser accepts, JSON.parse reads the same way.
        expect(loose.ok, text).toBe(true);
        if (loose.ok) expect(strict.value).toEqual(loose.value);
      } else {
        rejected++;
        expect(strict.error, text).toBeInstanceOf(CountersignError);
        const code = (strict.error as CountersignError).code;
        expect(code.startsWith('json_'), text).toBe(true);
        // A grammar rejection is exactly a JSON.parse rejection.
        if (code === 'json_invalid') expect(loose.ok, text).toBe(false);
      }
      // And everything JSON.parse rejects, the strict parser rejects.
      if (!loose.ok) expect(strict.ok, text).toBe(false);
    }
    expect(rejected).toBeGreaterThan(300);
  });
});
