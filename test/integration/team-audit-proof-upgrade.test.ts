/**
 * A team audit log sequenced and checkpointed before PG migration 9 (audit_nodes and
 * audit_checkpoint_keys empty, as migration 9 leaves them on an existing team), opened by a hub of
 * this version: the leader backfills the subtree hashes and records its signing key at takeover,
 * so the History's proof of an old request verifies though no new checkpoint was signed (review
 * of b5d6386: it was reported as a checkpoint no team key signed, a false tamper alarm).
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import { subtreesOf } from '../../main/core/audit/pg-audit-leader.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { verifyHistoryEntryProof } from '../../shared/desk-records.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { closeTeamRoom, ensureTeamPeople, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
}, 120_000);

afterAll(async () => {
  await closeTeamRoom({ clients: [], db, cluster, hubs, dirs });
}, 60_000);

describe('a team audit log sequenced before PG migration 9', () => {
  it('after the upgrade, the History proof of an old request verifies (no false checkpoint alarm)', async () => {
    const room = { dirs, hubs };
    const dir = teamHubDir(room, 'hub-a');
    const hub = await startTeamHub(room, 'hub-a', cluster.url, dir);
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    await ensureTeamPeople(hub, FINANCE_SCOPE.owner);
    await hub.team!.agents.enroll(
      await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot', 'finance-bot')),
      FINANCE_SCOPE,
    );
    const agent = new AgentClient({ url: hub.url, agentId: 'finance-bot', key, webSocket: nodeWebSocket, reconnect: false });
    await agent.connect();
    const allowed = await agent.submit(transferCall('13.00', 'Acme Ltd'));
    expect(allowed).toMatchObject({ decision: 'allow' });
    agent.close();
    await hub.team!.leader.tick(true);
    expect(await verifyHistoryEntryProof(await hub.ui.getHistoryEntry(allowed.requestId))).toMatchObject({ ok: true });
    await hub.close();
    hubs.length = 0;

    // The state migration 9 leaves on a team whose log an older version sequenced and checkpointed.
    await db.query(`ALTER TABLE audit_nodes DISABLE TRIGGER audit_nodes_append_only;
      ALTER TABLE audit_checkpoint_keys DISABLE TRIGGER audit_checkpoint_keys_append_only;
      DELETE FROM audit_nodes; DELETE FROM audit_checkpoint_keys;
      ALTER TABLE audit_nodes ENABLE TRIGGER audit_nodes_append_only;
      ALTER TABLE audit_checkpoint_keys ENABLE TRIGGER audit_checkpoint_keys_append_only;`);
    const before = await db.query<{ n: string }>('SELECT count(*) AS n FROM audit_checkpoints');

    const upgraded = await startTeamHub(room, 'hub-a', cluster.url, dir);
    for (let i = 0; i < 200 && !upgraded.team!.leader.isLeader(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(upgraded.team!.leader.isLeader()).toBe(true);
    await upgraded.team!.leader.tick(true);
    // The backfill worked: every complete subtree of the log is stored again.
    const counts = await db.query<{ nodes: string; leaves: string }>(
      'SELECT (SELECT count(*) FROM audit_nodes) AS nodes, (SELECT count(*) FROM audit_log) AS leaves',
    );
    expect(Number(counts.rows[0]!.nodes)).toBe(subtreesOf(Number(counts.rows[0]!.leaves)));
    // Nothing new was decided, so the leader signed no checkpoint; it recorded its key at takeover.
    expect((await db.query<{ n: string }>('SELECT count(*) AS n FROM audit_checkpoints')).rows).toEqual(before.rows);

    const entry = await upgraded.ui.getHistoryEntry(allowed.requestId);
    expect(entry.proof).not.toBeNull();
    // Before the fix the key table stayed empty and the page reported audit_checkpoint_invalid.
    const check = await verifyHistoryEntryProof(entry);
    expect(check, JSON.stringify(check)).toMatchObject({ ok: true });
  }, 120_000);
});
