/**
 * Test-only child process: opens a data directory's store the way every CLI command does, at the
 * moment its parent says "go" on stdin, so several of these race on a fresh directory for real.
 * Prints `ready`, then `ok` or `error <code> <message>`.
 *
 *   node --import tsx test/helpers/open-store-child.ts <dataDir>
 */
import { openDataDir } from '../../main/core/app.js';
import { isCountersignError } from '../../shared/errors.js';

const dataDir = process.argv[2]!;
process.stdin.once('data', () => {
  try {
    const { db } = openDataDir(dataDir);
    db.close();
    process.stdout.write('ok\n');
  } catch (error) {
    const code = isCountersignError(error) ? error.code : 'uncoded';
    process.stdout.write(`error ${code} ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
  process.stdin.destroy();
});
process.stdout.write('ready\n');
