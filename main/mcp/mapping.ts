/**
 * The MCP proxy's mapping file: which Countersign tool, data class and treatment each MCP tool
 * of one downstream server gets, and which arguments carry a role policy can read (the path,
 * the amount, the payee). It also turns one MCP tools/call into the Countersign call the proxy
 * signs. docs/mcp.md describes the file; examples/mcp/mcp-map.json is a complete one.
 */
import { z } from 'zod';
import { canonicalize, type JsonObject, type JsonValue } from '../../shared/canonical-json.js';
import { CountersignError, quote } from '../../shared/errors.js';
import { toolNameSchema } from '../../shared/protocol.js';

const label = z.string().min(1).max(128);
const roleName = z.string().regex(/^[a-z][A-Za-z0-9_]{0,63}$/, 'must be a lowercase-initial name');

/** Params members the proxy sets itself; a role may not take one of these names. */
export const RESERVED_PARAMS = ['server', 'tool', 'arguments', 'readOnly', 'destructive', 'idempotent', 'openWorld'] as const;

/**
 * `policy`: Countersign's policy decides (allow, deny or hold). `approval`: the call runs only
 * with a human quorum's approval; an automatic allow is refused. `deny`: never forwarded.
 */
export const treatmentSchema = z.enum(['policy', 'approval', 'deny']);
export type Treatment = z.infer<typeof treatmentSchema>;

const toolMappingSchema = z.strictObject({
  /** The Countersign tool name (an action in the policy schema), e.g. `fs.write`. */
  tool: toolNameSchema,
  dataClass: label.optional(),
  /** Role name → top-level argument name, e.g. `{ "path": "path", "amount": "value" }`. */
  roles: z.record(roleName, label).default({}),
  treatment: treatmentSchema.default('policy'),
});
export type ToolMapping = z.infer<typeof toolMappingSchema>;

export const mappingFileSchema = z.strictObject({
  /** A short name for the downstream server, signed into every call as `params.server`. */
  server: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be a short name ([A-Za-z0-9._-])'),
  /** The audience Countersign's tokens carry for this server (the Tool entities' `audience`). */
  audience: label,
  dataClass: label.default('unclassified'),
  jurisdiction: label.default('US'),
  /** What an MCP tool without an entry gets: refused, or held for a human quorum. Never allowed. */
  unmapped: z.enum(['deny', 'approval']).default('deny'),
  /** The Countersign tool that unmapped calls are submitted as when `unmapped` is `approval`. */
  unmappedTool: toolNameSchema.default('mcp.unmapped'),
  /** The audience of tokens for unmapped calls (that tool's entity may serve several servers). */
  unmappedAudience: label.default('mcp:unmapped'),
  tools: z.record(label, toolMappingSchema).default({}),
  /**
   * Resources (list, templates, read) and prompts (list, get) are context the host fetches, not
   * actions: `pass` (default) forwards them unchanged and ungated; `refuse` hides them (empty
   * lists, reads and gets refused). docs/mcp.md "Resources, prompts, logging, completions".
   */
  resources: z.enum(['pass', 'refuse']).default('pass'),
  prompts: z.enum(['pass', 'refuse']).default('pass'),
});
export type MappingFile = z.infer<typeof mappingFileSchema>;

/** Parse and check a mapping file's JSON value; every problem is `config_invalid` naming the member. */
export function parseMapping(value: unknown, source = 'the mapping file'): MappingFile {
  const parsed = mappingFileSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new CountersignError('config_invalid', `${source} is invalid${where}: ${issue?.message ?? 'unknown problem'}`);
  }
  for (const [mcpName, entry] of Object.entries(parsed.data.tools)) {
    for (const role of Object.keys(entry.roles)) {
      if ((RESERVED_PARAMS as readonly string[]).includes(role)) {
        throw new CountersignError('config_invalid', `${source} is invalid at tools.${mcpName}.roles: ${quote(role)} is a reserved name`);
      }
    }
  }
  return parsed.data;
}

/** A mapping for a server with no file: every tool is unmapped, so every call is refused. */
export function emptyMapping(server: string, audience = `mcp:${server}`): MappingFile {
  return parseMapping({ server, audience });
}

/** MCP tool annotations (hints from the downstream server) as the proxy reads them. */
export interface ToolHints {
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

export interface MappedCall {
  /** The call Countersign decides and the token binds: exactly what the proxy verifies. */
  tool: string;
  params: JsonObject;
  dataClass: string;
  jurisdiction: string;
  treatment: Treatment;
  mapped: boolean;
  /** The audience the approval token must carry. */
  audience: string;
}

/**
 * Turn one MCP tools/call into the Countersign call the proxy signs. The MCP arguments travel as
 * their canonical JSON text (`params.arguments`): Cedar cannot type arbitrary JSON, but a string
 * it can show to approvers and bind exactly. Annotations use the MCP defaults when absent
 * (not read-only, destructive, open world), so a server that says nothing is treated as risky.
 */
export function mapCall(
  mapping: MappingFile,
  mcpTool: string,
  args: JsonObject,
  hints: ToolHints | undefined,
  canonicalArgs = canonicalize(args),
): MappedCall {
  const entry = Object.prototype.hasOwnProperty.call(mapping.tools, mcpTool) ? mapping.tools[mcpTool] : undefined;
  const params: JsonObject = {
    server: mapping.server,
    tool: mcpTool,
    arguments: canonicalArgs,
    readOnly: hints?.readOnlyHint ?? false,
    destructive: hints?.destructiveHint ?? true,
    idempotent: hints?.idempotentHint ?? false,
    openWorld: hints?.openWorldHint ?? true,
  };
  if (!entry) {
    return {
      tool: mapping.unmappedTool,
      params,
      dataClass: mapping.dataClass,
      jurisdiction: mapping.jurisdiction,
      treatment: mapping.unmapped === 'deny' ? 'deny' : 'approval',
      mapped: false,
      audience: mapping.unmappedAudience,
    };
  }
  for (const [role, argName] of Object.entries(entry.roles)) {
    if (!Object.prototype.hasOwnProperty.call(args, argName)) continue;
    params[role] = roleValue(args[argName], mcpTool, argName);
  }
  return {
    tool: entry.tool,
    params,
    dataClass: entry.dataClass ?? mapping.dataClass,
    jurisdiction: mapping.jurisdiction,
    treatment: entry.treatment,
    mapped: true,
    audience: mapping.audience,
  };
}

/** A role value as policy reads it: strings as they are, numbers as decimal text (Cedar has no floats). */
function roleValue(value: JsonValue | undefined, mcpTool: string, argName: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) {
    const text = String(value);
    if (/e/i.test(text))
      throw new CountersignError(
        'invalid_params',
        `the argument ${quote(argName)} of ${quote(mcpTool)} is a number too large or small to decide on`,
      );
    return text.includes('.') ? text : `${text}.0`;
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  throw new CountersignError(
    'invalid_params',
    `the argument ${quote(argName)} of ${quote(mcpTool)} must be a string or a number for policy to read it`,
  );
}
