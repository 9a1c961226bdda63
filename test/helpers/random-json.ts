/**
 * Seeded random JSON values for property tests of the canonical form (canonical-json and its
 * fast text writer, canonical-text): strings drawn from escapes, controls, non-ASCII and astral
 * characters; numbers across the safe range and odd bit patterns; nested objects and arrays.
 */
import type { JsonValue } from '../../shared/canonical-json.js';

export type Rng = () => number;
export const int = (rng: Rng, n: number): number => Math.floor(rng() * n);
export const pick = <T>(rng: Rng, items: readonly T[]): T => items[int(rng, items.length)]!;

export const CHAR_POOL: readonly string[] = [
  'a',
  'b',
  'z',
  'A',
  'Z',
  '0',
  '9',
  ' ',
  '_',
  '-',
  '.',
  '"',
  '\\',
  '/',
  "'",
  '<',
  '>',
  '&',
  '\u0000',
  '\u0001',
  '\b',
  '\t',
  '\n',
  '\f',
  '\r',
  '\u001f',
  '\u007f',
  '\u0080',
  '\u009f',
  '\u00a0',
  '\u00e9',
  '\u00f6',
  '\u20ac',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\ufb33',
  '\uffff',
  '\u1e0d\u0307',
  '\ud83d\ude00',
  '\ud834\udd1e',
  '\udbff\udfff',
  '\ud800\udc00',
  '\u4e2d',
];

export function randomString(rng: Rng, maxLength: number): string {
  let out = '';
  const length = int(rng, maxLength + 1);
  for (let i = 0; i < length; i++) out += pick(rng, CHAR_POOL);
  return out;
}

export function randomNumber(rng: Rng): number {
  switch (int(rng, 6)) {
    case 0:
      return int(rng, 2001) - 1000;
    case 1: {
      // Any safe integer.
      const n = Math.floor(rng() * 2 ** 21) * 2 ** 32 + Math.floor(rng() * 2 ** 32);
      const safe = n > Number.MAX_SAFE_INTEGER ? Number.MAX_SAFE_INTEGER : n;
      return rng() < 0.5 ? -safe : safe;
    }
    case 2: {
      const v = (rng() - 0.5) * 10 ** (int(rng, 46) - 30);
      return Math.abs(v) > Number.MAX_SAFE_INTEGER || v === 0 ? 0.5 : v;
    }
    case 3: {
      // A random bit pattern, kept if it is within our rules.
      const view = new DataView(new ArrayBuffer(8));
      for (let tries = 0; tries < 50; tries++) {
        view.setUint32(0, Math.floor(rng() * 2 ** 32));
        view.setUint32(4, Math.floor(rng() * 2 ** 32));
        const v = view.getFloat64(0);
        if (Number.isFinite(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER && !Object.is(v, -0)) return v;
      }
      return 1.5;
    }
    case 4:
      return pick(rng, [
        0,
        1,
        -1,
        0.1,
        0.2,
        1e-7,
        1e-6,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        Number.MAX_SAFE_INTEGER,
        -Number.MAX_SAFE_INTEGER,
        333333333.3333333,
        1424953923781206.2,
        9.999999999999997e-7,
      ]);
    default:
      return Math.round(rng() * 1e6) / 100;
  }
}

export function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

export function randomValue(rng: Rng, depth: number): JsonValue {
  const kind = depth >= 5 ? int(rng, 4) : int(rng, 7);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng() < 0.5;
    case 2:
      return randomNumber(rng);
    case 3:
      // Mostly short strings, sometimes long ones (the parser scans long runs differently).
      return randomString(rng, rng() < 0.2 ? 80 : 12);
    case 4:
    case 5: {
      const out: Record<string, JsonValue> = {};
      const size = int(rng, 6);
      for (let i = 0; i < size; i++) {
        // Object.prototype names are ordinary members; __proto__ is refused (tested below).
        const key = rng() < 0.1 ? pick(rng, ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '']) : randomString(rng, 6);
        setKey(out, key, randomValue(rng, depth + 1));
      }
      return out;
    }
    default: {
      const size = int(rng, 6);
      const out: JsonValue[] = [];
      for (let i = 0; i < size; i++) out.push(randomValue(rng, depth + 1));
      return out;
    }
  }
}
