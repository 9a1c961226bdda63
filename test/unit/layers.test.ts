// The inner layer rule (docs/adr/0005-layering.md, .dependency-cruiser.cjs, bin/check-layers.mjs):
// the ADR's table and the checked LAYERS list are one order, and the check really fails on an
// upward import, a folder no layer names and a production room reaching the testing wing.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

/** The layers as .dependency-cruiser.cjs lists them, bottom to top: [name, path regexp]. */
function checkedLayers(): Array<{ name: string; path: string }> {
  const text = readFileSync(join(ROOT, '.dependency-cruiser.cjs'), 'utf8');
  const block = /const LAYERS = \[([\s\S]*?)\];/.exec(text)?.[1] ?? '';
  return [...block.matchAll(/\{ name: '([^']+)', path: '([^']+)' \}/g)].map((m) => ({ name: m[1]!, path: m[2]!.replaceAll('\\\\', '\\') }));
}

/** The ADR's table rows, bottom to top: [number, folder cell]. */
function adrRows(): Array<{ n: number; folder: string }> {
  const text = readFileSync(join(ROOT, 'docs', 'adr', '0005-layering.md'), 'utf8');
  return [...text.matchAll(/^\| (\d+) \| ([^|]+) \|/gm)].map((m) => ({ n: Number(m[1]), folder: m[2]!.trim() })).sort((a, b) => a.n - b.n);
}

/** A path of main/core the ADR's folder cell names (its first file or folder). */
function sampleOf(folder: string): string {
  const first = /`([^`]+)`/.exec(folder)?.[1] ?? folder;
  return first.endsWith('/') ? `main/core/${first}x.ts` : `main/core/${first}`;
}

describe('the inner layer order', () => {
  it('is the same in docs/adr/0005-layering.md and in the checked LAYERS list, row for row', () => {
    const layers = checkedLayers();
    const rows = adrRows();
    expect(layers.length).toBeGreaterThan(10);
    expect(rows.map((r) => r.n)).toEqual(layers.map((_, i) => i + 1));
    rows.forEach((row, i) => {
      expect(new RegExp(layers[i]!.path).test(sampleOf(row.folder)), `row ${row.n} (${row.folder}) is layer ${layers[i]!.name}`).toBe(true);
    });
  });
});

describe('bin/check-layers.mjs', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  /** Runs the real check over a small tree of `files` laid out like the repository. */
  function check(files: Record<string, string>): { status: number | null; output: string } {
    const dir = mkdtempSync(join(tmpdir(), 'cs-layers-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'bin'));
    copyFileSync(join(ROOT, 'bin', 'check-layers.mjs'), join(dir, 'bin', 'check-layers.mjs'));
    copyFileSync(join(ROOT, '.dependency-cruiser.cjs'), join(dir, '.dependency-cruiser.cjs'));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true } }),
    );
    const all = {
      'shared/s.ts': 'export const s = 1;\n',
      'test/t.ts': 'export const t = 1;\n',
      'bench/b.ts': 'export const b = 1;\n',
      'examples/e.ts': 'export const e = 1;\n',
      ...files,
    };
    for (const [path, text] of Object.entries(all)) {
      mkdirSync(join(dir, dirname(path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    const run = spawnSync(process.execPath, [join(dir, 'bin', 'check-layers.mjs')], { encoding: 'utf8', timeout: 60_000 });
    return { status: run.status, output: `${run.stdout}${run.stderr}` };
  }

  it('passes a tree whose imports point down', () => {
    const result = check({
      'main/core/store/db.ts': 'export const db = 1;\n',
      'main/core/decision/service.ts': "import { db } from '../store/db.js';\nexport const service = db;\n",
    });
    expect(result.output).toContain('no dependency violations');
    expect(result.status).toBe(0);
  });

  it('fails on an upward import, a folder no layer names and a production room importing the testing wing', () => {
    const result = check({
      'main/core/store/db.ts': "import { service } from '../decision/service.js';\nexport const db = service;\n",
      'main/core/decision/service.ts': 'export const service = 1;\n',
      'main/core/stray/thing.ts': "import { db } from '../store/db.js';\nexport const thing = db;\n",
      'main/core/testing/virtual.ts': 'export const virtual = 1;\n',
      'main/core/ui/view.ts': "import { virtual } from '../testing/virtual.js';\nexport const view = virtual;\n",
    });
    expect(result.status).toBe(1);
    expect(result.output).toContain('layer-store-imports-upward');
    expect(result.output).toContain('core-folder-without-a-layer');
    expect(result.output).toContain('testing-wing-only-from-the-composition-root');
  });
});
