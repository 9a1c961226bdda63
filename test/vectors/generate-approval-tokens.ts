/**
 * Generates test/vectors/approval-tokens.json ONCE; the output is committed and read by the
 * unit tests and (later) the agent SDK tests. ES256 signatures are randomized, so re-running
 * this produces different (equally valid) tokens: only re-run it when the token format changes.
 *
 *   npx tsx test/vectors/generate-approval-tokens.ts
 *
 * The keys below are TEST KEYS ONLY, published on purpose so that anyone can check the vectors.
 */
import { createHmac, createPrivateKey, createPublicKey, sign as nodeSign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { APPROVAL_TOKEN_TYP, computeCallDigest } from '../../shared/approval-token.js';
import type { ApprovalTokenClaims, PublicJwk, SigningAlgorithm } from '../../shared/approval-token.js';
import { canonicalize } from '../../shared/canonical-json.js';
import type { JsonObject, JsonValue } from '../../shared/canonical-json.js';
import { base64url, utf8 } from '../../shared/encoding.js';
import { isCountersignError } from '../../shared/errors.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { jwkThumbprint } from '../../main/core/custody/signer.js';
import type { Signer } from '../../main/core/custody/signer.js';
import { signApprovalToken } from '../../main/core/tokens/token-issuer.js';

/** Fixed test keys (private JWKs). */
export const ES256_TEST_KEY = {
  kty: 'EC',
  crv: 'P-256',
  x: 'BqLVgzwiL0yILTXYqT8HKDN1p438zWaIBU_0FGpgKKE',
  y: 'mXlGELFNVGKskcrJtiSqGoy9VEEzFrSkdf1t5jLXIdc',
  d: 'rFeRfPQEirNlQocZ64WzAzZorgGblw5HAaPqEPfBsTU',
} as const;
export const EDDSA_TEST_KEY = {
  kty: 'OKP',
  crv: 'Ed25519',
  x: '3jxhtr1v1CX0-yCROfufN7-Tm5tPQSah3YrNyliQgjA',
  d: 'GRIU9zsT6xXK4hdsT0ufhYwkebn4e72mXKd4ayHuqZk',
} as const;
/** Not in the JWKS: used to forge a token under the ES256 key's kid. */
const IMPOSTER_ES256_KEY = {
  kty: 'EC',
  crv: 'P-256',
  x: 'YpDr6A9dkq0sMAWb9GG-C4PUea1OoivURiv4qcx7Y_4',
  y: 'UI4ucEGmPJ-BJAmZoxKvYAEdHtM2C99D37e2A-KFKLw',
  d: 'aPOen9zZt4ATCJeqYR60RRRnCOUIfcsG5SxHecevaKg',
} as const;

/** 2026-01-01T00:00:00Z in milliseconds. */
export const VECTOR_NOW_MS = 1_767_225_600_000;
const NOW = VECTOR_NOW_MS / 1000;
const ISSUER = 'countersign:vectors';
const AUDIENCE = 'https://payments.example.com';

class JwkSigner implements Signer {
  readonly custody = 'software' as const;
  readonly keyId: string;
  readonly algorithm: SigningAlgorithm;
  readonly publicJwk: PublicJwk;
  readonly #key: KeyObject;

  constructor(privateJwk: { kty: string; crv: string; x: string; y?: string; d: string }, kidOverride?: string) {
    this.#key = createPrivateKey({ key: privateJwk, format: 'jwk' });
    this.algorithm = privateJwk.kty === 'EC' ? 'ES256' : 'EdDSA';
    const base =
      privateJwk.kty === 'EC'
        ? { kty: 'EC' as const, crv: 'P-256' as const, x: privateJwk.x, y: privateJwk.y ?? '' }
        : { kty: 'OKP' as const, crv: 'Ed25519' as const, x: privateJwk.x };
    this.keyId = kidOverride ?? jwkThumbprint(base);
    this.publicJwk = { ...base, kid: this.keyId, alg: this.algorithm, use: 'sig' };
  }

  sign(data: Uint8Array): Promise<Uint8Array> {
    return Promise.resolve(
      new Uint8Array(this.algorithm === 'ES256' ? nodeSign('sha256', data, { key: this.#key, dsaEncoding: 'ieee-p1363' }) : nodeSign(null, data, this.#key)),
    );
  }
}

/** Build a compact JWS from raw header/payload JSON text, signed by `signer` (for tamper cases). */
async function signRaw(signer: Signer, headerText: string, payloadText: string): Promise<string> {
  const input = `${base64url(utf8(headerText))}.${base64url(utf8(payloadText))}`;
  return `${input}.${base64url(await signer.sign(utf8(input)))}`;
}

function hs256Raw(secret: string, headerText: string, payloadText: string): string {
  const input = `${base64url(utf8(headerText))}.${base64url(utf8(payloadText))}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

export interface ApprovalTokenVector {
  name: string;
  token: string;
  call: { tool: string; params: JsonValue };
  audience: string;
  /** Verifier clock, milliseconds since the epoch. */
  now: number;
  /** Extra verifier options (domain, issuer, clockToleranceSeconds, maxLifetimeSeconds). */
  options?: { domain?: 'production' | 'test'; issuer?: string; clockToleranceSeconds?: number; maxLifetimeSeconds?: number };
  expect: string;
}

export interface ApprovalTokenVectorFile {
  description: string;
  issuer: string;
  test_private_keys: JsonObject[];
  jwks: { keys: PublicJwk[] };
  vectors: ApprovalTokenVector[];
}

async function main(): Promise<void> {
  const es = new JwkSigner(ES256_TEST_KEY);
  const ed = new JwkSigner(EDDSA_TEST_KEY);
  const imposter = new JwkSigner(IMPOSTER_ES256_KEY, es.keyId);
  const jwks = { keys: [es.publicJwk, ed.publicJwk] };

  const tool = 'payments.transfer';
  const params: JsonObject = { amount: '48000.00', currency: 'USD', payee: { name: 'Acme Ltd', iban: 'GB33BUKB20201555555555' }, memo: 'invoice 2291' };
  const call = { tool, params };
  const digest = await computeCallDigest(tool, params);

  let counter = 0;
  const claims = (overrides: Partial<ApprovalTokenClaims> = {}): ApprovalTokenClaims => ({
    iss: ISSUER,
    sub: 'agent:finance-bot',
    aud: AUDIENCE,
    iat: NOW - 10,
    nbf: NOW - 10,
    exp: NOW + 50,
    jti: base64url(utf8(`vector-jti-${String(counter++).padStart(5, '0')}`)), // 16 bytes
    tool,
    call_sha256: digest,
    decision: { id: 'req_01JABCDEF', verdict: 'allow', mode: 'approved', policy_hash: 'sha256:8f2c0d', policies: ['finance-two-approvers'] },
    domain: 'production',
    ...overrides,
  });

  const esHeader = (extra: JsonObject = {}): string => canonicalize({ alg: 'ES256', kid: es.keyId, typ: APPROVAL_TOKEN_TYP, ...extra });
  const vectors: ApprovalTokenVector[] = [];
  const add = (name: string, token: string, expect: string, more: Partial<ApprovalTokenVector> = {}): void => {
    vectors.push({ name, token, call, audience: AUDIENCE, now: VECTOR_NOW_MS, expect, ...more });
  };
  const tok = async (signer: Signer, c: ApprovalTokenClaims): Promise<string> => (await signApprovalToken(signer, c)).token;

  // Valid tokens.
  const valid = await tok(es, claims());
  add('valid ES256 token', valid, 'valid');
  add('valid EdDSA token', await tok(ed, claims()), 'valid');
  add('valid: params with members in another order give the same digest', await tok(es, claims()), 'valid', {
    call: { tool, params: { payee: { iban: 'GB33BUKB20201555555555', name: 'Acme Ltd' }, memo: 'invoice 2291', currency: 'USD', amount: '48000.00' } },
  });
  add('valid: 3 s after exp, within the default 5 s clock tolerance', await tok(es, claims()), 'valid', { now: (NOW + 53) * 1000 });
  add('valid: test-domain token at a test-domain verifier', await tok(es, claims({ domain: 'test' })), 'valid', { options: { domain: 'test' } });
  add('valid: no approvals member', await tok(es, claims({ decision: { id: 'req_2', verdict: 'allow', mode: 'automatic', policy_hash: 'sha256:8f2c0d', policies: [] } })), 'valid');
  add('valid: with an approvals array (carried, not yet checked)', await tok(es, claims({ approvals: [{ approver: 'alice', assertion: 'opaque' }] })), 'valid');
  add('valid: issuer configured and matching', await tok(es, claims()), 'valid', { options: { issuer: ISSUER } });

  // Time.
  add('expired beyond the clock tolerance', await tok(es, claims()), 'token_expired', { now: (NOW + 56) * 1000 });
  add('expired long ago', await tok(es, claims({ iat: NOW - 3600, nbf: NOW - 3600, exp: NOW - 3540 })), 'token_expired');
  add('nbf in the future beyond tolerance', await tok(es, claims({ iat: NOW - 10, nbf: NOW + 30, exp: NOW + 90 })), 'token_not_yet_valid');
  add('issued in the future beyond tolerance', await tok(es, claims({ iat: NOW + 30, nbf: NOW + 30, exp: NOW + 90 })), 'token_not_yet_valid');
  add('lifetime longer than 900 s', await tok(es, claims({ iat: NOW - 10, nbf: NOW - 10, exp: NOW + 891 })), 'token_claims_invalid');
  add('lifetime longer than a configured 60 s cap', await tok(es, claims({ iat: NOW - 10, nbf: NOW - 10, exp: NOW + 120 })), 'token_claims_invalid', {
    options: { maxLifetimeSeconds: 60 },
  });

  // Audience, issuer, domain.
  add('wrong audience', await tok(es, claims({ aud: 'https://hr.example.com' })), 'token_audience_mismatch');
  add('test-domain token at a production verifier (default)', await tok(es, claims({ domain: 'test' })), 'token_audience_mismatch');
  add('production token at a test-domain verifier', await tok(es, claims()), 'token_audience_mismatch', { options: { domain: 'test' } });
  add('issuer configured and different', await tok(es, claims({ iss: 'countersign:elsewhere' })), 'token_claims_invalid', { options: { issuer: ISSUER } });

  // The exact call.
  add('params changed after issue', valid, 'token_digest_mismatch', { call: { tool, params: { ...params, amount: '480000.00' } } });
  add('params with an extra member', valid, 'token_digest_mismatch', { call: { tool, params: { ...params, cc: 'attacker' } } });
  add('tool changed', valid, 'token_tool_mismatch', { call: { tool: 'payments.refund', params } });

  // Decision and claims (signed with the real key, so only the claims checks can catch them).
  const denyClaims = { ...claims(), decision: { id: 'req_3', verdict: 'deny', mode: 'automatic', policy_hash: 'sha256:8f2c0d', policies: ['forbid-new-payee'] } };
  add('verdict deny', await signRaw(es, esHeader(), canonicalize(denyClaims)), 'token_not_approved');
  add('unknown claim', await signRaw(es, esHeader(), canonicalize({ ...claims(), admin: true })), 'token_claims_invalid');
  add('unknown member in decision', await signRaw(es, esHeader(), canonicalize({ ...claims(), decision: { ...claims().decision, scope: 'all' } })), 'token_claims_invalid');
  const noJti: JsonObject = { ...(claims() as unknown as JsonObject) };
  delete noJti.jti;
  add('missing jti', await signRaw(es, esHeader(), canonicalize(noJti)), 'token_claims_invalid');
  add('aud as an array', await signRaw(es, esHeader(), canonicalize({ ...claims(), aud: [AUDIENCE] })), 'token_claims_invalid');
  const dupPayload = canonicalize(claims()).replace(/}$/, `,"aud":"https://hr.example.com"}`);
  add('duplicate member in the payload', await signRaw(es, esHeader(), dupPayload), 'token_claims_invalid');
  add('payload is not JSON', await signRaw(es, esHeader(), 'not json'), 'token_claims_invalid');

  // Header.
  const payloadText = canonicalize(claims());
  add('typ JWT', await signRaw(es, canonicalize({ alg: 'ES256', kid: es.keyId, typ: 'JWT' }), payloadText), 'token_typ_invalid');
  add('typ missing', await signRaw(es, canonicalize({ alg: 'ES256', kid: es.keyId }), payloadText), 'token_malformed');
  add('header with crit', await signRaw(es, esHeader({ crit: ['exp'], exp: 1 }), payloadText), 'token_malformed');
  add('header with an extra member (jku)', await signRaw(es, esHeader({ jku: 'https://attacker.example/jwks' }), payloadText), 'token_malformed');
  add('duplicate member in the header', await signRaw(es, esHeader().replace(/}$/, `,"alg":"ES256"}`), payloadText), 'token_malformed');
  add('header is a JSON array', await signRaw(es, '["ES256"]', payloadText), 'token_malformed');
  add('unknown kid', await signRaw(es, canonicalize({ alg: 'ES256', kid: 'no-such-key', typ: APPROVAL_TOKEN_TYP }), payloadText), 'token_kid_unknown');

  // Algorithm confusion.
  const noneHeader = canonicalize({ alg: 'none', kid: es.keyId, typ: APPROVAL_TOKEN_TYP });
  add('alg none with an empty signature', `${base64url(utf8(noneHeader))}.${base64url(utf8(payloadText))}.`, 'token_alg_not_allowed');
  const hsHeader = canonicalize({ alg: 'HS256', kid: es.keyId, typ: APPROVAL_TOKEN_TYP });
  const esPublicPem = createPublicKey({ key: es.publicJwk, format: 'jwk' }).export({ format: 'pem', type: 'spki' }).toString();
  add('HS256 with the public key PEM as the HMAC secret', hs256Raw(esPublicPem, hsHeader, payloadText), 'token_alg_not_allowed');
  add('HS256 with the public JWK JSON as the HMAC secret', hs256Raw(JSON.stringify(es.publicJwk), hsHeader, payloadText), 'token_alg_not_allowed');
  add(
    'HS256 with the public JWK JSON as the HMAC secret, Ed25519 kid',
    hs256Raw(JSON.stringify(ed.publicJwk), canonicalize({ alg: 'HS256', kid: ed.keyId, typ: APPROVAL_TOKEN_TYP }), payloadText),
    'token_alg_not_allowed',
  );
  add('ES256 signature claimed for the Ed25519 key', await signRaw(es, canonicalize({ alg: 'ES256', kid: ed.keyId, typ: APPROVAL_TOKEN_TYP }), payloadText), 'token_alg_not_allowed');
  add('EdDSA signature claimed for the P-256 key', await signRaw(ed, canonicalize({ alg: 'EdDSA', kid: es.keyId, typ: APPROVAL_TOKEN_TYP }), payloadText), 'token_alg_not_allowed');

  // Signature.
  const [h, p, s] = valid.split('.') as [string, string, string];
  const sigBytes = Buffer.from(s, 'base64url');
  sigBytes[10] = sigBytes[10]! ^ 0x01;
  add('signature with one bit flipped', `${h}.${p}.${base64url(sigBytes)}`, 'token_signature_invalid');
  add('signature truncated', `${h}.${p}.${base64url(sigBytes.subarray(0, 63))}`, 'token_signature_invalid');
  add('signed by another key under the same kid', await tok(imposter, claims()), 'token_signature_invalid');
  add('payload swapped from another valid token', `${h}.${(await tok(es, claims({ aud: 'https://hr.example.com' }))).split('.')[1]!}.${s}`, 'token_signature_invalid');
  add('empty signature with ES256', `${h}.${p}.`, 'token_signature_invalid');

  // Garbage.
  add('empty string', '', 'token_malformed');
  add('two parts', `${h}.${p}`, 'token_malformed');
  add('four parts', `${valid}.${s}`, 'token_malformed');
  add('not base64url', `${h}!.${p}.${s}`, 'token_malformed');
  add('base64 with padding', `${h}=.${p}.${s}`, 'token_malformed');
  add('base64 (not url-safe) alphabet', `${h}.${p}.+/${s.slice(2)}`, 'token_malformed');
  add('empty header', `.${p}.${s}`, 'token_malformed');
  add('header is not JSON', `${base64url(utf8('not json'))}.${p}.${s}`, 'token_malformed');
  add('whitespace around the token', ` ${valid} `, 'token_malformed');
  add('JSON serialization instead of compact', JSON.stringify({ protected: h, payload: p, signature: s }), 'token_malformed');

  const file: ApprovalTokenVectorFile = {
    description:
      'Countersign approval-token vectors. For each vector call verifyApprovalToken(token, { call, audience, keys: jwks, ' +
      'jtiStore: a fresh store, now: () => now, ...options }) and expect either "valid" or the CountersignError code. ' +
      '`now` is milliseconds since the epoch. The private keys are TEST KEYS ONLY. Generated once by ' +
      'test/vectors/generate-approval-tokens.ts.',
    issuer: ISSUER,
    test_private_keys: [
      { ...ES256_TEST_KEY, kid: es.keyId, alg: 'ES256' },
      { ...EDDSA_TEST_KEY, kid: ed.keyId, alg: 'EdDSA' },
    ],
    jwks,
    vectors,
  };

  // Self-check before writing: every vector must produce its expectation.
  for (const v of vectors) {
    let got = 'valid';
    try {
      await verifyApprovalToken(v.token, { call: v.call, audience: v.audience, keys: jwks, jtiStore: new MemoryJtiStore({ now: () => v.now }), now: () => v.now, ...v.options });
    } catch (err) {
      if (!isCountersignError(err)) throw err;
      got = err.code;
    }
    if (got !== v.expect) throw new Error(`vector ${JSON.stringify(v.name)}: expected ${v.expect}, got ${got}`);
  }

  const out = fileURLToPath(new URL('./approval-tokens.json', import.meta.url));
  writeFileSync(out, `${JSON.stringify(file, null, 2)}\n`);
  console.log(`wrote ${vectors.length} vectors to ${out}`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
