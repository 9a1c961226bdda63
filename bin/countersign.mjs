#!/usr/bin/env node
// @ts-check
/**
 * The `countersign` command as package.json names it (`npm start`, `npx countersign`, `npm link`):
 * runs the build of the CLI in dist/server/ (bin/build-server.mjs; `npm ci` makes it) in this
 * process, with plain Node. When the sources are newer than the build (after a `git pull` or an
 * edit) it builds again first, in a child process so that esbuild never sits in the server's
 * memory: the command always runs the sources in the tree.
 */
// First: a V8 setting that must precede the server's first WebAssembly compile (ADR 0021).
import '../main/core/policy/wasm-compile-flags.mjs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SERVER_BUNDLE, serverBuildIsStale } from './build-server.mjs';

if (serverBuildIsStale()) {
  process.stderr.write('countersign: building dist/server from the sources (newer than the last build)\n');
  const build = spawnSync(process.execPath, [fileURLToPath(new URL('./build-server.mjs', import.meta.url)), '--if-stale'], {
    stdio: 'inherit',
  });
  if (build.status !== 0) {
    process.stderr.write('countersign: the build failed (npm run build:server shows why)\n');
    process.exit(1);
  }
}
await import(pathToFileURL(SERVER_BUNDLE).href);
