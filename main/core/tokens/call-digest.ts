/**
 * The call digest of shared/approval-token.ts (base64url SHA-256 of JCS({tool, params})),
 * computed synchronously with node:crypto. The shared version uses WebCrypto, whose digest is
 * asynchronous and costs an event-loop round trip per decision; both must agree byte for byte
 * (test/unit/call-digest.test.ts runs them over the same vectors).
 */
import { hash } from 'node:crypto';
import { canonicalize, type JsonValue } from '../../../shared/canonical-json.js';

/** node:crypto's one-shot hash: the canonical text is hashed as UTF-8 without a copy or a hash object. */
export function callDigest(tool: string, params: JsonValue): string {
  return hash('sha256', canonicalize({ tool, params }), 'base64url');
}
