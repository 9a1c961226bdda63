/**
 * The readers of every signed kind hold exactly what was signed: a differential check that the
 * canonical re-serialisation of what the reader parsed equals the signed bytes (agent call
 * envelopes, enrollment requests), over generated values full of Object.prototype names at every
 * depth; and `__proto__`, which no JavaScript object holds faithfully, refused at every depth of
 * each signed structure with json_reserved_member (tokens and approvals refuse it with their own
 * codes, the strict parser's error as the cause).
 */
import { describe, expect, it } from 'vitest';
import { canonicalBytes, canonicalize, parseStrictJson, type JsonObject, type JsonValue } from '../../shared/canonical-json.js';
import { clientRequestSchema, SIGNED_TYPES, type CallPayload } from '../../shared/protocol.js';
import {
  decodeSignature,
  generateAgentKey,
  importAgentKey,
  publicPart,
  signCanonical,
  verifyAgentSignature,
} from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { base64url, randomBytes } from '../../shared/encoding.js';
import { isCountersignError } from '../../shared/errors.js';
import { prng } from '../helpers/prng.js';

const PROTOTYPE_NAMES = [
  ...Object.getOwnPropertyNames(Object.prototype).filter((n) => n !== '__proto__'),
  'prototype',
  'then',
  'toJSON',
  'length',
];

type Rng = () => number;

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)]!;
}

/** A random JSON object, with Object.prototype names as member names at every depth. */
function randomParams(rng: Rng, depth = 0): JsonObject {
  const out: JsonObject = {};
  const size = 1 + Math.floor(rng() * 4);
  for (let i = 0; i < size; i++) {
    const name = rng() < 0.5 ? pick(rng, PROTOTYPE_NAMES) : `k${Math.floor(rng() * 100)}`;
    const roll = rng();
    out[name] =
      depth < 4 && roll < 0.3
        ? randomParams(rng, depth + 1)
        : depth < 4 && roll < 0.45
          ? [randomParams(rng, depth + 1), 'x', 1]
          : roll < 0.7
            ? `v${Math.floor(rng() * 1000)}`
            : Math.floor(rng() * 1e6) / 100;
  }
  return out;
}

/** Every object inside `value` (outermost first). */
function objectsOf(value: unknown): Record<string, unknown>[] {
  if (Array.isArray(value)) return value.flatMap(objectsOf);
  if (typeof value !== 'object' || value === null) return [];
  return [value as Record<string, unknown>, ...Object.values(value).flatMap(objectsOf)];
}

/** `text` with a `__proto__` member added to its index-th object (as a parser that kept it would hold it). */
function withProtoAt(text: string, index: number): string {
  const copy = JSON.parse(text) as unknown;
  Object.defineProperty(objectsOf(copy)[index]!, '__proto__', {
    value: { amount: '1.00', isAdmin: true },
    enumerable: true,
    writable: true,
    configurable: true,
  });
  return JSON.stringify(copy);
}

function codeOf(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    if (isCountersignError(error)) return error.code;
    throw error;
  }
  return 'accepted';
}

async function asyncCodeOf(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
  } catch (error) {
    if (isCountersignError(error)) return error.code;
    throw error;
  }
  return 'accepted';
}

describe('agent call envelopes', () => {
  it('the gateway reader holds exactly the signed bytes of 300 generated calls (differential)', async () => {
    const rng = prng(0x51a7);
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    for (let i = 0; i < 300; i++) {
      const payload: CallPayload = {
        typ: SIGNED_TYPES.call,
        agentId: 'agent-1',
        kid: key.kid,
        nonce: base64url(randomBytes(24)),
        timestamp: 1_700_000_000_000,
        call: { tool: 'tools.generic', params: randomParams(rng), dataClass: 'internal', jurisdiction: 'US', provenance: ['user'] },
      };
      const signature = await signCanonical(key, payload);
      const signedBytes = canonicalBytes(payload);
      const frame = JSON.stringify({ jsonrpc: '2.0', id: i, method: 'call.submit', params: { envelope: { payload, signature } } });
      // What the gateway does with a frame: strict parse, then the protocol schema.
      const parsed = clientRequestSchema.parse(parseStrictJson(frame));
      if (parsed.method !== 'call.submit') throw new Error('unexpected method');
      const decided = parsed.params.envelope.payload;
      expect(canonicalBytes(decided)).toEqual(signedBytes);
      expect(await verifyAgentSignature(publicPart(key.publicJwk), canonicalBytes(decided), decodeSignature(signature)!)).toBe(true);
      // The reader never rebuilds the params: no member can be dropped or renamed on the way.
      expect(decided.call.params).toEqual(payload.call.params);
    }
  });

  it('refuses "__proto__" in every object of an envelope frame with json_reserved_member', async () => {
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    const payload: CallPayload = {
      typ: SIGNED_TYPES.call,
      agentId: 'agent-1',
      kid: key.kid,
      nonce: base64url(randomBytes(24)),
      timestamp: 1_700_000_000_000,
      call: {
        tool: 'tools.generic',
        params: { a: { b: [{ c: 1 }] } },
        dataClass: 'internal',
        jurisdiction: 'US',
        provenance: ['user'],
        session: { id: 's1', depth: 0 },
      },
    };
    const frame = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'call.submit',
      params: { envelope: { payload, signature: await signCanonical(key, payload) } },
    });
    const count = objectsOf(JSON.parse(frame)).length;
    expect(count).toBe(9); // message, params, envelope, payload, call, params, a, b[0], session
    for (let index = 0; index < count; index++) {
      expect(
        codeOf(() => clientRequestSchema.parse(parseStrictJson(withProtoAt(frame, index)))),
        `object ${index}`,
      ).toBe('json_reserved_member');
    }
  });
});

describe('enrollment requests', () => {
  it('the reader verifies and returns exactly the signed payload; members inserted after signing are refused', async () => {
    const key = await importAgentKey(await generateAgentKey('ES256'));
    const request = await createEnrollmentRequest(key, 'agent-7', 'Agent seven');
    const text = JSON.stringify(request);
    const payload = await verifyEnrollmentRequest(parseStrictJson(text));
    expect(canonicalize(payload)).toBe(canonicalize(request.payload));
    const objects = objectsOf(JSON.parse(text)).length;
    expect(objects).toBeGreaterThanOrEqual(3); // request, payload, public key
    for (let index = 0; index < objects; index++) {
      expect(await asyncCodeOf(async () => verifyEnrollmentRequest(parseStrictJson(withProtoAt(text, index)))), `object ${index}`).toBe(
        'json_reserved_member',
      );
      for (const name of PROTOTYPE_NAMES) {
        const copy = JSON.parse(text) as unknown;
        Object.defineProperty(objectsOf(copy)[index]!, name, { value: 'x', enumerable: true, writable: true, configurable: true });
        const code = await asyncCodeOf(async () => verifyEnrollmentRequest(parseStrictJson(JSON.stringify(copy))));
        expect(['enrollment_invalid', 'enrollment_proof_invalid'], `${name} in object ${index}`).toContain(code);
      }
    }
  });
});

describe('values canonicalized for signing or hashing', () => {
  it('a tool server that parsed a call with JSON.parse cannot hash a "__proto__" member into a call digest', () => {
    const params = JSON.parse('{"amount":"1.00","__proto__":{"amount":"48000.00"}}') as JsonValue;
    expect(codeOf(() => canonicalize({ tool: 'payments.transfer', params }))).toBe('json_reserved_member');
  });
});
