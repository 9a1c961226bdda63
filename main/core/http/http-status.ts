/**
 * The ONE mapping from an error code to an HTTP status, used by the edge's error mapper
 * (http-edge.ts `sendError`). The "errors" work turns each code into a record in shared/errors.ts
 * carrying its HTTP status; at merge this function reads that table instead.
 */
import type { ErrorCode } from '../../../shared/errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  approver_unknown: 404, request_unknown: 404, request_not_pending: 409, approver_already_decided: 409,
  approver_conflicted: 403, agent_held_for_review: 403, alias_conflict: 409, approver_not_eligible: 403, approver_disabled: 403, virtual_approver_refused: 403, attestation_refused: 403,
  credential_suspect: 403, credential_unknown: 400, challenge_invalid: 400, assertion_invalid: 400, schema_invalid: 400, config_invalid: 400,
  not_authenticated: 401, origin_not_allowed: 403, host_not_allowed: 421, frame_too_large: 413, timeout: 504, audit_proof_unavailable: 404, tamper_alarm_unknown: 409,
  too_many_connections: 503,
};

/** The HTTP status for an error code: its entry, 500 for internal_error, 400 for any other refusal of the input. */
export function httpStatusFor(code: ErrorCode): number {
  return STATUS[code] ?? (code === 'internal_error' ? 500 : 400);
}
