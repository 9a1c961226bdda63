/**
 * Risk baselines in team mode (docs/team-mode.md, risk/pg-risk-log.ts): two hubs started the
 * way `countersign hub` starts them on one real PostgreSQL 15 cluster, one agent connected to each
 * hub with real SDK clients. Checks: a burst of calls on hub A raises the score of the agent's
 * next call on hub B (call rate), and identical calls on A count as a loop on B; a decision whose
 * team COMMIT fails (a deferred constraint trigger the test adds raises at COMMIT: a real
 * PostgreSQL failure, injected because nothing else fails a COMMIT on demand) teaches no hub.
 */
import { rmSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { ensureTeamPeople, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

const AGENT = 'finance-bot';
let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
let a: RunningCountersign;
let b: RunningCountersign;
let onA: AgentClient;
let onB: AgentClient;

const factorNames = (risk: { factors: Array<{ name: string }> }) => risk.factors.map((f) => f.name);
const riskLogRows = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM risk_log')).rows[0]!.n);

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  const room = { dirs, hubs };
  a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a'));
  b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b'));
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  await a.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, AGENT, AGENT)), FINANCE_SCOPE);
  await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
  const connect = (hub: RunningCountersign) => {
    const client = new AgentClient({
      url: hub.url,
      agentId: AGENT,
      key,
      webSocket: nodeWebSocket,
      reconnect: false,
      requestTimeoutMs: 15_000,
    });
    clients.push(client);
    return client;
  };
  onA = connect(a);
  onB = connect(b);
  await Promise.all([onA.connect(), onB.connect()]);
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const app of hubs.reverse()) await app.close().catch(() => undefined);
  await db?.end();
  cluster?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('risk baselines shared by the hubs of one database', () => {
  it("a burst of calls on hub A raises the score of the agent's next call on hub B; identical calls on A are a loop on B", async () => {
    const probe = transferCall('9.00', 'Probe Supplies');
    const before = await b.decisions.dryRun(AGENT, probe);
    expect(factorNames(before.risk)).not.toContain('call_rate');
    // Eight calls in a minute on hub A (the floor is six), two of them identical.
    for (let i = 0; i < 6; i++) await onA.submit(transferCall(`${10 + i}.00`, `Supplier ${i}`));
    for (let i = 0; i < 2; i++) await onA.submit(probe);
    // The next call on hub B: scored with what the agent did on A.
    const next = await onB.submit(transferCall('11.00', 'Supplier 1'));
    const { rows } = await db.query<{ risk: string; decided_by_hub: string | null }>(
      'SELECT risk, decided_by_hub FROM requests WHERE id = $1',
      [next.requestId],
    );
    const risk = JSON.parse(rows[0]!.risk) as { score: number; factors: Array<{ name: string }> };
    expect(factorNames(risk)).toContain('call_rate');
    expect(risk.score).toBeGreaterThan(before.risk.score);
    const after = await b.decisions.dryRun(AGENT, probe);
    expect(factorNames(after.risk)).toEqual(expect.arrayContaining(['call_rate', 'repeated_call']));
    expect(factorNames(before.risk)).not.toContain('repeated_call');
  }, 60_000);

  it('a decision whose team COMMIT fails teaches no hub: neither its own nor the other', async () => {
    await db.query(`
      CREATE FUNCTION fail_marked_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.call_json LIKE '%Failing Commit Ltd%' THEN RAISE EXCEPTION 'injected failure at commit'; END IF; RETURN NEW; END $$;
      CREATE CONSTRAINT TRIGGER fail_marked_commit AFTER INSERT ON requests DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION fail_marked_commit();`);
    try {
      const failing = transferCall('7.00', 'Failing Commit Ltd');
      const logged = await riskLogRows();
      // Twice the same call: had either been learned, the third would be a loop (two identical before it).
      for (let i = 0; i < 2; i++) await expect(onA.submit(failing)).rejects.toMatchObject({ code: 'store_failed' });
      expect(await riskLogRows()).toBe(logged);
      const { rows } = await db.query("SELECT id FROM requests WHERE call_json LIKE '%Failing Commit Ltd%'");
      expect(rows).toEqual([]);
      for (const hub of [a, b]) expect(factorNames((await hub.decisions.dryRun(AGENT, failing)).risk)).not.toContain('repeated_call');
    } finally {
      await db.query('DROP TRIGGER fail_marked_commit ON requests; DROP FUNCTION fail_marked_commit()');
    }
  }, 60_000);
});
