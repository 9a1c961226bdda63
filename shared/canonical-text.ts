/**
 * RFC 8785 canonical JSON text, the audit append's fast path (issue #12). canonical-json.ts stays
 * the one canonical form; this writer produces exactly its text for the values it accepts and
 * accepts only values canonicalize would write without an error. On anything else (a lone
 * surrogate, an unsafe or non-finite number, a non-plain object, undefined, a `__proto__`
 * member, nesting past the depth limit, a name in both `members` and `extra`) it gives up and
 * returns undefined, and the caller runs canonicalize/canonicalizeWith, which throws the error
 * code. test/unit/canonical-text.test.ts holds the two to the same bytes over the JCS vectors,
 * generated values and generated audit records.
 *
 * Why it is cheaper (the append writes the same few record shapes all day): an object's sorted
 * member order and its rendered names (`"agentId":`) are kept per shape (its Object.keys list),
 * so a known shape is neither sorted nor are its names scanned again; the cache is bounded (512
 * shapes of at most 64 names), and a shape past the bound is sorted each time as before. A
 * string value is written raw between quotes after a native well-formedness check and a regex
 * test for characters that need an escape (a record with such a character is written again,
 * escaping string by string). An integer above 2^30 (every timestamp) is written
 * from two small integers: String() of a double that large costs several times more, for the
 * same digits.
 */
import { RESERVED_MEMBER_NAME } from './canonical-json.js';

/** canonical-json.ts's limit: a value nested in more than this many arrays/objects is refused. */
const MAX_DEPTH = 64;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Shapes kept per writer: far more than the audit kinds' records, a bound for agents' parameter objects. */
const MAX_SHAPES = 512;
/** Names a kept shape may have (an audit record has about 20): a larger object is sorted each time, so what is kept stays small. */
const MAX_SHAPE_NAMES = 64;
/** The largest integer written by String() directly (a small integer there: cheap). */
const SMALL = 0x3fffffff;
/** Code units a string value cannot hold raw in canonical JSON (surrogates are checked apart). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;
const ZEROS = ['', '0', '00', '000', '0000', '00000', '000000', '0000000', '00000000'];

/** Thrown inside the writer when it gives up and caught at its entry; never leaves it. One instance: no stack per throw. */
class GiveUp extends Error {}
const GIVE_UP = new GiveUp('the canonical writer gave up');

/** ES2024's String.prototype.isWellFormed (no unpaired surrogate); the lib targets ES2022. */
const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed();

function isPlainPrototype(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * One object shape: its own member names in Object.keys order (`names`), for writeWith also the
 * extra names (`extraNames`), and for each position in canonical order the index of its name
 * (`order`, extra names after the members') and its rendered `"name":` with the comma before it.
 */
interface Shape {
  names: readonly string[];
  extraNames: readonly string[] | undefined;
  order: number[];
  prefixes: string[];
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Decimal digits of a safe integer above SMALL, from two small integers (the same digits String() writes). */
function largeInteger(n: number): string {
  let high = Math.floor(n / 1e8);
  let low = n - high * 1e8;
  // The quotient can round up to the next integer; high * 1e8 and the difference are exact.
  if (low < 0) {
    high -= 1;
    low += 1e8;
  }
  const digits = String(low);
  return String(high) + ZEROS[8 - digits.length]! + digits;
}

/**
 * Reusable, and cheaper the longer it is used: the shapes it has seen stay known. Not safe to
 * share between two writes at once (there are none: it is synchronous).
 */
export class CanonicalTextWriter {
  /** Shapes by their first name ('' for none), a few per bucket. */
  private readonly shapes = new Map<string, Shape[]>();
  private shapeCount = 0;
  /** A string value written in this pass needs an escape: the pass is written again, escaping. */
  private needsEscape = false;
  /** Second pass: escape string by string (a value needed an escape). */
  private escaping = false;

  /**
   * How many shapes this writer keeps, counted in the cache itself: what a test reads to see that
   * a shape past either bound is not kept (the text is the same either way).
   */
  get keptShapes(): number {
    let kept = 0;
    for (const bucket of this.shapes.values()) kept += bucket.length;
    return kept;
  }

  /** canonicalizeWith(members, extra), or undefined where it would throw. */
  writeWith(members: Record<string, unknown>, extra: Record<string, unknown>): string | undefined {
    if (typeof members !== 'object' || members === null || Array.isArray(members) || !isPlainPrototype(members)) return undefined;
    return this.run(() => this.writeObject(members, extra, 0));
  }

  /** canonicalize(value), or undefined where it would throw. */
  write(value: unknown): string | undefined {
    return this.run(() => this.writeValue(value, 0));
  }

  private run(write: () => string): string | undefined {
    try {
      this.escaping = false;
      this.needsEscape = false;
      const text = write();
      if (!this.needsEscape) return text;
      this.escaping = true;
      return write();
    } catch (error) {
      if (error === GIVE_UP) return undefined;
      throw error;
    }
  }

  private writeValue(value: unknown, depth: number): string {
    switch (typeof value) {
      case 'string':
        return this.writeString(value);
      case 'number':
        return writeNumber(value);
      case 'boolean':
        return value ? 'true' : 'false';
      case 'object': {
        if (value === null) return 'null';
        if (depth >= MAX_DEPTH) throw GIVE_UP;
        if (Array.isArray(value)) {
          const items = value as unknown[];
          const length = items.length;
          if (length === 0) return '[]';
          let out = '[' + this.writeValue(items[0], depth + 1);
          for (let i = 1; i < length; i++) out += ',' + this.writeValue(items[i], depth + 1);
          return out + ']';
        }
        if (!isPlainPrototype(value)) throw GIVE_UP;
        return this.writeObject(value as Record<string, unknown>, undefined, depth);
      }
      default:
        throw GIVE_UP;
    }
  }

  /** The members of `record` (and of `extra`), in canonical order, each value read once. */
  private writeObject(record: Record<string, unknown>, extra: Record<string, unknown> | undefined, depth: number): string {
    const names = Object.keys(record);
    const extraNames = extra === undefined ? undefined : Object.keys(extra);
    if (names.length === 0 && (extraNames === undefined || extraNames.length === 0)) return '{}';
    const shape = this.shapeOf(names, extraNames);
    const { order, prefixes } = shape;
    const split = names.length;
    let out = '{';
    for (let p = 0; p < order.length; p++) {
      const at = order[p]!;
      const member = at < split ? record[names[at]!] : extra![extraNames![at - split]!];
      out += prefixes[p]! + this.writeValue(member, depth + 1);
    }
    return out + '}';
  }

  private shapeOf(names: string[], extraNames: string[] | undefined): Shape {
    const bucketName = names.length > 0 ? names[0]! : '';
    const bucket = this.shapes.get(bucketName);
    if (bucket !== undefined) {
      for (const shape of bucket) {
        if (
          sameNames(shape.names, names) &&
          (extraNames === undefined
            ? shape.extraNames === undefined
            : shape.extraNames !== undefined && sameNames(shape.extraNames, extraNames))
        ) {
          return shape;
        }
      }
    }
    const shape = newShape(names, extraNames);
    if (this.shapeCount < MAX_SHAPES && shape.order.length <= MAX_SHAPE_NAMES) {
      this.shapeCount++;
      if (bucket === undefined) this.shapes.set(bucketName, [shape]);
      else bucket.push(shape);
    }
    return shape;
  }

  /** The RFC 8785 string form: raw between quotes when nothing needs an escape (checked for the whole pass in run). */
  private writeString(text: string): string {
    if (!isWellFormed(text)) throw GIVE_UP;
    if (this.escaping) {
      // For a well-formed string JSON.stringify is exactly the RFC 8785 string form.
      return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : '"' + text + '"';
    }
    // Checked string by string: gathering the values into one string for a single check cost a
    // rope of every value and its flattening (0.5 µs of a 2.9 µs decision record).
    if (!this.needsEscape && NEEDS_ESCAPE.test(text)) this.needsEscape = true;
    return '"' + text + '"';
  }
}

/** A shape's canonical order and rendered names; gives up on `__proto__`, a lone surrogate or a name in both lists. */
function newShape(names: string[], extraNames: string[] | undefined): Shape {
  const all = extraNames === undefined ? names : names.concat(extraNames);
  const order = all.map((_, i) => i);
  // UTF-16 code unit order (RFC 8785 section 3.2.3), as the default sort compares strings.
  order.sort((a, b) => (all[a]! < all[b]! ? -1 : all[a]! > all[b]! ? 1 : 0));
  const prefixes: string[] = [];
  for (let p = 0; p < order.length; p++) {
    const name = all[order[p]!]!;
    // Equal neighbours: a name in both members and extra (canonicalizeWith refuses it).
    if (p > 0 && name === all[order[p - 1]!]) throw GIVE_UP;
    if (name === RESERVED_MEMBER_NAME || !isWellFormed(name)) throw GIVE_UP;
    prefixes.push((p > 0 ? ',' : '') + JSON.stringify(name) + ':');
  }
  return { names: names.slice(), extraNames: extraNames?.slice(), order, prefixes };
}

/** ECMAScript Number::toString of a finite number within the safe range, as canonicalize writes it (-0 gives "0"). */
function writeNumber(value: number): string {
  if (Number.isInteger(value)) {
    if (value >= 0) {
      if (value <= SMALL) return String(value);
      if (value <= MAX_SAFE) return largeInteger(value);
    } else {
      if (value >= -SMALL) return String(value);
      if (value >= -MAX_SAFE) return '-' + largeInteger(-value);
    }
    throw GIVE_UP;
  }
  // Not an integer: NaN or infinite (refused), or a fraction (every double past 2^53 is an integer).
  if (!Number.isFinite(value)) throw GIVE_UP;
  return String(value);
}
