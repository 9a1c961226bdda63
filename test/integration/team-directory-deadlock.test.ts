/**
 * A directory write that PostgreSQL ends as a deadlock victim (40P01) is tried again, so an
 * admin's revocation racing an approval's commit on another hub is performed once the approval
 * has committed, never refused for the race (docs/team-mode.md "Deadlocks"). The lock cycle is the
 * real one: a hub's group commit holds a held request (the approval's unit, FOR UPDATE) and then
 * wants its agent (a decision's unit, FOR SHARE), while the revocation holds the agent and wants
 * the request. The test's own transaction plays the group commit's side, on a real PostgreSQL 15;
 * pg_stat_database shows the deadlock happened.
 */
import { rmSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { ensureTeamPeople, registerApprovers, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
let agent: AgentClient | undefined;

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
}, 120_000);

afterAll(async () => {
  agent?.close();
  for (const hub of hubs.reverse()) await hub.close().catch(() => undefined);
  await db?.end();
  cluster?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}, 60_000);

async function deadlocks(): Promise<number> {
  const { rows } = await db.query<{ deadlocks: string }>('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()');
  return Number(rows[0]!.deadlocks);
}

describe('a directory write chosen as a deadlock victim', () => {
  it('is tried again: the revocation racing a commit that holds its held request is performed once that commit ends', async () => {
    const room = { dirs, hubs };
    const hub = await startTeamHub(room, 'hub-d', cluster.url, teamHubDir(room, 'hub-d', { risk: { enabled: false } }));
    await ensureTeamPeople(hub, FINANCE_SCOPE.owner);
    await registerApprovers(hub, ['alice', 'bob']);
    const key = await importAgentKey(await generateAgentKey('EdDSA'));
    await hub.team!.agents.enroll(
      await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'raced-bot', 'raced-bot')),
      FINANCE_SCOPE,
    );
    agent = new AgentClient({
      url: hub.url,
      agentId: 'raced-bot',
      key,
      webSocket: nodeWebSocket,
      reconnect: false,
      requestTimeoutMs: 15_000,
    });
    await agent.connect();
    const held = await agent.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(held).toMatchObject({ decision: 'pending' });
    const before = await deadlocks();

    // The group commit's side: the held request locked (an approval's unit) ...
    const group = await db.connect();
    try {
      await group.query("SET deadlock_timeout = '10s'"); // the revocation's backend finds the cycle first
      await group.query('BEGIN');
      await group.query('SELECT id FROM requests WHERE id = $1 FOR UPDATE', [held.requestId]);
      // ... the revocation takes the agent and waits for that request ...
      const revoked = hub.team!.agents.revoke('raced-bot', 'key leaked');
      await vi.waitFor(
        async () => {
          const { rows } = await db.query(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE requests%'",
          );
          expect(rows).toHaveLength(1);
        },
        { timeout: 20_000, interval: 20 },
      );
      // ... and the group's next unit (a decision of the same agent) wants the agent: a cycle.
      await group.query('SELECT status FROM directory_agents WHERE id = $1 FOR SHARE', ['raced-bot']);
      await group.query('COMMIT');
      // Before the fix: store_failed ("deadlock detected"), the admin told the revocation failed.
      const ended = await revoked;
      expect(ended.map((r) => r.requestId)).toEqual([held.requestId]);
    } finally {
      await group.query('ROLLBACK').catch(() => undefined);
      group.release();
    }
    const { rows } = await db.query<{ status: string }>('SELECT status FROM directory_agents WHERE id = $1', ['raced-bot']);
    const request = await db.query<{ state: string }>('SELECT state FROM requests WHERE id = $1', [held.requestId]);
    expect({ agent: rows[0]!.status, request: request.rows[0]!.state }).toEqual({ agent: 'revoked', request: 'denied' });
    await vi.waitFor(async () => expect(await deadlocks()).toBe(before + 1), { timeout: 5_000, interval: 50 });
  }, 120_000);
});
