/**
 * Where a test finds the bundle of a script it starts as a separate process: the countersign CLI
 * or a test child, compiled once per run by the global setup (compile-scripts.ts). Run it with
 * plain Node: `spawnSync(process.execPath, [compiledScript('main/cli/index.ts'), ...args])`.
 */
import { inject } from 'vitest';
import type { CompiledEntry } from './compile-scripts.js';

export function compiledScript(entry: CompiledEntry): string {
  const path = inject('compiledScripts')[entry];
  if (path === undefined) throw new Error(`${entry} is not compiled by test/helpers/compile-scripts.ts`);
  return path;
}

/** The countersign CLI's bundle (main/cli/index.ts). */
export const compiledCli = (): string => compiledScript('main/cli/index.ts');
