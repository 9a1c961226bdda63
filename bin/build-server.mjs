#!/usr/bin/env node
// @ts-check
/**
 * Builds the `countersign` command (the CLI, and with it the server `start`, `headless` and `hub`
 * run) into plain JavaScript under dist/server/ with esbuild: `npm run build:server`, also run by
 * `npm ci` (the `prepare` script), and with --if-stale by the launcher (bin/countersign.mjs), the
 * benchmarks and the test setup whenever the sources are newer than the build. The server then
 * starts in plain Node, without compiling TypeScript at run time: tsx's loader and its
 * transformed sources cost about 55 MB of resident memory and seconds of start-up CPU (ADR 0018).
 *
 * Only our TypeScript is bundled. Packages stay imports resolved from node_modules, so the native
 * modules (better-sqlite3, pkcs11js) and cedar-wasm's .wasm load exactly as before. Dynamic
 * imports stay separate chunks (code splitting), so what a command loads lazily (the MCP SDK for
 * `mcp-proxy`, the PostgreSQL driver for a hub) is still loaded only when used. Each source
 * file's `import.meta.url` becomes that file's own place in the source tree
 * (bin/esbuild-source-location.mjs).
 *
 * Launchers started together after an edit may each build (review3 finding 7): each build goes to
 * a directory of its own under dist/server-builds/, and dist/server is a symlink swapped to it in
 * one rename. So a command importing while another builds gets the old or the new bundle, never
 * half of one, and a running server's lazy chunks stay where it loaded them (Node resolves the
 * symlink when it loads the bundle) for a day: builds other than the current one are removed a
 * day after they were made (a server started from an older one is restarted to load new code anyway).
 */
import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceLocation } from './esbuild-source-location.mjs';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const SERVER_DIR = join(REPO_ROOT, 'dist', 'server');
/** Where each build is written before dist/server points at it. */
const BUILDS_DIR = join(REPO_ROOT, 'dist', 'server-builds');
/** A build no longer current is removed after this long (a server started from it may still load its chunks). */
const KEEP_OLD_BUILDS_MS = 24 * 3600_000;
export const SERVER_BUNDLE = join(SERVER_DIR, 'countersign.mjs');
/** What the bundle is built from; a change in any of them makes the build stale. */
const SOURCE_ROOTS = ['main/cli', 'main/core', 'main/mcp', 'shared'];
const SOURCE_FILES = ['package.json', 'bin/build-server.mjs', 'bin/esbuild-source-location.mjs'];

/** The newest modification time of the sources the bundle is built from (milliseconds). */
function newestSourceMtime() {
  let newest = 0;
  const visit = (/** @type {string} */ dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (/\.(ts|tsx|mts|mjs)$/.test(entry.name)) newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  for (const root of SOURCE_ROOTS) visit(join(REPO_ROOT, root));
  for (const file of SOURCE_FILES) newest = Math.max(newest, statSync(join(REPO_ROOT, file)).mtimeMs);
  return newest;
}

/** True when dist/server/countersign.mjs is missing or older than a source it is built from. */
export function serverBuildIsStale() {
  let built;
  try {
    built = statSync(SERVER_BUNDLE).mtimeMs;
  } catch {
    return true;
  }
  return newestSourceMtime() > built;
}

/** Builds the server into a directory of its own, then points dist/server at it in one rename. */
export async function buildServer() {
  const { build } = await import('esbuild');
  const id = `${Date.now()}-${process.pid}`;
  const outdir = join(BUILDS_DIR, id);
  mkdirSync(BUILDS_DIR, { recursive: true });
  await build({
    absWorkingDir: REPO_ROOT,
    entryPoints: { countersign: join(REPO_ROOT, 'main', 'cli', 'index.ts') },
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: '[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    // For `node --enable-source-maps` when a stack trace should name the TypeScript lines.
    sourcemap: 'linked',
    // Stack traces and logs keep our class and function names.
    keepNames: true,
    plugins: [sourceLocation(outdir)],
    logLevel: 'warning',
  });
  // A dist/server left as a plain directory by an older build is removed once (it cannot be renamed over).
  try {
    if (!lstatSync(SERVER_DIR).isSymbolicLink()) rmSync(SERVER_DIR, { recursive: true, force: true });
  } catch {
    // not there yet
  }
  const link = `${SERVER_DIR}.${id}.link`;
  symlinkSync(join('server-builds', id), link, 'dir');
  renameSync(link, SERVER_DIR);
  const now = Date.now();
  for (const old of readdirSync(BUILDS_DIR)) {
    if (old === id) continue;
    const path = join(BUILDS_DIR, old);
    try {
      if (now - statSync(path).mtimeMs > KEEP_OLD_BUILDS_MS) rmSync(path, { recursive: true, force: true });
    } catch {
      // Removed meanwhile by a build running beside this one: this build is in place all the same.
    }
  }
}

// `node bin/build-server.mjs [--if-stale]`: --if-stale builds only when serverBuildIsStale().
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!process.argv.includes('--if-stale') || serverBuildIsStale()) await buildServer();
}
