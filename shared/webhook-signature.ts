/**
 * The signature on Countersign's webhooks, and the check a receiver runs: HMAC-SHA256 with the
 * shared secret over `<t>.<body bytes>`, sent as `Countersign-Signature: t=<unix seconds>,v1=<hex>`
 * (several `v1=` values may appear while a secret is rotated). The timestamp is signed so a
 * captured delivery cannot be replayed outside the tolerance window. Pure TypeScript with
 * WebCrypto: the core signs with it and receivers (Node, Workers, browsers) verify with it.
 * Vectors: test/vectors/webhook-signatures.json.
 *
 * Verify the raw body bytes as received, before parsing them; never re-serialize and then verify.
 */
import { CountersignError } from './errors.js';
import { webCryptoBytes } from './webcrypto.js';

export const WEBHOOK_SIGNATURE_HEADER = 'countersign-signature';
/** The default window (seconds) either side of the receiver's clock. */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

const encoder = new TextEncoder();

function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

function bodyBytes(body: Uint8Array | string): Uint8Array {
  return typeof body === 'string' ? encoder.encode(body) : body;
}

async function hmacHex(secret: string, timestamp: number, body: Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey('raw', webCryptoBytes(encoder.encode(secret)), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  const prefix = encoder.encode(`${timestamp}.`);
  const message = new Uint8Array(prefix.length + body.length);
  message.set(prefix, 0);
  message.set(body, prefix.length);
  return toHex(new Uint8Array(await crypto.subtle.sign('HMAC', key, webCryptoBytes(message))));
}

/** The header value for `body` sent at `timestamp` (unix seconds). */
export async function signWebhook(secret: string, timestamp: number, body: Uint8Array | string): Promise<string> {
  return `t=${timestamp},v1=${await hmacHex(secret, timestamp, bodyBytes(body))}`;
}

/** Constant-time comparison of two equal-length lowercase hex strings. */
function sameHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export interface ParsedWebhookSignature {
  readonly timestamp: number;
  readonly signatures: readonly string[];
}

/** Read the header strictly: `t=<digits>` once, one or more `v1=<64 lowercase hex>`, nothing else. */
export function parseWebhookSignature(header: string | null | undefined): ParsedWebhookSignature {
  const malformed = (why: string) => new CountersignError('webhook_signature_malformed', `the webhook signature header ${why}`);
  if (header === undefined || header === null || header.length === 0) throw malformed('is missing');
  if (header.length > 1024) throw malformed('is longer than 1024 characters');
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? '' : part.slice(eq + 1);
    if (name === 't') {
      if (timestamp !== undefined) throw malformed('has t= twice');
      if (!/^[0-9]{1,12}$/.test(value)) throw malformed('has a t= that is not a whole number of seconds');
      timestamp = Number(value);
    } else if (name === 'v1') {
      if (!/^[0-9a-f]{64}$/.test(value)) throw malformed('has a v1= that is not 64 lowercase hex digits');
      signatures.push(value);
    } else {
      throw malformed(`has an unknown part ${JSON.stringify(name.slice(0, 20))}`);
    }
  }
  if (timestamp === undefined) throw malformed('has no t=');
  if (signatures.length === 0) throw malformed('has no v1=');
  return { timestamp, signatures };
}

export interface VerifyWebhookInput {
  readonly secret: string;
  /** The `Countersign-Signature` header as received. */
  readonly header: string | null | undefined;
  /** The body exactly as received (bytes, or the text decoded from them unchanged). */
  readonly body: Uint8Array | string;
  /** The receiver's clock, unix seconds. */
  readonly now: number;
  readonly toleranceSeconds?: number;
}

/**
 * Check a delivery: throws webhook_signature_malformed, webhook_signature_stale or
 * webhook_signature_invalid; returns the signed timestamp when it verifies. Staleness is checked
 * before the MAC so an old capture is refused without work, and refused either way.
 */
export async function verifyWebhookSignature(input: VerifyWebhookInput): Promise<number> {
  const parsed = parseWebhookSignature(input.header);
  const tolerance = input.toleranceSeconds ?? WEBHOOK_TOLERANCE_SECONDS;
  if (Math.abs(input.now - parsed.timestamp) > tolerance)
    throw new CountersignError(
      'webhook_signature_stale',
      `the webhook signature timestamp ${parsed.timestamp} is more than ${tolerance} s from now (${Math.floor(input.now)})`,
    );
  const expected = await hmacHex(input.secret, parsed.timestamp, bodyBytes(input.body));
  if (!parsed.signatures.some((s) => sameHex(s, expected))) throw new CountersignError('webhook_signature_invalid');
  return parsed.timestamp;
}
