/**
 * Risk baselines in team mode (docs/team-mode.md, risk/pg-risk-log.ts): two hubs started the
 * way `countersign hub` starts them on one real PostgreSQL 15 cluster, one agent connected to each
 * hub with real SDK clients. Checks: a burst of calls on hub A raises the score of the agent's
 * next call on hub B (call rate), and identical calls on A count as a loop on B; a decision whose
 * team COMMIT fails (a deferred constraint trigger the test adds raises at COMMIT: a real
 * PostgreSQL failure, injected because nothing else fails a COMMIT on demand) teaches no hub; a
 * learner that throws (injected: no known input makes it) teaches no hub and loses none of the
 * decision's rows. Upgrading: each hub's SQLite baseline (written by the embedded engine, as hubs
 * learned before PG migration 12) is imported once, so new payees and outsized amounts are flagged
 * right after the upgrade. Snapshots: an agent whose baseline was snapshotted and pruned along the
 * way replays to exactly the profile and scores of a full replay of the same events, also on a
 * hub whose position fell behind a prune.
 */
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { RiskEngine } from '../../main/core/risk/risk-engine.js';
import { loadRiskSettings } from '../../main/core/risk/risk-config.js';
import { PgRiskLog } from '../../main/core/risk/pg-risk-log.js';
import { profileState } from '../../main/core/risk/profile-state.js';
import type { AgentProfile } from '../../main/core/risk/agent-profile.js';
import type { RiskEvent } from '../../main/core/risk/risk-ports.js';
import { openStore } from '../../main/core/store/database.js';
import { callDigest } from '../../main/core/tokens/call-digest.js';
import { DEMO_POLICY_DIR, FINANCE_SCOPE, nodeWebSocket, tempDir, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { closeTeamRoom, ensureTeamPeople, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

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
let agentKey: AgentKey;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SETTINGS = loadRiskSettings(DEMO_POLICY_DIR, undefined).config;
const factorNames = (risk: { factors: Array<{ name: string }> }) => risk.factors.map((f) => f.name);
const riskLogRows = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM risk_log')).rows[0]!.n);

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  const room = { dirs, hubs };
  a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a'));
  b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b'));
  const key = (agentKey = await importAgentKey(await generateAgentKey('EdDSA')));
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
  await closeTeamRoom({ clients, hubs, db, cluster, dirs });
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

  it("a learner that throws teaches no hub, and the decision's other rows all commit with the fault recorded", async () => {
    // Fault injection: no known input makes the learner throw, so hub A's engine throws for one payee.
    const engine = a.riskEngine as unknown as { apply: (this: unknown, profile: AgentProfile, event: RiskEvent) => void };
    const apply = engine.apply;
    engine.apply = function (this: unknown, profile: AgentProfile, event: RiskEvent) {
      if (event.kind === 'submitted' && JSON.stringify(event.call).includes('Throwing Learner Ltd'))
        throw new Error('injected learner fault');
      apply.call(this, profile, event);
    };
    try {
      // Hub A holds the agent's memory (a learner applies events only to memory it holds): a call first.
      await onA.submit(transferCall('4.00', 'Supplier 1'));
      const logged = await riskLogRows();
      const result = await onA.submit(transferCall('5.00', 'Throwing Learner Ltd'));
      // The decision, its token (if issued) and its audit record are committed; the baseline learned nothing.
      expect(await riskLogRows()).toBe(logged);
      const { rows } = await db.query<{ state: string }>('SELECT state FROM requests WHERE id = $1', [result.requestId]);
      expect(rows.map((r) => r.state)).toEqual([result.state]);
      // The audit event is a submission until the leader sequences it into audit_log (either may hold it now).
      const audit = await db.query<{ doc: string }>(
        `SELECT fields AS doc FROM audit_submissions WHERE request_id = $1
         UNION ALL SELECT record AS doc FROM audit_log WHERE request_id = $1`,
        [result.requestId],
      );
      expect(audit.rows.length).toBeGreaterThan(0);
      const faults = audit.rows.map((r) => (JSON.parse(r.doc) as { riskLearningFault?: string }).riskLearningFault);
      expect(faults.filter((f) => f !== undefined)).toEqual(['Error: injected learner fault']);
      if (result.state === 'allowed') {
        const tokens = await db.query('SELECT jti FROM tokens WHERE request_id = $1', [result.requestId]);
        expect(tokens.rowCount).toBe(1);
      }
    } finally {
      delete (engine as { apply?: unknown }).apply;
    }
    // Both hubs go on deciding the agent's calls, and the next one is learned again.
    const logged = await riskLogRows();
    await onA.submit(transferCall('6.00', 'Supplier 2'));
    await onB.submit(transferCall('6.00', 'Supplier 3'));
    expect(await riskLogRows()).toBe(logged + 2);
  }, 60_000);
});

describe("upgrading a team to shared baselines: the hubs' SQLite baselines are carried over", () => {
  it("each hub's baseline is imported once, so a new payee and an outsized amount are flagged right after the upgrade", async () => {
    const UPGRADED = 'treasury-bot';
    await db.query('CREATE DATABASE upgraded');
    const url = cluster.url.replace(/\/postgres$/, '/upgraded');
    const upgradedDb = testPool(url);
    try {
      const room = { dirs, hubs };
      const now = Date.now();
      // What each hub learned before baselines were the team's: its SQLite baseline, as the embedded engine writes it.
      const learnedBefore = (dir: string, payee: string, calls: number) => {
        const local = openStore(join(dir, 'countersign.db'));
        try {
          const engine = new RiskEngine(local, SETTINGS);
          for (let i = 0; i < calls; i++) {
            const call = transferCall(`${100 + i}.00`, payee);
            engine.submitted(
              UPGRADED,
              `before-${payee}-${i}`,
              call,
              callDigest(call.tool, call.params),
              now - 4 * DAY + i * HOUR,
              'allowed',
            );
          }
        } finally {
          local.close();
        }
      };
      // Neither hub alone has the 20 executed calls a baseline needs; the team has 25.
      const dirA = teamHubDir(room, 'up-a');
      const dirB = teamHubDir(room, 'up-b');
      learnedBefore(dirA, 'Acme Ltd', 15);
      learnedBefore(dirB, 'Globex', 10);
      // Both hubs start at once on the database (concurrent imports).
      const [upA, upB] = await Promise.all([startTeamHub(room, 'up-a', url, dirA), startTeamHub(room, 'up-b', url, dirB)]);
      await ensureTeamPeople(upA, FINANCE_SCOPE.owner);
      await upA.team!.agents.enroll(
        await verifyEnrollmentRequest(await createEnrollmentRequest(agentKey, UPGRADED, UPGRADED)),
        FINANCE_SCOPE,
      );
      await upB.team!.directory.waitForSeq(upA.team!.directory.appliedSeq);
      const imports = await upgradedDb.query<{ hub: string; agents: number }>('SELECT hub, agents FROM risk_imports ORDER BY hub');
      expect(imports.rows).toEqual([
        { hub: 'up-a', agents: 1 },
        { hub: 'up-b', agents: 1 },
      ]);
      for (const hub of [upA, upB]) {
        const fresh = factorNames((await hub.decisions.dryRun(UPGRADED, transferCall('9000.00', 'Initech'))).risk);
        expect(fresh).toEqual(expect.arrayContaining(['new_destination', 'amount_vs_baseline']));
        expect(fresh).not.toContain('baseline_learning');
      }
      // A payee paid through hub A before the upgrade is known on hub B, and the other way round.
      expect(factorNames((await upB.decisions.dryRun(UPGRADED, transferCall('110.00', 'Acme Ltd'))).risk)).not.toContain('new_destination');
      expect(factorNames((await upA.decisions.dryRun(UPGRADED, transferCall('105.00', 'Globex'))).risk)).not.toContain('new_destination');
      // Restarted, hub A imports nothing again.
      await upA.close();
      const again = await startTeamHub(room, 'up-a', url, dirA);
      const imported = await upgradedDb.query('SELECT id FROM risk_log WHERE event LIKE \'{"baseline":%\'');
      expect(imported.rowCount).toBe(2);
      expect((await upgradedDb.query('SELECT hub FROM risk_imports')).rowCount).toBe(2);
      await again.close();
      await upB.close();
    } finally {
      await upgradedDb.end();
    }
  }, 120_000);
});

describe('risk snapshots bound the replay and give what a full replay gives', () => {
  it('an agent snapshotted and pruned along the way replays to the same profile and scores as a full replay, also on a hub left behind a prune', async () => {
    const dir = tempDir('countersign-risk-snapshots-');
    dirs.push(dir);
    const local = openStore(join(dir, 'risk.db'));
    const engine = (snapshotEvery = 1e9) => {
      const e = new RiskEngine(local, SETTINGS, { snapshotEvery });
      e.useEventLog(new PgRiskLog(db, 'test-reader'));
      return e;
    };
    const profileOf = (e: RiskEngine, agentId: string) =>
      profileState((e as unknown as { profiles: Map<string, AgentProfile> }).profiles.get(agentId)!);
    try {
      const start = Date.now() - 2 * DAY;
      // A baseline imported from a hub's SQLite, then 600 events: executed calls to 40 payees, held calls approved or denied.
      const embedded = new RiskEngine(local, SETTINGS);
      for (let i = 0; i < 5; i++) {
        const call = transferCall(`${300 + i}.00`, 'Imported Payee');
        embedded.submitted('imported', `imported-${i}`, call, callDigest(call.tool, call.params), start - DAY + i * HOUR, 'allowed');
      }
      const stream: RiskEvent[] = [{ kind: 'imported', hub: 'old-hub', baseline: embedded.sqliteBaselines(start)[0]!.baseline }];
      for (let i = 0; i < 600; i++) {
        const call = transferCall(`${10 + ((i * 37) % 200)}.00`, `Payee ${(i * 7) % 40}`);
        const at = start + i * 4 * 60_000;
        const held = i % 9 === 0;
        stream.push({
          kind: 'submitted',
          requestId: `r${i}`,
          call,
          callSha256: callDigest(call.tool, call.params),
          at,
          state: held ? 'pending' : 'allowed',
        });
        if (held)
          stream.push({
            kind: 'settled',
            request: { id: `r${i}`, call, callSha256: callDigest(call.tool, call.params), createdAt: at },
            state: i % 2 === 0 ? 'approved' : 'denied',
            now: at + 60_000,
          });
      }
      const writer = new PgRiskLog(db, 'test-writer');
      const write = async (events: RiskEvent[]) => {
        for (const agentId of ['replay-full', 'replay-snap']) for (const event of events) writer.queue(agentId, event, false);
        const client = await db.connect();
        try {
          await client.query('BEGIN');
          await writer.write(client, writer.take());
          await client.query('COMMIT');
        } finally {
          client.release();
        }
      };
      const snapshots = engine();
      const behind = engine();
      const batch = 120;
      for (let i = 0; i < stream.length; i += batch) {
        await write(stream.slice(i, i + batch));
        // The hub left behind reads once, after the first batch, and not again until the end.
        if (i === 0) await behind.prepare('replay-snap', start);
        expect(await snapshots.snapshot('replay-snap')).toBe(true);
      }
      await write(stream.slice(0, 7)); // events after the last snapshot (the same again, as later calls)
      const now = start + 600 * 4 * 60_000 + 60_000;
      const full = engine();
      await full.prepare('replay-full', now);
      const fresh = engine();
      await fresh.prepare('replay-snap', now);
      await behind.prepare('replay-snap', now);
      const expected = profileOf(full, 'replay-full');
      expect(expected.executed).toBeGreaterThan(500);
      expect(profileOf(fresh, 'replay-snap')).toEqual(expected);
      expect(profileOf(behind, 'replay-snap')).toEqual(expected);
      for (const call of [
        transferCall('9000.00', 'Payee 3'),
        transferCall('12.00', 'Nobody Yet'),
        transferCall('310.00', 'Imported Payee'),
      ]) {
        const input = (agentId: string) => ({
          agent: { id: agentId, dataClasses: ['financial'], jurisdictions: ['US'] },
          call,
          callSha256: callDigest(call.tool, call.params),
          now,
        });
        const reference = full.score(input('replay-full'));
        expect(fresh.score(input('replay-snap'))).toEqual(reference);
        expect(behind.score(input('replay-snap'))).toEqual(reference);
      }
      // Pruned: of the snapshotted agent's events only those after the snapshot before last are kept.
      const kept = await db.query<{ agent_id: string; n: string }>(
        "SELECT agent_id, count(*) AS n FROM risk_log WHERE agent_id IN ('replay-full', 'replay-snap') GROUP BY agent_id ORDER BY agent_id",
      );
      expect(kept.rows.map((r) => [r.agent_id, Number(r.n)])).toEqual([
        ['replay-full', stream.length + 7],
        ['replay-snap', stream.length - (Math.ceil(stream.length / batch) - 1) * batch + 7],
      ]);
    } finally {
      local.close();
    }
  }, 60_000);

  it("a hub's own call decided while it re-reads after a stale read is learned by its memory", async () => {
    // Found by review (review3 finding 1): the stale path kept the old memory while re-reading, so an
    // own event applied to it was marked applied and then skipped by the next read, though the
    // rebuilt memory lacked it. The read is wrapped only to run the hub's own decision (its learner
    // hook and its INSERT) at the moment the re-read is in flight; nothing else is changed.
    const dir = tempDir('countersign-risk-stale-own-');
    dirs.push(dir);
    const local = openStore(join(dir, 'risk.db'));
    const start = Date.now() - HOUR;
    const submitted = (i: number, at: number): RiskEvent => {
      const call = transferCall(`${10 + i}.00`, `Payee ${i % 5}`);
      return { kind: 'submitted', requestId: `stale-${i}`, call, callSha256: callDigest(call.tool, call.params), at, state: 'allowed' };
    };
    const writer = new PgRiskLog(db, 'stale-writer');
    const write = async (events: RiskEvent[]) => {
      for (const event of events) writer.queue('stale-bot', event, false);
      const client = await db.connect();
      try {
        await client.query('BEGIN');
        await writer.write(client, writer.take());
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    const recentIds = (e: RiskEngine) =>
      (e as unknown as { profiles: Map<string, AgentProfile> }).profiles.get('stale-bot')!.recent.map((s) => s.requestId);
    try {
      const log = new PgRiskLog(db, 'stale-hub-a');
      const hubA = new RiskEngine(local, SETTINGS, { snapshotEvery: 1e9 });
      hubA.useEventLog(log);
      const other = new RiskEngine(local, SETTINGS, { snapshotEvery: 1e9 });
      other.useEventLog(new PgRiskLog(db, 'stale-other'));
      await write([submitted(0, start)]);
      await hubA.prepare('stale-bot', start); // hub A holds the agent at an early position
      // Another hub snapshots twice: the second prunes what the first covered, so hub A's next read is stale.
      await write([submitted(1, start + 1000)]);
      expect(await other.snapshot('stale-bot')).toBe(true);
      await write([submitted(2, start + 2000)]);
      expect(await other.snapshot('stale-bot')).toBe(true);

      const read = log.read.bind(log);
      let pending: pg.PoolClient | undefined;
      log.read = async (agentId, from) => {
        if (from === null && pending === undefined) {
          const own = transferCall('77.00', 'Own Payee');
          hubA.submitted('stale-bot', 'own-1', own, callDigest(own.tool, own.params), start + 3000, 'allowed');
          pending = await db.connect();
          await pending.query('BEGIN');
          await log.write(pending, log.take());
        }
        return read(agentId, from);
      };
      await hubA.prepare('stale-bot', start + 3000);
      await pending!.query('COMMIT'); // committed after the re-read's snapshot
      pending!.release();
      log.read = read;
      await hubA.prepare('stale-bot', start + 4000);

      const fresh = new RiskEngine(local, SETTINGS, { snapshotEvery: 1e9 });
      fresh.useEventLog(new PgRiskLog(db, 'stale-fresh'));
      await fresh.prepare('stale-bot', start + 4000);
      expect(recentIds(fresh)).toContain('own-1'); // the team's log has it
      expect(recentIds(hubA)).toEqual(recentIds(fresh)); // and hub A's memory learned it too
    } finally {
      local.close();
    }
  }, 60_000);
});
