/**
 * One closed union of stable error codes for everything Countersign reports to a caller.
 * Codes are API: never rename one, only add. Messages are lowercase, quote user input, and
 * never name internal modules. docs/errors.md documents every code.
 */
export const ERROR_CODES = {
  // I-JSON / canonical JSON (RFC 7493, RFC 8785)
  json_invalid: 'the text is not valid JSON',
  json_duplicate_key: 'an object has the same member name twice',
  json_unsafe_integer: 'a number is an integer outside the IEEE-754 safe range',
  json_non_finite: 'a number is NaN or infinite',
  json_lone_surrogate: 'a string contains an unpaired UTF-16 surrogate',
  json_too_deep: 'the JSON nesting is deeper than allowed',
  json_unsupported_value: 'a value cannot be represented in JSON',
  json_reserved_member: 'an object has a member named __proto__, which cannot be represented faithfully',

  // Transport and framing
  frame_too_large: 'the message is larger than the configured maximum',
  frame_binary: 'binary frames are not accepted',
  frame_invalid_utf8: 'the message is not valid UTF-8',
  origin_not_allowed: 'the Origin header is not on the allowlist',
  host_not_allowed: 'the Host header is not on the allowlist',
  too_many_connections: 'the server has reached its connection limit',
  rate_limited: 'too many messages; slow down',
  pending_queue_full: 'too many calls are already waiting for a decision',
  handshake_timeout: 'authentication did not complete in time',

  // Protocol
  schema_invalid: 'the message does not match the protocol schema',
  method_unknown: 'the method is not part of the protocol',
  protocol_version_unsupported: 'the protocol version is not supported',
  not_authenticated: 'the connection has not authenticated yet',
  already_authenticated: 'the connection is already authenticated',

  // Agent identity and envelopes
  auth_failed: 'the agent could not prove possession of an enrolled key',
  agent_unknown: 'no enrolled agent has that id',
  agent_revoked: 'the agent has been revoked',
  agent_expired: 'the agent enrollment has expired',
  agent_held_for_review: 'the agent is held for review: its owner is not a known person',
  key_unknown: 'the key is not enrolled for this agent',
  key_revoked: 'the key has been revoked or rotated out',
  agent_mismatch: 'the envelope names a different agent than the authenticated one',
  envelope_signature_invalid: 'the envelope signature does not verify',
  envelope_replayed: 'the envelope nonce has been used before',
  envelope_stale: 'the envelope timestamp is too old',
  envelope_future: 'the envelope timestamp is in the future',
  enrollment_invalid: 'the enrollment request is malformed',
  enrollment_proof_invalid: 'the enrollment request is not signed by the key it enrolls',
  enrollment_conflict: 'an agent with that id is already enrolled',
  owner_unknown: 'the owner is not an active person in the approver directory',
  group_unknown: 'no policy of the active set names that agent group',
  data_class_unknown: 'the data class is not declared in the policy schema',
  jurisdiction_unknown: 'the jurisdiction is not declared in the policy schema',

  // Calls and policy
  unknown_tool: 'the tool is not declared in the policy schema',
  invalid_params: 'the call parameters do not match the tool schema',
  policy_invalid: 'the policy set failed to parse or validate',
  policy_test_failed: 'a policy decision test did not produce the expected decision',
  request_unknown: 'no request has that id for this agent',

  // Human approvals (WebAuthn)
  approver_unknown: 'no approver has that id',
  alias_conflict: 'the id or alias already names a person',
  approver_disabled: 'the approver is disabled',
  approver_not_eligible: 'the approver is not in a group this request needs',
  approver_conflicted: 'the approver may not approve this request',
  approver_already_decided: 'the approver has already decided this request',
  credential_unknown: 'the security key is not registered to this approver for this ceremony',
  credential_suspect: 'the security key reported a signature counter that went backwards',
  challenge_invalid: 'the ceremony challenge is unknown, used, expired or for another request',
  assertion_invalid: 'the security key response does not verify',
  attestation_refused: 'the security key is not an accepted authenticator',
  request_not_pending: 'the request is no longer waiting for approval',
  virtual_approver_refused: 'virtual approvers exist only in the headless test key domain',
  approval_invalid: 'an approval carried in the token does not verify',

  // Approval tokens (tool-side verification)
  token_malformed: 'the token is not a well-formed compact JWS',
  token_alg_not_allowed: 'the token algorithm is not the one pinned for its key',
  token_typ_invalid: 'the token type is not a Countersign approval token',
  token_kid_unknown: 'the token key id is not among the trusted keys',
  token_signature_invalid: 'the token signature does not verify',
  token_audience_mismatch: 'the token was issued for another audience',
  token_expired: 'the token has expired',
  token_not_yet_valid: 'the token is not valid yet',
  token_claims_invalid: 'the token claims are missing or malformed',
  token_tool_mismatch: 'the token was issued for another tool',
  token_digest_mismatch: 'the call parameters differ from the ones the token approves',
  token_replayed: 'the token has already been used',
  token_not_approved: 'the token does not carry an allow decision',

  // Operations
  config_invalid: 'the configuration is invalid',
  // (first-hour errors: a file that is not there, a port another process holds)
  file_not_found: 'a file or directory named in the configuration or a command does not exist',
  port_in_use: 'the gateway port is already in use by another process',
  store_failed: 'the data store could not complete the operation',
  data_dir_locked: 'another countersign process is using this data directory',
  audit_write_failed: 'the audit record could not be written, so the action was refused',
  signer_failed: 'the signing key could not produce a valid signature',
  signer_unavailable: 'the signing key is not available right now; no token was issued',
  signer_timeout: 'the signing device did not answer in time; no token was issued',
  hsm_module_invalid: 'the PKCS#11 module cannot be loaded',
  hsm_token_not_found: 'no PKCS#11 token matches the configured label or slot',
  hsm_pin_incorrect: 'the PKCS#11 PIN was rejected',
  hsm_pin_locked: 'the PKCS#11 PIN is locked',
  hsm_key_not_found: 'the signing key is not on the token',
  hsm_key_mismatch: 'the key on the token does not match its pinned fingerprint',
  hsm_key_extractable: 'the signing key on the token can be extracted',
  hardware_custody_required: 'the configuration requires a hardware-held signing key',
  signing_key_unpublished: 'the signing key is no longer published long enough to sign; no token was issued',
  timeout: 'the operation timed out',
  connection_closed: 'the connection closed before the operation completed',
  internal_error: 'an internal error occurred',

  // Audit log (Merkle log, checkpoints, proofs, exports)
  audit_corrupt: 'the audit log is damaged: an entry or a hash is missing or does not match',
  audit_rollback: 'the audit log is older than its last checkpoint: it was truncated or restored from an older copy',
  audit_fork: 'the audit log does not match its last checkpoint',
  audit_checkpoint_missing: 'the checkpoint kept outside the database is missing',
  audit_checkpoint_invalid: 'the checkpoint is malformed or its signature does not verify',
  audit_proof_unavailable: 'no proof exists for that entry or tree size',
  audit_export_invalid: 'the audit export is malformed or does not verify',
  audit_event_invalid: 'the audit event does not match the schema of its kind, so nothing was recorded',
  audit_proof_invalid: 'the audit proof does not verify against its signed checkpoint',
  tamper_alarm_unknown: 'no open tamper alarm has that id',

  // MCP gating proxy (tool errors it returns to the agent host, in _meta)
  mcp_tool_refused: 'the proxy is configured to refuse this MCP tool',
  mcp_call_denied: 'policy or an approver refused the call',
  mcp_approval_expired: 'no approver decided before the approval window closed',
  mcp_approval_required: 'the tool runs only with a human approval, and the call had none',
  mcp_countersign_unavailable: 'Countersign could not be reached or could not decide, so the call was not run',
  mcp_downstream_failed: 'the MCP tool server failed or is not running',
  mcp_already_executed: 'the approved call was already executed once',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

/** The error type thrown and reported by every Countersign module. */
export class CountersignError extends Error {
  override readonly name = 'CountersignError';
  readonly code: ErrorCode;
  /** Safe, structured details for the caller (never secrets). */
  readonly details: Readonly<Record<string, string | number | boolean>> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; details?: Record<string, string | number | boolean> },
  ) {
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
