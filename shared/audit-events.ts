/**
 * The audit log's event contract: one strict zod schema per event kind (the fields the caller
 * passes to AuditLog.append; `kind`, `at` and `seq` are added by the log), the closed set of
 * kinds, and the check the append path runs before anything is written. A malformed event is a
 * programming error: `assertAuditEvent` throws audit_event_invalid and nothing is appended.
 * Nested values defined by other contracts (risk assessments, approval requirements, admin
 * actions, call parameters) are JSON here: their own schemas check them where they are made.
 * docs/audit.md lists the kinds (generated from AUDIT_EVENT_SCHEMAS).
 */
import { z } from 'zod';
import { CountersignError, quote } from './errors.js';
import type { JsonObject } from './canonical-json.js';

const jsonObject = z.custom<JsonObject>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), { message: 'expected an object' });
const str = z.string();
const strings = z.array(z.string());
const int = z.int();
const time = z.int().min(0);
const verdict = z.enum(['approve', 'deny']);
const tokenRef = z.strictObject({ jti: str, kid: str, expiresAt: time, audience: str });
const learningFault = { riskLearningFault: str.optional() };

/** What the decision path records for a submitted call (allow, deny or pending). */
const submittedDecision = z.strictObject({
  requestId: str,
  agentId: str,
  kid: str,
  tool: str,
  callSha256: str,
  dataClass: str,
  jurisdiction: str,
  provenance: strings,
  nonce: str,
  policyHash: str,
  determiningPolicies: strings,
  reasons: strings,
  risk: jsonObject,
  params: jsonObject.optional(),
  paramsRedacted: z.record(z.string(), z.string()).optional(),
  ...learningFault,
  tamperAlarm: z.strictObject({ alarmId: int, firstBadSeq: int, raisedAt: time }).optional(),
  approval: jsonObject.optional(),
  mergedInto: z.strictObject({ requestId: str, size: int }).optional(),
  token: tokenRef.optional(),
});

/** A pending request ended by its agent's revocation. */
const deniedByRevocation = z.strictObject({
  requestId: str,
  agentId: str,
  tool: str,
  callSha256: str,
  policyHash: str,
  determiningPolicies: strings,
  reasons: strings,
  endedBy: z.literal('agent.revoked'),
});

/** A pending request denied by an approver, or by the policy re-evaluated at approval time. */
const deniedAtApproval = z.strictObject({
  requestId: str,
  agentId: str,
  tool: str,
  callSha256: str,
  policyHash: str,
  reasons: strings,
  determiningPolicies: strings,
  groupOf: str.optional(),
  ...learningFault,
  deniedBy: str.optional(),
  reevaluatedPolicyHash: str.optional(),
});

/** A pending request whose requirement the current policy tightened. */
const pendingTightened = z.strictObject({ requestId: str, agentId: str, reason: str, approval: jsonObject });

const signingKeyEvent = { kid: str, domain: str, custody: str, alg: str, tokenLabel: str.optional(), keyLabel: str.optional() };

export const AUDIT_EVENT_SCHEMAS = {
  'call.rejected': z.strictObject({
    code: str,
    stage: str.optional(),
    agentId: str.nullable().optional(),
    claimedAgentId: str.nullable().optional(),
    kid: str.nullable().optional(),
    tool: str.nullable().optional(),
    nonce: str.nullable().optional(),
  }),
  'session.reported': z.strictObject({
    agentId: str,
    sessionId: str,
    values: int,
    ...learningFault,
    reads: z.array(
      z.strictObject({
        source: str,
        trust: str,
        contentSha256: str,
        contentChars: int,
        dataClass: str.optional(),
        origin: str.optional(),
        originSha256: str.optional(),
      }),
    ),
  }),
  'decision.allow': submittedDecision,
  'decision.deny': z.union([submittedDecision, deniedByRevocation, deniedAtApproval]),
  'decision.pending': z.union([submittedDecision, pendingTightened]),
  'decision.expired': z.strictObject({ requestId: str, agentId: str, reasons: strings, ...learningFault }),
  'decision.approved': z.strictObject({
    requestId: str,
    agentId: str,
    tool: str,
    callSha256: str,
    policyHash: str,
    determiningPolicies: strings,
    reasons: strings,
    approvers: strings,
    approval: jsonObject,
    token: tokenRef,
    groupOf: str.optional(),
    ...learningFault,
  }),
  'agent.enrolled': z.strictObject({
    agentId: str,
    kid: str,
    alg: str,
    owner: str,
    ownerEntered: str,
    group: str,
    allowedTools: strings,
    dataClasses: strings,
    jurisdictions: strings,
    expiresAt: time.nullable(),
    model: str.nullable(),
    agentVersion: str.nullable(),
  }),
  'agent.revoked': z.strictObject({ agentId: str, reason: str, endedRequests: strings }),
  'agent.key_rotated': z.strictObject({ agentId: str, newKid: str, retiredKeys: int, overlapEndsAt: time }),
  'agent.owner_changed': z.strictObject({ agentId: str, from: str, to: str, entered: str, releasedFromReview: z.boolean() }),
  'agent.owners_migrated': z.strictObject({
    resolved: z.array(z.strictObject({ agentId: str, entered: str, person: str.nullable(), via: str.nullable() })),
    held: z.array(z.strictObject({ agentId: str, entered: str, reason: str.nullable() })),
  }),
  'approver.added': z.strictObject({ approverId: str, groups: strings, virtual: z.boolean(), aliases: strings.optional() }),
  'approver.registration_code_issued': z.strictObject({ approverId: str, issuedBy: str, expiresAt: time }),
  'approver.disabled': z.strictObject({ approverId: str }),
  'approver.groups_changed': z.strictObject({ approverId: str, groups: strings }),
  'approver.alias_added': z.strictObject({ approverId: str, alias: str }),
  'approver.alias_removed': z.strictObject({ approverId: str, alias: str }),
  'approver.credential_registered': z.strictObject({
    approverId: str,
    credentialId: str,
    aaguid: str,
    fmt: str,
    userVerified: z.boolean(),
  }),
  'approver.credential_removed': z.strictObject({ approverId: str, credentialId: str }),
  'approver.credential_suspect': z.strictObject({
    approverId: str,
    credentialId: str,
    status: z.literal('suspect'),
    reason: str,
    storedCounter: int,
    reportedCounter: int,
  }),
  'admin.action': z.strictObject({
    adminId: str,
    action: jsonObject,
    credentialId: str,
    evidence: z.strictObject({ authenticatorData: str, clientDataJSON: str, signature: str }),
    // Under the admin quorum: the proposal, and the second admin whose tap confirmed it.
    proposalId: str.optional(),
    confirmedBy: z
      .strictObject({
        adminId: str,
        credentialId: str,
        evidence: z.strictObject({ authenticatorData: str, clientDataJSON: str, signature: str }),
      })
      .optional(),
  }),
  // The admin quorum (approvals.adminQuorum: 2): a first admin's tapped action waits as a proposal
  // until a second admin confirms (then admin.action, with both) or rejects it.
  'admin.action_proposed': z.strictObject({
    proposalId: str,
    adminId: str,
    action: jsonObject,
    credentialId: str,
    evidence: z.strictObject({ authenticatorData: str, clientDataJSON: str, signature: str }),
    expiresAt: time,
  }),
  'admin.action_rejected': z.strictObject({
    proposalId: str,
    proposedBy: str,
    adminId: str,
    action: jsonObject,
    credentialId: str,
    evidence: z.strictObject({ authenticatorData: str, clientDataJSON: str, signature: str }),
  }),
  // Desk sessions (docs/adr/0010-desk-sessions.md): `session` is a short reference derived from
  // the session id's hash, never the id itself.
  'desk.signed_in': z.strictObject({ approverId: str, credentialId: str, session: str, signCount: int, expiresAt: time }),
  'desk.signed_out': z.strictObject({
    approverId: str,
    credentialId: str,
    session: str,
    reason: z.enum([
      'signed_out',
      'idle',
      'expired',
      'replaced',
      'approver_disabled',
      'approver_removed',
      'key_removed',
      'key_suspect',
      'groups_changed',
    ]),
  }),
  'approval.started': z.strictObject({
    requestId: str,
    agentId: str,
    approverId: str,
    verdict,
    challenge: str,
    callSha256: str,
    expiresAt: time,
    followers: strings.optional(),
  }),
  'approval.given': z.strictObject({
    requestId: str,
    agentId: str,
    approverId: str,
    credentialId: str,
    verdict: z.literal('approve'),
    callSha256: str,
    policyHash: str,
    challenge: str,
    signCount: int,
    reason: str.optional(),
    followers: strings.optional(),
  }),
  'approval.denied': z.strictObject({
    requestId: str,
    agentId: str,
    approverId: str,
    credentialId: str,
    verdict: z.literal('deny'),
    callSha256: str,
    policyHash: str,
    challenge: str,
    signCount: int,
    reason: str.optional(),
    followers: strings.optional(),
  }),
  'signing_key.activated': z.strictObject(signingKeyEvent),
  'signing_key.rotated': z.strictObject({ ...signingKeyEvent, previous: z.strictObject({ kid: str, publishedUntil: time }) }),
  'signing_key.retired': z.strictObject({ kid: str, domain: str }),
  'signing_key.adopted': z.strictObject({ kid: str, domain: str, custody: str, previous: str, serverId: str }),
  // The team key set (team mode, docs/team-mode.md "One custody key for all hubs"): which hub did what.
  'team_key.published': z.strictObject({ ...signingKeyEvent, hub: str, signFrom: time }),
  'team_key.activated': z.strictObject({
    kid: str,
    domain: str,
    hub: str,
    previous: z.strictObject({ kid: str, publishedUntil: time }).optional(),
  }),
  'team_key.retired': z.strictObject({ kid: str, domain: str, hub: str }),
  // The team's desk secrets replaced by `countersign hub rotate-...` (team mode): which, by whom, what ended. Never the secret.
  'team_secret.rotated': z.strictObject({ secret: z.enum(['desk_secret', 'sign_in_key']), by: str, sessionsEnded: int.optional() }),
  'policy.loaded': z.strictObject({ policyHash: str, policyDir: str, fastPathFallback: str.optional(), evaluatorFallback: str.optional() }),
  // The fast policy evaluator decided otherwise than cedar-wasm (ADR 0023): at the load check or in
  // shadow evaluation of a call already answered (requestId); the load went back to cedar-wasm.
  'policy.evaluator_disagreed': z.strictObject({
    policyHash: str,
    source: z.enum(['load_check', 'shadow']),
    reason: str,
    tool: str,
    requestId: str.optional(),
    fast: z.strictObject({ outcome: str, determiningPolicies: strings }),
    cedarWasm: z.strictObject({ outcome: str, determiningPolicies: strings }),
  }),
  'policy.reload_failed': z.strictObject({ error: str, keptPolicyHash: str }),
  'config.loaded': z.strictObject({ configSha256: str }),
  'audit.checkpoint_reset': z.strictObject({ previous: str, resetTo: int, files: strings }),
  'audit.tamper_alarm': z.strictObject({
    alarmId: int,
    source: str,
    firstBadSeq: int,
    findingsTotal: int,
    findings: z.array(z.strictObject({ kind: str, seq: int, reason: str })),
  }),
  'server.started': z.strictObject({
    serverId: str,
    domain: str,
    port: int,
    signingKid: str,
    custody: str,
    risk: z.union([z.strictObject({ enabled: z.literal(false) }), z.strictObject({ enabled: z.literal(true), settingsHash: str })]),
  }),
  'server.stopped': z.strictObject({ serverId: str }),
} as const;

/** The closed set of audit event kinds. */
export type AuditKind = keyof typeof AUDIT_EVENT_SCHEMAS;
export const AUDIT_KINDS = Object.keys(AUDIT_EVENT_SCHEMAS) as AuditKind[];

/** The fields an appender passes for `kind` (TypeScript checks them at each append site). */
export type AuditEventFields<K extends AuditKind> = z.input<(typeof AUDIT_EVENT_SCHEMAS)[K]>;

/** The event the decision path builds for a submitted call (decision.allow, .deny or .pending). */
export type SubmittedDecisionEvent = z.input<typeof submittedDecision>;
/** The event of a pending request denied by an approver or by the re-evaluated policy. */
export type DeniedAtApprovalEvent = z.input<typeof deniedAtApproval>;

/** A stored record: the event's fields plus what the log adds. */
export type AuditRecord = { [K in AuditKind]: AuditEventFields<K> & { kind: K; at: number; seq: number } }[AuditKind];

export function isAuditKind(value: unknown): value is AuditKind {
  return typeof value === 'string' && Object.hasOwn(AUDIT_EVENT_SCHEMAS, value);
}

/**
 * The append path's check: `kind` is one of the closed set and `event` matches its schema
 * exactly (no unknown member, none of the log's own members `kind`, `at`, `seq`). Throws
 * audit_event_invalid naming the kind and the first problem.
 */
export function assertAuditEvent(kind: string, event: unknown): void {
  if (!isAuditKind(kind))
    throw new CountersignError('audit_event_invalid', `the audit event kind ${quote(kind)} is not one of the known kinds`);
  const result = AUDIT_EVENT_SCHEMAS[kind].safeParse(event);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.map(String).join('.')}`;
    throw new CountersignError(
      'audit_event_invalid',
      `the ${quote(kind)} audit event does not match its schema${where}: ${issue?.message ?? 'invalid'}`,
    );
  }
}

/** Read a stored record (already strictly parsed) as a typed event; throws audit_event_invalid. */
export function toAuditRecord(value: unknown): AuditRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new CountersignError('audit_event_invalid', 'the audit record is not an object');
  const { kind, at, seq, ...fields } = value as Record<string, unknown>;
  if (typeof kind !== 'string') throw new CountersignError('audit_event_invalid', 'the audit record has no kind');
  if (!Number.isSafeInteger(at) || !Number.isSafeInteger(seq))
    throw new CountersignError('audit_event_invalid', 'the audit record has no whole-number at and seq');
  assertAuditEvent(kind, fields);
  return value as AuditRecord;
}
