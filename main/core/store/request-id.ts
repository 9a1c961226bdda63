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
