#!/usr/bin/env node
// Checks the inner layers of main/core (and shared/'s purity) on resolved import paths with
// dependency-cruiser's API, using the rules of .dependency-cruiser.cjs; exits 1 on any violation.
// Why not the `depcruise` CLI: it refuses to start on Node 20 (its engines say ^22), which this
// project still supports (package.json engines); the API it wraps runs fine on both.
import { cruise, format } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import { fileURLToPath } from 'node:url';

process.chdir(fileURLToPath(new URL('..', import.meta.url)));
const options = await extractDepcruiseOptions('./.dependency-cruiser.cjs');
const roots = ['main', 'shared', 'test', 'bench', 'examples'];
const cruised = await cruise(roots, { ...options, validate: true }, undefined, { tsConfig: extractTSConfig('./tsconfig.json') });
const report = await format(cruised.output, { outputType: 'err' });
process.stdout.write(report.output);
process.exitCode = report.exitCode === 0 ? 0 : 1;
