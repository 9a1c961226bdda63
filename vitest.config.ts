import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Only our suites: never collect Playwright specs or anything in node_modules.
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'renderer/test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
  },
});
