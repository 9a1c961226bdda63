// Lint enforces the layering (VS Code style): shared/ is pure TypeScript, main/core never
// touches Electron, the renderer never touches Node, and only main/electron + preload wire.
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['node:*', 'fs', 'path', 'crypto', 'os', 'child_process', 'net', 'http', 'https', 'stream', 'buffer', 'util', 'events', 'url', 'worker_threads', 'process'];
const noNode = nodeBuiltins.map((name) => ({ group: [name, `${name}/*`], message: 'shared/ and renderer/ must not import Node built-ins' }));

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'coverage/**', '**/*.d.ts', 'renderer/dist/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ['eslint.config.js', 'bin/*.mjs', 'main/core/policy/*.mjs'],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The project service only finds tsconfig.json; the Electron shell and the renderer are
    // typechecked by their own tsconfigs, so lint them with those.
    files: ['main/electron/**/*.ts', 'main/preload/**/*.ts'],
    languageOptions: { parserOptions: { projectService: false, project: ['./tsconfig.electron.json'] } },
  },
  {
    files: ['renderer/**/*.ts', 'renderer/**/*.tsx'],
    languageOptions: { parserOptions: { projectService: false, project: ['./tsconfig.renderer.json'] } },
  },
  {
    files: ['shared/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: [
          ...noNode,
          { group: ['electron', 'electron/*'], message: 'shared/ must not import electron' },
          { group: ['ws', 'better-sqlite3', 'pkcs11js', 'react', 'react-dom', '@cedar-policy/*'], message: 'shared/ is pure TypeScript usable by the SDK and the renderer' },
          { group: ['../main/*', '../../main/*', '../renderer/*', '../../renderer/*'], message: 'shared/ must not depend on main/ or renderer/' },
        ],
      }],
      'no-restricted-globals': ['error', 'window', 'document', 'navigator', 'localStorage', 'sessionStorage', 'location', 'process', 'Buffer', 'require', '__dirname', 'global'],
    },
  },
  {
    files: ['main/core/**/*.ts', 'main/cli/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: [
          { group: ['electron', 'electron/*'], message: 'core, CLI, tests and benches run under plain Node: never import electron' },
          { group: ['**/main/electron/*', '**/main/preload/*', '**/renderer/*'], message: 'core must not depend on the Electron shell or the renderer' },
        ],
      }],
    },
  },
  {
    files: ['renderer/**/*.ts', 'renderer/**/*.tsx'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: [
          ...noNode,
          { group: ['electron', 'electron/*'], message: 'the renderer only knows the bridge interface' },
          { group: ['**/main/*'], message: 'the renderer only knows shared/ and the bridge interface' },
        ],
      }],
    },
  },
);
