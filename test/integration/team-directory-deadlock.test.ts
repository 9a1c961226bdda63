/**
 * A directory write or an approval that PostgreSQL ends as a deadlock victim (40P01) is tried
 * again, so an admin's revocation racing an approval's commit on another hub is performed once
 * the approval has committed, never refused for the race, and an approver's last tap is not lost
 * to a race it did not start (docs/team-mode.md "Deadlocks"). The lock cycles are the real ones:
 * a hub's group commit holds a held request (the approval's unit, FOR UPDATE) and then wants its
 * agent (a decision's unit, FOR SHARE), while the revocation holds the agent and wants the
 * request; an approval holds its request and wants its key's directory row (the team's counter,
 * FOR UPDATE) while another transaction holds that row and wants the request. The test's own
 * transaction plays the other side, on a real PostgreSQL 15; pg_stat_database shows each deadlock
 * happened. The approval's retries are bounded (team.database.deadlockAttempts, 3): the give-up
 * test makes it the victim three times and finds nothing written.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { closeTeamRoom, ensureTeamPeople, registerApprovers, startTeamHub, tapOn, teamHubDir } from '../helpers/team-hubs.js';

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
let agent: AgentClient | undefined;
let hub: RunningCountersign;
let keys: Map<string, VirtualAuthenticator>;

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  const room = { dirs, hubs };
  hub = await startTeamHub(room, 'hub-d', cluster.url, teamHubDir(room, 'hub-d', { risk: { enabled: false } }));
  await ensureTeamPeople(hub, FINANCE_SCOPE.owner);
  keys = await registerApprovers(hub, ['alice', 'bob']);
}, 120_000);

afterAll(async () => {
  await closeTeamRoom({ clients: agent === undefined ? [] : [agent], db, cluster, hubs, dirs });
}, 60_000);

async function deadlocks(): Promise<number> {
  const { rows } = await db.query<{ deadlocks: string }>('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()');
  return Number(rows[0]!.deadlocks);
}

describe('a directory write chosen as a deadlock victim', () => {
  it('is tried again: the revocation racing a commit that holds its held request is performed once that commit ends', async () => {
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

/** An enrolled agent connected to the hub, and a transfer of `amount` it makes that is held for two approvers, with alice's tap recorded. */
async function heldWithOneApproval(agentId: string, amount: string): Promise<{ client: AgentClient; requestId: string }> {
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  await hub.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, agentId, agentId)), FINANCE_SCOPE);
  const client = new AgentClient({ url: hub.url, agentId, key, webSocket: nodeWebSocket, reconnect: false, requestTimeoutMs: 15_000 });
  await client.connect();
  const held = await client.submit(transferCall(amount, 'Northwind Traders'));
  expect(held).toMatchObject({ decision: 'pending' });
  await hub.approvals.submitCeremony(await tapOn(hub, keys.get('alice')!, held.requestId, 'alice'));
  return { client, requestId: held.requestId };
}

/** Waits until the approval's unit waits for bob's key row (the team's counter, locked FOR UPDATE by `holder`). */
async function approvalWaitsForKeyRow(): Promise<void> {
  await vi.waitFor(
    async () => {
      const { rows } = await db.query(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT approver_id, status, sign_count FROM directory_credentials%'",
      );
      expect(rows).toHaveLength(1);
    },
    { timeout: 20_000, interval: 20 },
  );
}

/** What the team database holds of a request: its state, its tokens, and its approvals and approval audit events by approver. */
async function written(requestId: string) {
  const state = await db.query<{ state: string }>('SELECT state FROM requests WHERE id = $1', [requestId]);
  const tokens = await db.query('SELECT jti FROM tokens WHERE request_id = $1', [requestId]);
  const approvals = await db.query<{ approver_id: string }>(
    'SELECT approver_id FROM approvals WHERE request_id = $1 ORDER BY approver_id',
    [requestId],
  );
  // Sequenced or still waiting for the leader: either way the event is written exactly once.
  const events = await db.query<{ fields: string }>(
    `SELECT record AS fields FROM audit_log WHERE request_id = $1 AND kind = 'approval.given'
     UNION ALL SELECT fields FROM audit_submissions WHERE request_id = $1 AND kind = 'approval.given'`,
    [requestId],
  );
  return {
    state: state.rows[0]!.state,
    tokens: tokens.rowCount,
    approvals: approvals.rows.map((r) => r.approver_id),
    approvalEvents: events.rows.map((r) => (JSON.parse(r.fields) as { approverId: string }).approverId).sort(),
  };
}

describe('an approval chosen as a deadlock victim', () => {
  it('is tried again: the last tap racing a transaction that holds its key row and wants its request gives one approval and one token', async () => {
    const { client, requestId } = await heldWithOneApproval('approval-raced-bot', '48000.00');
    const lastTap = await tapOn(hub, keys.get('bob')!, requestId, 'bob');
    const before = await deadlocks();
    const other = await db.connect();
    try {
      await other.query("SET deadlock_timeout = '10s'"); // the hub's backend finds the cycle first: the approval is the victim
      await other.query('BEGIN');
      // The other side holds bob's key row (the team's counter) ...
      await other.query("SELECT 1 FROM directory_credentials WHERE approver_id = 'bob' FOR UPDATE");
      // ... the approval locks its request and waits for that row ...
      const approved = hub.approvals.submitCeremony(lastTap);
      approved.catch(() => undefined);
      await approvalWaitsForKeyRow();
      // ... and the other side wants the request: a cycle. PostgreSQL ends the approval's unit.
      await other.query('SELECT id FROM requests WHERE id = $1 FOR UPDATE', [requestId]);
      await other.query('COMMIT');
      // Before the retry: store_failed ("deadlock detected"), the approver told to tap again.
      await expect(approved).resolves.toMatchObject({ state: 'approved' });
    } finally {
      await other.query('ROLLBACK').catch(() => undefined);
      other.release();
    }
    expect(await written(requestId)).toEqual({
      state: 'approved',
      tokens: 1,
      approvals: ['alice', 'bob'],
      approvalEvents: ['alice', 'bob'],
    });
    await expect(client.waitForDecision(requestId, { timeoutMs: 15_000 })).resolves.toMatchObject({ state: 'approved' });
    client.close();
    await vi.waitFor(async () => expect(await deadlocks()).toBe(before + 1), { timeout: 5_000, interval: 50 });
  }, 120_000);

  it('gives up after team.database.deadlockAttempts (3) with store_failed, and nothing of the approval is written', async () => {
    const { client, requestId } = await heldWithOneApproval('approval-victim-bot', '48001.00');
    const lastTap = await tapOn(hub, keys.get('bob')!, requestId, 'bob');
    const before = await deadlocks();
    const other = await db.connect();
    try {
      await other.query("SET deadlock_timeout = '10s'");
      await other.query('BEGIN');
      await other.query("SELECT 1 FROM directory_credentials WHERE approver_id = 'bob' FOR UPDATE");
      const approved = hub.approvals.submitCeremony(lastTap);
      approved.catch(() => undefined);
      // Each attempt: the approval locks the request and waits for bob's row; the other side wants
      // the request (a cycle, the approval ended), then lets the request go, keeping bob's row.
      for (let attempt = 1; attempt <= 3; attempt++) {
        await approvalWaitsForKeyRow();
        await other.query('SAVEPOINT cycle');
        await other.query('SELECT id FROM requests WHERE id = $1 FOR UPDATE', [requestId]);
        await other.query('ROLLBACK TO SAVEPOINT cycle');
      }
      const refused = await approved.then(
        () => undefined,
        (error: unknown) => error as { code?: string; message?: string },
      );
      expect(refused?.code).toBe('store_failed');
      expect(refused?.message).toContain('deadlock victim 3 times');
      await other.query('COMMIT');
    } finally {
      await other.query('ROLLBACK').catch(() => undefined);
      other.release();
    }
    expect(await written(requestId)).toEqual({ state: 'pending', tokens: 0, approvals: ['alice'], approvalEvents: ['alice'] });
    await vi.waitFor(async () => expect(await deadlocks()).toBe(before + 3), { timeout: 5_000, interval: 50 });
    client.close();
  }, 120_000);
});
