/**
 * Request ids: `req_`, the creation time in milliseconds as 8 characters whose byte order is
 * time order, then 16 random bytes (base64url, as before). Every id is as unguessable as when it
 * was all random; what changes is where a new id sorts. Several b-trees are keyed by request id
 * (the requests table's primary key, tokens by request, the audit log's by-request index,
 * approvals): with random ids every new row went to a random page of each, one page written per
 * row and index, and that grew with the table (issue #12: the audit log's by-request index alone
 * wrote about 1,300 of the 2,400 WAL bytes of an appended entry at 5,000 entries). Ids that begin
 * with their time land beside the newest rows, so one commit's rows share a page or two. Ids made
 * before this change (all random) stay valid; new ones cluster in one place among them.
 */
import { randomId } from '../../../shared/encoding.js';

/** base64url's 64 characters in ASCII order, so that comparing the bytes of two digits compares their values. */
const ORDERED_DIGITS = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
/** 8 digits of 6 bits: 48 bits of milliseconds (until the year 10889). */
const TIME_DIGITS = 8;

const LAST_TIME = 2 ** (6 * TIME_DIGITS) - 1;

/**
 * The 8-character time prefix of `ms`; byte order is numeric order. A time outside 0..2^48-1 (or
 * not a number) is clamped: the prefix only orders ids, the random part makes them unique.
 */
export function orderedTime(ms: number): string {
  let rest = Number.isFinite(ms) ? Math.min(LAST_TIME, Math.max(0, Math.floor(ms))) : 0;
  let out = '';
  for (let i = 0; i < TIME_DIGITS; i++) {
    out = ORDERED_DIGITS[rest % 64]! + out;
    rest = Math.floor(rest / 64);
  }
  return out;
}

/**
 * A request id for a request created at `now`: 16 random bytes from the identifier pool
 * (shared/encoding.ts randomId), or `random` (16 bytes) where a test or bench passes its own.
 */
export function newRequestId(now: number, random?: Uint8Array): string {
  if (random !== undefined && random.length !== 16) throw new RangeError('a request id takes 16 random bytes');
  const tail = random === undefined ? randomId(16) : Buffer.from(random.buffer, random.byteOffset, random.byteLength).toString('base64url');
  return `req_${orderedTime(now)}${tail}`;
}

/** Each character's ORDERED_DIGITS value (0 for any other character). */
const DIGIT_OF = new Uint8Array(128);
for (let i = 0; i < ORDERED_DIGITS.length; i++) DIGIT_OF[ORDERED_DIGITS.charCodeAt(i)] = i;
const digitAt = (id: string, at: number): number => {
  const code = id.charCodeAt(at);
  return code < 128 ? DIGIT_OF[code]! : 0;
};

/**
 * The audit log's integer key for a request id (migration 22): the id's 8 time digits (42 bits of
 * milliseconds, until the year 2109) then 11 bits of its random part, 53 bits in all, so keys of
 * new ids sort by time like the ids (an index page or two per commit) and compare as one integer
 * instead of a 38-character text. It only narrows a search: two ids may share a key (the same
 * millisecond and 11 bits), so every look-up also compares the record's own requestId. Any
 * string has a key (ids from before the time prefix, or of another form, get an arbitrary one).
 */
export function requestKey(id: string): number {
  let time = 0;
  for (let at = 4; at < 4 + TIME_DIGITS; at++) time = time * 64 + digitAt(id, at);
  const random = (digitAt(id, 4 + TIME_DIGITS) * 64 + digitAt(id, 5 + TIME_DIGITS)) >> 1;
  return (time % 2 ** 42) * 2048 + random;
}
