/**
 * Tool-side check for MCP servers behind `countersign mcp-proxy`: the forwarded tools/call
 * carries `_meta["dev.countersign/approval"] = {token, call}`. This verifies that `call` is the
 * call this server is about to run (same server name, MCP tool and canonical arguments) and that
 * the token approves exactly that call (shared/verify-approval-token.ts does every token check).
 * Pure TypeScript, like the token verifier.
 */
import { canonicalize, type JsonObject, type JsonValue } from './canonical-json.js';
import { CountersignError, quote } from './errors.js';
import { verifyApprovalToken, type VerifyApprovalTokenOptions } from './verify-approval-token.js';
import type { VerifiedApproval } from './approval-token.js';

export const MCP_APPROVAL_META_KEY = 'dev.countersign/approval';

export interface McpApprovalCheck extends Omit<VerifyApprovalTokenOptions, 'call'> {
  /** This server's short name, as in the proxy's mapping file (`server`). */
  server: string;
  /** The MCP tool name being called. */
  mcpTool: string;
  /** The arguments this server received and will act on. */
  arguments: JsonObject;
}

/**
 * Throws CountersignError: `token_malformed` when `_meta` has no approval, `token_digest_mismatch`
 * when the approved call is not this one, or any code of verifyApprovalToken.
 */
export async function verifyMcpApproval(
  meta: Readonly<Record<string, unknown>> | undefined,
  check: McpApprovalCheck,
): Promise<VerifiedApproval> {
  const approval = meta?.[MCP_APPROVAL_META_KEY] as { token?: unknown; call?: { tool?: unknown; params?: unknown } } | undefined;
  if (typeof approval !== 'object' || approval === null || typeof approval.token !== 'string') {
    throw new CountersignError('token_malformed', 'the call carries no Countersign approval in _meta');
  }
  const call = approval.call;
  if (
    typeof call !== 'object' ||
    call === null ||
    typeof call.tool !== 'string' ||
    typeof call.params !== 'object' ||
    call.params === null ||
    Array.isArray(call.params)
  ) {
    throw new CountersignError('token_claims_invalid', 'the approval in _meta does not name the call it approves');
  }
  const params = call.params as Record<string, unknown>;
  // The approved call must be this call: the token binds `call`, and `call` must bind what runs.
  if (params.server !== check.server)
    throw new CountersignError('token_digest_mismatch', `the approval is for server ${quote(String(params.server))}, not this one`);
  if (params.tool !== check.mcpTool)
    throw new CountersignError(
      'token_digest_mismatch',
      `the approval is for tool ${quote(String(params.tool))}, not ${quote(check.mcpTool)}`,
    );
  if (params.arguments !== canonicalize(check.arguments))
    throw new CountersignError('token_digest_mismatch', 'the arguments differ from the ones the approval is for');
  return verifyApprovalToken(approval.token, { ...check, call: { tool: call.tool, params: params as JsonValue } });
}
