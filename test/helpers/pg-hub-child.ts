/**
 * Test and bench child process: one team hub's store and audit leader on a PostgreSQL database,
 * deciding a steady load of calls and printing each decision only after its COMMIT returned
 * (`decided <requestId>`), so the parent can SIGKILL it mid-load and check that every decision it
 * was told of survived. Prints `leader` once it holds the audit leader lock.
 *
 *   tsx test/helpers/pg-hub-child.ts <databaseUrl> <hubName> <keyDir> <origin> <concurrency>
 */
import { SoftwareSigner } from '../../main/core/custody/software-signer.js';
import { PgAuditLeader } from '../../main/core/audit/pg-audit-leader.js';
import { PgDecisionStore } from '../../main/core/store/pg/pg-decision-store.js';
import { decisionWrite } from './team-fixtures.js';

const [url, hub, keyDir, origin, concurrency] = process.argv.slice(2);
const store = await PgDecisionStore.open({ url: url!, hub: hub!, onError: () => undefined });
const signer = await SoftwareSigner.openOrCreate(keyDir!, { log: () => undefined });
const leader = new PgAuditLeader({
  config: store.config,
  hub: hub!,
  signer,
  origin: origin!,
  checkpointEveryMs: 200,
  onError: () => undefined,
  onLeadership: (leads) => process.stdout.write(leads ? 'leader\n' : 'deposed\n'),
});
leader.start();
process.stdout.write('ready\n');

let running = false;
process.stdin.on('data', (chunk: Buffer) => {
  if (chunk.toString().includes('go') && !running) {
    running = true;
    for (let i = 0; i < Number(concurrency ?? '4'); i++) void loop(i);
  }
});

async function loop(worker: number): Promise<void> {
  for (;;) {
    const write = decisionWrite({ agentId: `agent-${hub}-${worker}` });
    try {
      await store.recordDecision(write);
      process.stdout.write(`decided ${write.request.id}\n`);
    } catch (error) {
      process.stdout.write(`failed ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
}
