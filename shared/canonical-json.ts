/**
 * RFC 8785 (JCS) canonical JSON and an RFC 7493 (I-JSON) strict parser.
 *
 * This is the byte form Countersign signs and hashes, so both directions are strict:
 *
 * - `parseStrictJson` is a hand-written parser for the exact RFC 8259 grammar. Unlike
 *   `JSON.parse` it rejects duplicate member names (compared after unescaping), unpaired
 *   UTF-16 surrogates (escaped or raw), numbers outside the I-JSON safe range, non-finite
 *   numbers and nesting deeper than `maxDepth`.
 * - `assertIJson` applies the same rules to an in-memory value, plus the ones only an
 *   in-memory value can break (NaN, undefined, functions, bigint, class instances, ...).
 * - `canonicalize` writes the RFC 8785 form: members sorted by UTF-16 code units, ECMAScript
 *   number and string serialization, no whitespace.
 *
 * Number rule (one rule for both directions): a finite number whose magnitude is greater
 * than Number.MAX_SAFE_INTEGER (2^53 - 1) is rejected with `json_unsafe_integer`. Every
 * double of that magnitude is an integer, so this covers `9007199254740993`, `1e300` and
 * `1.5e300` alike. A literal that overflows to infinity (`1e400`) is `json_non_finite`.
 * A literal that underflows (`1e-400`) is accepted and is the number 0. `-0` is accepted
 * and canonicalizes to `0`.
 *
 * Reserved member name: `__proto__` is refused in both directions with `json_reserved_member`
 * (at any depth, escaped or not). A JavaScript object cannot hold that member faithfully:
 * object literals, `Object.assign`, spreads and schema libraries turn it into a prototype
 * change or drop it, so a signature over the parsed value would cover fewer bytes than the
 * text carried. Every other name (`constructor`, `toString`, ...) is an ordinary own member.
 *
 * Depth: an array or object that is not inside any other has depth 1; a value nested in
 * more than `maxDepth` (default 64) arrays/objects is `json_too_deep`. Scalars add no depth.
 *
 * Error offsets are UTF-16 code-unit indexes into the parsed string.
 */
import { CountersignError, quote, type ErrorCode } from './errors.js';
import { utf8 } from './encoding.js';

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface StrictParseOptions {
  /** Maximum number of nested arrays/objects (default 64, at most 4096). */
  maxDepth?: number;
}

const DEFAULT_MAX_DEPTH = 64;
/** Upper bound on maxDepth so that the recursive walkers can never overflow the stack. */
const MAX_MAX_DEPTH = 4096;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Matches an unpaired surrogate: in `u` mode a well-formed pair is one astral code point. */
const LONE_SURROGATE = /\p{Cs}/u;
const LONE_SURROGATE_ALL = /\p{Cs}/gu;

function resolveMaxDepth(options: StrictParseOptions | undefined): number {
  const maxDepth = options?.maxDepth;
  if (maxDepth === undefined) return DEFAULT_MAX_DEPTH;
  if (!Number.isInteger(maxDepth) || maxDepth < 0 || maxDepth > MAX_MAX_DEPTH) {
    // A programming error, not a data error: it never reaches a caller as a protocol code.
    throw new RangeError(`maxDepth must be an integer from 0 to ${MAX_MAX_DEPTH}`);
  }
  return maxDepth;
}

// ---------------------------------------------------------------------------------------
// Strict parser
// ---------------------------------------------------------------------------------------

function parseError(code: ErrorCode, message: string, offset: number): CountersignError {
  return new CountersignError(code, `${message} at offset ${offset}`, { details: { offset } });
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/**
 * The one member name no JavaScript object holds faithfully (see the file comment). Refused by
 * the parser and by the writers, so signed bytes and the parsed value can never differ by it.
 */
export const RESERVED_MEMBER_NAME = '__proto__';

/** A run of code units that may appear raw in a string with no further checks. */
const PLAIN_RUN = /[^"\\\u0000-\u001f\ud800-\udfff]*/y;

class StrictParser {
  private pos = 0;
  private readonly len: number;

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {
    this.len = text.length;
  }

  parse(): JsonValue {
    if (this.len === 0) throw parseError('json_invalid', 'empty input', 0);
    this.skipWhitespace();
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos < this.len) {
      throw parseError('json_invalid', `unexpected ${this.describe(this.pos)} after the JSON value`, this.pos);
    }
    return value;
  }

  /** A short lowercase description of what sits at `at`, for error messages. */
  private describe(at: number): string {
    if (at >= this.len) return 'end of input';
    const cp = this.text.codePointAt(at)!;
    // Printable ASCII is quoted; anything else (controls, BOM, surrogates, ...) is named.
    if (cp > 0x20 && cp < 0x7f) return `character ${quote(String.fromCharCode(cp))}`;
    return `character u+${cp.toString(16).padStart(4, '0')}`;
  }

  private expected(what: string, at: number): CountersignError {
    return parseError('json_invalid', `expected ${what}, found ${this.describe(at)}`, at);
  }

  private skipWhitespace(): void {
    const text = this.text;
    let pos = this.pos;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
    this.pos = pos;
  }

  /** `depth` is the number of arrays/objects that enclose the value. */
  private parseValue(depth: number): JsonValue {
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case 0x7b /* { */:
        return this.parseObject(depth + 1);
      case 0x5b /* [ */:
        return this.parseArray(depth + 1);
      case 0x22 /* " */:
        return this.parseString();
      case 0x74 /* t */:
        this.parseLiteral('true');
        return true;
      case 0x66 /* f */:
        this.parseLiteral('false');
        return false;
      case 0x6e /* n */:
        this.parseLiteral('null');
        return null;
      default:
        if (c === 0x2d || isDigit(c)) return this.parseNumber();
        throw this.expected('a JSON value', this.pos);
    }
  }

  private parseLiteral(word: string): void {
    if (this.text.startsWith(word, this.pos)) {
      this.pos += word.length;
      return;
    }
    let at = this.pos;
    for (let i = 0; i < word.length && this.text.charCodeAt(at) === word.charCodeAt(i); i++) at++;
    throw this.expected(`the literal ${word}`, at);
  }

  private checkDepth(depth: number): void {
    if (depth > this.maxDepth) {
      throw parseError('json_too_deep', `nesting is deeper than ${this.maxDepth}`, this.pos);
    }
  }

  private parseObject(depth: number): JsonObject {
    this.checkDepth(depth);
    const text = this.text;
    const result: JsonObject = {};
    this.pos++;
    this.skipWhitespace();
    if (text.charCodeAt(this.pos) === 0x7d /* } */) {
      this.pos++;
      return result;
    }
    for (;;) {
      if (text.charCodeAt(this.pos) !== 0x22) throw this.expected('a member name', this.pos);
      const keyOffset = this.pos;
      const key = this.parseString();
      if (key === RESERVED_MEMBER_NAME) {
        throw parseError('json_reserved_member', `member name ${quote(key)} cannot be represented faithfully`, keyOffset);
      }
      if (Object.hasOwn(result, key)) {
        throw parseError('json_duplicate_key', `duplicate member name ${quote(key)}`, keyOffset);
      }
      this.skipWhitespace();
      if (text.charCodeAt(this.pos) !== 0x3a /* : */) throw this.expected('":"', this.pos);
      this.pos++;
      this.skipWhitespace();
      result[key] = this.parseValue(depth);
      this.skipWhitespace();
      const c = text.charCodeAt(this.pos);
      if (c === 0x2c /* , */) {
        this.pos++;
        this.skipWhitespace();
        if (text.charCodeAt(this.pos) === 0x7d) throw parseError('json_invalid', 'trailing comma in object', this.pos);
        continue;
      }
      if (c === 0x7d) {
        this.pos++;
        return result;
      }
      throw this.expected('"," or "}"', this.pos);
    }
  }

  private parseArray(depth: number): JsonValue[] {
    this.checkDepth(depth);
    const text = this.text;
    const result: JsonValue[] = [];
    this.pos++;
    this.skipWhitespace();
    if (text.charCodeAt(this.pos) === 0x5d /* ] */) {
      this.pos++;
      return result;
    }
    for (;;) {
      result.push(this.parseValue(depth));
      this.skipWhitespace();
      const c = text.charCodeAt(this.pos);
      if (c === 0x2c /* , */) {
        this.pos++;
        this.skipWhitespace();
        if (text.charCodeAt(this.pos) === 0x5d) throw parseError('json_invalid', 'trailing comma in array', this.pos);
        continue;
      }
      if (c === 0x5d) {
        this.pos++;
        return result;
      }
      throw this.expected('"," or "]"', this.pos);
    }
  }

  /** Error for a code unit that may not appear raw in a string (control char or end). */
  private badStringChar(at: number): CountersignError {
    if (at >= this.len) return parseError('json_invalid', 'unterminated string', at);
    const c = this.text.charCodeAt(at);
    const hexCode = c.toString(16).padStart(4, '0');
    return parseError('json_invalid', `unescaped control character u+${hexCode} in string`, at);
  }

  private loneSurrogate(at: number): CountersignError {
    return parseError('json_lone_surrogate', 'unpaired surrogate in string', at);
  }

  /** Parses a string starting at the opening quote; the fast path has no escapes. */
  private parseString(): string {
    const text = this.text;
    const start = this.pos + 1;
    let i = start;
    let budget = 16;
    for (;;) {
      if (--budget === 0) {
        // Long string: let the regex engine skip the run of plain code units.
        PLAIN_RUN.lastIndex = i;
        PLAIN_RUN.test(text);
        i = PLAIN_RUN.lastIndex;
        budget = 16;
      }
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        this.pos = i + 1;
        return text.slice(start, i);
      }
      if (c === 0x5c) return this.parseStringSlow(start, i);
      // `!(c >= 0x20)` also catches NaN, i.e. the end of the text.
      if (!(c >= 0x20)) throw this.badStringChar(i);
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = text.charCodeAt(i + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          i += 2;
          continue;
        }
        throw this.loneSurrogate(i);
      }
      i++;
    }
  }

  /** Reads the 4 hex digits of a `\u` escape whose backslash is at `at`. */
  private readUnicodeEscape(at: number): number {
    const text = this.text;
    let value = 0;
    for (let k = 2; k < 6; k++) {
      const h = hexValue(text.charCodeAt(at + k));
      if (h < 0) {
        throw parseError('json_invalid', `invalid unicode escape ${quote(text.slice(at, at + 6))}`, at);
      }
      value = (value << 4) | h;
    }
    return value;
  }

  private parseStringSlow(start: number, firstEscape: number): string {
    const text = this.text;
    let out = text.slice(start, firstEscape);
    let i = firstEscape;
    let runStart = i;
    let budget = 16;
    for (;;) {
      if (--budget === 0) {
        PLAIN_RUN.lastIndex = i;
        PLAIN_RUN.test(text);
        i = PLAIN_RUN.lastIndex;
        budget = 16;
      }
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(runStart, i);
        this.pos = i + 1;
        return out;
      }
      if (c === 0x5c) {
        out += text.slice(runStart, i);
        const e = text.charCodeAt(i + 1);
        switch (e) {
          case 0x22:
            out += '"';
            break;
          case 0x5c:
            out += '\\';
            break;
          case 0x2f:
            out += '/';
            break;
          case 0x62:
            out += '\b';
            break;
          case 0x66:
            out += '\f';
            break;
          case 0x6e:
            out += '\n';
            break;
          case 0x72:
            out += '\r';
            break;
          case 0x74:
            out += '\t';
            break;
          case 0x75 /* u */: {
            const unit = this.readUnicodeEscape(i);
            if (unit >= 0xd800 && unit <= 0xdbff) {
              // A high surrogate escape must be followed at once by a low surrogate escape.
              if (text.charCodeAt(i + 6) !== 0x5c || text.charCodeAt(i + 7) !== 0x75) {
                throw parseError('json_lone_surrogate', `unpaired surrogate escape ${quote(text.slice(i, i + 6))}`, i);
              }
              const low = this.readUnicodeEscape(i + 6);
              if (low < 0xdc00 || low > 0xdfff) {
                throw parseError('json_lone_surrogate', `unpaired surrogate escape ${quote(text.slice(i, i + 6))}`, i);
              }
              out += String.fromCharCode(unit, low);
              i += 12;
            } else if (unit >= 0xdc00 && unit <= 0xdfff) {
              throw parseError('json_lone_surrogate', `unpaired surrogate escape ${quote(text.slice(i, i + 6))}`, i);
            } else {
              out += String.fromCharCode(unit);
              i += 6;
            }
            runStart = i;
            continue;
          }
          default:
            if (i + 1 >= this.len) throw parseError('json_invalid', 'unterminated string', i + 1);
            throw parseError('json_invalid', `invalid escape ${quote(text.slice(i, i + 2))}`, i);
        }
        i += 2;
        runStart = i;
        continue;
      }
      if (!(c >= 0x20)) throw this.badStringChar(i);
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = text.charCodeAt(i + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          i += 2;
          continue;
        }
        throw this.loneSurrogate(i);
      }
      i++;
    }
  }

  private parseNumber(): number {
    const text = this.text;
    const start = this.pos;
    let i = start;
    let c = text.charCodeAt(i);
    if (c === 0x2d /* - */) c = text.charCodeAt(++i);
    if (c === 0x30 /* 0 */) {
      c = text.charCodeAt(++i);
      if (isDigit(c)) throw parseError('json_invalid', 'leading zero in number', start);
    } else if (c >= 0x31 && c <= 0x39) {
      do c = text.charCodeAt(++i);
      while (isDigit(c));
    } else {
      throw this.expected('a digit', i);
    }
    if (c === 0x2e /* . */) {
      c = text.charCodeAt(++i);
      if (!isDigit(c)) throw this.expected('a digit after the decimal point', i);
      do c = text.charCodeAt(++i);
      while (isDigit(c));
    }
    if (c === 0x65 || c === 0x45 /* e E */) {
      c = text.charCodeAt(++i);
      if (c === 0x2b || c === 0x2d) c = text.charCodeAt(++i);
      if (!isDigit(c)) throw this.expected('a digit in the exponent', i);
      do c = text.charCodeAt(++i);
      while (isDigit(c));
    }
    this.pos = i;
    const literal = text.slice(start, i);
    // The literal matches the RFC 8259 grammar, a subset of StringNumericLiteral, so
    // Number() gives the correctly rounded IEEE-754 value.
    const value = Number(literal);
    if (!Number.isFinite(value)) {
      throw parseError('json_non_finite', `number ${quote(literal)} is out of the finite range`, start);
    }
    if (value > MAX_SAFE || value < -MAX_SAFE) {
      throw parseError('json_unsafe_integer', `number ${quote(literal)} is outside the safe integer range`, start);
    }
    return value;
  }
}

/**
 * Parse JSON text with I-JSON rules. Throws CountersignError with code json_invalid |
 * json_duplicate_key | json_reserved_member (a `__proto__` member) | json_unsafe_integer |
 * json_non_finite (a literal that overflows, such as 1e400) | json_lone_surrogate |
 * json_too_deep. `details.offset` is the UTF-16 index of the problem. Objects in the result
 * are ordinary objects (Object.prototype) holding exactly the members of the text.
 */
export function parseStrictJson(text: string, options?: StrictParseOptions): JsonValue {
  const maxDepth = resolveMaxDepth(options);
  if (typeof text !== 'string') {
    throw new CountersignError('json_invalid', 'the input is not a string', { details: { offset: 0 } });
  }
  return new StrictParser(text, maxDepth).parse();
}

// ---------------------------------------------------------------------------------------
// In-memory validation and canonicalization
// ---------------------------------------------------------------------------------------

type PathSegment = string | number;

/** RFC 6901 JSON Pointer for error messages. */
function pointer(path: readonly PathSegment[]): string {
  let out = '';
  for (const segment of path) {
    out += '/' + (typeof segment === 'number' ? String(segment) : segment.replace(/~/g, '~0').replace(/\//g, '~1'));
  }
  return out;
}

const MAX_DETAIL_PATH = 200;

function valueError(code: ErrorCode, message: string, path: readonly PathSegment[]): CountersignError {
  let where = pointer(path);
  if (where.length > MAX_DETAIL_PATH) where = `${where.slice(0, MAX_DETAIL_PATH)}…`;
  // details must stay valid I-JSON themselves (they may be canonicalized into a response),
  // so an unpaired surrogate from a bad member name becomes U+FFFD.
  where = where.replace(LONE_SURROGATE_ALL, '\ufffd');
  const at = where === '' ? 'at the top level' : `at path ${quote(where)}`;
  return new CountersignError(code, `${message} ${at}`, { details: { path: where } });
}

function describeUnsupported(value: unknown): string {
  switch (typeof value) {
    case 'undefined':
      return 'undefined (or an array hole)';
    case 'function':
      return 'a function';
    case 'bigint':
      return 'a bigint';
    case 'symbol':
      return 'a symbol';
    default: {
      const tag = Object.prototype.toString.call(value).slice(8, -1).toLowerCase();
      return `a non-plain object (${tag})`;
    }
  }
}

function checkString(value: string, path: PathSegment[], isKey: boolean): void {
  if (LONE_SURROGATE.test(value)) {
    throw valueError(
      'json_lone_surrogate',
      isKey ? `member name ${quote(value)} has an unpaired surrogate` : 'string has an unpaired surrogate',
      path,
    );
  }
}

/** A member name: no unpaired surrogate, and never the reserved `__proto__`. */
function checkMemberName(key: string, path: PathSegment[]): void {
  if (key === RESERVED_MEMBER_NAME) {
    throw valueError('json_reserved_member', `member name ${quote(key)} cannot be represented faithfully`, path);
  }
  checkString(key, path, true);
}

/** Code units that need an escape, or a surrogate check, when writing a string. */
const NEEDS_CARE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** RFC 8785 string form after the lone-surrogate check (checkString). */
function writeString(value: string, path: PathSegment[], isKey: boolean): string {
  if (!NEEDS_CARE.test(value)) return '"' + value + '"';
  checkString(value, path, isKey);
  // For well-formed strings JSON.stringify is exactly the RFC 8785 string form.
  return JSON.stringify(value);
}

function checkNumber(value: number, path: PathSegment[]): void {
  if (!Number.isFinite(value)) throw valueError('json_non_finite', `number ${String(value)} is not finite`, path);
  if (value > MAX_SAFE || value < -MAX_SAFE) {
    throw valueError('json_unsafe_integer', `number ${String(value)} is outside the safe integer range`, path);
  }
}

function isPlainPrototype(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function checkValue(value: unknown, depth: number, maxDepth: number, path: PathSegment[]): void {
  switch (typeof value) {
    case 'string':
      checkString(value, path, false);
      return;
    case 'number':
      checkNumber(value, path);
      return;
    case 'boolean':
      return;
    case 'object': {
      if (value === null) return;
      if (depth >= maxDepth) throw valueError('json_too_deep', `nesting is deeper than ${maxDepth}`, path);
      if (Array.isArray(value)) {
        const items = value as unknown[];
        for (let i = 0; i < items.length; i++) {
          path.push(i);
          checkValue(items[i], depth + 1, maxDepth, path);
          path.pop();
        }
        return;
      }
      if (!isPlainPrototype(value)) {
        throw valueError('json_unsupported_value', `${describeUnsupported(value)} cannot be represented in JSON`, path);
      }
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) {
        path.push(key);
        checkMemberName(key, path);
        checkValue(record[key], depth + 1, maxDepth, path);
        path.pop();
      }
      return;
    }
    default:
      throw valueError('json_unsupported_value', `${describeUnsupported(value)} cannot be represented in JSON`, path);
  }
}

/**
 * Validate an in-memory value against the I-JSON rules: finite numbers within the safe
 * integer range (json_non_finite, json_unsafe_integer), no unpaired surrogates in strings or
 * member names (json_lone_surrogate), no own `__proto__` member (json_reserved_member), nesting within maxDepth (json_too_deep; a cyclic value
 * reports this too), and only null/boolean/number/string, arrays and plain objects
 * (prototype Object.prototype or null) — anything else is json_unsupported_value.
 * `details.path` is the RFC 6901 pointer of the offending value.
 */
export function assertIJson(value: unknown, options?: StrictParseOptions): asserts value is JsonValue {
  checkValue(value, 0, resolveMaxDepth(options), []);
}

/**
 * Validates and serializes in a single pass, reading every property exactly once, so a
 * getter or proxy cannot show one value to the validator and another to the serializer.
 * The checks are the ones checkValue makes; members are visited in sorted order, so when a
 * value breaks several rules the one reported can differ from assertIJson's (same codes).
 */
function writeCanonical(value: unknown, depth: number, path: PathSegment[]): string {
  switch (typeof value) {
    case 'string':
      return writeString(value, path, false);
    case 'number':
      checkNumber(value, path);
      // ECMAScript Number::toString; -0 gives "0".
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (depth >= DEFAULT_MAX_DEPTH) {
        throw valueError('json_too_deep', `nesting is deeper than ${DEFAULT_MAX_DEPTH}`, path);
      }
      if (Array.isArray(value)) {
        const items = value as unknown[];
        const length = items.length;
        if (length === 0) return '[]';
        let out = '[';
        for (let i = 0; i < length; i++) {
          if (i > 0) out += ',';
          path.push(i);
          out += writeCanonical(items[i], depth + 1, path);
          path.pop();
        }
        return out + ']';
      }
      if (!isPlainPrototype(value)) {
        throw valueError('json_unsupported_value', `${describeUnsupported(value)} cannot be represented in JSON`, path);
      }
      return writeMembers(value as Record<string, unknown>, undefined, depth, path);
    }
    default:
      throw valueError('json_unsupported_value', `${describeUnsupported(value)} cannot be represented in JSON`, path);
  }
}

/** Up to this many names are sorted in place by insertion; more by Array.prototype.sort. */
const INSERTION_SORT_NAMES = 24;

/**
 * `names` (a fresh Object.keys list: distinct strings) in RFC 8785 order, section 3.2.3: by UTF-16
 * code units, which is what both `>` on two strings and the default sort compare. The default
 * sort allocates working arrays of its own, about 1 KB for a handful of names, for every object
 * of every canonical text (a signed call, its digest and stored text, a token's claims: issue
 * #12); an insertion sort of an object's few names allocates nothing. The names are distinct, so
 * the two orders are the same order.
 */
function sortNames(names: string[]): string[] {
  const length = names.length;
  if (length > INSERTION_SORT_NAMES) return names.sort();
  for (let i = 1; i < length; i++) {
    const name = names[i]!;
    let j = i - 1;
    while (j >= 0 && names[j]! > name) {
      names[j + 1] = names[j]!;
      j--;
    }
    names[j + 1] = name;
  }
  return names;
}

/**
 * The members of `record` (and of `extra`, when given: names it holds are not in `record`), in
 * canonical order. Each value is read exactly once.
 */
function writeMembers(
  record: Record<string, unknown>,
  extra: Record<string, unknown> | undefined,
  depth: number,
  path: PathSegment[],
): string {
  const keys = sortNames(extra === undefined ? Object.keys(record) : Object.keys(record).concat(Object.keys(extra)));
  if (keys.length === 0) return '{}';
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    path.push(key);
    if (key === RESERVED_MEMBER_NAME) checkMemberName(key, path);
    if (i > 0) out += ',';
    const member = extra !== undefined && Object.hasOwn(extra, key) ? extra[key] : record[key];
    out += writeString(key, path, true) + ':' + writeCanonical(member, depth + 1, path);
    path.pop();
  }
  return out + '}';
}

/**
 * RFC 8785 canonical JSON text. Applies the assertIJson rules (default maxDepth) and throws
 * the same CountersignError codes.
 */
export function canonicalize(value: unknown): string {
  return writeCanonical(value, 0, []);
}

/**
 * canonicalize({ ...members, ...extra }) without building that object: the same text, the same
 * checks and codes. A spread copy of a 20-member audit event made the canonical walk three
 * times slower than the walk itself (issue #12), and the audit log adds `kind`, `at` and `seq`
 * to every event it appends. A name in both is a programming error (json_duplicate_key).
 */
export function canonicalizeWith(members: Record<string, unknown>, extra: Record<string, JsonValue>): string {
  if (!isPlainPrototype(members)) {
    throw valueError('json_unsupported_value', `${describeUnsupported(members)} cannot be represented in JSON`, []);
  }
  for (const key of Object.keys(extra)) {
    if (Object.hasOwn(members, key)) throw valueError('json_duplicate_key', `duplicate member name ${quote(key)}`, []);
  }
  return writeMembers(members, extra, 0, []);
}

/** UTF-8 bytes of canonicalize(value). */
export function canonicalBytes(value: unknown): Uint8Array {
  return utf8(canonicalize(value));
}
