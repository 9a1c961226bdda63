// Builds the renderer to renderer/dist, served by the core at /ui/ in both Electron and
// headless mode. `import.meta.dirname` is replaced by Vite with this file's directory.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  root: import.meta.dirname,
  base: '/ui/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // No inline scripts or data: modules: the CSP allows only same-origin files.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    rollupOptions: {
      output: {
        // zod in a chunk of its own, as before the boot reads (renderer/src/boot.ts) changed the
        // entry's imports: fetched and compiled beside the entry, and shared with the lazy views.
        manualChunks: (id: string) => (/[\\/]node_modules[\\/]zod[\\/]/.test(id) ? 'zod' : undefined),
      },
    },
  },
});
