/**
 * RFC 8785 canonical JSON written straight into UTF-8 bytes: the audit append's fast path
 * (issue #12). canonical-json.ts stays the one canonical form; this writer produces exactly its
 * bytes for the values it accepts and accepts only values canonicalize would write without an
 * error. On anything else (a lone surrogate, an unsafe or non-finite number, a non-plain object,
 * undefined, a `__proto__` member, nesting past the depth limit, a name in both `members` and
 * `extra`) it gives up and returns undefined, and the caller runs canonicalize/canonicalizeWith,
 * which throws the error code (or, never in practice, writes the text). test/unit/
 * canonical-utf8.test.ts holds the two to the same bytes over the JCS vectors and generated values.
 *
 * Why bytes: the audit leaf hashes the record's UTF-8 bytes, so a string built piece by piece
 * was then flattened, scanned by a regex per member and encoded again. Here each string is
 * scanned once and its bytes copied in that pass.
 */
import { RESERVED_MEMBER_NAME } from './canonical-json.js';

/** canonical-json.ts's limit: a value nested in more than this many arrays/objects is refused. */
const MAX_DEPTH = 64;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const HEX = '0123456789abcdef';

/** The two-character escapes JSON.stringify (and so RFC 8785) uses for these control codes. */
const SHORT_ESCAPE: Record<number, number> = { 0x08: 0x62, 0x09: 0x74, 0x0a: 0x6e, 0x0c: 0x66, 0x0d: 0x72 };

/** Thrown inside the writer when it gives up and caught at its entry; never leaves it. One instance: no stack per throw. */
class GiveUp extends Error {}
const GIVE_UP = new GiveUp('the canonical writer gave up');

function isPlainPrototype(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Reusable: one writer keeps one growing byte array, so an append allocates nothing for its
 * record. `bytes` is valid up to the returned end until the next write.
 */
export class CanonicalUtf8Writer {
  bytes: Uint8Array;
  private pos = 0;

  constructor(initialBytes = 4096) {
    this.bytes = new Uint8Array(initialBytes);
  }

  /**
   * Writes canonicalizeWith(members, extra) at `offset` (bytes before it are left alone: the
   * audit leaf's 0x00 prefix goes there). Returns where the text ends, or undefined when
   * canonicalizeWith would throw (or the value is outside this writer's happy path).
   */
  writeWith(members: Record<string, unknown>, extra: Record<string, unknown>, offset: number): number | undefined {
    this.pos = offset;
    try {
      if (typeof members !== 'object' || members === null || Array.isArray(members) || !isPlainPrototype(members)) return undefined;
      const keys = Object.keys(members);
      const extraKeys = Object.keys(extra);
      for (const key of extraKeys) if (Object.hasOwn(members, key)) return undefined;
      this.writeObject(members, keys.concat(extraKeys).sort(), extra, 0);
      return this.pos;
    } catch (error) {
      if (error === GIVE_UP) return undefined;
      throw error;
    }
  }

  /** Writes canonicalize(value) at `offset`; returns the end, or undefined as writeWith. */
  write(value: unknown, offset: number): number | undefined {
    this.pos = offset;
    try {
      this.writeValue(value, 0);
      return this.pos;
    } catch (error) {
      if (error === GIVE_UP) return undefined;
      throw error;
    }
  }

  private room(n: number): void {
    if (this.pos + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.pos + n) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.bytes.subarray(0, this.pos));
    this.bytes = bigger;
  }

  private writeValue(value: unknown, depth: number): void {
    switch (typeof value) {
      case 'string':
        this.writeString(value);
        return;
      case 'number':
        this.writeNumber(value);
        return;
      case 'boolean':
        this.writeAscii(value ? 'true' : 'false');
        return;
      case 'object': {
        if (value === null) {
          this.writeAscii('null');
          return;
        }
        if (depth >= MAX_DEPTH) throw GIVE_UP;
        if (Array.isArray(value)) {
          const items = value as unknown[];
          this.room(1);
          this.bytes[this.pos++] = 0x5b;
          for (let i = 0; i < items.length; i++) {
            if (i > 0) {
              this.room(1);
              this.bytes[this.pos++] = 0x2c;
            }
            this.writeValue(items[i], depth + 1);
          }
          this.room(1);
          this.bytes[this.pos++] = 0x5d;
          return;
        }
        if (!isPlainPrototype(value)) throw GIVE_UP;
        const record = value as Record<string, unknown>;
        this.writeObject(record, Object.keys(record).sort(), undefined, depth);
        return;
      }
      default:
        throw GIVE_UP;
    }
  }

  /** Members named by `sortedKeys`, each read once, from `extra` when it holds the name. */
  private writeObject(
    record: Record<string, unknown>,
    sortedKeys: string[],
    extra: Record<string, unknown> | undefined,
    depth: number,
  ): void {
    this.room(1);
    this.bytes[this.pos++] = 0x7b;
    for (let i = 0; i < sortedKeys.length; i++) {
      const key = sortedKeys[i]!;
      if (key === RESERVED_MEMBER_NAME) throw GIVE_UP;
      if (i > 0) {
        this.room(1);
        this.bytes[this.pos++] = 0x2c;
      }
      this.writeString(key);
      this.room(1);
      this.bytes[this.pos++] = 0x3a;
      this.writeValue(extra !== undefined && Object.hasOwn(extra, key) ? extra[key] : record[key], depth + 1);
    }
    this.room(1);
    this.bytes[this.pos++] = 0x7d;
  }

  private writeNumber(value: number): void {
    if (!Number.isFinite(value) || value > MAX_SAFE || value < -MAX_SAFE) throw GIVE_UP;
    // ECMAScript Number::toString, as canonicalize: -0 gives "0".
    this.writeAscii(String(value));
  }

  /** Text known to be ASCII without escapes (literals and numbers). */
  private writeAscii(text: string): void {
    this.room(text.length);
    const bytes = this.bytes;
    let pos = this.pos;
    for (let i = 0; i < text.length; i++) bytes[pos++] = text.charCodeAt(i);
    this.pos = pos;
  }

  /** The RFC 8785 string form (JSON.stringify's for a well-formed string) in UTF-8. */
  private writeString(text: string): void {
    const length = text.length;
    // At most 6 bytes per code unit (a \u00xx escape), plus the quotes.
    this.room(6 * length + 2);
    const bytes = this.bytes;
    let pos = this.pos;
    bytes[pos++] = QUOTE;
    for (let i = 0; i < length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x80) {
        if (c >= 0x20 && c !== QUOTE && c !== BACKSLASH) {
          bytes[pos++] = c;
        } else if (c === QUOTE || c === BACKSLASH) {
          bytes[pos++] = BACKSLASH;
          bytes[pos++] = c;
        } else {
          const short = SHORT_ESCAPE[c];
          bytes[pos++] = BACKSLASH;
          if (short !== undefined) {
            bytes[pos++] = short;
          } else {
            bytes[pos++] = 0x75; // u
            bytes[pos++] = 0x30;
            bytes[pos++] = 0x30;
            bytes[pos++] = HEX.charCodeAt(c >> 4);
            bytes[pos++] = HEX.charCodeAt(c & 0xf);
          }
        }
      } else if (c < 0x800) {
        bytes[pos++] = 0xc0 | (c >> 6);
        bytes[pos++] = 0x80 | (c & 0x3f);
      } else if (c < 0xd800 || c > 0xdfff) {
        bytes[pos++] = 0xe0 | (c >> 12);
        bytes[pos++] = 0x80 | ((c >> 6) & 0x3f);
        bytes[pos++] = 0x80 | (c & 0x3f);
      } else {
        // A surrogate: only a high one followed by a low one is a code point; a lone one is an error.
        const low = text.charCodeAt(i + 1);
        if (c > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff)) {
          this.pos = pos;
          throw GIVE_UP;
        }
        const cp = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
        bytes[pos++] = 0xf0 | (cp >> 18);
        bytes[pos++] = 0x80 | ((cp >> 12) & 0x3f);
        bytes[pos++] = 0x80 | ((cp >> 6) & 0x3f);
        bytes[pos++] = 0x80 | (cp & 0x3f);
        i++;
      }
    }
    bytes[pos++] = QUOTE;
    this.pos = pos;
  }
}
