/**
 * Test-only child process: runs the real core on a data directory so that another process (the
 * test) can read the database while this one makes a checkpoint, as `countersign audit export`
 * does while a server runs. It appends five entries, prints `ready`, then on each stdin line
 * `checkpoint` makes one (printing `made <size>`), and on `stop` closes. The test starts it with
 * test/helpers/slow-wal-sync.c preloaded to widen the write-ahead log's syncs.
 *
 *   node checkpoint-child.mjs <dataDir>
 */
import { createInterface } from 'node:readline';
import { startCountersign } from '../../main/core/app.js';

const [dataDir] = process.argv.slice(2);
const app = await startCountersign({ dataDir: dataDir!, log: () => undefined });
app.db.transaction(() => {
  for (let i = 0; i < 5; i++) app.audit.append('call.rejected', Date.now(), { code: 'rate_limited', agentId: `a${i}` });
})();
process.stdout.write(`ready ${app.audit.size()}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'checkpoint') {
    const made = await app.checkpoints.checkpoint();
    process.stdout.write(`made ${made?.size ?? 0}\n`);
  } else if (line === 'stop') {
    await app.close();
    process.stdout.write('stopped\n');
    break;
  }
}
// The test keeps its end of stdin open: let go of it so that this process exits.
process.stdin.destroy();
