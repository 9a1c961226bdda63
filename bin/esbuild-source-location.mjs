// @ts-check
/**
 * The esbuild plugin both bundlers of our TypeScript use (bin/build-server.mjs for dist/server,
 * test/helpers/compile-scripts.ts for the test child processes): each source file's
 * `import.meta.url` becomes that file's own place in the source tree, relative to the bundle. So
 * paths derived from it (REPO_ROOT, the Cedar worker and entity-check scripts, which run as they
 * are, the renderer build) are those of the sources, wherever the repository is, as under tsx.
 * Every output file must sit directly in outdir (entries and chunks alike): one relative path
 * then serves whichever output a source file's code lands in.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

/**
 * @param {string} outdir where the build writes every output file
 * @returns {import('esbuild').Plugin}
 */
export const sourceLocation = (outdir) => ({
  name: 'source-import-meta-url',
  setup(plugin) {
    plugin.onLoad({ filter: /\.(ts|tsx|mts|mjs)$/ }, (args) => {
      if (args.path.includes('/node_modules/')) return undefined;
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      const fromBundle = relative(outdir, args.path).split('\\').join('/');
      const contents = text.replaceAll('import.meta.url', `new URL(${JSON.stringify(fromBundle)}, import.meta.url).href`);
      return { contents, loader: args.path.endsWith('.mjs') ? 'js' : args.path.endsWith('.tsx') ? 'tsx' : 'ts' };
    });
  },
});
