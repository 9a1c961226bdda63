/**
 * `countersign mcp-proxy --print-config HOST`: the entry to paste into an agent host's MCP
 * configuration so the host starts the server through the proxy. Claude Desktop, Cursor and most
 * hosts read an `mcpServers` object; VS Code reads `servers` with a `type`.
 */
import { CountersignError } from '../../shared/errors.js';
import type { Downstream } from './proxy.js';

export const HOSTS = ['claude-desktop', 'cursor', 'vscode', 'generic'] as const;
export type Host = (typeof HOSTS)[number];

export interface HostConfigInput {
  name: string;
  agentKeyFile: string;
  mapFile: string | undefined;
  countersignUrl: string | undefined;
  /** The hub's CA file (an absolute path) and pinned fingerprint, passed on as given: the host's process has none of the shell's environment. */
  countersignCa?: string | undefined;
  countersignFingerprint?: string | undefined;
  domain: string | undefined;
  downstream: Downstream;
}

/** The argument list of the proxy command the host runs. */
export function proxyArgs(input: HostConfigInput): string[] {
  const args = ['mcp-proxy', '--agent', input.agentKeyFile];
  if (input.mapFile !== undefined) args.push('--map', input.mapFile);
  if (input.countersignUrl !== undefined) args.push('--countersign', input.countersignUrl);
  if (input.countersignCa !== undefined) args.push('--countersign-ca', input.countersignCa);
  if (input.countersignFingerprint !== undefined) args.push('--countersign-fingerprint', input.countersignFingerprint);
  if (input.domain !== undefined) args.push('--domain', input.domain);
  if ('url' in input.downstream) args.push('--url', input.downstream.url);
  else args.push('--', input.downstream.command, ...input.downstream.args);
  return args;
}

export function printHostConfig(host: string, input: HostConfigInput): string {
  if (!(HOSTS as readonly string[]).includes(host)) {
    throw new CountersignError('config_invalid', `unknown host ${JSON.stringify(host)}; use one of ${HOSTS.join(', ')}`);
  }
  const entry = { command: 'countersign', args: proxyArgs(input) };
  const config = host === 'vscode' ? { servers: { [input.name]: { type: 'stdio', ...entry } } } : { mcpServers: { [input.name]: entry } };
  return JSON.stringify(config, null, 2);
}
