/**
 * Stateless desk sign-in challenges (ADR 0019): a begin stores nothing, so no begin, by anyone,
 * can fill a bound or displace another person's sign-in in flight (review3 finding 8). The
 * challenge the key signs carries what the finish needs to trust it:
 *
 *   version (1 byte) | nonce (16 random bytes) | expiry (ms, 8 bytes big-endian) | tag (32 bytes)
 *
 * where tag = HMAC-SHA-256(key, domain | rpId | approver id | the first three fields), each
 * string length-prefixed. The key is this process's (embedded: made at start, so a restart ends
 * the sign-ins in flight as it ends the sessions) or the team's (`team_sign_in_key`, made once by
 * the first hub, like the desk link's secret), never logged. A finish checks the tag (constant
 * time) and the expiry before anything else; single use is enforced only once the key's
 * assertion verified, by recording the challenge's digest in the transaction that opens the
 * session (desk-sessions.ts), so the records are bounded by genuine key taps.
 */
import { createHash, createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { CountersignError, quote } from '../../../shared/errors.js';

const VERSION = 1;
const NONCE_BYTES = 16;
const TAG_BYTES = 32;
const BODY_BYTES = 1 + NONCE_BYTES + 8;
/** Length of a sign-in challenge in base64url (57 bytes: no padding). */
export const SIGN_IN_CHALLENGE_LENGTH = ((BODY_BYTES + TAG_BYTES) / 3) * 4;
const CHALLENGE_PATTERN = new RegExp(`^[A-Za-z0-9_-]{${SIGN_IN_CHALLENGE_LENGTH}}$`);
/** Separates these tags from any other use of the key. */
const DOMAIN = 'countersign desk sign-in challenge v1';

/** A sign-in key as stored or kept (32 random bytes). */
export function newSignInKeyBytes(): Buffer {
  return randomBytes(32);
}

/** A challenge whose tag and expiry held: its expiry and the digest that marks it used. */
export interface CheckedSignInChallenge {
  expiresAt: number;
  /** base64url SHA-256 of the challenge text: the single-use record's key. */
  digest: string;
}

export class SignInChallenges {
  private readonly keyBytes: () => Uint8Array;
  private held: { bytes: Uint8Array; key: KeyObject } | undefined;

  /**
   * `key`: 32 secret bytes (kept only as a KeyObject), or where to read the key in force at each
   * use (a team hub's, which a rotation replaces while the hub runs: challenges made under the
   * old key are then refused); `rpId`: the relying party the challenge is for.
   */
  constructor(
    key: Uint8Array | (() => Uint8Array),
    private readonly rpId: string,
  ) {
    this.keyBytes = typeof key === 'function' ? key : () => key;
    this.key();
  }

  /** The key in force, as a KeyObject made again only when its bytes changed. */
  private key(): KeyObject {
    const bytes = this.keyBytes();
    if (this.held?.bytes !== bytes) {
      if (bytes.length < 32) throw new Error('a sign-in key needs 32 bytes');
      this.held = { bytes, key: createSecretKey(bytes) };
    }
    return this.held.key;
  }

  /** A fresh challenge for `approverId`, answerable until `expiresAt` (ms). */
  issue(approverId: string, expiresAt: number): string {
    const body = Buffer.alloc(BODY_BYTES);
    body.writeUInt8(VERSION, 0);
    randomBytes(NONCE_BYTES).copy(body, 1);
    body.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(expiresAt))), 1 + NONCE_BYTES);
    return Buffer.concat([body, this.tag(approverId, body)]).toString('base64url');
  }

  /**
   * The challenge's expiry and digest when this key made it for `approverId` and it is unexpired
   * at `now`; otherwise challenge_invalid (tampered, another person's, another team's or another
   * start's, or expired). Whether it was already used is the caller's check.
   */
  check(challenge: string, approverId: string, now: number): CheckedSignInChallenge {
    const bytes = CHALLENGE_PATTERN.test(challenge) ? Buffer.from(challenge, 'base64url') : undefined;
    // One spelling only: the text must be exactly what issue() wrote for these bytes.
    if (bytes === undefined || bytes.length !== BODY_BYTES + TAG_BYTES || bytes.toString('base64url') !== challenge)
      throw new CountersignError('challenge_invalid', 'the sign-in challenge is malformed');
    const body = bytes.subarray(0, BODY_BYTES);
    const tag = bytes.subarray(BODY_BYTES);
    if (body.readUInt8(0) !== VERSION || !timingSafeEqual(tag, this.tag(approverId, body)))
      throw new CountersignError(
        'challenge_invalid',
        `the sign-in challenge was not issued here for approver ${quote(approverId)} (altered, another person's, or from an earlier start)`,
      );
    const expiresAt = Number(body.readBigUInt64BE(1 + NONCE_BYTES));
    if (expiresAt <= now) throw new CountersignError('challenge_invalid', 'the sign-in challenge has expired; begin the sign-in again');
    return { expiresAt, digest: createHash('sha256').update(challenge, 'utf8').digest('base64url') };
  }

  private tag(approverId: string, body: Buffer): Buffer {
    const mac = createHmac('sha256', this.key());
    for (const field of [DOMAIN, this.rpId, approverId]) {
      const bytes = Buffer.from(field, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      mac.update(length).update(bytes);
    }
    return mac.update(body).digest();
  }
}
