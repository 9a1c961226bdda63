/**
 * The call digest of shared/approval-token.ts (base64url SHA-256 of JCS({tool, params})),
 * computed synchronously with node:crypto. The shared version uses WebCrypto, whose digest is
 * asynchronous and costs an event-loop round trip per decision; both must agree byte for byte
 * (test/unit/call-digest.test.ts runs them over the same vectors).
 */
import { createHash } from 'node:crypto';
import { canonicalBytes, type JsonValue } from '../../../shared/canonical-json.js';

export function callDigest(tool: string, params: JsonValue): string {
  return createHash('sha256').update(canonicalBytes({ tool, params })).digest('base64url');
}
