/**
 * Tool-side verification of the human approvals an approval token carries (its `approvals` claim).
 *
 * `verifyApprovalToken` proves that Countersign signed the decision; `verifyApprovals` proves,
 * independently of Countersign, that each named approver's own security key signed over this very
 * call. A tool server runs it after the token verified, passing the verified claims:
 *
 * ```ts
 * const claims = await verifyApprovalToken(token, { ... });
 * const set = await verifyApprovals(claims.approvals, {
 *   directory,                          // the published approver directory (approverDirectorySchema)
 *   requestId: claims.decision.id,
 *   callSha256: claims.call_sha256,
 *   policyHash: claims.decision.policy_hash,
 * });
 * if (!satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })) refuse();
 * ```
 *
 * Each assertion is checked on its own (nothing is trusted because a sibling verified) and the
 * first failure rejects the whole set with `approval_invalid`, `details: { index, reason }`
 * (`index` is -1 when the claim itself is not a list). Per assertion, in order:
 *
 * 1. strict schema (`approvalAssertionSchema`: no unknown members anywhere), record `typ`;
 * 2. the record binds this token: requestId (or, for a merged group of identical calls, one of
 *    the record's `followers`), callSha256 and policyHash equal the token's, the
 *    verdict is `approve`, the record names the same approver as the assertion, and the ceremony
 *    cannot be older than any token that still verifies (see {@link APPROVAL_GRACE_MS});
 * 3. distinct people: an approver id seen earlier in the list (in any case) is a duplicate, and a
 *    directory listing one id in two spellings is refused (`config_invalid`);
 * 4. the approver is in the directory (and is not virtual unless `allowVirtual`), and the
 *    credential is one of THAT approver's credentials;
 * 5. clientDataJSON is strict JSON: type `webauthn.get`, challenge = approvalChallenge(record),
 *    origin exactly one of the directory's origins, crossOrigin not true;
 * 6. authenticatorData: rpIdHash = SHA-256(directory.rpId), UP set, UV set when required, no
 *    attested credential data, exactly 37 bytes unless extensions are flagged;
 * 7. the DER ECDSA signature, converted strictly to raw r||s, verifies with the credential's
 *    P-256 key over authenticatorData || SHA-256(clientDataJSON).
 *
 * The signature counter is deliberately ignored: counters are stateful, and Countersign (the
 * relying party that ran the ceremony) enforces them when the approver taps. A stateless tool
 * server cannot, and must not pretend to.
 *
 * Pure TypeScript over WebCrypto (`globalThis.crypto.subtle`): Node 20+, Deno, Bun, browsers.
 */
import { MAX_CLOCK_TOLERANCE_SECONDS, MAX_TOKEN_TTL_SECONDS } from './approval-token.js';
import { APPROVAL_CHALLENGE_TYP, approvalAssertionSchema, approvalChallenge, approverDirectorySchema } from './approvals.js';
import type { ApprovalAssertion, ApproverDirectory } from './approvals.js';
import { parseStrictJson } from './canonical-json.js';
import type { JsonValue } from './canonical-json.js';
import { bytesEqual, concatBytes, fromBase64url, fromUtf8, sha256, utf8 } from './encoding.js';
import { CountersignError, quote } from './errors.js';
import { webCryptoBytes, type WebCryptoKey } from './webcrypto.js';
import { quorumStatus, type QuorumRequirement, type QuorumStatus } from './quorum.js';

/** At most this many assertions in one token (the token claims schema has the same cap). */
export const MAX_APPROVALS = 64;

/**
 * How long after its ceremony expired an approval can still be presented. The request (and so
 * its challenge) expires at `record.expiresAt`; the token is issued no later than that and lives
 * at most MAX_TOKEN_TTL_SECONDS, verified with at most MAX_CLOCK_TOLERANCE_SECONDS of skew. An
 * approval older than that cannot belong to a token that still verifies.
 */
export const APPROVAL_GRACE_MS = (MAX_TOKEN_TTL_SECONDS + MAX_CLOCK_TOLERANCE_SECONDS) * 1000;

/** Stable values of `details.reason` on an `approval_invalid` error. */
export const APPROVAL_REJECT_REASONS = [
  'not an array',
  'too many approvals',
  'malformed assertion',
  'wrong record type',
  'request mismatch',
  'call mismatch',
  'policy mismatch',
  'not an approval',
  'approver mismatch',
  'approval expired',
  'duplicate approver',
  'unknown approver',
  'virtual approver',
  'unknown credential',
  'malformed client data',
  'wrong ceremony type',
  'challenge mismatch',
  'origin not allowed',
  'cross origin',
  'malformed authenticator data',
  'rp id mismatch',
  'user not present',
  'user not verified',
  'malformed signature',
  'bad signature',
] as const;
export type ApprovalRejectReason = (typeof APPROVAL_REJECT_REASONS)[number];

export interface VerifyApprovalsOptions {
  /** The published approver directory. A malformed directory is `config_invalid`. */
  directory: ApproverDirectory;
  /** The token's `call_sha256`. */
  callSha256: string;
  /** The token's `decision.id`. */
  requestId: string;
  /** The token's `decision.policy_hash`. */
  policyHash: string;
  /** Current time in milliseconds; default Date.now. */
  now?: () => number;
  /** Require the UV flag on every assertion (default true). */
  requireUserVerification?: boolean;
  /** Accept approvers marked virtual (headless test key domain only; default false). */
  allowVirtual?: boolean;
}

export interface VerifiedApprover {
  approverId: string;
  /** The approver's groups as the directory lists them. */
  groups: string[];
  credentialId: string;
  /** Whether the authenticator reported user verification (UV flag). */
  userVerified: boolean;
}

export interface VerifiedApprovalSet {
  /** One entry per assertion, in token order; approver ids are distinct. */
  approvers: VerifiedApprover[];
  count: number;
}

/**
 * A tool's quorum rule: `approvals` distinct people and one different person per group list
 * (shared/quorum.ts, the one rule Countersign itself applies).
 */
export type { QuorumRequirement, QuorumStatus } from './quorum.js';

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;
const FLAG_ED = 0x80;
const AUTH_DATA_MIN = 37;
const P256_FIELD_BYTES = 32;

class Rejection extends Error {
  constructor(
    readonly reason: ApprovalRejectReason,
    readonly text: string,
  ) {
    super(text);
  }
}

function reject(reason: ApprovalRejectReason, text: string): never {
  throw new Rejection(reason, text);
}

function invalid(index: number, reason: ApprovalRejectReason, text: string, cause?: unknown): CountersignError {
  const where = index < 0 ? 'the approvals claim' : `approval ${index}`;
  return new CountersignError('approval_invalid', `${where}: ${text}`, { details: { index, reason }, cause });
}

function configInvalid(message: string): never {
  throw new CountersignError('config_invalid', message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function decode(text: string, what: string, reason: ApprovalRejectReason): Uint8Array {
  const bytes = fromBase64url(text);
  if (bytes === undefined) reject(reason, `the ${what} is not canonical base64url`);
  return bytes;
}

/**
 * Strict DER ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }) to the 64-byte raw r||s form
 * WebCrypto verifies. Rejects: long-form or indefinite lengths, non-minimal or negative integers,
 * integers wider than the P-256 field, zero, a SEQUENCE length that does not match its content,
 * and any bytes after the SEQUENCE. Returns undefined when malformed.
 */
export function derToRawEcdsaSignature(der: Uint8Array, fieldBytes = P256_FIELD_BYTES): Uint8Array | undefined {
  // SEQUENCE header; every valid P-256 signature is at most 72 bytes, so the length is short-form.
  if (der.length < 2 || der[0] !== 0x30) return undefined;
  const seqLength = der[1]!;
  if (seqLength >= 0x80 || seqLength !== der.length - 2) return undefined;
  const out = new Uint8Array(fieldBytes * 2);
  let offset = 2;
  for (const half of [0, 1]) {
    if (offset + 2 > der.length || der[offset] !== 0x02) return undefined;
    const length = der[offset + 1]!;
    offset += 2;
    if (length === 0 || length >= 0x80 || offset + length > der.length) return undefined;
    let value = der.subarray(offset, offset + length);
    offset += length;
    if ((value[0]! & 0x80) !== 0) return undefined; // negative
    if (value[0] === 0x00) {
      if (value.length === 1) return undefined; // zero
      if ((value[1]! & 0x80) === 0) return undefined; // non-minimal leading zero
      value = value.subarray(1);
    }
    if (value.length > fieldBytes) return undefined; // wider than the field (e.g. 33 bytes, no leading zero)
    out.set(value, half * fieldBytes + fieldBytes - value.length);
  }
  if (offset !== der.length) return undefined; // trailing bytes inside the SEQUENCE
  return out;
}

type CredentialJwk = ApproverDirectory['approvers'][number]['credentials'][number]['publicJwk'];

interface DirectoryApprover {
  id: string;
  groups: string[];
  virtual: boolean;
  credentials: Map<string, CredentialJwk>;
}

interface DirectoryIndex {
  rpIdHash: Uint8Array;
  origins: ReadonlySet<string>;
  approvers: ReadonlyMap<string, DirectoryApprover>;
}

async function indexDirectory(directory: unknown): Promise<DirectoryIndex> {
  const parsed = approverDirectorySchema.safeParse(directory);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    configInvalid(
      `the approver directory is malformed${issue === undefined ? '' : ` at ${quote(issue.path.join('.'))}: ${issue.message}`}`,
    );
  }
  const approvers = new Map<string, DirectoryApprover>();
  const credentialOwners = new Map<string, string>();
  // One id per person: ids differing only by case would let one person count twice.
  const people = new Map<string, string>();
  for (const approver of parsed.data.approvers) {
    if (approvers.has(approver.id)) configInvalid(`the approver directory lists approver ${quote(approver.id)} more than once`);
    const person = personKey(approver.id);
    const same = people.get(person);
    if (same !== undefined) configInvalid(`the approver directory lists ${quote(same)} and ${quote(approver.id)}, one id in two spellings`);
    people.set(person, approver.id);
    const credentials = new Map<string, CredentialJwk>();
    for (const credential of approver.credentials) {
      const owner = credentialOwners.get(credential.id);
      if (owner !== undefined) {
        configInvalid(`the approver directory lists credential ${quote(credential.id)} under ${quote(owner)} and ${quote(approver.id)}`);
      }
      credentialOwners.set(credential.id, approver.id);
      credentials.set(credential.id, credential.publicJwk);
    }
    approvers.set(approver.id, { id: approver.id, groups: [...approver.groups], virtual: approver.virtual, credentials });
  }
  return { rpIdHash: await sha256(utf8(parsed.data.rpId)), origins: new Set(parsed.data.origins), approvers };
}

/** An approver id as a person key: trimmed and lowercased, as Countersign compares handles. */
function personKey(id: string): string {
  return id.trim().toLowerCase();
}

function requireText(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) configInvalid(`${name} must be a non-empty string`);
  return value;
}

interface Context {
  directory: DirectoryIndex;
  requestId: string;
  callSha256: string;
  policyHash: string;
  nowMs: number;
  requireUserVerification: boolean;
  allowVirtual: boolean;
  seen: Set<string>;
}

function parseAssertion(raw: unknown): ApprovalAssertion {
  if (isObject(raw) && isObject(raw.record) && raw.record.typ !== APPROVAL_CHALLENGE_TYP) {
    reject('wrong record type', `the record type is ${quote(raw.record.typ)}, not ${quote(APPROVAL_CHALLENGE_TYP)}`);
  }
  const parsed = approvalAssertionSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue === undefined || issue.path.length === 0 ? '' : ` at ${quote(issue.path.join('.'))}`;
    reject('malformed assertion', `the assertion does not match the schema${at}${issue === undefined ? '' : `: ${issue.message}`}`);
  }
  return parsed.data;
}

function parseClientData(bytes: Uint8Array): Record<string, JsonValue> {
  let value: JsonValue;
  try {
    value = parseStrictJson(fromUtf8(bytes));
  } catch {
    reject('malformed client data', 'the client data is not strict UTF-8 JSON');
  }
  if (!isObject(value)) reject('malformed client data', 'the client data is not a JSON object');
  return value;
}

async function verifySignature(jwk: CredentialJwk, raw: Uint8Array, data: Uint8Array): Promise<boolean> {
  let key: WebCryptoKey;
  try {
    key = await globalThis.crypto.subtle.importKey(
      'jwk',
      { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, ext: true },
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['verify'],
    );
  } catch (cause) {
    // The directory, not the approval, is broken: the verifier is misconfigured.
    throw new CountersignError('config_invalid', 'a credential key in the approver directory is not a valid P-256 public key', { cause });
  }
  return globalThis.crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, webCryptoBytes(raw), webCryptoBytes(data));
}

async function verifyOne(raw: unknown, ctx: Context): Promise<VerifiedApprover> {
  const assertion = parseAssertion(raw);
  const { record } = assertion;

  // The record must bind this very token: request, call, policy, verdict and approver.
  // A merged group's record names the primary and every follower: the approver signed for each.
  if (record.requestId !== ctx.requestId && !(record.followers ?? []).includes(ctx.requestId)) {
    reject(
      'request mismatch',
      `the approval is for request ${quote(record.requestId)}${record.followers === undefined ? '' : ` and ${record.followers.length} identical calls`}, not ${quote(ctx.requestId)}`,
    );
  }
  if (record.callSha256 !== ctx.callSha256) reject('call mismatch', 'the approval is for a different call (the parameters changed)');
  if (record.policyHash !== ctx.policyHash)
    reject('policy mismatch', `the approval was made under policy ${quote(record.policyHash)}, not ${quote(ctx.policyHash)}`);
  if (record.verdict !== 'approve') reject('not an approval', `the approver's verdict is ${quote(record.verdict)}`);
  if (record.approverId !== assertion.approverId) {
    reject('approver mismatch', `the assertion is from ${quote(assertion.approverId)} but its record names ${quote(record.approverId)}`);
  }
  if (ctx.nowMs > record.expiresAt + APPROVAL_GRACE_MS)
    reject('approval expired', 'the approval ceremony expired too long ago for any live token to carry it');

  // Distinct people, never keys (nor spellings of one id).
  if (ctx.seen.has(personKey(assertion.approverId)))
    reject('duplicate approver', `approver ${quote(assertion.approverId)} appears more than once`);
  ctx.seen.add(personKey(assertion.approverId));

  const approver = ctx.directory.approvers.get(assertion.approverId);
  if (approver === undefined) reject('unknown approver', `no approver in the directory has id ${quote(assertion.approverId)}`);
  if (approver.virtual && !ctx.allowVirtual) reject('virtual approver', `approver ${quote(approver.id)} is virtual (test key domain only)`);
  const jwk = approver.credentials.get(assertion.credentialId);
  if (jwk === undefined)
    reject('unknown credential', `credential ${quote(assertion.credentialId)} is not registered to approver ${quote(approver.id)}`);

  // Client data: the ceremony, the challenge bound to the record, the origin.
  const clientDataBytes = decode(assertion.clientDataJSON, 'client data', 'malformed client data');
  const clientData = parseClientData(clientDataBytes);
  const { type, challenge, origin, crossOrigin } = clientData;
  if (typeof type !== 'string' || typeof challenge !== 'string' || typeof origin !== 'string') {
    reject('malformed client data', 'the client data lacks a string type, challenge or origin');
  }
  if (crossOrigin !== undefined && typeof crossOrigin !== 'boolean')
    reject('malformed client data', 'the client data crossOrigin is not a boolean');
  if (type !== 'webauthn.get') reject('wrong ceremony type', `the client data type is ${quote(type)}, not "webauthn.get"`);
  if (challenge !== (await approvalChallenge(record)))
    reject('challenge mismatch', 'the signed challenge is not the challenge of the carried record');
  if (!ctx.directory.origins.has(origin)) reject('origin not allowed', `origin ${quote(origin)} is not one of the directory's origins`);
  if (crossOrigin === true) reject('cross origin', 'the ceremony ran in a cross-origin frame');

  // Authenticator data. The signature counter (bytes 33..36) is not checked here: counters are
  // stateful, and Countersign enforces them when the approver taps.
  const authData = decode(assertion.authenticatorData, 'authenticator data', 'malformed authenticator data');
  if (authData.length < AUTH_DATA_MIN)
    reject('malformed authenticator data', `the authenticator data is ${authData.length} bytes, under ${AUTH_DATA_MIN}`);
  const flags = authData[32]!;
  if ((flags & FLAG_AT) !== 0)
    reject('malformed authenticator data', 'the authenticator data of an assertion carries attested credential data');
  if ((flags & FLAG_ED) === 0 && authData.length !== AUTH_DATA_MIN)
    reject('malformed authenticator data', 'the authenticator data has trailing bytes');
  if ((flags & FLAG_BS) !== 0 && (flags & FLAG_BE) === 0)
    reject('malformed authenticator data', 'the backup state flag is set without backup eligibility');
  if (!bytesEqual(authData.subarray(0, 32), ctx.directory.rpIdHash))
    reject('rp id mismatch', 'the authenticator data is for another relying party id');
  if ((flags & FLAG_UP) === 0) reject('user not present', 'the authenticator did not report user presence');
  const userVerified = (flags & FLAG_UV) !== 0;
  if (ctx.requireUserVerification && !userVerified) reject('user not verified', 'the authenticator did not report user verification');

  // Signature: ECDSA P-256 / SHA-256 over authenticatorData || SHA-256(clientDataJSON).
  const der = decode(assertion.signature, 'signature', 'malformed signature');
  const rawSignature = derToRawEcdsaSignature(der);
  if (rawSignature === undefined) reject('malformed signature', 'the signature is not a strict DER ECDSA P-256 signature');
  const signed = concatBytes(authData, await sha256(clientDataBytes));
  if (!(await verifySignature(jwk, rawSignature, signed)))
    reject('bad signature', "the signature does not verify with the approver's credential");

  return { approverId: approver.id, groups: [...approver.groups], credentialId: assertion.credentialId, userVerified };
}

/**
 * Verify every assertion of a token's `approvals` claim against the approver directory and the
 * token's own request id, call digest and policy hash. Resolves with the verified, distinct
 * approvers (check the quorum with {@link satisfiesQuorum}); rejects with `approval_invalid`
 * (`details: { index, reason }`) on the first assertion that fails, or `config_invalid` when the
 * options or the directory are malformed.
 */
export async function verifyApprovals(approvals: unknown, options: VerifyApprovalsOptions): Promise<VerifiedApprovalSet> {
  if (!isObject(options)) configInvalid('the options must be an object');
  const ctx: Context = {
    directory: await indexDirectory(options.directory),
    requestId: requireText(options.requestId, 'requestId'),
    callSha256: requireText(options.callSha256, 'callSha256'),
    policyHash: requireText(options.policyHash, 'policyHash'),
    nowMs: (options.now ?? Date.now)(),
    requireUserVerification: options.requireUserVerification ?? true,
    allowVirtual: options.allowVirtual ?? false,
    seen: new Set<string>(),
  };
  if (!Number.isFinite(ctx.nowMs)) configInvalid('now() must return a finite number of milliseconds');
  if (typeof ctx.requireUserVerification !== 'boolean' || typeof ctx.allowVirtual !== 'boolean') {
    configInvalid('requireUserVerification and allowVirtual must be booleans');
  }

  if (!Array.isArray(approvals)) throw invalid(-1, 'not an array', 'the approvals claim is not a list');
  const list: readonly unknown[] = approvals;
  if (list.length > MAX_APPROVALS)
    throw invalid(-1, 'too many approvals', `the approvals claim has ${list.length} entries, over ${MAX_APPROVALS}`);

  const approvers: VerifiedApprover[] = [];
  for (let index = 0; index < list.length; index++) {
    try {
      approvers.push(await verifyOne(list[index], ctx));
    } catch (err) {
      if (err instanceof Rejection) throw invalid(index, err.reason, err.text);
      throw err;
    }
  }
  return { approvers, count: approvers.length };
}

function validRequirement(requirement: unknown): requirement is QuorumRequirement {
  if (!isObject(requirement)) return false;
  const { approvals, groups } = requirement;
  if (typeof approvals !== 'number' || !Number.isSafeInteger(approvals) || approvals < 0) return false;
  if (!Array.isArray(groups)) return false;
  return (groups as unknown[]).every(
    (slot) => Array.isArray(slot) && slot.length > 0 && (slot as unknown[]).every((g) => typeof g === 'string' && g.length > 0),
  );
}

/**
 * Where a verified approval set stands against a tool's quorum rule, by the one rule
 * (shared/quorum.ts): at least max(1, approvals, groups.length) distinct people who are each in
 * a group of some list (anyone when there are no lists), every list filled by a different person
 * (bipartite matching). One person counts once, however many entries or spellings of the id.
 * A malformed requirement (negative count, empty list) is `config_invalid`: a quorum that cannot
 * be read must never read as satisfied.
 */
export function verifiedQuorum(set: VerifiedApprovalSet, requirement: QuorumRequirement): QuorumStatus {
  if (!validRequirement(requirement)) {
    configInvalid('the quorum must have a non-negative integer "approvals" and "groups" as a list of non-empty lists of group names');
  }
  return quorumStatus(
    requirement,
    set.approvers.map((a) => ({ approverId: a.approverId, groups: a.groups })),
  );
}

/**
 * Whether a verified approval set meets a tool's quorum rule ({@link verifiedQuorum}), by the one
 * rule without exception: fail closed, any approval requirement needs at least one person, so a
 * rule asking for nobody (`approvals: 0`, no group lists) is not met by an empty set. (Calls the
 * policy allows automatically carry no approvals and are never checked against a quorum.)
 */
export function satisfiesQuorum(set: VerifiedApprovalSet, requirement: QuorumRequirement): boolean {
  return verifiedQuorum(set, requirement).satisfied;
}
