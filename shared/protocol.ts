/**
 * The agent wire protocol: JSON-RPC 2.0 over WebSocket, subprotocol `countersign.v1`.
 * Types plus runtime schemas; every object is strict (unknown members are rejected).
 * docs/protocol.md is the human-readable form of this file.
 */
import { z } from 'zod';
import type { ErrorCode } from './errors.js';
import { SIGNED_TYP } from './typ.js';
import type { JsonObject, JsonValue } from './canonical-json.js';

export const PROTOCOL_VERSION = 'countersign/1';
export const WS_SUBPROTOCOL = 'countersign.v1';
export const WS_PATH = '/v1/agent';

/** `typ` values of every object an agent signs: the domain separation of its signatures. */
export const SIGNED_TYPES = {
  auth: SIGNED_TYP.agentAuth,
  call: SIGNED_TYP.callEnvelope,
  enrollment: SIGNED_TYP.enrollment,
} as const;

const b64url = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .regex(/^[A-Za-z0-9_-]+$/, 'must be base64url');
const identifier = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]*$/, 'must be an identifier ([A-Za-z0-9._:@-])');
const label = z.string().min(1).max(128);

export const agentIdSchema = identifier;
export const toolNameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/, 'must be a dotted lowercase tool name');

/**
 * A JSON object whose values were already checked by the strict parser. Passed through as the
 * very object that was parsed, never rebuilt: a rebuilt copy could drop or change a member
 * (a record schema silently drops `__proto__`), and then a signature over the copy would not
 * cover what the text carried (the strict parser also refuses that name: json_reserved_member).
 */
export const jsonObjectSchema = z.custom<JsonObject>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
  message: 'expected an object',
});

export const toolCallSchema = z.strictObject({
  tool: toolNameSchema,
  params: jsonObjectSchema,
  dataClass: label,
  jurisdiction: label,
  /** Where the input that led to this call came from, e.g. `user`, `email:external`, `web`. */
  provenance: z.array(label).max(16),
  /**
   * The agent run this call belongs to and how deep in it (0 = started by a person): lets the
   * risk scorer see loops and recursive fan-out. Optional; declared by the agent host.
   */
  session: z.strictObject({ id: identifier, depth: z.int().min(0).max(10_000) }).optional(),
  /** The model and agent software version making the call, compared with the enrolled ones. */
  model: label.optional(),
  agentVersion: label.optional(),
});
export type ToolCall = z.infer<typeof toolCallSchema>;

export const callPayloadSchema = z.strictObject({
  typ: z.literal(SIGNED_TYPES.call),
  agentId: agentIdSchema,
  kid: b64url(16, 128),
  nonce: b64url(16, 64),
  /** Milliseconds since the epoch, when the agent signed. */
  timestamp: z.int().nonnegative(),
  call: toolCallSchema,
});
export type CallPayload = z.infer<typeof callPayloadSchema>;

export const signedEnvelopeSchema = z.strictObject({
  payload: callPayloadSchema,
  signature: b64url(86, 86),
});
export type SignedEnvelope = z.infer<typeof signedEnvelopeSchema>;

export const authProofPayloadSchema = z.strictObject({
  typ: z.literal(SIGNED_TYPES.auth),
  challenge: b64url(43, 43),
  serverId: identifier,
  agentId: agentIdSchema,
  kid: b64url(16, 128),
});
export type AuthProofPayload = z.infer<typeof authProofPayloadSchema>;

const requestId = z.union([z.int().min(0), z.string().min(1).max(64)]);

/**
 * Data-flow provenance (optional extension, docs/protocol.md "session.report"): what an agent
 * session read and from where, reported by the host before the calls that follow from it. The
 * server keeps only digests of the values found in `content` (never the text itself) and uses
 * them to see whether a later call's parameters came from untrusted content.
 */
export const READ_TRUST = ['trusted', 'untrusted'] as const;
export const MAX_READ_CONTENT_CHARS = 65_536;
export const MAX_READS_PER_REPORT = 32;
export const sessionReadSchema = z.strictObject({
  /** What kind of input: `user`, `system`, `email`, `web`, `document`, `tool:<name>`, ... */
  source: label,
  /** `trusted`: the person or the operator said it; `untrusted`: anyone else could have written it. */
  trust: z.enum(READ_TRUST),
  /** Where it came from: a sender, a URL, a file name (kept as a digest for redacted data classes). */
  origin: z.string().max(512).optional(),
  /** The data class of what was read (`audit.redactDataClasses` keeps its origin as a digest only). */
  dataClass: label.optional(),
  /** The text the agent read (a tool result, an e-mail body, a web page, the user's prompt). */
  content: z.string().max(MAX_READ_CONTENT_CHARS),
});
export type SessionRead = z.infer<typeof sessionReadSchema>;
export const sessionReportParamsSchema = z.strictObject({
  /** The `call.session.id` of the calls this input leads to. */
  sessionId: identifier,
  reads: z.array(sessionReadSchema).min(1).max(MAX_READS_PER_REPORT),
});
export type SessionReportParams = z.infer<typeof sessionReportParamsSchema>;
/** What `session.report` answers: how many reads were kept and how many values were found. */
export interface SessionReportResult {
  sessionId: string;
  reads: number;
  values: number;
}

export const authenticateParamsSchema = z.strictObject({
  agentId: agentIdSchema,
  kid: b64url(16, 128),
  proof: b64url(86, 86),
});
export const submitParamsSchema = z.strictObject({ envelope: signedEnvelopeSchema });
export const requestGetParamsSchema = z.strictObject({ requestId: identifier });
export const auditProofParamsSchema = z.strictObject({ requestId: identifier });

export const clientRequestSchema = z.discriminatedUnion('method', [
  z.strictObject({ jsonrpc: z.literal('2.0'), id: requestId, method: z.literal('session.authenticate'), params: authenticateParamsSchema }),
  z.strictObject({ jsonrpc: z.literal('2.0'), id: requestId, method: z.literal('call.submit'), params: submitParamsSchema }),
  z.strictObject({ jsonrpc: z.literal('2.0'), id: requestId, method: z.literal('request.get'), params: requestGetParamsSchema }),
  z.strictObject({ jsonrpc: z.literal('2.0'), id: requestId, method: z.literal('audit.proof'), params: auditProofParamsSchema }),
  z.strictObject({ jsonrpc: z.literal('2.0'), id: requestId, method: z.literal('session.report'), params: sessionReportParamsSchema }),
]);
export type ClientRequest = z.infer<typeof clientRequestSchema>;
export type ClientMethod = ClientRequest['method'];
export const CLIENT_METHODS: readonly ClientMethod[] = [
  'session.authenticate',
  'call.submit',
  'request.get',
  'audit.proof',
  'session.report',
];

// ---- server -> client ----

export interface ChallengeNotification {
  jsonrpc: '2.0';
  method: 'session.challenge';
  params: { protocol: typeof PROTOCOL_VERSION; challenge: string; serverId: string; expiresInMs: number };
}

export interface AuthenticateResult {
  agentId: string;
  kid: string;
  sessionId: string;
}

export type DecisionVerdict = 'allow' | 'deny' | 'pending';
export type RequestState = 'allowed' | 'denied' | 'pending' | 'approved' | 'expired';

export interface ApprovalRequirement {
  approvals: number;
  groups: string[][];
  ttlSeconds: number;
  userVerification: 'required' | 'preferred';
}

/** What the agent receives for a submitted call (and for request.get). */
export interface DecisionResult {
  requestId: string;
  decision: DecisionVerdict;
  state: RequestState;
  /** Compact JWS approval token, present when the call may execute. */
  token?: string;
  tokenExpiresAt?: number;
  reasons: string[];
  determiningPolicies: string[];
  policyHash: string;
  /**
   * For pending calls: what approval is needed and until when. request.get adds `required`, the
   * distinct people the quorum needs (max(1, approvals, number of group lists): shared/quorum.ts),
   * and `received`, the people whose approvals count so far (each person once; disabled,
   * conflicted or no-longer-eligible approvers not counted). Both optional: additive members.
   */
  approval?: ApprovalRequirement & { expiresAt: number; required?: number; received?: number };
  /**
   * call.submit of a held call that joined a waiting group of identical calls (docs/approvals.md,
   * "Identical calls"): the group's primary, which approvers see, and the group's size with it.
   */
  mergedInto?: { requestId: string; size: number };
}

export interface DecisionNotification {
  jsonrpc: '2.0';
  method: 'request.decided';
  params: DecisionResult;
}

export interface RpcSuccess<T> {
  jsonrpc: '2.0';
  id: string | number;
  result: T;
}
export interface RpcErrorObject {
  code: number;
  message: string;
  data: { code: ErrorCode; details?: Record<string, string | number | boolean> };
}
export interface RpcFailure {
  jsonrpc: '2.0';
  id: string | number | null;
  error: RpcErrorObject;
}
export type ServerMessage = RpcSuccess<JsonValue> | RpcFailure | ChallengeNotification | DecisionNotification;

// The JSON-RPC number and close code of each error code live in its record in shared/errors.ts;
// re-exported here because they are part of the wire protocol.
export { CLOSE_CODES, RPC_CODES, rpcCodeFor } from './errors.js';

/**
 * `audit.proof` result: the audit entries about one of the agent's requests, each with its RFC
 * 9162 inclusion proof (base64) against the signed checkpoint (a C2SP signed note) of
 * `treeSize` entries. Verify with shared/merkle.ts and the log's public key (docs/audit.md).
 */
export interface AuditProofResult {
  requestId: string;
  treeSize: number;
  checkpoint: string;
  entries: Array<{ seq: number; record: string; leafHash: string; proof: string[] }>;
}
