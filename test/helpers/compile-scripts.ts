/**
 * Vitest global setup: bundles the scripts tests start as separate processes (the countersign
 * CLI and the test child processes) once per test run with esbuild, so each of the suite's
 * hundred-odd child processes starts in plain Node. Started through tsx, every one of them
 * compiled the whole CLI again (about 3 s of CPU each against about 1 s).
 *
 * The bundles hold only our TypeScript; packages stay imports resolved from the repository's
 * node_modules, which is why they are written under node_modules/.cache (one directory per run,
 * removed after). Each source file's `import.meta.url` is that file's own place in the source tree
 * (bin/esbuild-source-location.mjs, shared with the server build), as under tsx. Tests find the bundles with compiledScript() (compiled-script.ts).
 */
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { sourceLocation } from '../../bin/esbuild-source-location.mjs';

const REPO_ROOT = resolve(import.meta.dirname, '..', '..');

/** Every script a test starts in its own process, relative to the repository root. */
export const COMPILED_ENTRIES = [
  'main/cli/index.ts',
  'test/helpers/server-child.ts',
  'test/helpers/open-store-child.ts',
  'test/helpers/crash-child.ts',
  'test/helpers/checkpoint-child.ts',
  'test/helpers/sync-fault-child.ts',
  'test/helpers/pg-hub-child.ts',
  'examples/mcp/payments-server.ts',
] as const;

export type CompiledEntry = (typeof COMPILED_ENTRIES)[number];

declare module 'vitest' {
  export interface ProvidedContext {
    /** Repository-relative entry -> absolute path of its bundle for this run. */
    compiledScripts: Record<string, string>;
  }
}

const CACHE_ROOT = join(REPO_ROOT, 'node_modules', '.cache', 'countersign-test-scripts');
/** Directories of runs that ended without their teardown (killed) are removed after this long. */
const STALE_MS = 6 * 60 * 60 * 1000;

function removeStaleRuns(): void {
  let names: string[] = [];
  try {
    names = readdirSync(CACHE_ROOT);
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(CACHE_ROOT, name);
    if (Date.now() - statSync(dir).mtimeMs > STALE_MS) rmSync(dir, { recursive: true, force: true });
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  removeStaleRuns();
  // The shipped command (bin/countersign.mjs, which cli-first-hour starts) runs dist/server: build
  // it here when the sources are newer, once, rather than in a test's launcher.
  if (spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'build-server.mjs'), '--if-stale'], { stdio: 'inherit' }).status !== 0)
    throw new Error('npm run build:server failed');
  const outdir = join(CACHE_ROOT, `run-${process.pid}-${Date.now()}`);
  mkdirSync(outdir, { recursive: true });
  const result = await build({
    absWorkingDir: REPO_ROOT,
    entryPoints: COMPILED_ENTRIES.map((entry) => join(REPO_ROOT, entry)),
    outdir,
    // Every output directly in outdir, as the source-location plugin needs (entry names are unique).
    entryNames: '[name]',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    plugins: [sourceLocation(outdir)],
    metafile: true,
    logLevel: 'warning',
  });
  const compiled: Record<string, string> = {};
  for (const [output, meta] of Object.entries(result.metafile.outputs)) {
    if (meta.entryPoint !== undefined) compiled[relative(REPO_ROOT, resolve(REPO_ROOT, meta.entryPoint))] = resolve(REPO_ROOT, output);
  }
  for (const entry of COMPILED_ENTRIES) if (compiled[entry] === undefined) throw new Error(`esbuild wrote no bundle for ${entry}`);
  project.provide('compiledScripts', compiled);
  return () => rmSync(outdir, { recursive: true, force: true });
}
