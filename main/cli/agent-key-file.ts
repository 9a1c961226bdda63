/** The agent key file written by `keygen`: the private JWK and the agent id, mode 0600. */
import { writeFileSync } from 'node:fs';
import { readPrivateFile } from '../core/custody/private-file.js';
import { CountersignError } from '../../shared/errors.js';
import { fileNotFound } from '../core/user-files.js';
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

/** The same rules as every secret file: 0600, owned by this user, no symlink. */
export async function readAgentKeyFile(path: string): Promise<AgentKeyFile> {
  const text = await readPrivateFile(path, 'agent key', 64 * 1024);
  if (text === undefined) throw fileNotFound('the agent key file', path);
  const value = parseStrictJson(text) as unknown as AgentKeyFile;
  if (typeof value.agentId !== 'string' || typeof value.privateJwk !== 'object') {
    throw new CountersignError('config_invalid', `${JSON.stringify(path)} is not an agent key file`);
  }
  return value;
}
