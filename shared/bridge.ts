/**
 * The schemas and wire helpers of the typed bridge between the renderer and the core. The
 * methods themselves (arguments, results, IPC channel, HTTP route) are rows of ONE table,
 * shared/bridge-table.ts; the Electron preload and `bridge-http-client.ts` are derived from it.
 * Every response is validated against these schemas on the client side: the renderer never
 * trusts its transport.
 */
import { z } from 'zod';
import { riskAssessmentSchema } from './risk.js';
import { CountersignError, ERROR_CODES, isCountersignError, isErrorCode } from './errors.js';
import { MAX_GROUP_FOLLOWERS, approvalChallengeRecordSchema } from './approvals.js';
import { jsonObjectSchema, type ApprovalRequirement, type RequestState } from './protocol.js';
import { SESSION_SECRET_PATTERN } from './ui-address.js';

// ---- results ----

const text = (max: number) => z.string().max(max);
const count = z.int().min(0);
const epochMs = z.int().min(0);

/** An open tamper alarm as the UI shows it (docs/audit.md): the audit log failed verification. */
export const auditAlarmSummarySchema = z.strictObject({
  id: z.int().min(1),
  raisedAt: epochMs,
  /** `verification`: the background re-verification; `checkpoint`: signing a new checkpoint. */
  source: z.enum(['verification', 'checkpoint']),
  /** The first entry concerned (0 when the damage is not tied to one entry). */
  firstBadSeq: count,
  /** How many findings the alarm holds, and the first one's sentence. */
  findings: count,
  reason: text(500),
});
export type AuditAlarmSummary = z.infer<typeof auditAlarmSummarySchema>;

export const bridgeStatusSchema = z.strictObject({
  serverId: text(128).min(1),
  /** `test` is the headless key domain; the UI shows it loudly. */
  domain: z.enum(['production', 'test']),
  policyHash: text(256).min(1),
  /** `software` keys are not hardware-backed; the UI warns. */
  custody: z.enum(['software', 'pkcs11']),
  /** Where agent hosts connect, e.g. `ws://127.0.0.1:7345`. */
  gatewayUrl: text(512).min(1),
  connections: count,
  authenticated: count,
  decisions: count,
  /**
   * The oldest open tamper alarm, or null. While one is open, high-impact calls wait for an
   * approver; an admin acknowledges it with a key tap (admin action `audit.acknowledge_alarm`).
   */
  auditAlarm: auditAlarmSummarySchema.nullable(),
});
export type BridgeStatus = z.infer<typeof bridgeStatusSchema>;

export const requestStateSchema = z.enum(['allowed', 'denied', 'pending', 'approved', 'expired']) satisfies z.ZodType<RequestState>;

export const decisionSummarySchema = z.strictObject({
  requestId: text(128).min(1),
  agentId: text(128).min(1),
  tool: text(128).min(1),
  state: requestStateSchema,
  reasons: z.array(text(4096)).max(64),
  policyHash: text(256).min(1),
  createdAt: epochMs,
});
export type DecisionSummary = z.infer<typeof decisionSummarySchema>;

export const agentKeySummarySchema = z.strictObject({
  kid: text(256).min(1),
  alg: z.enum(['EdDSA', 'ES256']),
  status: z.enum(['active', 'retiring', 'revoked']),
});
export type AgentKeySummary = z.infer<typeof agentKeySummarySchema>;

export const agentSummarySchema = z.strictObject({
  id: text(128).min(1),
  displayName: text(256),
  owner: text(256),
  group: text(256),
  status: z.enum(['active', 'revoked']),
  allowedTools: z.array(text(128)).max(1024),
  keys: z.array(agentKeySummarySchema).max(1024),
});
export type AgentSummary = z.infer<typeof agentSummarySchema>;

/** Bounds of `listRecentDecisions(limit)`: the core clamps to these. */
export const DECISION_LIMIT = { min: 1, max: 500, default: 50 } as const;

export const decisionListSchema = z.array(decisionSummarySchema).max(DECISION_LIMIT.max);
export const agentListSchema = z.array(agentSummarySchema).max(100_000);

/** Clamp a requested decision count to 1..500 (non-numbers get the default). */
export function clampDecisionLimit(limit: unknown): number {
  if (typeof limit !== 'number' || Number.isNaN(limit)) return DECISION_LIMIT.default;
  return Math.min(DECISION_LIMIT.max, Math.max(DECISION_LIMIT.min, Math.floor(limit)));
}

// ---- approvals (approvers, pending requests, WebAuthn ceremonies) ----

const b64url = (max: number) =>
  text(max)
    .min(1)
    .regex(/^[A-Za-z0-9_-]+$/, 'must be base64url');
/** Request and approver ids as the bridge carries them (path segments over HTTP). */
export const bridgeIdSchema = text(128)
  .min(1)
  .refine((id) => id !== '.' && id !== '..', 'must not be a dot segment');
export const approvalVerdictSchema = z.enum(['approve', 'deny']);
export type ApprovalVerdict = z.infer<typeof approvalVerdictSchema>;
/** A denial or approval reason (the core also refuses control characters). */
export const approvalReasonSchema = text(500);
/**
 * The single-use code an admin issues for registering one security key (CLI
 * `countersign approvers add` / `approvers registration-code`, or the admin action).
 */
export const registrationCodeSchema = text(128).min(1);

export const approverSummarySchema = z.strictObject({
  id: text(128).min(1),
  displayName: text(200),
  groups: z.array(text(128).min(1)).max(64),
  /** Virtual approvers exist only in the headless test key domain. */
  virtual: z.boolean(),
  status: z.enum(['active', 'disabled']),
  createdAt: epochMs,
});
export type ApproverSummary = z.infer<typeof approverSummarySchema>;
export const approverListSchema = z.array(approverSummarySchema).max(10_000);

export const approvalRequirementSchema = z.strictObject({
  /** Distinct people needed (at least one, and at least one per group list). */
  approvals: z.int().min(0).max(64),
  /**
   * AND of lists: each inner list is filled by a different person in ANY of its groups. An empty
   * inner list could never be filled, so it is refused here as by the tool-side verifier (one rule).
   */
  groups: z.array(z.array(text(128).min(1)).min(1).max(64)).max(64),
  ttlSeconds: z.number().nonnegative(),
  userVerification: z.enum(['required', 'preferred']),
}) satisfies z.ZodType<ApprovalRequirement>;

export const approvalEntrySchema = z.strictObject({
  approverId: text(128).min(1),
  displayName: text(200),
  verdict: approvalVerdictSchema,
  at: epochMs,
  reason: approvalReasonSchema.optional(),
});
export type ApprovalEntry = z.infer<typeof approvalEntrySchema>;

/** Everything an approver sees about one held call: the call in full and why it is held. */
export const approvalRequestSchema = z.strictObject({
  requestId: text(128).min(1),
  agentId: text(128).min(1),
  agentDisplayName: text(256).optional(),
  agentOwner: text(256).optional(),
  tool: text(128).min(1),
  /**
   * The call's parameters exactly as submitted (any JSON), passed through as parsed and never
   * rebuilt: the approver must see every member of what they sign (a record schema would drop
   * a `__proto__` member; the server never stores one, see docs/canonical-json.md).
   */
  params: jsonObjectSchema,
  dataClass: text(128).min(1),
  jurisdiction: text(128).min(1),
  provenance: z.array(text(128).min(1)).max(16),
  callSha256: b64url(43).length(43),
  policyHash: text(256).min(1),
  determiningPolicies: z.array(text(256)).max(1024),
  reasons: z.array(text(4096)).max(64),
  obligation: approvalRequirementSchema,
  /** The score and every factor that added points, with its sentence (shared/risk.ts). */
  risk: riskAssessmentSchema,
  state: requestStateSchema,
  createdAt: epochMs,
  expiresAt: epochMs,
  decidedAt: epochMs.optional(),
  approvals: z.array(approvalEntrySchema).max(1024),
  /**
   * Identical calls (same agent, same canonical call, same decision) this one prompt stands for:
   * the request itself plus `followers`. Every approval signs for each of them by id.
   */
  count: z
    .int()
    .min(1)
    .max(MAX_GROUP_FOLLOWERS + 1)
    .optional(),
  followers: z.array(text(128).min(1)).max(MAX_GROUP_FOLLOWERS).optional(),
  /**
   * People who may not decide this request and why, as approver ids resolved by the core
   * through the directory's aliases (compare exactly; never re-derive from agentOwner).
   */
  excludedApprovers: z
    .array(z.strictObject({ approverId: text(128).min(1), reason: z.enum(['owner', 'requester', 'policy']) }))
    .max(1024)
    .optional(),
  /** The agent's owner is not a known person (agent held for review): nobody may decide. */
  ownerUnresolved: z.literal(true).optional(),
});
export type ApprovalRequest = z.infer<typeof approvalRequestSchema>;
export const pendingApprovalListSchema = z.array(approvalRequestSchema).max(10_000);

/**
 * WebAuthn options are checked loosely (the browser and @simplewebauthn/browser check them in
 * full): the members a ceremony cannot do without must be there, anything else passes through.
 */
const webauthnObject = z.record(z.string(), z.unknown());
export const registrationOptionsSchema = z.looseObject({
  challenge: b64url(1024),
  rp: z.looseObject({ name: text(256) }),
  user: z.looseObject({ id: b64url(1024), name: text(256), displayName: text(256) }),
  pubKeyCredParams: z.array(webauthnObject).min(1).max(64),
});
/** For navigator.credentials.create() (e.g. @simplewebauthn/browser startRegistration). */
export type WebAuthnCreationOptions = z.infer<typeof registrationOptionsSchema>;
export const authenticationOptionsSchema = z.looseObject({ challenge: b64url(1024) });
/** For navigator.credentials.get() (e.g. @simplewebauthn/browser startAuthentication). */
export type WebAuthnRequestOptions = z.infer<typeof authenticationOptionsSchema>;

const MAX_WEBAUTHN_RESPONSE_CHARS = 60 * 1024;
function jsonSize(value: unknown): number {
  try {
    return JSON.stringify(value).length;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
/** A PublicKeyCredential as JSON (what startRegistration / startAuthentication resolve to). */
export const webauthnResponseSchema = z
  .looseObject({
    id: b64url(1400),
    rawId: b64url(1400),
    type: z.literal('public-key'),
    response: webauthnObject,
  })
  .refine((value) => jsonSize(value) <= MAX_WEBAUTHN_RESPONSE_CHARS, 'the security key response is too large');
/** Structural, so RegistrationResponseJSON and AuthenticationResponseJSON both fit. */
export interface WebAuthnResponseJson {
  readonly id: string;
  readonly rawId: string;
  readonly type: string;
  readonly response: object;
}

export const registeredKeySchema = z.strictObject({
  credentialId: b64url(1400),
  /** The authenticator model's AAGUID (lowercase UUID). */
  aaguid: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
  approverId: text(128).min(1),
});
export type RegisteredKey = z.infer<typeof registeredKeySchema>;

export const approvalCeremonySchema = z.strictObject({
  options: authenticationOptionsSchema,
  /** What the approver's key signs over (its hash is the challenge): show it. */
  record: approvalChallengeRecordSchema,
});
export type ApprovalCeremony = z.infer<typeof approvalCeremonySchema>;

export const approvalOutcomeSchema = z.strictObject({
  requestId: text(128).min(1),
  state: z.enum(['pending', 'approved', 'denied']),
  approvalsSoFar: z.array(approvalEntrySchema).max(1024),
  reasons: z.array(text(4096)).max(64),
  /** The co-signed approval token, when this approval completed the quorum. */
  token: text(512 * 1024)
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'must be a compact JWS')
    .optional(),
  tokenExpiresAt: epochMs.optional(),
});
export type ApprovalOutcome = z.infer<typeof approvalOutcomeSchema>;

/** The HTTP envelopes of the two approval lists. */
export const approverListResponseSchema = z.strictObject({ approvers: approverListSchema });
export const pendingApprovalsResponseSchema = z.strictObject({ pending: pendingApprovalListSchema, total: z.int().min(0).optional() });

/** Validate one argument a transport received (IPC arguments are untrusted): `schema_invalid` otherwise. */
export function parseBridgeArgument<S extends z.ZodType>(schema: S, value: unknown, name: string): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new CountersignError(
      'schema_invalid',
      `the bridge argument ${JSON.stringify(name)} is invalid: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
    );
  return parsed.data;
}

export { UI_BASE_PATH, UI_SECRET_FRAGMENT_PARAM } from './ui-address.js';
/** Session secrets are 32 random bytes, base64url. */
export const sessionSecretSchema = z.string().regex(SESSION_SECRET_PATTERN);

/** The error body of the HTTP API and the failure half of an IPC answer. */
export const bridgeErrorSchema = z.strictObject({
  code: z.string().max(64).refine(isErrorCode, 'unknown error code'),
  message: text(2048),
});
export type BridgeError = z.infer<typeof bridgeErrorSchema>;
export const httpErrorBodySchema = z.strictObject({ error: bridgeErrorSchema });

/**
 * What an IPC handler answers: errors travel as data because Electron's IPC (and the context
 * bridge) copy only an Error's message, never its `code`.
 */
export type BridgeAnswer<T> = { ok: true; value: T } | { ok: false; error: BridgeError };

const answerSchema = z.union([
  z.strictObject({ ok: z.literal(true), value: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: bridgeErrorSchema }),
]);

/** Turn any thrown value into the wire error (internal details are never exposed). */
export function toBridgeError(error: unknown): BridgeError {
  if (isCountersignError(error)) return { code: error.code, message: error.message.slice(0, 2048) };
  return { code: 'internal_error', message: ERROR_CODES.internal_error };
}

/** Validate one result against its schema; anything else is `schema_invalid`. */
export function parseBridgeResult<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CountersignError(
      'schema_invalid',
      `the bridge response does not match its schema at ${JSON.stringify(issue?.path.join('.') ?? '')}`,
    );
  }
  return parsed.data;
}

/** Unwrap an IPC answer: the value validated by `schema`, or the error it carries. */
export function unwrapBridgeAnswer<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const answer = answerSchema.safeParse(raw);
  if (!answer.success) throw new CountersignError('schema_invalid', 'the bridge answer is malformed');
  if (!answer.data.ok) throw new CountersignError(answer.data.error.code, answer.data.error.message);
  return parseBridgeResult(schema, answer.data.value);
}

/**
 * Errors crossing Electron's context bridge keep only their message, so the preload puts the
 * code in front (`[code] message`) and `toCountersignError` restores it on the renderer side.
 */
export function bridgeErrorMessage(error: BridgeError): string {
  return `[${error.code}] ${error.message}`;
}

// In errors.ts (no zod: the desk's first paint uses it); re-exported for the bridge's callers.
export { toCountersignError } from './errors.js';

/** The approvers' group whose members are admins (core, CLI and desk read this one name). */
export const ADMIN_GROUP_NAME = 'countersign-admins';

// ---- the desk's request view (getRequest) ----

/**
 * Whether one verdict's ceremony could succeed for the person at the desk, and if not the error
 * it would meet (the server runs the ceremony's own checks as a dry run): the desk disables the
 * button and says why. `conflict` names why a conflicted approver is refused.
 */
export const deskAbilitySchema = z.union([
  z.strictObject({ ok: z.literal(true) }),
  z.strictObject({
    ok: z.literal(false),
    code: z.string().max(64).refine(isErrorCode, 'unknown error code'),
    message: text(2048),
    conflict: z.enum(['owner', 'requester', 'policy']).optional(),
  }),
]);
export type DeskAbility = z.infer<typeof deskAbilitySchema>;

/** One request as the desk's request view shows it to one approver. */
export const deskRequestSchema = z.strictObject({
  request: approvalRequestSchema,
  /** The security key (credential id) behind each recorded decision. */
  keys: z.array(z.strictObject({ approverId: text(128).min(1), credentialId: b64url(1400) })).max(1024),
  approve: deskAbilitySchema,
  deny: deskAbilitySchema,
});
export type DeskRequest = z.infer<typeof deskRequestSchema>;
// ---- signed webhooks: the dead-letter list (docs/notifications.md) ----

/** A webhook delivery that failed its last attempt; the desk (admin) can put it back in the queue. */
export const webhookDeadLetterSchema = z.strictObject({
  deliveryId: text(128).min(1),
  webhookId: text(64).min(1),
  event: text(64).min(1),
  requestId: text(128).nullable(),
  attempts: z.int().min(0),
  lastError: text(500).nullable(),
  createdAt: epochMs,
  failedAt: epochMs,
});
export type WebhookDeadLetter = z.infer<typeof webhookDeadLetterSchema>;
export const webhookDeadLettersResponseSchema = z.strictObject({ deadLetters: z.array(webhookDeadLetterSchema).max(200) });
export const webhookRetryResultSchema = z.strictObject({ deliveryId: text(128).min(1), state: z.literal('pending') });
