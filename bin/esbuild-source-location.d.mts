/** Types of bin/esbuild-source-location.mjs for the TypeScript that imports it (the test setup). */
import type { Plugin } from 'esbuild';

export declare const sourceLocation: (outdir: string) => Plugin;
