/**
 * The software custody path refuses, rather than signs, when the key on disk is not the one
 * pinned for its domain; and the secret files every path reads share one set of rules.
 */
import { chmodSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCountersign } from '../../main/core/app.js';
import { readAgentKeyFile } from '../../main/cli/agent-key-file.js';
import { isCountersignError } from '../../shared/errors.js';
import { tempDir } from '../helpers/harness.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}

describe('software custody', () => {
  it('refuses to start when the software key file was replaced after it was pinned', async () => {
    const dataDir = dir();
    const first = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 } });
    const pinned = first.signer.keyId;
    await first.close();
    rmSync(join(dataDir, 'keys', 'software-signing-key.pem')); // the next start would make a new key
    const error = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(error, 'hsm_key_mismatch')).toBe(true);
    expect(String((error as Error).message)).toContain(pinned);
  });
});

describe('agent key files', () => {
  it('refuses a group-readable file and a symlink, and reads a private one', async () => {
    const d = dir();
    const file = join(d, 'bot.key.json');
    writeFileSync(file, JSON.stringify({ agentId: 'bot', privateJwk: { kty: 'OKP' } }), { mode: 0o600 });
    await expect(readAgentKeyFile(file)).resolves.toMatchObject({ agentId: 'bot' });
    chmodSync(file, 0o640);
    await expect(readAgentKeyFile(file)).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('chmod 600') as unknown,
    });
    chmodSync(file, 0o600);
    const link = join(d, 'link.key.json');
    symlinkSync(file, link);
    await expect(readAgentKeyFile(link)).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('symbolic link') as unknown,
    });
    await expect(readAgentKeyFile(join(d, 'absent.json'))).rejects.toMatchObject({ code: 'file_not_found' });
  });
});
