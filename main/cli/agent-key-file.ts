/** The agent key file written by `keygen`: the private JWK and the agent id, mode 0600. */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { CountersignError } from '../../shared/errors.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import type { AgentPrivateJwk } from '../../shared/agent-keys.js';

export interface AgentKeyFile {
  agentId: string;
  privateJwk: AgentPrivateJwk;
}

export function writeAgentKeyFile(path: string, content: AgentKeyFile): void {
  // 'wx': never overwrite an existing key by accident.
  writeFileSync(path, `${JSON.stringify(content, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
}

export function readAgentKeyFile(path: string): AgentKeyFile {
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new CountersignError('config_invalid', `the agent key file ${JSON.stringify(path)} is readable by other users (mode ${mode.toString(8)}); run chmod 600 on it`);
  }
  const value = parseStrictJson(readFileSync(path, 'utf8')) as unknown as AgentKeyFile;
  if (typeof value.agentId !== 'string' || typeof value.privateJwk !== 'object') {
    throw new CountersignError('config_invalid', `${JSON.stringify(path)} is not an agent key file`);
  }
  return value;
}
