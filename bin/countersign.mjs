#!/usr/bin/env node
/**
 * The `countersign` command as package.json names it (`npx countersign`, `npm link`): the CLI is
 * TypeScript run by tsx (installed by `npm ci`), so this launcher registers tsx's loader in this
 * process and then runs main/cli/index.ts, which reads process.argv like any command.
 */
import { register } from 'tsx/esm/api';

register();
await import(new URL('../main/cli/index.ts', import.meta.url).href);
