/**
 * One directory for all hubs (ADR 0013, docs/team-mode.md), on a real PostgreSQL 15 cluster
 * started by the test, with hubs started the way `countersign hub` starts them and real SDK and
 * raw WebSocket agents: an agent enrolled once (on a hub, or by the real CLI with --database) gets
 * decisions on every hub; a revocation on hub A refuses the very next call on hub B, also before
 * hub B's replica has applied it (the decision's transaction checks PostgreSQL); a hub started
 * later catches up before it serves; two hubs enrolling one id at once: exactly one wins; losing
 * the database fails closed with store_unavailable and the replica resumes after the restart.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDataDir, type RunningCountersign } from '../../main/core/app.js';
import { AgentClient, type AgentClientOptions } from '../../shared/agent-client.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest, type EnrollmentPayload } from '../../shared/enrollment.js';
import { DEMO_POLICY_DIR, FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { RawClient, signedEnvelope } from '../helpers/raw-client.js';
import { prepareDirectEnrollment } from '../helpers/direct-enrollment.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { compiledCli } from '../helpers/compiled-script.js';
import { signInOverHttp, tapKey, type HttpSignIn } from '../helpers/desk-session.js';
import {
  closeTeamRoom,
  ensureTeamPeople,
  refuseReplicaInserts,
  registerTeamPerson,
  startTeamHub,
  teamHubDir,
} from '../helpers/team-hubs.js';

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
let a: RunningCountersign;
let b: RunningCountersign;
/** The first test's agent: enrolled there, active throughout. */
let ledger: Agent | undefined;

function agentFromLedger(): Agent {
  if (ledger === undefined) throw new Error('the first test did not run');
  return ledger;
}

const room = { dirs, hubs };
const hubDir = (name: string) => teamHubDir(room, name);
const startHub = (name: string, dataDir = hubDir(name), log?: (line: string) => void) =>
  startTeamHub(room, name, cluster.url, dataDir, log);

interface Agent {
  id: string;
  key: AgentKey;
  enrollment: EnrollmentPayload;
}

async function newAgent(id: string): Promise<Agent> {
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  return { id, key, enrollment: await verifyEnrollmentRequest(await createEnrollmentRequest(key, id, id)) };
}

function agentOn(app: RunningCountersign, agent: Agent, options: Partial<AgentClientOptions> = {}): AgentClient {
  const client = new AgentClient({
    url: app.url,
    agentId: agent.id,
    key: agent.key,
    webSocket: nodeWebSocket,
    reconnect: false,
    requestTimeoutMs: 15_000,
    ...options,
  });
  clients.push(client);
  return client;
}

/** An agent on `app` that keeps every decision pushed to it, and `closing`, settled when the hub closes its session. */
function watchedOn(app: RunningCountersign, agent: Agent): { client: AgentClient; pushed: DecisionResult[]; closing: Promise<void> } {
  const pushed: DecisionResult[] = [];
  let closed!: () => void;
  const closing = new Promise<void>((resolve) => (closed = resolve));
  const client = agentOn(app, agent, {
    onDecision: (result) => pushed.push(result),
    onStateChange: (state) => state === 'closed' && closed(),
  });
  return { client, pushed, closing };
}

/** Submit one call over a raw connection; the decision or the refusal's code. */
async function submitRaw(
  app: RunningCountersign,
  agent: Agent,
  amount: string,
  connected?: RawClient,
): Promise<{ decision?: string; code?: string }> {
  const client = connected ?? (await RawClient.connect(app.url));
  try {
    if (connected === undefined) {
      const auth = await client.authenticate(agent.id, agent.key);
      if (auth.error) return { code: auth.error.data.code };
    }
    const reply = await client.call('call.submit', { envelope: await signedEnvelope(agent.key, agent.id, transferCall(amount)) });
    return reply.error ? { code: reply.error.data.code } : { decision: (reply.result as { decision: string }).decision };
  } finally {
    if (connected === undefined) client.close();
  }
}

/** Hub `app`'s replica has applied everything hub `from` has. */
const caughtUp = (app: RunningCountersign, from: RunningCountersign) => app.team!.directory.waitForSeq(from.team!.directory.appliedSeq);

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  a = await startHub('hub-a');
  b = await startHub('hub-b');
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
}, 240_000);

afterAll(async () => {
  await closeTeamRoom({ clients, hubs, db, cluster, dirs });
}, 120_000);

describe('one directory for all hubs', () => {
  it('enrolls an agent once, on hub A, and it gets decisions on hub A and hub B', async () => {
    const agent = await newAgent('ledger-bot');
    ledger = agent;
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await caughtUp(b, a);
    expect(b.registry.getAgent(agent.id)).toMatchObject({ status: 'active', owner: FINANCE_SCOPE.owner, group: FINANCE_SCOPE.group });
    expect(await agentOn(a, agent).submit(transferCall('250.00'))).toMatchObject({ decision: 'allow' });
    expect(await agentOn(b, agent).submit(transferCall('251.00'))).toMatchObject({ decision: 'allow' });
    // The change log entry and its team audit record were written together.
    const { rows } = await db.query<{ kind: string; hub: string }>("SELECT kind, hub FROM directory_changes WHERE ops LIKE '%ledger-bot%'");
    expect(rows).toEqual([{ kind: 'agent.enrolled', hub: 'hub-a' }]);
    // In the team audit log: submitted, or already sequenced by the audit leader.
    const audited = await db.query(
      "SELECT 1 FROM audit_submissions WHERE kind = 'agent.enrolled' AND fields LIKE '%ledger-bot%' UNION ALL SELECT 1 FROM audit_log WHERE kind = 'agent.enrolled' AND record LIKE '%ledger-bot%'",
    );
    expect(audited.rowCount).toBe(1);
    // Writing the replica directly is refused in team mode: no local-only enrollment.
    expect(() => b.registry.enroll(agent.enrollment, FINANCE_SCOPE)).toThrow(/team directory/);
  }, 60_000);

  it('refuses the very next call on hub B after hub A revokes the agent, and ends its held call', async () => {
    const agent = await newAgent('payout-bot');
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await caughtUp(b, a);
    const onB = agentOn(b, agent);
    const held = await onB.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(held).toMatchObject({ decision: 'pending' });
    const ended = await a.team!.agents.revoke(agent.id, 'key leaked');
    expect(ended.map((r) => r.requestId)).toEqual([held.requestId]);
    // Ended in the team database with the revocation. (The agent on hub B is either told or, when
    // hub B's session sweep closes it first, reads it back after reconnecting: docs/team-mode.md.)
    const { rows } = await db.query<{ state: string; reasons: string }>('SELECT state, reasons FROM requests WHERE id = $1', [
      held.requestId,
    ]);
    expect(rows[0]).toEqual({ state: 'denied', reasons: JSON.stringify(['agent revoked: key leaked']) });
    expect(await submitRaw(b, agent, '12.00')).toEqual({ code: 'agent_revoked' });
    await caughtUp(b, a);
    expect(b.registry.getAgent(agent.id)).toMatchObject({ status: 'revoked' });
  }, 60_000);

  it('tells an agent on hub B of every held call a revocation on hub A ended, also one it submitted on hub A, then closes it', async () => {
    const agent = await newAgent('relay-bot');
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await caughtUp(b, a);
    // Held on hub A, then the agent moves to hub B (hub B follows no call of it); held on hub B.
    const onA = agentOn(a, agent);
    const heldOnA = await onA.submit(transferCall('48000.00', 'Northwind Traders'));
    onA.close();
    const { client: onB, pushed, closing } = watchedOn(b, agent);
    const heldOnB = await onB.submit(transferCall('47000.00', 'Contoso'));
    expect([heldOnA.decision, heldOnB.decision]).toEqual(['pending', 'pending']);
    await a.team!.agents.revoke(agent.id, 'key leaked');
    // Hub B ends the session when its replica applies the revocation: each ended call is pushed before the close (4004).
    await closing;
    // Each once: hub B follows heldOnB, and its follower is woken by the same commit.
    expect(pushed.map((r) => r.requestId).sort()).toEqual([heldOnA.requestId, heldOnB.requestId].sort());
    for (const result of pushed)
      expect(result).toMatchObject({ decision: 'deny', state: 'denied', reasons: ['agent revoked: key leaked'] });
  }, 60_000);

  it('a proposal made on hub P is listed on hub Q and performed once by a second admin confirming on both hubs at once; the other confirmation finds it closed', async () => {
    // The two admins are in the team directory (ADR 0013): registered once, on hub P; they sign in on both hubs.
    const keys = new Map<string, Awaited<ReturnType<typeof registerTeamPerson>>>();
    const quorumHub = async (name: string) => {
      const app = await startHub(name, teamHubDir(room, name, { approvals: { adminQuorum: 2 } }));
      const admins = new Map<string, HttpSignIn>();
      for (const id of ['prime', 'second']) {
        if (!keys.has(id)) keys.set(id, await registerTeamPerson(app, id, ['countersign-admins']));
        admins.set(id, await signInOverHttp(app, id, keys.get(id)!));
      }
      await ensureTeamPeople(app, FINANCE_SCOPE.owner);
      return { app, admins, keys };
    };
    const [p, q] = [await quorumHub('hub-p'), await quorumHub('hub-q')];
    const agent = await newAgent('proposed-bot');
    const action = {
      kind: 'agent.enroll' as const,
      request: await createEnrollmentRequest(agent.key, agent.id, agent.id),
      scope: { ...FINANCE_SCOPE },
    };
    const root = p.admins.get('prime')!;
    const started = await root.bridge.startAdminAction('prime', action);
    const proposed = await root.bridge.submitAdminAction('prime', tapKey(p.app, p.keys.get('prime')!, started.options));
    const proposalId = proposed.proposal!.id;
    expect((await db.query("SELECT 1 FROM directory_agents WHERE id = 'proposed-bot'")).rows).toEqual([]);
    // Hub Q lists the team's proposal; the proposer cannot confirm it there either.
    const second = q.admins.get('second')!;
    expect((await second.bridge.listPendingAdminActions()).proposals.map((x) => [x.id, x.proposedBy])).toEqual([[proposalId, 'prime']]);
    const selfOnQ = await signInOverHttp(q.app, 'prime', keys.get('prime')!);
    await expect(selfOnQ.bridge.startAdminConfirmation(proposalId, 'prime', 'confirm')).rejects.toMatchObject({
      code: 'admin_self_confirm',
    });
    // The second admin confirms on hub Q and, at the same moment, on hub P: performed exactly once.
    const onP = await signInOverHttp(p.app, 'second', keys.get('second')!);
    const [confirmQ, confirmP] = [
      await second.bridge.startAdminConfirmation(proposalId, 'second', 'confirm'),
      await onP.bridge.startAdminConfirmation(proposalId, 'second', 'confirm'),
    ];
    const settled = await Promise.allSettled([
      second.bridge.submitAdminConfirmation('second', tapKey(q.app, keys.get('second')!, confirmQ.options)),
      onP.bridge.submitAdminConfirmation('second', tapKey(p.app, keys.get('second')!, confirmP.options)),
    ]);
    const performed = settled.filter((r) => r.status === 'fulfilled');
    expect(performed).toHaveLength(1);
    expect(performed[0]).toMatchObject({ value: { result: { enrolled: agent.id } } });
    expect(settled.find((r) => r.status === 'rejected')).toMatchObject({ reason: { code: 'admin_proposal_closed' } });
    const { rows } = await db.query<{ state: string; decided_by: string }>('SELECT state, decided_by FROM admin_proposals WHERE id = $1', [
      proposalId,
    ]);
    expect(rows).toEqual([{ state: 'executed', decided_by: 'second' }]);
    expect((await db.query("SELECT 1 FROM directory_agents WHERE id = 'proposed-bot'")).rowCount).toBe(1);
    // Both records in the team audit log (submitted, or already sequenced by the leader).
    const audited = await db.query<{ kind: string }>(
      `SELECT kind FROM (SELECT kind, fields AS text FROM audit_submissions UNION ALL SELECT kind, record FROM audit_log) entries
       WHERE kind IN ('admin.action_proposed', 'admin.action') AND text LIKE $1 ORDER BY kind`,
      [`%${proposalId}%`],
    );
    expect(audited.rows.map((r) => r.kind)).toEqual(['admin.action', 'admin.action_proposed']);
    await caughtUp(q.app, p.app);
    expect(q.app.registry.getAgent(agent.id)).toMatchObject({ status: 'active' });
    expect((await onP.bridge.listPendingAdminActions()).proposals).toEqual([]);
  }, 90_000);

  it('revokes an agent whose held call holds U+0000, ends that call, and finds it in the History (the jsonb search index reads it)', async () => {
    const agent = await newAgent('nul-bot');
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    const call = transferCall('4100.00', 'Nul\u0000Payee \\u0000');
    const held = await agentOn(a, agent).submit({ ...call, params: { ...call.params, memo: 'a\u0000b' } });
    expect(held).toMatchObject({ decision: 'pending' });
    const ended = await a.team!.agents.revoke(agent.id, 'key leaked');
    expect(ended.map((r) => r.requestId)).toEqual([held.requestId]);
    expect(a.registry.getAgent(agent.id)).toMatchObject({ status: 'revoked' });
    const found = await a.ui.searchHistory({ text: 'nul', agentId: agent.id });
    expect(found.rows.map((r) => [r.requestId, r.state, r.payee])).toEqual([[held.requestId, 'denied', 'Nul\ufffdPayee \\u0000']]);
  }, 60_000);

  it("refuses a revoked agent's call on hub B even while hub B's replica still says active (checked in PostgreSQL)", async () => {
    const agent = await newAgent('stale-bot');
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await caughtUp(b, a);
    const onB = await RawClient.connect(b.url);
    try {
      expect((await onB.authenticate(agent.id, agent.key)).result).toBeDefined();
      expect(await submitRaw(b, agent, '13.00', onB)).toEqual({ decision: 'allow' });
      // The replica lagging behind a committed revocation (a notification still on its way),
      // made by revoking the authoritative row alone: no change log entry reaches hub B.
      await db.query("UPDATE directory_agents SET status = 'revoked' WHERE id = $1", [agent.id]);
      expect(b.registry.getAgent(agent.id)).toMatchObject({ status: 'active' });
      expect(await submitRaw(b, agent, '14.00', onB)).toEqual({ code: 'agent_revoked' });
      const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM requests WHERE agent_id = $1', [agent.id]);
      expect(Number(rows[0]!.n)).toBe(1);
    } finally {
      onB.close();
    }
  }, 60_000);

  it('tells an agent whose call hub B refuses before its replica has the revocation of the call held on hub A, then closes it', async () => {
    const agent = await newAgent('lagging-bot');
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await caughtUp(b, a);
    const onA = agentOn(a, agent);
    const heldOnA = await onA.submit(transferCall('46000.00', 'Fabrikam'));
    expect(heldOnA.decision).toBe('pending');
    onA.close();
    const { client: onB, pushed, closing } = watchedOn(b, agent);
    expect(await onB.submit(transferCall('16.00'))).toMatchObject({ decision: 'allow' });
    // A revocation committed as revoke() writes it, whose change has not reached hub B's replica
    // (no change log entry: the notification still on its way).
    const at = Date.now();
    await db.query(
      "UPDATE directory_agents SET status = 'revoked', row = (row::jsonb || jsonb_build_object('status', 'revoked', 'revoked_at', $2::bigint, 'revoked_reason', 'key leaked'))::text WHERE id = $1",
      [agent.id, at],
    );
    await db.query("UPDATE requests SET state = 'denied', decided_at = $2, reasons = $3 WHERE id = $1", [
      heldOnA.requestId,
      at,
      JSON.stringify(['agent revoked: key leaked']),
    ]);
    expect(b.registry.getAgent(agent.id)).toMatchObject({ status: 'active' });
    await expect(onB.submit(transferCall('17.00'))).rejects.toMatchObject({ code: 'agent_revoked' });
    await closing;
    expect(pushed.find((r) => r.requestId === heldOnA.requestId)).toMatchObject({
      state: 'denied',
      reasons: ['agent revoked: key leaked'],
    });
  }, 60_000);

  it('lets exactly one of two hubs enrolling the same agent id at once win; the other gets enrollment_conflict', async () => {
    const first = await newAgent('twin-bot');
    const second = await newAgent('twin-bot');
    await ensureTeamPeople(b, FINANCE_SCOPE.owner);
    const results = await Promise.allSettled([
      a.team!.agents.enroll(first.enrollment, FINANCE_SCOPE),
      b.team!.agents.enroll(second.enrollment, FINANCE_SCOPE),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toMatchObject({ code: 'enrollment_conflict' });
    const { rows } = await db.query<{ kid: string }>("SELECT kid FROM directory_agent_keys WHERE agent_id = 'twin-bot'");
    expect(rows).toHaveLength(1);
    // Both replicas hold the winner's key, and only it.
    await caughtUp(a, b);
    await caughtUp(b, a);
    for (const app of [a, b])
      expect(
        app.registry
          .list()
          .find((x) => x.id === 'twin-bot')!
          .keys.map((k) => k.kid),
      ).toEqual([rows[0]!.kid]);
  }, 60_000);

  it("performs the desk's agent actions on hub A in the team directory: hub B decides for the enrolled agent, then refuses it once revoked", async () => {
    // The admin is in the team directory too (ADR 0013), added and registered once, on hub A.
    const rootKey = await registerTeamPerson(a, 'root', ['countersign-admins']);
    const origin = a.approvers.origins[0]!;
    const agent = await newAgent('desk-bot');
    /** One admin action: the ceremony, root's key tap over it, the submit. */
    const act = async (action: Record<string, unknown>) => {
      const post = async (path: string, body: unknown) =>
        (await fetch(`http://127.0.0.1:${a.port}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${a.uiSessionSecret}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }).then((r) => r.json())) as Record<string, unknown>;
      const started = await post('/api/admin/ceremony', { adminId: 'root', action });
      const options = started.options as { challenge: string; allowCredentials: Array<{ id: string }> };
      const response = rootKey.getAssertion({
        rpId: 'localhost',
        origin,
        challenge: options.challenge,
        allowCredentials: options.allowCredentials.map((c) => c.id),
        userVerification: 'required',
      });
      return post('/api/admin/submit', { adminId: 'root', response });
    };
    const { group, allowedTools, dataClasses, jurisdictions, owner } = FINANCE_SCOPE;
    const enrolled = await act({
      kind: 'agent.enroll',
      request: await createEnrollmentRequest(agent.key, agent.id, agent.id),
      scope: { owner, group, allowedTools, dataClasses, jurisdictions },
    });
    expect(enrolled).toMatchObject({ result: { enrolled: agent.id } });
    await caughtUp(b, a);
    expect(await submitRaw(b, agent, '21.00')).toEqual({ decision: 'allow' });
    expect(await act({ kind: 'agent.revoke', id: agent.id, reason: 'left the team' })).toMatchObject({ result: { revoked: agent.id } });
    expect(await submitRaw(b, agent, '22.00')).toEqual({ code: 'agent_revoked' });
    // The admin's tap is in the team audit log, in the transaction of each change.
    const { rows } = await db.query<{ n: string }>(
      "SELECT count(*) AS n FROM (SELECT fields AS f FROM audit_submissions WHERE kind = 'admin.action' UNION ALL SELECT record FROM audit_log WHERE kind = 'admin.action') x WHERE f LIKE '%desk-bot%'",
    );
    expect(Number(rows[0]!.n)).toBe(2);
  }, 60_000);

  // Two real CLI processes (the CLI compiled once for the run, test/helpers/compile-scripts.ts).
  it('enrolls with the real CLI (agents enroll --database) and revokes with it; hub B decides accordingly', async () => {
    const agent = await newAgent('cli-bot');
    const dataDir = hubDir('cli');
    const file = join(dataDir, 'cli-bot.enrollment.json');
    writeFileSync(file, JSON.stringify(await createEnrollmentRequest(agent.key, agent.id, agent.id)));
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [compiledCli(), ...args, '--data-dir', dataDir, '--database', cluster.url], {
        encoding: 'utf8',
        timeout: 120_000,
      });
    // The owner resolves in the CLI's data directory (its replica of the team directory once it writes with --database).
    const local = openDataDir(dataDir);
    await prepareDirectEnrollment(local, DEMO_POLICY_DIR, [FINANCE_SCOPE.owner]);
    local.db.close();
    const enrolled = cli(
      'agents',
      'enroll',
      file,
      '--owner',
      FINANCE_SCOPE.owner,
      '--group',
      FINANCE_SCOPE.group,
      '--tools',
      FINANCE_SCOPE.allowedTools.join(','),
      '--data-classes',
      FINANCE_SCOPE.dataClasses.join(','),
      '--jurisdictions',
      FINANCE_SCOPE.jurisdictions.join(','),
    );
    expect(enrolled.status, enrolled.stderr).toBe(0);
    const { rows } = await db.query<{ seq: string }>('SELECT max(seq) AS seq FROM directory_changes');
    await b.team!.directory.waitForSeq(Number(rows[0]!.seq));
    expect(await submitRaw(b, agent, '15.00')).toEqual({ decision: 'allow' });
    // Without --database this data directory is a replica: a revocation here alone is refused
    // (it would hold nowhere else and be undone by the next change applied).
    const alone = spawnSync(process.execPath, [compiledCli(), 'agents', 'revoke', agent.id, '--data-dir', dataDir], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(alone.status).not.toBe(0);
    expect(alone.stderr).toMatch(/replica of a team directory: write its agents with --database URL .*\[config_invalid\]/);
    const replica = openDataDir(dataDir);
    try {
      expect(replica.registry.getAgent(agent.id)).toMatchObject({ status: 'active' });
    } finally {
      replica.db.close();
    }
    const revoked = cli('agents', 'revoke', agent.id, '--reason', 'rotated out');
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(await submitRaw(b, agent, '16.00')).toEqual({ code: 'agent_revoked' });

    // Approvers the same way: added once by the CLI, on every hub; removed without --database: refused.
    const added = cli('approvers', 'add', 'quinn', '--name', 'Quinn Example', '--groups', 'finance-approvers');
    expect(added.status, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/registration/);
    const latest = async () => Number((await db.query<{ seq: string }>('SELECT max(seq) AS seq FROM directory_changes')).rows[0]!.seq);
    await b.team!.directory.waitForSeq(await latest());
    expect(b.approvers.get('quinn')).toMatchObject({ status: 'active', groups: ['finance-approvers'] });
    const removedAlone = spawnSync(process.execPath, [compiledCli(), 'approvers', 'disable', 'quinn', '--data-dir', dataDir], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(removedAlone.status).not.toBe(0);
    expect(removedAlone.stderr).toMatch(/write its approvers with --database URL .*\[config_invalid\]/);
    const removed = cli('approvers', 'disable', 'quinn');
    expect(removed.status, removed.stderr).toBe(0);
    await b.team!.directory.waitForSeq(await latest());
    expect(b.approvers.get('quinn')).toMatchObject({ status: 'disabled' });
  }, 180_000);

  it('starts a hub after the changes and catches it up before it serves', async () => {
    const c = await startHub('hub-c');
    expect(c.team!.directory.appliedSeq).toBe(a.team!.directory.appliedSeq);
    expect(c.registry.getAgent('ledger-bot')).toMatchObject({ status: 'active' });
    expect(c.registry.getAgent('payout-bot')).toMatchObject({ status: 'revoked' });
    expect(await submitRaw(c, agentFromLedger(), '17.00')).toEqual({ decision: 'allow' });
    await c.close();
  }, 120_000);

  it('tries a failed catch-up again, so a replica is not left behind when no further notification comes', async () => {
    const dir = hubDir('hub-d');
    const lines: string[] = [];
    const d = await startHub('hub-d', dir, (line) => lines.push(line));
    const agent = await newAgent('retry-bot');
    // Another process's connection (a backup tool, say) holds hub D's SQLite write lock, so the
    // catch-up that hub A's notification starts cannot apply the change (busy after its timeout).
    const holder = new Database(join(dir, 'countersign.db'), { timeout: 0 });
    try {
      holder.exec('BEGIN IMMEDIATE');
      await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
      const failed = () => lines.some((line) => line.includes('directory replica could not catch up'));
      for (let i = 0; i < 200 && !failed(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(failed()).toBe(true);
      expect(d.team!.directory.appliedSeq).toBeLessThan(a.team!.directory.appliedSeq);
    } finally {
      if (holder.inTransaction) holder.exec('ROLLBACK');
      holder.close();
    }
    // The change's one notification is spent: only the retry can bring it to hub D.
    await caughtUp(d, a);
    expect(d.registry.getAgent(agent.id)).toMatchObject({ status: 'active' });
    expect(await submitRaw(d, agent, '20.00')).toEqual({ decision: 'allow' });
    await d.close();
  }, 120_000);

  it("answers a committed enrollment and rotation with what was committed while the hub's own replica cannot apply them, and the replica catches up on its own", async () => {
    const agent = await newAgent('committed-bot');
    const next = await importAgentKey(await generateAgentKey('EdDSA'));
    const rotation = await verifyEnrollmentRequest(await createEnrollmentRequest(next, agent.id, agent.id));
    const release = refuseReplicaInserts(b, 'agents');
    let committedSeq: number;
    try {
      // Without the fix these answered store_failed ("has not reached this hub") though both committed.
      await expect(b.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE)).resolves.toMatchObject({
        id: agent.id,
        status: 'active',
        owner: FINANCE_SCOPE.owner,
        group: FINANCE_SCOPE.group,
      });
      await expect(b.team!.agents.rotate(agent.id, rotation, 60_000)).resolves.toMatchObject({
        kid: rotation.publicJwk.kid,
        agentId: agent.id,
        status: 'active',
      });
      const { rows } = await db.query<{ seq: string }>('SELECT max(seq) AS seq FROM directory_changes');
      committedSeq = Number(rows[0]!.seq);
      expect(b.registry.getAgent(agent.id)).toBeUndefined();
      expect(b.team!.directory.appliedSeq).toBeLessThan(committedSeq);
    } finally {
      release();
    }
    // No further notification comes: the listener's retry applies both.
    await b.team!.directory.waitForSeq(committedSeq);
    expect(b.registry.getAgent(agent.id)).toMatchObject({ status: 'active' });
    expect(await submitRaw(b, { ...agent, key: next }, '21.00')).toEqual({ decision: 'allow' });
  }, 120_000);

  it('fails closed with store_unavailable while the database is down, and the replica resumes after it restarts', async () => {
    const agent = await newAgent('after-restart-bot');
    cluster.stopServer();
    try {
      expect(await submitRaw(b, agentFromLedger(), '18.00')).toEqual({ code: 'store_unavailable' });
      await expect(a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE)).rejects.toMatchObject({ code: 'store_unavailable' });
    } finally {
      cluster.startServer();
    }
    // Hub A's pool reconnects on the next write; hub B's listener reconnects by itself and catches up.
    await a.team!.agents.enroll(agent.enrollment, FINANCE_SCOPE);
    await caughtUp(b, a);
    expect(await submitRaw(b, agent, '19.00')).toEqual({ decision: 'allow' });
  }, 120_000);
});
