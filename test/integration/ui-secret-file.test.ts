/**
 * `--ui-secret-file`: `countersign headless` writes the desk API's bearer secret to a 0600 file
 * for CI, the secret in it opens the API, and a clean exit removes the file. A symlink planted at
 * the path is refused rather than followed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/harness.js';
import { writeUiSecretFile } from '../../main/cli/ui-secret-file.js';
import { compiledCli } from '../helpers/compiled-script.js';

// The CLI compiled once for the run (test/helpers/compile-scripts.ts), started with plain Node.
const NODE = process.execPath;
const CLI = compiledCli();
const dir = tempDir();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('--ui-secret-file', () => {
  it('writes the secret 0600 for headless runs, the secret opens the API, and a clean exit removes the file', async () => {
    const dataDir = join(dir, 'data');
    const secretFile = join(dir, 'ui-secret');
    const child = spawn(NODE, [CLI, 'headless', '--port', '0', '--data-dir', dataDir, '--ui-secret-file', secretFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 120_000;
    while (!(existsSync(secretFile) && /(?:localhost|127\.0\.0\.1):(\d+)/.test(out)) && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 100));
    try {
      expect(existsSync(secretFile), out).toBe(true);
      expect(statSync(secretFile).mode & 0o777).toBe(0o600);
      const secret = readFileSync(secretFile, 'utf8').trim();
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const port = /(?:localhost|127\.0\.0\.1):(\d+)/.exec(out)![1];
      const ok = await fetch(`http://127.0.0.1:${port}/api/ui/status`, { headers: { authorization: `Bearer ${secret}` } });
      expect(ok.status).toBe(200);
      const refused = await fetch(`http://127.0.0.1:${port}/api/ui/status`, { headers: { authorization: `Bearer ${'A'.repeat(43)}` } });
      expect(refused.status).toBe(401);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
    }
    expect(child.exitCode).toBe(0);
    expect(existsSync(secretFile)).toBe(false);
  }, 180_000);

  it('refuses a symlink planted at the path, and tightens an existing file to 0600', () => {
    const target = join(dir, 'elsewhere');
    writeFileSync(target, 'keep me');
    const link = join(dir, 'planted');
    symlinkSync(target, link);
    expect(() => writeUiSecretFile(link, 'A'.repeat(43))).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(readFileSync(target, 'utf8')).toBe('keep me');

    const loose = join(dir, 'loose');
    writeFileSync(loose, 'old', { mode: 0o644 });
    const remove = writeUiSecretFile(loose, 'B'.repeat(43));
    expect(statSync(loose).mode & 0o777).toBe(0o600);
    expect(readFileSync(loose, 'utf8')).toBe(`${'B'.repeat(43)}\n`);
    remove();
    expect(existsSync(loose)).toBe(false);
  });
});
