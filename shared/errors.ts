/**
 * One closed union of stable error codes for everything Countersign reports to a caller, and for
 * each code its record: the message, the JSON-RPC error number the agent WebSocket sends, the
 * WebSocket close code where the error ends a connection, and the HTTP status. Every transport
 * and docs/errors.md read this one table (test/unit/docs-errors.test.ts keeps the page equal).
 * Codes are API: never rename one, only add. Messages are lowercase, quote user input, and
 * never name internal modules.
 */

/** JSON-RPC 2.0 error numbers (the standard ones and the server range Countersign uses). */
export const RPC_CODES = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  /** Everything else: identity, authentication, unknown request, approvals, ... */
  refused: -32001,
  envelopeRejected: -32002,
  /** A limit was reached; retry later. */
  limitReached: -32005,
} as const;

/** WebSocket close codes the gateway uses (RFC 6455 + the private range). */
export const CLOSE_CODES = {
  normal: 1000,
  unsupportedData: 1003,
  invalidPayload: 1007,
  policyViolation: 1008,
  messageTooBig: 1009,
  tryAgainLater: 1013,
  authFailed: 4001,
  handshakeTimeout: 4002,
  rateLimited: 4003,
  keyRevoked: 4004,
} as const;

export interface ErrorRecord {
  readonly message: string;
  /** The JSON-RPC error number (`error.code`; the string code travels in `error.data.code`). */
  readonly rpc: number;
  /**
   * The close code when this error ends a WebSocket connection. Absent: the error alone does
   * not close it (any error inside session.authenticate still closes with 4001, see
   * `AUTHENTICATION_FAILED_CLOSE`).
   */
  readonly close?: number;
  /** The HTTP status of an error body carrying this code. */
  readonly http: number;
}

export const ERROR_RECORDS = {
  // I-JSON / canonical JSON (RFC 7493, RFC 8785)
  json_invalid: { message: 'the text is not valid JSON', rpc: RPC_CODES.parseError, http: 400 },
  json_duplicate_key: { message: 'an object has the same member name twice', rpc: RPC_CODES.parseError, http: 400 },
  json_unsafe_integer: { message: 'a number is an integer outside the IEEE-754 safe range', rpc: RPC_CODES.parseError, http: 400 },
  json_non_finite: { message: 'a number is NaN or infinite', rpc: RPC_CODES.parseError, http: 400 },
  json_lone_surrogate: { message: 'a string contains an unpaired UTF-16 surrogate', rpc: RPC_CODES.parseError, http: 400 },
  json_too_deep: { message: 'the JSON nesting is deeper than allowed', rpc: RPC_CODES.parseError, http: 400 },
  json_unsupported_value: { message: 'a value cannot be represented in JSON', rpc: RPC_CODES.parseError, http: 400 },
  json_reserved_member: {
    message: 'an object has a member named __proto__, which cannot be represented faithfully',
    rpc: RPC_CODES.parseError,
    http: 400,
  },

  // Transport and framing
  frame_too_large: {
    message: 'the message is larger than the configured maximum',
    rpc: RPC_CODES.limitReached,
    close: CLOSE_CODES.messageTooBig,
    http: 413,
  },
  frame_binary: { message: 'binary frames are not accepted', rpc: RPC_CODES.parseError, close: CLOSE_CODES.unsupportedData, http: 400 },
  frame_invalid_utf8: {
    message: 'the message is not valid UTF-8',
    rpc: RPC_CODES.parseError,
    close: CLOSE_CODES.invalidPayload,
    http: 400,
  },
  origin_not_allowed: { message: 'the Origin header is not on the allowlist', rpc: RPC_CODES.refused, http: 403 },
  host_not_allowed: { message: 'the Host header is not on the allowlist', rpc: RPC_CODES.refused, http: 421 },
  too_many_connections: { message: 'the server has reached its connection limit', rpc: RPC_CODES.limitReached, http: 503 },
  rate_limited: { message: 'too many messages; slow down', rpc: RPC_CODES.limitReached, close: CLOSE_CODES.rateLimited, http: 429 },
  pending_queue_full: { message: 'too many calls are already waiting for a decision', rpc: RPC_CODES.limitReached, http: 429 },
  handshake_timeout: {
    message: 'authentication did not complete in time',
    rpc: RPC_CODES.refused,
    close: CLOSE_CODES.handshakeTimeout,
    http: 400,
  },

  // Protocol
  schema_invalid: { message: 'the message does not match the protocol schema', rpc: RPC_CODES.invalidRequest, http: 400 },
  method_unknown: { message: 'the method is not part of the protocol', rpc: RPC_CODES.methodNotFound, http: 404 },
  protocol_version_unsupported: { message: 'the protocol version is not supported', rpc: RPC_CODES.invalidRequest, http: 400 },
  not_authenticated: {
    message: 'the connection has not authenticated yet',
    rpc: RPC_CODES.refused,
    close: CLOSE_CODES.authFailed,
    http: 401,
  },
  already_authenticated: { message: 'the connection is already authenticated', rpc: RPC_CODES.refused, http: 400 },

  // Agent identity and envelopes
  auth_failed: {
    message: 'the agent could not prove possession of an enrolled key',
    rpc: RPC_CODES.refused,
    close: CLOSE_CODES.authFailed,
    http: 400,
  },
  agent_unknown: { message: 'no enrolled agent has that id', rpc: RPC_CODES.refused, close: CLOSE_CODES.keyRevoked, http: 400 },
  agent_revoked: { message: 'the agent has been revoked', rpc: RPC_CODES.refused, close: CLOSE_CODES.keyRevoked, http: 400 },
  agent_expired: { message: 'the agent enrollment has expired', rpc: RPC_CODES.refused, close: CLOSE_CODES.keyRevoked, http: 400 },
  agent_held_for_review: {
    message: 'the agent is held for review: its owner is not a known person',
    rpc: RPC_CODES.refused,
    close: CLOSE_CODES.keyRevoked,
    http: 403,
  },
  key_unknown: { message: 'the key is not enrolled for this agent', rpc: RPC_CODES.refused, close: CLOSE_CODES.keyRevoked, http: 400 },
  key_revoked: { message: 'the key has been revoked or rotated out', rpc: RPC_CODES.refused, close: CLOSE_CODES.keyRevoked, http: 400 },
  agent_mismatch: { message: 'the envelope names a different agent than the authenticated one', rpc: RPC_CODES.refused, http: 400 },
  envelope_signature_invalid: { message: 'the envelope signature does not verify', rpc: RPC_CODES.envelopeRejected, http: 400 },
  envelope_replayed: { message: 'the envelope nonce has been used before', rpc: RPC_CODES.envelopeRejected, http: 400 },
  envelope_stale: { message: 'the envelope timestamp is too old', rpc: RPC_CODES.envelopeRejected, http: 400 },
  envelope_future: { message: 'the envelope timestamp is in the future', rpc: RPC_CODES.envelopeRejected, http: 400 },
  enrollment_invalid: { message: 'the enrollment request is malformed', rpc: RPC_CODES.refused, http: 400 },
  enrollment_proof_invalid: { message: 'the enrollment request is not signed by the key it enrolls', rpc: RPC_CODES.refused, http: 400 },
  enrollment_conflict: { message: 'an agent with that id is already enrolled', rpc: RPC_CODES.refused, http: 400 },
  owner_unknown: { message: 'the owner is not an active person in the approver directory', rpc: RPC_CODES.refused, http: 400 },
  group_unknown: { message: 'no policy of the active set names that agent group', rpc: RPC_CODES.refused, http: 400 },
  data_class_unknown: { message: 'the data class is not declared in the policy schema', rpc: RPC_CODES.refused, http: 400 },
  jurisdiction_unknown: { message: 'the jurisdiction is not declared in the policy schema', rpc: RPC_CODES.refused, http: 400 },

  // Calls and policy
  unknown_tool: { message: 'the tool is not declared in the policy schema', rpc: RPC_CODES.invalidParams, http: 400 },
  invalid_params: { message: 'the call parameters do not match the tool schema', rpc: RPC_CODES.invalidParams, http: 400 },
  policy_invalid: { message: 'the policy set failed to parse or validate', rpc: RPC_CODES.refused, http: 400 },
  policy_test_failed: { message: 'a policy decision test did not produce the expected decision', rpc: RPC_CODES.refused, http: 400 },
  request_unknown: { message: 'no request has that id for this agent', rpc: RPC_CODES.refused, http: 404 },
  // The desk's History view (main/core/ui/history-reader.ts)
  history_request_unknown: { message: 'no decided request has that id', rpc: RPC_CODES.refused, http: 404 },
  history_cursor_invalid: { message: 'the history cursor is not one a history page returned', rpc: RPC_CODES.refused, http: 400 },

  // Human approvals (WebAuthn)
  approver_unknown: { message: 'no approver has that id', rpc: RPC_CODES.refused, http: 404 },
  alias_conflict: { message: 'the id or alias already names a person', rpc: RPC_CODES.refused, http: 409 },
  approver_disabled: { message: 'the approver is disabled', rpc: RPC_CODES.refused, http: 403 },
  approver_not_eligible: { message: 'the approver is not in a group this request needs', rpc: RPC_CODES.refused, http: 403 },
  approver_conflicted: { message: 'the approver may not approve this request', rpc: RPC_CODES.refused, http: 403 },
  approver_already_decided: { message: 'the approver has already decided this request', rpc: RPC_CODES.refused, http: 409 },
  credential_unknown: {
    message: 'the security key is not registered to this approver for this ceremony',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  credential_suspect: { message: 'the security key reported a signature counter that went backwards', rpc: RPC_CODES.refused, http: 403 },
  challenge_invalid: {
    message: 'the ceremony challenge is unknown, used, expired or for another request',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  assertion_invalid: { message: 'the security key response does not verify', rpc: RPC_CODES.refused, http: 400 },
  attestation_refused: { message: 'the security key is not an accepted authenticator', rpc: RPC_CODES.refused, http: 403 },
  request_not_pending: { message: 'the request is no longer waiting for approval', rpc: RPC_CODES.refused, http: 409 },
  virtual_approver_refused: { message: 'virtual approvers exist only in the headless test key domain', rpc: RPC_CODES.refused, http: 403 },
  approval_invalid: { message: 'an approval carried in the token does not verify', rpc: RPC_CODES.refused, http: 400 },

  // Approval tokens (tool-side verification)
  token_malformed: { message: 'the token is not a well-formed compact JWS', rpc: RPC_CODES.refused, http: 400 },
  token_alg_not_allowed: { message: 'the token algorithm is not the one pinned for its key', rpc: RPC_CODES.refused, http: 400 },
  token_typ_invalid: { message: 'the token type is not a Countersign approval token', rpc: RPC_CODES.refused, http: 400 },
  token_kid_unknown: { message: 'the token key id is not among the trusted keys', rpc: RPC_CODES.refused, http: 400 },
  token_signature_invalid: { message: 'the token signature does not verify', rpc: RPC_CODES.refused, http: 400 },
  token_audience_mismatch: { message: 'the token was issued for another audience', rpc: RPC_CODES.refused, http: 400 },
  token_expired: { message: 'the token has expired', rpc: RPC_CODES.refused, http: 400 },
  token_not_yet_valid: { message: 'the token is not valid yet', rpc: RPC_CODES.refused, http: 400 },
  token_claims_invalid: { message: 'the token claims are missing or malformed', rpc: RPC_CODES.refused, http: 400 },
  token_tool_mismatch: { message: 'the token was issued for another tool', rpc: RPC_CODES.refused, http: 400 },
  token_digest_mismatch: { message: 'the call parameters differ from the ones the token approves', rpc: RPC_CODES.refused, http: 400 },
  token_replayed: { message: 'the token has already been used', rpc: RPC_CODES.refused, http: 400 },
  token_not_approved: { message: 'the token does not carry an allow decision', rpc: RPC_CODES.refused, http: 400 },

  // Operations
  config_invalid: { message: 'the configuration is invalid', rpc: RPC_CODES.refused, http: 400 },
  // (first-hour errors: a file that is not there, a port another process holds)
  file_not_found: {
    message: 'a file or directory named in the configuration or a command does not exist',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  port_in_use: { message: 'the gateway port is already in use by another process', rpc: RPC_CODES.refused, http: 400 },
  // (hubs on a host name: docs/team-mode.md)
  tls_required: {
    message: 'serving beyond this machine needs tls: give a certificate and key, or ask for a development certificate',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  tls_certificate_invalid: {
    message: 'the tls certificate or key cannot be used',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  store_failed: { message: 'the data store could not complete the operation', rpc: RPC_CODES.internalError, http: 500 },
  data_dir_locked: { message: 'another countersign process is using this data directory', rpc: RPC_CODES.refused, http: 400 },
  audit_write_failed: {
    message: 'the audit record could not be written, so the action was refused',
    rpc: RPC_CODES.internalError,
    http: 500,
  },
  signer_failed: { message: 'the signing key could not produce a valid signature', rpc: RPC_CODES.internalError, http: 500 },
  signer_unavailable: {
    message: 'the signing key is not available right now; no token was issued',
    rpc: RPC_CODES.internalError,
    http: 503,
  },
  signer_timeout: { message: 'the signing device did not answer in time; no token was issued', rpc: RPC_CODES.internalError, http: 504 },
  hsm_module_invalid: { message: 'the PKCS#11 module cannot be loaded', rpc: RPC_CODES.refused, http: 400 },
  hsm_token_not_found: { message: 'no PKCS#11 token matches the configured label or slot', rpc: RPC_CODES.refused, http: 400 },
  hsm_pin_incorrect: { message: 'the PKCS#11 PIN was rejected', rpc: RPC_CODES.refused, http: 400 },
  hsm_pin_locked: { message: 'the PKCS#11 PIN is locked', rpc: RPC_CODES.refused, http: 400 },
  hsm_key_not_found: { message: 'the signing key is not on the token', rpc: RPC_CODES.refused, http: 400 },
  hsm_key_mismatch: { message: 'the key on the token does not match its pinned fingerprint', rpc: RPC_CODES.refused, http: 400 },
  hsm_key_extractable: { message: 'the signing key on the token can be extracted', rpc: RPC_CODES.refused, http: 400 },
  hardware_custody_required: { message: 'the configuration requires a hardware-held signing key', rpc: RPC_CODES.refused, http: 400 },
  signing_key_unpublished: {
    message: 'the signing key is no longer published long enough to sign; no token was issued',
    rpc: RPC_CODES.internalError,
    http: 500,
  },
  timeout: { message: 'the operation timed out', rpc: RPC_CODES.refused, http: 504 },
  connection_closed: { message: 'the connection closed before the operation completed', rpc: RPC_CODES.refused, http: 400 },
  internal_error: { message: 'an internal error occurred', rpc: RPC_CODES.internalError, http: 500 },

  // Audit log (Merkle log, checkpoints, proofs, exports)
  audit_corrupt: {
    message: 'the audit log is damaged: an entry or a hash is missing or does not match',
    rpc: RPC_CODES.internalError,
    http: 500,
  },
  audit_rollback: {
    message: 'the audit log is older than its last checkpoint: it was truncated or restored from an older copy',
    rpc: RPC_CODES.refused,
    http: 500,
  },
  audit_fork: { message: 'the audit log does not match its last checkpoint', rpc: RPC_CODES.refused, http: 500 },
  audit_checkpoint_missing: { message: 'the checkpoint kept outside the database is missing', rpc: RPC_CODES.refused, http: 500 },
  audit_checkpoint_invalid: { message: 'the checkpoint is malformed or its signature does not verify', rpc: RPC_CODES.refused, http: 400 },
  audit_proof_unavailable: { message: 'no proof exists for that entry or tree size', rpc: RPC_CODES.refused, http: 404 },
  audit_export_invalid: { message: 'the audit export is malformed or does not verify', rpc: RPC_CODES.refused, http: 400 },
  audit_event_invalid: {
    message: 'the audit event does not match the schema of its kind, so nothing was recorded',
    rpc: RPC_CODES.refused,
    http: 500,
  },
  audit_proof_invalid: { message: 'the audit proof does not verify against its signed checkpoint', rpc: RPC_CODES.refused, http: 400 },
  tamper_alarm_unknown: { message: 'no open tamper alarm has that id', rpc: RPC_CODES.refused, http: 409 },

  // Desk sessions (sign-in with a security key; docs/adr/0010-desk-sessions.md)
  not_signed_in: { message: 'no one is signed in at this desk, or the session ended', rpc: RPC_CODES.refused, http: 403 },
  approver_mismatch: { message: 'the call acts for another person than the one signed in', rpc: RPC_CODES.refused, http: 403 },
  admin_required: { message: 'only a signed-in admin may do this', rpc: RPC_CODES.refused, http: 403 },
  last_admin: { message: 'the last admin cannot leave the admin group or be disabled', rpc: RPC_CODES.refused, http: 409 },
  admin_self_confirm: { message: 'an admin cannot confirm or reject their own proposed action', rpc: RPC_CODES.refused, http: 403 },
  admin_proposal_unknown: { message: 'no proposed admin action has that id', rpc: RPC_CODES.refused, http: 404 },
  admin_proposal_closed: {
    message: 'the proposed admin action was already confirmed, rejected or has expired',
    rpc: RPC_CODES.refused,
    http: 409,
  },

  // MCP gating proxy (tool errors it returns to the agent host, in _meta)
  mcp_tool_refused: { message: 'the proxy is configured to refuse this MCP tool', rpc: RPC_CODES.refused, http: 400 },
  mcp_call_denied: { message: 'policy or an approver refused the call', rpc: RPC_CODES.refused, http: 400 },
  mcp_approval_expired: { message: 'no approver decided before the approval window closed', rpc: RPC_CODES.refused, http: 400 },
  mcp_approval_required: { message: 'the tool runs only with a human approval, and the call had none', rpc: RPC_CODES.refused, http: 400 },
  mcp_countersign_unavailable: {
    message: 'Countersign could not be reached or could not decide, so the call was not run',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  mcp_downstream_failed: { message: 'the MCP tool server failed or is not running', rpc: RPC_CODES.refused, http: 400 },
  mcp_already_executed: { message: 'the approved call was already executed once', rpc: RPC_CODES.refused, http: 400 },

  // Team mode (PostgreSQL store, docs/team-mode.md)
  store_unavailable: {
    message: 'the team database cannot be reached right now; nothing was decided',
    rpc: RPC_CODES.internalError,
    http: 503,
  },
  // The desk's first run and security keys (renderer/src/desk/first-run.tsx, docs/desktop.md)
  first_run_closed: { message: 'an admin already exists, so the first-run setup is closed', rpc: RPC_CODES.refused, http: 409 },
  platform_authenticator_refused: {
    message: 'a built-in platform authenticator is not accepted here; use a security key',
    rpc: RPC_CODES.refused,
    http: 403,
  },
  // Signed webhooks (shared/webhook-signature.ts, main/core/notify/)
  webhook_signature_malformed: {
    message: 'the webhook signature header is missing or not of the form t=<seconds>,v1=<hex>',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  webhook_signature_stale: { message: 'the webhook signature timestamp is outside the allowed window', rpc: RPC_CODES.refused, http: 400 },
  webhook_signature_invalid: { message: 'the webhook signature does not match the body and secret', rpc: RPC_CODES.refused, http: 401 },
  webhook_secret_unavailable: {
    message: 'the webhook secret file or environment variable is missing or empty',
    rpc: RPC_CODES.refused,
    http: 400,
  },
  webhook_dead_letter_unknown: { message: 'no dead-lettered webhook delivery has that id', rpc: RPC_CODES.refused, http: 404 },
} as const satisfies Record<string, ErrorRecord>;

export type ErrorCode = keyof typeof ERROR_RECORDS;

/** The message of every code (what `new CountersignError(code)` says when given no message). */
export const ERROR_CODES: { readonly [C in ErrorCode]: string } = Object.freeze(
  Object.fromEntries(Object.entries(ERROR_RECORDS).map(([code, record]) => [code, record.message])) as Record<ErrorCode, string>,
);

/** Authentication gets one attempt: whatever failed inside session.authenticate, the connection closes with this. */
export const AUTHENTICATION_FAILED_CLOSE = CLOSE_CODES.authFailed;

export function errorRecord(code: ErrorCode): ErrorRecord {
  return ERROR_RECORDS[code];
}

/** The JSON-RPC error number for a code. */
export function rpcCodeFor(code: ErrorCode): number {
  return ERROR_RECORDS[code].rpc;
}

/** The HTTP status for an error body carrying this code. */
export function httpStatusFor(code: ErrorCode): number {
  return ERROR_RECORDS[code].http;
}

/** The WebSocket close code when this error ends a connection, or undefined if it does not. */
export function closeCodeFor(code: ErrorCode): number | undefined {
  return (ERROR_RECORDS[code] as ErrorRecord).close;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** The error type thrown and reported by every Countersign module. */
export class CountersignError extends Error {
  override readonly name = 'CountersignError';
  readonly code: ErrorCode;
  /** Safe, structured details for the caller (never secrets). */
  readonly details: Readonly<Record<string, string | number | boolean>> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, string | number | boolean> }) {
    super(message ?? ERROR_CODES[code], options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

export function isCountersignError(value: unknown, code?: ErrorCode): value is CountersignError {
  return value instanceof CountersignError && (code === undefined || value.code === code);
}

/** Quote user-supplied text for an error message, bounded so a message never balloons. */
export function quote(value: unknown, max = 80): string {
  const text = typeof value === 'string' ? value : String(value);
  const clipped = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(clipped);
}

/**
 * Any thrown value as a CountersignError. Errors crossing Electron's context bridge keep only
 * their message, so the preload puts the code in front (`[code] message`, bridgeErrorMessage in
 * shared/bridge.ts) and this restores it; anything else is internal_error.
 */
export function toCountersignError(error: unknown): CountersignError {
  if (isCountersignError(error)) return error;
  const message = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  const match = /\[([a-z_]{1,64})\] ?(.*)$/s.exec(message);
  const code = match?.[1];
  if (code !== undefined && isErrorCode(code)) return new CountersignError(code, match?.[2] || ERROR_CODES[code], { cause: error });
  return new CountersignError('internal_error', undefined, { cause: error });
}
