/**
 * @doyensec/electronegativity over the Electron shell (main/electron, main/preload), inside
 * `npm test`: every finding must be fixed or justified in build/electronegativity.json, and every
 * justification must still match a finding (so the file cannot rot). The scanner reads the
 * sources only (no Electron binary); it is given the pinned Electron version, and its attempt to
 * fetch newer release data fails harmlessly offline.
 */
import { describe, expect, it } from 'vitest';
import { cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { REPO_ROOT } from '../../main/core/app.js';
import { tempDir } from '../helpers/harness.js';

interface Finding {
  id: string;
  file: string;
  location: { line: number; column: number };
  description: string;
}
type Run = (
  options: Record<string, unknown>,
  forCli: boolean,
) => Promise<{ errors: Array<{ file: string; message: string }>; issues: Finding[] }>;

const require = createRequire(import.meta.url);
const loaded = require('@doyensec/electronegativity') as Run | { default: Run };
const run: Run = typeof loaded === 'function' ? loaded : loaded.default;
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
const config = JSON.parse(readFileSync(join(REPO_ROOT, 'build', 'electronegativity.json'), 'utf8')) as {
  justified: Array<{ id: string; file: string; reason: string }>;
};

describe('electronegativity over the Electron shell', () => {
  it('finds nothing that is neither fixed nor justified in build/electronegativity.json', async () => {
    // Only the shell: the scanner would otherwise read the whole repository (tests, node_modules).
    const input = tempDir('electronegativity-');
    try {
      for (const dir of ['main/electron', 'main/preload']) {
        mkdirSync(join(input, dir), { recursive: true });
        cpSync(join(REPO_ROOT, dir), join(input, dir), { recursive: true });
      }
      const result = await run({ input, electronVersionOverride: pkg.devDependencies.electron, isRelative: true }, false);
      expect(result.errors).toEqual([]);
      const found = result.issues.map((i) => ({
        id: i.id,
        file: i.file,
        where: `${i.file}:${i.location.line}`,
        description: i.description,
      }));
      const key = (f: { id: string; file: string }) => `${f.id} ${f.file}`;
      const justified = new Set(config.justified.map(key));
      for (const entry of config.justified) expect(entry.reason.length, key(entry)).toBeGreaterThan(40);
      expect(found.filter((f) => !justified.has(key(f)))).toEqual([]);
      const stillFound = new Set(found.map(key));
      expect(config.justified.map(key).filter((k) => !stillFound.has(k))).toEqual([]);
    } finally {
      rmSync(input, { recursive: true, force: true });
    }
  }, 120_000);
});
