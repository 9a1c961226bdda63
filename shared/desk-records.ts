/**
 * The wire shapes of the desk's History, Policies and Custody-and-health views: the arguments and
 * results of their bridge rows (shared/bridge-table.ts), and the one rule the page uses to check a
 * history entry's audit proof against the log's signed checkpoint (verifyHistoryEntryProof, over
 * shared/audit-verify.ts). Pure TypeScript: the core, the renderer and tests read the same schemas.
 */
import { z } from 'zod';
import { toolCallSchema, agentIdSchema, type AuditProofResult } from './protocol.js';
import { bridgeIdSchema, requestStateSchema, approvalVerdictSchema, approvalRequirementSchema } from './bridge.js';
import { verifyAuditProof } from './audit-verify.js';
import { isCountersignError } from './errors.js';

const epochMs = z.int().min(0).max(8_640_000_000_000_000);
const shortText = (max: number) => z.string().max(max);

// ---- History ----

/** At most this many requests on one history page. */
export const HISTORY_PAGE_MAX = 100;
export const HISTORY_PAGE_DEFAULT = 25;
/** The decided states history shows (a pending request is the queue's). */
export const historyStateSchema = z.enum(['allowed', 'denied', 'approved', 'expired']);
export type HistoryState = z.infer<typeof historyStateSchema>;

/**
 * One history query: filters (each optional, ANDed), a search text (3..200 characters: the search
 * index matches substrings of at least three characters over request id, agent, tool and payee),
 * and a page (the `cursor` the previous page returned; pages are keyed, never offset).
 */
export const historyQuerySchema = z
  .strictObject({
    states: z.array(historyStateSchema).min(1).max(4).optional(),
    tool: z.string().min(1).max(128).optional(),
    agentId: z.string().min(1).max(128).optional(),
    since: epochMs.optional(),
    until: epochMs.optional(),
    text: z.string().trim().min(3).max(200).optional(),
    limit: z.int().min(1).max(HISTORY_PAGE_MAX).optional(),
    cursor: z
      .string()
      .max(200)
      .regex(/^\d{1,16}:[^\s]{1,128}$/, 'must be a cursor a history page returned')
      .optional(),
  })
  .refine((q) => q.since === undefined || q.until === undefined || q.since <= q.until, 'since must not be after until');
export type HistoryQuery = z.infer<typeof historyQuerySchema>;

export const historyRowSchema = z.strictObject({
  requestId: bridgeIdSchema,
  agentId: shortText(128),
  tool: shortText(128),
  state: requestStateSchema,
  /** The payee of a transfer (params.payee), when the call names one. */
  payee: shortText(500).nullable(),
  createdAt: epochMs,
  decidedAt: epochMs,
  approvals: z.int().min(0).max(1000),
  reasons: z.array(shortText(4096)).max(64),
});
export type HistoryRow = z.infer<typeof historyRowSchema>;

export const historyPageSchema = z.strictObject({
  rows: z.array(historyRowSchema).max(HISTORY_PAGE_MAX),
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: z.string().max(200).nullable(),
});
export type HistoryPage = z.infer<typeof historyPageSchema>;

export const historyApprovalSchema = z.strictObject({
  approverId: shortText(128),
  displayName: shortText(200),
  /** The security key (WebAuthn credential id, base64url) that signed. */
  credentialId: shortText(1024),
  verdict: approvalVerdictSchema,
  at: epochMs,
  reason: shortText(500).nullable(),
});
export type HistoryApproval = z.infer<typeof historyApprovalSchema>;

const noteKeySchema = z.strictObject({
  kty: z.string().max(8),
  crv: z.string().max(16).optional(),
  x: z.string().max(200).optional(),
  y: z.string().max(200).optional(),
});

export const auditProofSchema = z.strictObject({
  requestId: z.string().max(128),
  treeSize: z.int().min(0),
  checkpoint: z.string().max(10_000),
  entries: z
    .array(
      z.strictObject({
        seq: z.int().min(1),
        record: z.string().max(1_000_000),
        leafHash: z.string().max(64),
        proof: z.array(z.string().max(64)).max(64),
      }),
    )
    .max(1000),
}) satisfies z.ZodType<AuditProofResult>;

/** One decided request in full: the call, its approvals, its token id, its audit entries with their inclusion proof. */
export const historyEntrySchema = z.strictObject({
  requestId: bridgeIdSchema,
  agentId: shortText(128),
  tool: shortText(128),
  state: requestStateSchema,
  call: toolCallSchema,
  callSha256: shortText(128),
  policyHash: shortText(128),
  determiningPolicies: z.array(shortText(300)).max(256),
  reasons: z.array(shortText(4096)).max(64),
  obligation: approvalRequirementSchema.nullable(),
  risk: z.strictObject({
    score: z.number().min(0).max(100),
    factors: z.array(z.strictObject({ name: shortText(128), explanation: shortText(1000) })).max(64),
  }),
  createdAt: epochMs,
  decidedAt: epochMs.nullable(),
  /** The primary of the identical-call group whose approvals decided this one, when merged. */
  groupId: shortText(128).nullable(),
  approvals: z.array(historyApprovalSchema).max(1000),
  /** The approval token's id (`jti`), when one was issued. */
  tokenId: shortText(128).nullable(),
  tokenExpiresAt: epochMs.nullable(),
  /** The request's audit entries with their inclusion proofs against `proof.checkpoint` (null: no entry yet). */
  proof: auditProofSchema.nullable(),
  /** The log's origin (`countersign/<serverId>`) and every signing key it has had, to check the checkpoint with. */
  origin: shortText(300),
  noteKeys: z.array(noteKeySchema).max(1000),
});
export type HistoryEntry = z.infer<typeof historyEntrySchema>;

/** What the page concluded about one entry's proof. */
export type ProofCheck =
  | { ok: true; treeSize: number; rootHash: string; entries: number; checkpointTime?: number | undefined }
  | { ok: false; code: string; reason: string };

/**
 * Check a history entry's audit proof in the page: the checkpoint's signature by one of the log's
 * keys for the log's origin, then every entry's record against its leaf hash and its inclusion in
 * the signed tree, and that every entry is about this request (shared/audit-verify.ts). Never
 * throws: a failure is `{ok: false}` with the verifier's stable code.
 */
export async function verifyHistoryEntryProof(
  entry: Pick<HistoryEntry, 'requestId' | 'proof' | 'origin' | 'noteKeys'>,
): Promise<ProofCheck> {
  if (entry.proof === null) return { ok: false, code: 'audit_proof_unavailable', reason: 'no audit entry for this request yet' };
  try {
    const verified = await verifyAuditProof(entry.proof, {
      keys: entry.noteKeys,
      origin: entry.origin,
      requestId: entry.requestId,
    });
    return {
      ok: true,
      treeSize: verified.treeSize,
      rootHash: verified.rootHash,
      entries: verified.entries.length,
      checkpointTime: verified.checkpointTime,
    };
  } catch (error) {
    if (isCountersignError(error)) return { ok: false, code: error.code, reason: error.message };
    return { ok: false, code: 'audit_proof_invalid', reason: error instanceof Error ? error.message : String(error) };
  }
}

/** The format tag of a history export (a JSON file of selected requests with their proofs). */
export const HISTORY_EXPORT_FORMAT = 'countersign-history-export/v1';

/** The export document: the entries as the core gave them (proofs included) and what the page concluded. */
export function historyExportDocument(
  entries: readonly HistoryEntry[],
  checks: ReadonlyMap<string, ProofCheck>,
  exportedAt: number,
): { format: string; exportedAt: number; requests: Array<HistoryEntry & { proofCheck: ProofCheck | null }> } {
  return {
    format: HISTORY_EXPORT_FORMAT,
    exportedAt,
    requests: entries.map((e) => ({ ...e, proofCheck: checks.get(e.requestId) ?? null })),
  };
}

// ---- Policies ----

export const policyFileSchema = z.strictObject({
  file: shortText(300),
  text: shortText(1_000_000),
});
export const policySummarySchema = z.strictObject({
  id: shortText(300),
  file: shortText(300),
  line: z.int().min(0),
  effect: z.enum(['permit', 'forbid']),
  reason: shortText(2000).nullable(),
  approvals: z.int().min(0).max(64).nullable(),
});
export const policyReloadErrorSchema = z.strictObject({
  /** `file` and `line` when the message names a place (`file.cedar:12: ...` or `file.cedar:12:5: ...`). */
  file: shortText(300).nullable(),
  line: z.int().min(0).nullable(),
  message: shortText(2000),
});
export const policyOverviewSchema = z.strictObject({
  hash: shortText(128),
  dir: shortText(4096),
  files: z.array(policyFileSchema).max(1000),
  policies: z.array(policySummarySchema).max(10_000),
  tools: z.array(z.strictObject({ name: shortText(128), impact: shortText(32), audience: shortText(300) })).max(10_000),
  warnings: z.array(shortText(2000)).max(200),
  /** The last reload since start: null when none was tried. A failed reload kept `hash` in force. */
  lastReload: z
    .strictObject({
      at: epochMs,
      ok: z.boolean(),
      hash: shortText(128),
      errors: z.array(policyReloadErrorSchema).max(200),
    })
    .nullable(),
});
export type PolicyOverview = z.infer<typeof policyOverviewSchema>;
export type PolicyReloadError = z.infer<typeof policyReloadErrorSchema>;

/** "Test a call": an enrolled agent and the call it would make (the call as an agent signs it). */
export const policyTestCallSchema = z.strictObject({
  agentId: agentIdSchema,
  call: toolCallSchema,
});
export type PolicyTestCall = z.infer<typeof policyTestCallSchema>;

export const policyTestResultSchema = z.strictObject({
  outcome: z.enum(['allow', 'deny', 'approval_required']),
  policyHash: shortText(128),
  determiningPolicies: z.array(shortText(300)).max(256),
  reasons: z.array(shortText(4096)).max(64),
  errors: z.array(shortText(2000)).max(64),
  risk: z.strictObject({
    score: z.number().min(0).max(100),
    factors: z.array(z.strictObject({ name: shortText(128), points: z.number(), explanation: shortText(1000) })).max(64),
  }),
  /** The approvals the call would need (approval_required only). */
  obligation: approvalRequirementSchema.nullable(),
  /** Approver ids the determining permits name conflicted (they could not approve). */
  conflicted: z.array(shortText(128)).max(256),
  /** Always true: nothing was stored, audited, signed or learned. */
  dryRun: z.literal(true),
});
export type PolicyTestResult = z.infer<typeof policyTestResultSchema>;

/** Split a policy load problem (`file.cedar:12: msg`, `file.cedar:12:5: msg`, `entities.json: msg`) into its place and message. */
export function policyProblemPlace(problem: string): PolicyReloadError {
  const m = /^([A-Za-z0-9._-]{1,255}):(\d{1,9})(?::\d{1,9})?: ([\s\S]*)$/.exec(problem);
  if (m) return { file: m[1]!, line: Number(m[2]), message: m[3]!.slice(0, 2000) };
  const f = /^([A-Za-z0-9._-]{1,255}\.(?:cedar|cedarschema|json)): ([\s\S]*)$/.exec(problem);
  if (f) return { file: f[1]!, line: null, message: f[2]!.slice(0, 2000) };
  return { file: null, line: null, message: problem.slice(0, 2000) };
}

// ---- Custody and health ----

export const custodyHealthSchema = z.strictObject({
  serverId: shortText(128),
  domain: z.enum(['production', 'test']),
  custody: z.enum(['software', 'pkcs11']),
  algorithm: shortText(16),
  /** The signing key's id: the RFC 7638 thumbprint of its public key (the pin). */
  kid: shortText(128),
  tokenLabel: shortText(128).nullable(),
  /** PKCS#11: whether the token answers; null for software custody. */
  tokenPresent: z.boolean().nullable(),
  loggedIn: z.boolean().nullable(),
  lastSignatureAt: epochMs.nullable(),
  keys: z
    .array(
      z.strictObject({
        kid: shortText(128),
        custody: z.enum(['software', 'pkcs11']),
        alg: shortText(16),
        status: z.enum(['active', 'retiring', 'retired']),
        createdAt: epochMs,
        notAfter: epochMs.nullable(),
        retiredAt: epochMs.nullable(),
        lastSignatureAt: epochMs.nullable(),
      }),
    )
    .max(1000),
  /** Rotation: 'steady' (one active key) or 'overlap' (a retiring key is still published). */
  rotation: z.enum(['steady', 'overlap', 'no_active_key']),
  audit: z.strictObject({
    entries: z.int().min(0),
    origin: shortText(300),
    checkpoint: z.strictObject({ treeSize: z.int().min(0), rootHash: shortText(64), at: epochMs }).nullable(),
    lastVerification: z.strictObject({ at: epochMs, entries: z.int().min(0), findings: z.int().min(0), ok: z.boolean() }).nullable(),
  }),
  alarm: z
    .strictObject({
      id: z.int().min(0),
      raisedAt: epochMs,
      source: shortText(32),
      firstBadSeq: z.int().min(0),
      findings: z.int().min(0),
      reason: shortText(500),
    })
    .nullable(),
});
export type CustodyHealth = z.infer<typeof custodyHealthSchema>;

export const auditVerificationSchema = z.strictObject({
  at: epochMs,
  entries: z.int().min(0),
  findings: z.int().min(0),
  ok: z.boolean(),
  /** The tamper alarm the run raised, if it raised one. */
  alarmId: z.int().min(0).nullable(),
  firstFinding: shortText(500).nullable(),
});
export type AuditVerification = z.infer<typeof auditVerificationSchema>;
