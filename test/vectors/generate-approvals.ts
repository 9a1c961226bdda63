/**
 * Generates test/vectors/approvals.json ONCE; the output is committed and read by
 * test/unit/verify-approvals.test.ts (and by verifiers in other languages). The assertions are
 * real WebAuthn assertions from Countersign's virtual authenticator with fresh P-256 keys, so
 * re-running this produces different (equally valid) vectors: only re-run it when the approval
 * format changes.
 *
 *   npx tsx test/vectors/generate-approvals.ts
 *
 * This module also exports {@link ApprovalFixture}, the helper the unit tests use to make real
 * approvals for a directory of approvers.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign as nodeSign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import type { VirtualAuthenticatorTestHooks } from '../../main/core/testing/virtual-authenticator.js';
import { computeCallDigest } from '../../shared/approval-token.js';
import { APPROVAL_CHALLENGE_TYP, approvalChallenge } from '../../shared/approvals.js';
import type { ApprovalAssertion, ApprovalChallengeRecord, ApproverDirectory } from '../../shared/approvals.js';
import { isCountersignError } from '../../shared/errors.js';
import { verifyApprovals } from '../../shared/verify-approvals.js';
import type { VerifyApprovalsOptions } from '../../shared/verify-approvals.js';

export const RP_ID = 'localhost';
export const ORIGIN = 'http://localhost:7345';
/** 2026-01-01T00:00:00Z in milliseconds: the verifier clock of the vectors. */
export const VECTOR_NOW_MS = 1_767_225_600_000;
export const REQUEST_ID = 'req_01JAPPROVALS';
export const POLICY_HASH = 'sha256:8f2c0d';
export const CALL = {
  tool: 'payments.transfer',
  params: { amount: '48000.00', currency: 'USD', payee: { name: 'Acme Ltd', iban: 'GB33BUKB20201555555555' }, memo: 'invoice 2291' },
};
/** Approval challenges expire 15 minutes after the vector clock. */
export const EXPIRES_AT = VECTOR_NOW_MS + 15 * 60 * 1000;

export interface FixtureApprover {
  id: string;
  groups: string[];
  virtual?: boolean;
  /** Number of security keys (default 1). */
  keys?: number;
  /** Default true; false registers keys on the authenticator but leaves the approver out of the directory. */
  listed?: boolean;
  /** Whether the keys can verify the user (default true). */
  userVerified?: boolean;
}

export interface AssertOptions {
  /** Fields of the challenge record to override before signing. */
  record?: Partial<ApprovalChallengeRecord>;
  /** Sign with this credential (default the approver's first). */
  credentialId?: string;
  origin?: string;
  rpId?: string;
  testHooks?: VirtualAuthenticatorTestHooks;
}

/** Real approvers on one virtual authenticator, and the directory that publishes them. */
export class ApprovalFixture {
  readonly authenticator = new VirtualAuthenticator();
  readonly directory: ApproverDirectory = { rpId: RP_ID, origins: [ORIGIN], approvers: [] };
  readonly callSha256: string;
  readonly #credentials = new Map<string, string[]>();

  private constructor(callSha256: string) {
    this.callSha256 = callSha256;
  }

  static async create(approvers: FixtureApprover[]): Promise<ApprovalFixture> {
    const fixture = new ApprovalFixture(await computeCallDigest(CALL.tool, CALL.params));
    for (const approver of approvers) fixture.#register(approver);
    return fixture;
  }

  #register(approver: FixtureApprover): void {
    const ids: string[] = [];
    const credentials: ApproverDirectory['approvers'][number]['credentials'] = [];
    for (let n = 0; n < (approver.keys ?? 1); n++) {
      const response = this.authenticator.createCredential({
        rpId: RP_ID,
        origin: ORIGIN,
        challenge: randomBytes(32).toString('base64url'),
        user: { id: Buffer.from(approver.id, 'utf8').toString('base64url'), name: `${approver.id}@example.com`, displayName: approver.id },
        userVerification: approver.userVerified === false ? 'preferred' : 'required',
        userVerified: approver.userVerified ?? true,
      });
      const spki = Buffer.from(response.response.publicKey ?? '', 'base64url');
      const jwk = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
      if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') throw new Error('not a P-256 key');
      credentials.push({ id: response.id, publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y } });
      ids.push(response.id);
    }
    this.#credentials.set(approver.id, ids);
    if (approver.listed !== false) {
      this.directory.approvers.push({ id: approver.id, displayName: approver.id, groups: approver.groups, virtual: approver.virtual ?? false, credentials });
    }
  }

  /** The approver's n-th credential id. */
  credentialOf(approverId: string, n = 0): string {
    const id = this.#credentials.get(approverId)?.[n];
    if (id === undefined) throw new Error(`no credential ${n} for ${approverId}`);
    return id;
  }

  /** A challenge record approving this fixture's call for `approverId`. */
  record(approverId: string, overrides: Partial<ApprovalChallengeRecord> = {}): ApprovalChallengeRecord {
    return {
      typ: APPROVAL_CHALLENGE_TYP,
      requestId: REQUEST_ID,
      callSha256: this.callSha256,
      verdict: 'approve',
      policyHash: POLICY_HASH,
      expiresAt: EXPIRES_AT,
      approverId,
      nonce: randomBytes(32).toString('base64url'),
      ...overrides,
    };
  }

  /** A real approval: the approver's key signs the challenge of the record over a get ceremony. */
  async assert(approverId: string, options: AssertOptions = {}): Promise<ApprovalAssertion> {
    const record = this.record(approverId, options.record);
    const credentialId = options.credentialId ?? this.credentialOf(approverId);
    const response = this.authenticator.getAssertion({
      rpId: options.rpId ?? RP_ID,
      origin: options.origin ?? ORIGIN,
      challenge: await approvalChallenge(record),
      allowCredentials: [credentialId],
      credentialId,
      userVerification: 'preferred',
      testHooks: options.testHooks,
    });
    return {
      approverId,
      credentialId: response.id,
      authenticatorData: response.response.authenticatorData,
      clientDataJSON: response.response.clientDataJSON,
      signature: response.response.signature,
      ...(response.response.userHandle === undefined ? {} : { userHandle: response.response.userHandle }),
      record,
    };
  }

  /**
   * Sign arbitrary authenticator data and client data with a credential's real private key (a
   * misbehaving client or authenticator the virtual one cannot be asked to imitate).
   */
  signRaw(credentialId: string, authenticatorData: Buffer, clientDataJSON: Buffer): string {
    const state = this.authenticator.exportState().credentials.find((c) => c.id === credentialId);
    if (state === undefined) throw new Error(`no credential ${credentialId}`);
    const key = createPrivateKey({ key: Buffer.from(state.privateKeyPkcs8, 'base64url'), format: 'der', type: 'pkcs8' });
    const clientDataHash = createHash('sha256').update(clientDataJSON).digest();
    return nodeSign('sha256', Buffer.concat([authenticatorData, clientDataHash]), { key, dsaEncoding: 'der' }).toString('base64url');
  }

  /** Verifier options for this fixture's call (the token's claims), with a fixed clock. */
  options(overrides: Partial<VerifyApprovalsOptions> = {}): VerifyApprovalsOptions {
    return { directory: this.directory, requestId: REQUEST_ID, callSha256: this.callSha256, policyHash: POLICY_HASH, now: () => VECTOR_NOW_MS, ...overrides };
  }
}

/** One vector: verify `approvals` with the file's directory and context (plus `options`). */
export interface ApprovalVector {
  name: string;
  approvals: unknown;
  /** Overrides of the context or verifier flags. */
  options?: { requestId?: string; callSha256?: string; policyHash?: string; now?: number; requireUserVerification?: boolean; allowVirtual?: boolean };
  /** 'valid', or the CountersignError code. */
  expect: 'valid' | 'approval_invalid';
  /** For 'valid': the verified approver ids, in order. */
  approvers?: string[];
  /** For 'approval_invalid': details.index and details.reason. */
  index?: number;
  reason?: string;
}

export interface ApprovalVectorFile {
  description: string;
  directory: ApproverDirectory;
  context: { requestId: string; callSha256: string; policyHash: string; now: number; call: typeof CALL };
  vectors: ApprovalVector[];
}

export type VectorOutcome = { expect: 'valid'; approvers: string[] } | { expect: string; index?: number; reason?: string };

/** Run one vector through verifyApprovals. */
export async function vectorOutcome(file: ApprovalVectorFile, vector: ApprovalVector): Promise<VectorOutcome> {
  const { now, ...rest } = vector.options ?? {};
  try {
    const set = await verifyApprovals(vector.approvals, {
      directory: file.directory,
      requestId: file.context.requestId,
      callSha256: file.context.callSha256,
      policyHash: file.context.policyHash,
      now: () => now ?? file.context.now,
      ...rest,
    });
    return { expect: 'valid', approvers: set.approvers.map((a) => a.approverId) };
  } catch (err) {
    if (!isCountersignError(err)) throw err;
    const index = err.details?.index;
    const reason = err.details?.reason;
    return { expect: err.code, ...(typeof index === 'number' ? { index } : {}), ...(typeof reason === 'string' ? { reason } : {}) };
  }
}

function flipLastByte(base64url: string): string {
  const bytes = Buffer.from(base64url, 'base64url');
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x01;
  return bytes.toString('base64url');
}

async function main(): Promise<void> {
  const fixture = await ApprovalFixture.create([
    { id: 'alice', groups: ['finance-approvers'] },
    { id: 'bob', groups: ['security'] },
    { id: 'vera', groups: ['finance-approvers'], virtual: true },
  ]);
  const alice = await fixture.assert('alice');
  const bob = await fixture.assert('bob');
  const vectors: ApprovalVector[] = [];
  const valid = (name: string, approvals: unknown, approvers: string[], options?: ApprovalVector['options']): void => {
    vectors.push({ name, approvals, ...(options === undefined ? {} : { options }), expect: 'valid', approvers });
  };
  const bad = (name: string, approvals: unknown, index: number, reason: string, options?: ApprovalVector['options']): void => {
    vectors.push({ name, approvals, ...(options === undefined ? {} : { options }), expect: 'approval_invalid', index, reason });
  };

  valid('two approvers, one from finance-approvers and one from security', [alice, bob], ['alice', 'bob']);
  valid('an empty list verifies (and meets no quorum)', [], []);
  valid('a virtual approver when virtual approvers are allowed', [await fixture.assert('vera')], ['vera'], { allowVirtual: true });
  bad('a virtual approver (refused by default)', [alice, await fixture.assert('vera')], 1, 'virtual approver');
  bad('the parameters changed: the token digest differs from the approved one', [alice, bob], 0, 'call mismatch', {
    callSha256: await computeCallDigest(CALL.tool, { ...CALL.params, amount: '480000.00' }),
  });
  bad('an approval of request A presented for request B', [alice], 0, 'request mismatch', { requestId: 'req_01JOTHER' });
  bad('the approver denied', [await fixture.assert('alice', { record: { verdict: 'deny' } })], 0, 'not an approval');
  bad('the record was changed after signing (nonce)', [alice, { ...bob, record: { ...bob.record, nonce: randomBytes(32).toString('base64url') } }], 1, 'challenge mismatch');
  bad('the ceremony ran on another origin (port differs)', [await fixture.assert('alice', { origin: 'http://localhost:7346' })], 0, 'origin not allowed');
  bad('the authenticator data is for another rpId', [await fixture.assert('alice', { testHooks: { authenticatorDataRpId: 'evil.example' } })], 0, 'rp id mismatch');
  const noUv = await fixture.assert('alice', { testHooks: { withoutUserVerification: true } });
  bad('user verification missing', [noUv], 0, 'user not verified');
  valid('user verification missing, not required', [noUv], ['alice'], { requireUserVerification: false });
  bad('a bit flipped in the signature', [alice, { ...bob, signature: flipLastByte(bob.signature) }], 1, 'bad signature');
  bad('a byte after the DER signature', [{ ...alice, signature: Buffer.concat([Buffer.from(alice.signature, 'base64url'), Buffer.from([0])]).toString('base64url') }], 0, 'malformed signature');
  bad('the same approver twice', [alice, bob, await fixture.assert('alice')], 2, 'duplicate approver');
  bad('an unknown member in an assertion', [{ ...alice, weight: 2 }], 0, 'malformed assertion');
  bad('not a list', { 0: alice }, -1, 'not an array');
  bad('presented long after the ceremony expired', [alice], 0, 'approval expired', { now: EXPIRES_AT + 24 * 3600 * 1000 });

  const file: ApprovalVectorFile = {
    description:
      'Countersign approval-assertion vectors (the `approvals` claim of an approval token). For each vector call ' +
      'verifyApprovals(approvals, { directory, requestId, callSha256, policyHash, now: () => now, ...options }) with the ' +
      'context below (options override it) and expect either "valid" with the listed approvers, or the CountersignError ' +
      'code with details.index and details.reason. Each assertion is a real WebAuthn assertion (ES256, DER signature) over ' +
      'the challenge base64url(SHA-256(JCS(record))). `now` is milliseconds since the epoch. Generated once by ' +
      'test/vectors/generate-approvals.ts.',
    directory: fixture.directory,
    context: { requestId: REQUEST_ID, callSha256: fixture.callSha256, policyHash: POLICY_HASH, now: VECTOR_NOW_MS, call: CALL },
    vectors,
  };

  // Self-check before writing: every vector must produce its expectation.
  for (const v of vectors) {
    const got = await vectorOutcome(file, v);
    const want: VectorOutcome = v.expect === 'valid' ? { expect: 'valid', approvers: v.approvers ?? [] } : { expect: v.expect, index: v.index, reason: v.reason };
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`vector ${JSON.stringify(v.name)}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }

  const out = fileURLToPath(new URL('./approvals.json', import.meta.url));
  writeFileSync(out, `${JSON.stringify(file, null, 2)}\n`);
  console.log(`wrote ${vectors.length} vectors to ${out}`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
