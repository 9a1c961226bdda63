/**
 * Test-only child process: runs the real core on a data directory and kills itself with SIGKILL
 * in the middle of the Nth decision's transaction — after the request and token rows are
 * written, before its audit entry is — to prove a crash there loses the whole decision, never
 * half of it. Fault injection: a real crash cannot be aimed at that instant any other way.
 *
 *   tsx test/helpers/crash-child.ts <dataDir> <N>
 */
import { startCountersign } from '../../main/core/app.js';

const [dataDir, n] = process.argv.slice(2);
const app = await startCountersign({ dataDir: dataDir!, log: () => undefined });
const original = app.audit.append.bind(app.audit);
let decisions = 0;
app.audit.append = (kind, at, event) => {
  if (kind.startsWith('decision.') && ++decisions >= Number(n)) process.kill(process.pid, 'SIGKILL');
  return original(kind, at, event);
};
process.stdout.write(`ready ${app.url}\n`);
