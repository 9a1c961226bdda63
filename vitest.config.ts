import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Only our suites: never collect Playwright specs or anything in node_modules.
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'renderer/test/**/*.test.ts'],
    environment: 'node',
    // Bundles the CLI and the test child processes once, so the processes tests start run in
    // plain Node instead of compiling the CLI through tsx each time (test/helpers/compile-scripts.ts).
    globalSetup: ['test/helpers/compile-scripts.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    // Most suites wait on child processes, Chromium and SQLite fsyncs rather than the CPU: two test
    // files at once on a 2-core machine (vitest's default there is one) keep CI well under 20 min.
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
