// Tool-side verification of the approvals an approval token carries (shared/verify-approvals.ts),
// against REAL WebAuthn assertions from the virtual authenticator: what a genuine approver signs
// for this call verifies; every way of reusing, editing or forging one is refused with its reason.
import { createHash, generateKeyPairSync, randomBytes, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { verifyAuthenticationResponse } from '@simplewebauthn/server';
import { isoCBOR } from '@simplewebauthn/server/helpers';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeCallDigest } from '../../shared/approval-token.js';
import { approvalChallenge, recordChallengeWith } from '../../shared/approvals.js';
import type { ApprovalAssertion } from '../../shared/approvals.js';
import { CountersignError, isCountersignError } from '../../shared/errors.js';
import {
  APPROVAL_GRACE_MS,
  MAX_APPROVALS,
  derToRawEcdsaSignature,
  satisfiesQuorum,
  verifyApprovals,
} from '../../shared/verify-approvals.js';
import type { VerifiedApprovalSet, VerifyApprovalsOptions } from '../../shared/verify-approvals.js';
import { ApprovalFixture, CALL, EXPIRES_AT, ORIGIN, REQUEST_ID, RP_ID, vectorOutcome } from '../vectors/generate-approvals.js';
import type { ApprovalVectorFile } from '../vectors/generate-approvals.js';

/** The code and details of a rejection (fails the test if the promise resolves). */
async function rejection(promise: Promise<unknown>): Promise<{ code: string; index: unknown; reason: unknown; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (!isCountersignError(err)) throw err;
    return { code: err.code, index: err.details?.index, reason: err.details?.reason, message: err.message };
  }
  throw new Error('expected a rejection, but the approvals verified');
}

/** Expect approval_invalid at `index` with `reason`. */
async function expectRejected(approvals: unknown, options: VerifyApprovalsOptions, index: number, reason: string): Promise<void> {
  const got = await rejection(verifyApprovals(approvals, options));
  expect({ code: got.code, index: got.index, reason: got.reason }).toEqual({ code: 'approval_invalid', index, reason });
  // Lowercase messages that say which entry failed.
  expect(got.message).toMatch(index < 0 ? /^the approvals claim: [a-z]/ : new RegExp(`^approval ${index}: [a-z]`));
}

// --- DER helpers (the signature's two INTEGERs, as raw content bytes) ---------------------------

function parseDer(signature: string): { r: Buffer; s: Buffer } {
  const der = Buffer.from(signature, 'base64url');
  expect(der[0]).toBe(0x30);
  const rLen = der[3]!;
  const r = der.subarray(4, 4 + rLen);
  const sLen = der[5 + rLen]!;
  const s = der.subarray(6 + rLen, 6 + rLen + sLen);
  return { r: Buffer.from(r), s: Buffer.from(s) };
}

function buildDer(r: Buffer, s: Buffer, trailing: Buffer = Buffer.alloc(0)): string {
  const body = Buffer.concat([Buffer.from([0x02, r.length]), r, Buffer.from([0x02, s.length]), s]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body, trailing]).toString('base64url');
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Set the lowest unused bit of the last character (the text must have length % 4 of 2 or 3). */
function nonCanonical(base64url: string): string {
  const last = B64URL.indexOf(base64url[base64url.length - 1]!);
  return `${base64url.slice(0, -1)}${B64URL[last | 0x01]!}`;
}

function flipBit(base64url: string, byteFromEnd: number, mask = 0x01): string {
  const bytes = Buffer.from(base64url, 'base64url');
  const i = bytes.length - 1 - byteFromEnd;
  bytes[i] = bytes[i]! ^ mask;
  return bytes.toString('base64url');
}

let fx: ApprovalFixture;
let alice: ApprovalAssertion;
let bob: ApprovalAssertion;
let opts: VerifyApprovalsOptions;

beforeAll(async () => {
  fx = await ApprovalFixture.create([
    { id: 'alice', groups: ['finance-approvers'], keys: 2 },
    { id: 'bob', groups: ['finance-approvers', 'security'] },
    { id: 'carol', groups: ['finance-approvers'] },
    { id: 'sam', groups: ['security'] },
    { id: 'vera', groups: ['finance-approvers'], virtual: true },
    { id: 'mallory', groups: ['finance-approvers'], listed: false },
  ]);
  alice = await fx.assert('alice');
  bob = await fx.assert('bob');
  opts = fx.options();
});

describe('verifyApprovals: genuine approvals', () => {
  it('verifies two real approvals and reports distinct approvers with their groups and UV', async () => {
    const set = await verifyApprovals([alice, bob], opts);
    expect(set).toEqual({
      count: 2,
      approvers: [
        { approverId: 'alice', groups: ['finance-approvers'], credentialId: fx.credentialOf('alice'), userVerified: true },
        { approverId: 'bob', groups: ['finance-approvers', 'security'], credentialId: fx.credentialOf('bob'), userVerified: true },
      ],
    });
    expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })).toBe(true);
    expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers'], ['finance-approvers']] })).toBe(true);
    expect(satisfiesQuorum(set, { approvals: 3, groups: [['finance-approvers']] })).toBe(false);
  });

  it('ANDs groups: one from finance and a different person from security', async () => {
    const carol = await fx.assert('carol');
    const sam = await fx.assert('sam');
    const quorum = { approvals: 2, groups: [['finance-approvers'], ['security']] };
    expect(satisfiesQuorum(await verifyApprovals([carol, sam], opts), quorum)).toBe(true);
    // Two finance approvers: nobody from security.
    expect(satisfiesQuorum(await verifyApprovals([alice, carol], opts), quorum)).toBe(false);
    // bob is in both groups but is one person: he cannot fill both slots.
    expect(satisfiesQuorum(await verifyApprovals([bob], opts), { approvals: 1, groups: [['finance-approvers'], ['security']] })).toBe(
      false,
    );
    // bob (finance+security) with alice (finance): the matching puts bob on security.
    expect(satisfiesQuorum(await verifyApprovals([bob, alice], opts), quorum)).toBe(true);
  });

  it('accepts the second security key of the same approver', async () => {
    const set = await verifyApprovals([await fx.assert('alice', { credentialId: fx.credentialOf('alice', 1) })], opts);
    expect(set.approvers[0]?.credentialId).toBe(fx.credentialOf('alice', 1));
  });

  it('accepts an empty list, which meets no quorum', async () => {
    const set = await verifyApprovals([], opts);
    expect(set).toEqual({ approvers: [], count: 0 });
    expect(satisfiesQuorum(set, { approvals: 1, groups: [] })).toBe(false);
  });

  it('accepts exactly what a reference relying party (@simplewebauthn/server) accepts for the record challenge', async () => {
    const jwk = fx.directory.approvers.find((a) => a.id === 'alice')!.credentials[0]!.publicJwk;
    const cose = isoCBOR.encode(
      new Map<number, number | Uint8Array>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, new Uint8Array(Buffer.from(jwk.x, 'base64url'))],
        [-3, new Uint8Array(Buffer.from(jwk.y, 'base64url'))],
      ]),
    );
    const result = await verifyAuthenticationResponse({
      response: {
        id: alice.credentialId,
        rawId: alice.credentialId,
        type: 'public-key',
        clientExtensionResults: {},
        response: {
          authenticatorData: alice.authenticatorData,
          clientDataJSON: alice.clientDataJSON,
          signature: alice.signature,
          userHandle: alice.userHandle,
        },
      },
      expectedChallenge: await approvalChallenge(alice.record),
      expectedOrigin: ORIGIN,
      expectedRPID: RP_ID,
      credential: { id: alice.credentialId, publicKey: cose, counter: 0 },
      requireUserVerification: true,
    });
    expect(result.verified).toBe(true);
    await verifyApprovals([alice], opts);
  });
});

describe('recordChallengeWith', () => {
  it("gives the challenge approvalChallenge gives, with node:crypto's synchronous SHA-256", async () => {
    // alice: the fixture's assertion, made in beforeAll.
    const nodeSha256 = (bytes: Uint8Array) => new Uint8Array(createHash('sha256').update(bytes).digest());
    expect(recordChallengeWith(alice.record, nodeSha256)).toBe(await approvalChallenge(alice.record));
    expect(recordChallengeWith({ ...alice.record, nonce: 'other' }, nodeSha256)).not.toBe(await approvalChallenge(alice.record));
  });
});

describe('verifyApprovals: each rejection, with its reason', () => {
  it('wrong callSha256: the parameters changed after approval', async () => {
    const changed = await computeCallDigest(CALL.tool, { ...CALL.params, amount: '480000.00' });
    await expectRejected([alice, bob], fx.options({ callSha256: changed }), 0, 'call mismatch');
  });

  it('wrong requestId: an approval for request A presented for request B', async () => {
    await expectRejected([alice], fx.options({ requestId: 'req_B' }), 0, 'request mismatch');
  });

  it('wrong policy hash: approved under another policy set', async () => {
    await expectRejected([alice], fx.options({ policyHash: 'sha256:000000' }), 0, 'policy mismatch');
  });

  it('a deny-verdict record, genuinely signed, is not an approval', async () => {
    await expectRejected([alice, await fx.assert('bob', { record: { verdict: 'deny' } })], opts, 1, 'not an approval');
  });

  it("a record naming another approver than the assertion's", async () => {
    const signed = await fx.assert('alice', { record: { approverId: 'bob' } });
    await expectRejected([signed], opts, 0, 'approver mismatch');
  });

  it("another approver's credential (bob's key signing as alice)", async () => {
    const forged = await fx.assert('alice', { credentialId: fx.credentialOf('bob') });
    await expectRejected([forged], opts, 0, 'unknown credential');
  });

  it('an approver missing from the directory', async () => {
    await expectRejected([alice, await fx.assert('mallory')], opts, 1, 'unknown approver');
  });

  it('a virtual approver unless allowVirtual', async () => {
    const vera = await fx.assert('vera');
    await expectRejected([vera], opts, 0, 'virtual approver');
    const set = await verifyApprovals([vera], fx.options({ allowVirtual: true }));
    expect(set.approvers.map((a) => a.approverId)).toEqual(['vera']);
  });

  it('a challenge not matching the record (record tampered after signing)', async () => {
    await expectRejected(
      [{ ...alice, record: { ...alice.record, nonce: randomBytes(32).toString('base64url') } }],
      opts,
      0,
      'challenge mismatch',
    );
    await expectRejected(
      [{ ...alice, record: { ...alice.record, expiresAt: alice.record.expiresAt + 60_000 } }],
      opts,
      0,
      'challenge mismatch',
    );
  });

  it('an origin not in the directory (port differs)', async () => {
    await expectRejected([await fx.assert('alice', { origin: 'http://localhost:7346' })], opts, 0, 'origin not allowed');
  });

  it('authenticator data hashed over another rpId', async () => {
    await expectRejected([await fx.assert('alice', { testHooks: { authenticatorDataRpId: 'evil.example' } })], opts, 0, 'rp id mismatch');
    // And a directory for another rpId refuses a genuine localhost assertion.
    await expectRejected([alice], fx.options({ directory: { ...fx.directory, rpId: 'countersign.example' } }), 0, 'rp id mismatch');
  });

  it('UP (user presence) missing', async () => {
    await expectRejected([await fx.assert('alice', { testHooks: { withoutUserPresence: true } })], opts, 0, 'user not present');
  });

  it('UV missing when required (the default), accepted and reported when not required', async () => {
    const noUv = await fx.assert('alice', { testHooks: { withoutUserVerification: true } });
    await expectRejected([noUv], opts, 0, 'user not verified');
    const set = await verifyApprovals([noUv], fx.options({ requireUserVerification: false }));
    expect(set.approvers[0]?.userVerified).toBe(false);
  });

  it('a bit flipped in the signature (r or s)', async () => {
    await expectRejected([{ ...alice, signature: flipBit(alice.signature, 0) }], opts, 0, 'bad signature');
    const { r, s } = parseDer(alice.signature);
    r[r.length - 1] = r[r.length - 1]! ^ 0x80;
    await expectRejected([{ ...alice, signature: buildDer(r, s) }], opts, 0, 'bad signature');
  });

  it('signed data tampered: a bit flipped in the authenticator counter', async () => {
    await expectRejected([{ ...alice, authenticatorData: flipBit(alice.authenticatorData, 0) }], opts, 0, 'bad signature');
  });

  it('malformed DER: trailing bytes after the SEQUENCE', async () => {
    const trailing = Buffer.concat([Buffer.from(alice.signature, 'base64url'), Buffer.from([0x00])]).toString('base64url');
    await expectRejected([{ ...alice, signature: trailing }], opts, 0, 'malformed signature');
  });

  it('malformed DER: a 33-byte integer without the leading zero (wider than the field)', async () => {
    const { r, s } = parseDer(alice.signature);
    const r32 = r.length === 33 ? r.subarray(1) : Buffer.concat([Buffer.alloc(32 - r.length), r]);
    await expectRejected([{ ...alice, signature: buildDer(Buffer.concat([Buffer.from([0x01]), r32]), s) }], opts, 0, 'malformed signature');
  });

  it('malformed DER: a high-bit integer with its needed leading zero dropped (negative)', async () => {
    // About half of all signatures have r >= 2^255; make one.
    let assertion = await fx.assert('alice');
    for (let i = 0; i < 64 && parseDer(assertion.signature).r.length !== 33; i++) assertion = await fx.assert('alice');
    const { r, s } = parseDer(assertion.signature);
    expect(r.length).toBe(33);
    await verifyApprovals([assertion], opts); // genuine as made
    await expectRejected([{ ...assertion, signature: buildDer(r.subarray(1), s) }], opts, 0, 'malformed signature');
  });

  it('malformed DER: a non-minimal leading zero and a SEQUENCE length that lies', async () => {
    const { r, s } = parseDer(alice.signature);
    const padded = Buffer.concat([Buffer.from([0x00]), s]);
    await expectRejected([{ ...alice, signature: buildDer(r, padded) }], opts, 0, 'malformed signature');
    const der = Buffer.from(alice.signature, 'base64url');
    der[1] = der[1]! + 1;
    await expectRejected([{ ...alice, signature: der.toString('base64url') }], opts, 0, 'malformed signature');
  });

  it('the same approver twice, even with two different keys', async () => {
    await expectRejected([alice, bob, alice], opts, 2, 'duplicate approver');
    const secondKey = await fx.assert('alice', { credentialId: fx.credentialOf('alice', 1) });
    await expectRejected([alice, secondKey], opts, 1, 'duplicate approver');
  });

  it('non-array and garbage input', async () => {
    for (const garbage of [undefined, null, 'approvals', 42, { 0: alice }, alice]) {
      await expectRejected(garbage, opts, -1, 'not an array');
    }
    await expectRejected(new Array<ApprovalAssertion>(MAX_APPROVALS + 1).fill(alice), opts, -1, 'too many approvals');
    for (const garbage of [null, 7, 'x', [], {}, { approverId: 'alice' }]) {
      await expectRejected([alice, garbage], opts, 1, 'malformed assertion');
    }
  });

  it('an unknown field in an assertion or its record', async () => {
    await expectRejected([{ ...alice, weight: 2 }], opts, 0, 'malformed assertion');
    await expectRejected([{ ...alice, record: { ...alice.record, quorum: 1 } }], opts, 0, 'malformed assertion');
  });

  it('a record of another type (domain separation)', async () => {
    await expectRejected([{ ...alice, record: { ...alice.record, typ: 'countersign.login-challenge/v1' } }], opts, 0, 'wrong record type');
  });

  it('a second (non-canonical) base64url spelling of the same bytes', async () => {
    // 37-byte authenticator data and 32-byte credential ids leave unused bits in the last character;
    // lax decoders ignore them, so setting one spells the same bytes differently.
    expect(alice.authenticatorData.length % 4).toBe(2);
    expect(alice.credentialId.length % 4).toBe(3);
    await expectRejected([{ ...alice, authenticatorData: nonCanonical(alice.authenticatorData) }], opts, 0, 'malformed authenticator data');
    expect(Buffer.from(nonCanonical(alice.credentialId), 'base64url').equals(Buffer.from(alice.credentialId, 'base64url'))).toBe(true);
    await expectRejected([{ ...alice, credentialId: nonCanonical(alice.credentialId) }], opts, 0, 'unknown credential');
  });

  it('an approval presented long after its ceremony expired', async () => {
    await verifyApprovals([alice], fx.options({ now: () => EXPIRES_AT + APPROVAL_GRACE_MS }));
    await expectRejected([alice], fx.options({ now: () => EXPIRES_AT + APPROVAL_GRACE_MS + 1 }), 0, 'approval expired');
  });
});

describe('verifyApprovals: client data and authenticator data signed by the real key', () => {
  /** A genuinely signed assertion with hand-made client data and/or authenticator data. */
  async function custom(edit: {
    clientData?: (cd: Record<string, unknown>) => string;
    authData?: (ad: Buffer) => Buffer;
  }): Promise<ApprovalAssertion> {
    const record = fx.record('alice');
    const clientData = { type: 'webauthn.get', challenge: await approvalChallenge(record), origin: ORIGIN, crossOrigin: false };
    const clientDataJSON = Buffer.from(edit.clientData?.(clientData) ?? JSON.stringify(clientData), 'utf8');
    const base = Buffer.from(alice.authenticatorData, 'base64url');
    const authenticatorData = edit.authData?.(Buffer.from(base)) ?? base;
    const credentialId = fx.credentialOf('alice');
    return {
      approverId: 'alice',
      credentialId,
      authenticatorData: authenticatorData.toString('base64url'),
      clientDataJSON: clientDataJSON.toString('base64url'),
      signature: fx.signRaw(credentialId, authenticatorData, clientDataJSON),
      record,
    };
  }

  it('accepts a hand-made assertion (the harness is sound), with extra client data members ignored', async () => {
    await verifyApprovals([await custom({})], opts);
    await verifyApprovals([await custom({ clientData: (cd) => JSON.stringify({ ...cd, other_keys_can_be_added_here: 'x' }) })], opts);
  });

  it('refuses a registration ceremony type', async () => {
    await expectRejected(
      [await custom({ clientData: (cd) => JSON.stringify({ ...cd, type: 'webauthn.create' }) })],
      opts,
      0,
      'wrong ceremony type',
    );
  });

  it('refuses crossOrigin true', async () => {
    await expectRejected([await custom({ clientData: (cd) => JSON.stringify({ ...cd, crossOrigin: true }) })], opts, 0, 'cross origin');
  });

  it('refuses client data that is not strict JSON (duplicate member)', async () => {
    const dup = (cd: Record<string, unknown>): string => JSON.stringify(cd).replace(/}$/, ',"origin":"https://evil.example"}');
    await expectRejected([await custom({ clientData: dup })], opts, 0, 'malformed client data');
    await expectRejected([await custom({ clientData: () => '[]' })], opts, 0, 'malformed client data');
  });

  it('refuses authenticator data shorter than 37 bytes, with trailing bytes, or with attested credential data', async () => {
    await expectRejected([await custom({ authData: (ad) => ad.subarray(0, 36) })], opts, 0, 'malformed authenticator data');
    await expectRejected(
      [await custom({ authData: (ad) => Buffer.concat([ad, Buffer.from([0])]) })],
      opts,
      0,
      'malformed authenticator data',
    );
    const withAt = (ad: Buffer): Buffer => {
      ad[32] = ad[32]! | 0x40;
      return ad;
    };
    await expectRejected([await custom({ authData: withAt })], opts, 0, 'malformed authenticator data');
  });

  it('ignores the signature counter (the server enforces it)', async () => {
    const zeroCounter = (ad: Buffer): Buffer => {
      ad.writeUInt32BE(0, 33);
      return ad;
    };
    await verifyApprovals([await custom({ authData: zeroCounter })], opts);
  });
});

describe('verifyApprovals: configuration', () => {
  it('refuses a malformed directory or options as config_invalid', async () => {
    const codes = await Promise.all([
      rejection(verifyApprovals([alice], fx.options({ directory: { ...fx.directory, origins: [] } }))),
      rejection(
        verifyApprovals(
          [alice],
          fx.options({ directory: { ...fx.directory, approvers: [...fx.directory.approvers, fx.directory.approvers[0]!] } }),
        ),
      ),
      rejection(verifyApprovals([alice], fx.options({ requestId: '' }))),
      rejection(verifyApprovals([alice], fx.options({ now: () => Number.NaN }))),
    ]);
    expect(codes.map((c) => c.code)).toEqual(['config_invalid', 'config_invalid', 'config_invalid', 'config_invalid']);
  });

  it('refuses a directory listing one id in two spellings, which would let one person count twice', async () => {
    const a = fx.directory.approvers[0]!;
    const b = fx.directory.approvers[1]!;
    const directory = { ...fx.directory, approvers: [a, { ...b, id: ` ${a.id.toUpperCase()}` }] };
    const refused = await rejection(verifyApprovals([alice], fx.options({ directory })));
    expect(refused.code).toBe('config_invalid');
    expect(refused.message).toContain('one id in two spellings');
  });

  it('refuses a credential id listed under two approvers', async () => {
    const a = fx.directory.approvers[0]!;
    const b = fx.directory.approvers[1]!;
    const directory = { ...fx.directory, approvers: [a, { ...b, credentials: [...b.credentials, a.credentials[0]!] }] };
    expect((await rejection(verifyApprovals([alice], fx.options({ directory })))).code).toBe('config_invalid');
  });
});

describe('derToRawEcdsaSignature', () => {
  const der = (...bytes: number[]): Uint8Array => new Uint8Array(bytes);

  it('left-pads short integers and strips the sign byte', () => {
    const raw = derToRawEcdsaSignature(der(0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80));
    expect(raw).toBeDefined();
    expect(Buffer.from(raw!).toString('hex')).toBe(`${'00'.repeat(31)}01${'00'.repeat(31)}80`);
  });

  it('rejects zero, negative, non-minimal, too-wide, long-form and trailing encodings', () => {
    const bad = [
      der(0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01), // r = 0
      der(0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01), // r negative
      der(0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01), // non-minimal leading zero
      der(0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00), // trailing byte outside the SEQUENCE
      der(0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00), // trailing byte inside the SEQUENCE
      der(0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01), // long-form length
      der(0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01), // SET, not SEQUENCE
      der(0x30, 0x03, 0x02, 0x01, 0x01), // one integer
      der(0x30, 0x23, 0x02, 0x21, 0x01, ...new Array<number>(32).fill(0x11)), // 33 bytes, no leading zero (and no s)
      der(),
    ];
    for (const b of bad) expect(derToRawEcdsaSignature(b)).toBeUndefined();
    const wide = Buffer.concat([Buffer.from([0x02, 0x21, 0x01]), Buffer.alloc(32, 0x11), Buffer.from([0x02, 0x01, 0x01])]);
    expect(derToRawEcdsaSignature(Buffer.concat([Buffer.from([0x30, wide.length]), wide]))).toBeUndefined();
  });

  it('converts real signatures, including ones with short integers, to raw r||s that verifies', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    let sawShort = false;
    let sawWide = false;
    for (let i = 0; i < 5000 && !(sawShort && sawWide && i >= 50); i++) {
      const message = randomBytes(16);
      const sig = nodeSign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
      const { r, s } = parseDer(sig.toString('base64url'));
      sawShort ||= r.length < 32 || s.length < 32;
      sawWide ||= r.length === 33 || s.length === 33;
      const raw = derToRawEcdsaSignature(sig);
      expect(raw).toHaveLength(64);
      expect(nodeVerify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, raw!)).toBe(true);
    }
    expect(sawShort && sawWide).toBe(true);
  });
});

describe('satisfiesQuorum', () => {
  const set = (...approvers: Array<[string, string[]]>): VerifiedApprovalSet => ({
    approvers: approvers.map(([approverId, groups]) => ({ approverId, groups, credentialId: `${approverId}-key`, userVerified: true })),
    count: approvers.length,
  });

  it('counts distinct people, never entries', () => {
    expect(satisfiesQuorum(set(['a', ['f']], ['a', ['f']]), { approvals: 2, groups: [] })).toBe(false);
    expect(satisfiesQuorum(set(['a', ['f']], ['b', ['f']]), { approvals: 2, groups: [] })).toBe(true);
  });

  it('needs at least as many people as group slots, even when approvals is lower', () => {
    expect(satisfiesQuorum(set(['a', ['f', 's']]), { approvals: 1, groups: [['f'], ['s']] })).toBe(false);
    expect(satisfiesQuorum(set(['a', ['f', 's']], ['b', ['x']]), { approvals: 1, groups: [['f'], ['s']] })).toBe(false);
  });

  it('treats an inner list as OR and finds a matching when a greedy pick would fail', () => {
    // Greedy on slot order would give a (f,s) the f slot and leave s unfilled.
    const s = set(['a', ['f', 's']], ['b', ['f']]);
    expect(satisfiesQuorum(s, { approvals: 2, groups: [['f'], ['s']] })).toBe(true);
    expect(satisfiesQuorum(s, { approvals: 2, groups: [['s', 't'], ['f']] })).toBe(true);
    expect(satisfiesQuorum(s, { approvals: 2, groups: [['s'], ['s']] })).toBe(false);
    const three = set(['a', ['f', 's']], ['b', ['s', 'o']], ['c', ['f']]);
    expect(satisfiesQuorum(three, { approvals: 3, groups: [['s'], ['o'], ['f']] })).toBe(true);
    expect(satisfiesQuorum(three, { approvals: 3, groups: [['o'], ['o'], ['f']] })).toBe(false);
  });

  it('a zero quorum still needs one approval (fail closed: a requirement is never met by nobody); a malformed one is config_invalid', () => {
    expect(satisfiesQuorum(set(), { approvals: 0, groups: [] })).toBe(false);
    expect(satisfiesQuorum(set(['a', ['f']]), { approvals: 0, groups: [] })).toBe(true);
    for (const bad of [
      { approvals: -1, groups: [] },
      { approvals: 1.5, groups: [] },
      { approvals: 1, groups: [[]] },
      { approvals: 1, groups: [['']] },
      { approvals: 1 },
    ]) {
      expect(() => satisfiesQuorum(set(['a', ['f']]), bad as never)).toThrow(CountersignError);
    }
  });
});

describe('verifyApprovals: merged groups of identical calls', () => {
  // A group's record names the primary request and, sorted, every follower; the key signs for each.
  const FOLLOWERS = ['req_01JFOLLOWER1', 'req_01JFOLLOWER2'];

  it('accepts a group approval for the primary and for each follower the record names, and for no other request', async () => {
    const a = await fx.assert('alice', { record: { followers: FOLLOWERS } });
    const b = await fx.assert('bob', { record: { followers: FOLLOWERS } });
    for (const requestId of [REQUEST_ID, ...FOLLOWERS]) {
      expect((await verifyApprovals([a, b], fx.options({ requestId }))).count).toBe(2);
    }
    await expectRejected([a, b], fx.options({ requestId: 'req_01JFOLLOWER3' }), 0, 'request mismatch');
  });

  it('refuses a follower whose token carries one approval that did not name it', async () => {
    const a = await fx.assert('alice', { record: { followers: FOLLOWERS } });
    // bob signed for the primary alone: his approval does not cover the follower.
    await expectRejected([a, bob], fx.options({ requestId: FOLLOWERS[0]! }), 1, 'request mismatch');
  });

  it('refuses a follower added to the record after signing (the challenge no longer matches)', async () => {
    const a = await fx.assert('alice', { record: { followers: FOLLOWERS } });
    const extended = { ...a, record: { ...a.record, followers: [...FOLLOWERS, 'req_01JFOLLOWER3'] } };
    await expectRejected([extended], fx.options({ requestId: 'req_01JFOLLOWER3' }), 0, 'challenge mismatch');
  });

  it('refuses follower lists that are unsorted, repeated, name the primary, or are empty', async () => {
    for (const followers of [[...FOLLOWERS].reverse(), [FOLLOWERS[0]!, FOLLOWERS[0]!], [REQUEST_ID], []]) {
      const a = await fx.assert('alice', { record: { followers } });
      await expectRejected([a], fx.options(), 0, 'malformed assertion');
    }
  });
});

describe('approval vectors (test/vectors/approvals.json)', () => {
  const file = JSON.parse(readFileSync(new URL('../vectors/approvals.json', import.meta.url), 'utf8')) as ApprovalVectorFile;

  it('has valid cases and rejection cases for the directory at localhost', () => {
    expect(file.directory.rpId).toBe(RP_ID);
    expect(file.vectors.filter((v) => v.expect === 'valid').length).toBeGreaterThan(1);
    expect(file.vectors.filter((v) => v.expect !== 'valid').length).toBeGreaterThan(10);
  });

  it.each(file.vectors.map((v) => [v.name, v] as const))('%s', async (_name, v) => {
    const got = await vectorOutcome(file, v);
    if (v.expect === 'valid') expect(got).toEqual({ expect: 'valid', approvers: v.approvers });
    else expect(got).toEqual({ expect: v.expect, index: v.index, reason: v.reason });
  });
});
