// The inner layers of main/core, checked on resolved import paths (type-only imports included).
// docs/adr/0005-layering.md explains the order; `npm run lint` runs it through bin/check-layers.mjs.
//
// LAYERS runs bottom to top. A file in a layer may import its own layer and any layer BELOW it,
// never one above: so no upward import and no folder cycle can exist. Ports (interfaces a
// consumer calls) live in the room of the layer that provides them, so lower layers never need
// to name a higher one.

/** Bottom to top. `path` matches the resolved path of every file of the layer. */
const LAYERS = [
  { name: 'core root modules', path: '^main/core/(config|user-files)\\.ts$' },
  { name: 'http', path: '^main/core/http/' },
  { name: 'store', path: '^main/core/store/' },
  { name: 'custody', path: '^main/core/custody/' },
  { name: 'audit', path: '^main/core/audit/' },
  { name: 'keys', path: '^main/core/keys/' },
  { name: 'tokens', path: '^main/core/tokens/' },
  { name: 'policy', path: '^main/core/policy/' },
  { name: 'identity', path: '^main/core/identity/' },
  { name: 'risk', path: '^main/core/risk/' },
  { name: 'decision', path: '^main/core/decision/' },
  { name: 'approvals', path: '^main/core/approvals/' },
  { name: 'gateway', path: '^main/core/gateway/' },
  { name: 'notify', path: '^main/core/notify/' },
  { name: 'ui', path: '^main/core/ui/' },
  { name: 'testing', path: '^main/core/testing/' },
  { name: 'composition root', path: '^main/core/app\\.ts$' },
];

/** One regular expression matching any of `paths` (each anchored with ^). @param {string[]} paths */
const anyOf = (paths) => `(${paths.map((p) => p.replace(/^\^/, '^(?:').concat(')')).join('|')})`;

const upward = LAYERS.slice(0, -1).map((layer, index) => ({
  name: `layer-${layer.name.replaceAll(' ', '-')}-imports-upward`,
  comment: `${layer.name} may only import layers below it (docs/adr/0005-layering.md)`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: anyOf(LAYERS.slice(index + 1).map((above) => above.path)) },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'core-folder-without-a-layer',
      comment: 'every file of main/core belongs to a layer of docs/adr/0005-layering.md: add the new folder to the table and to LAYERS',
      severity: 'error',
      from: { path: '^main/core/', pathNot: anyOf(LAYERS.map((layer) => layer.path)) },
      to: {},
    },
    {
      name: 'testing-wing-only-from-the-composition-root',
      comment: 'the test key domain (main/core/testing/) is wired by app.ts only; tests, benches and the CLI may use it too',
      severity: 'error',
      from: { pathNot: '^(main/core/app\\.ts$|main/core/testing/|main/cli/|test/|bench/)' },
      to: { path: '^main/core/testing/' },
    },
    {
      name: 'no-folder-cycle-in-core',
      comment: 'a cycle through two or more core folders (the layer rules should already make this impossible)',
      severity: 'error',
      scope: 'folder',
      from: { path: '^main/core/[^/]+$' },
      to: { path: '^main/core/[^/]+$', circular: true },
    },
    {
      name: 'core-imports-an-outer-part',
      comment: 'main/core runs under plain Node: never the CLI, the Electron shell, the preload, the MCP proxy or the renderer',
      severity: 'error',
      from: { path: '^main/core/' },
      to: { path: '^(main/(cli|electron|preload|mcp)/|renderer/)' },
    },
    {
      name: 'shared-imports-main-or-renderer',
      comment: 'shared/ is pure TypeScript used by main, the renderer and the agent SDK: it imports only shared/',
      severity: 'error',
      from: { path: '^shared/' },
      to: { path: '^(main|renderer)/' },
    },
    {
      name: 'unresolvable-import',
      comment: 'an import the resolver cannot find is not checked by any rule above',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Type-only imports count: a port imported for its type is a dependency all the same.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    // Resolve packages the way Node does (package.json `exports`, import condition), so
    // subpath imports such as @modelcontextprotocol/server/stdio resolve.
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.tsx', '.mts', '.js', '.mjs', '.cjs', '.json', '.d.ts'],
    },
  },
};
