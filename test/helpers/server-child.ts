/**
 * Test-only child process: a real Countersign server on a data directory, so a test can hold the
 * directory from another process and then kill that process with SIGKILL.
 * Prints `ready <pid> <url>` once it listens.
 *
 *   node --import tsx test/helpers/server-child.ts <dataDir>
 */
import { startCountersign } from '../../main/core/app.js';

const dataDir = process.argv[2]!;
const app = await startCountersign({ dataDir, log: () => undefined, overrides: { port: 0 }, command: 'countersign headless (test child)' });
process.stdout.write(`ready ${process.pid} ${app.url}\n`);
process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
