/**
 * Team mode end to end (docs/team-mode.md): two hubs started the way `countersign hub` starts
 * them (startCountersign with `team`), on one real PostgreSQL 15 cluster started by the test, with
 * real SDK agents on real WebSockets connected to either. Checks automatic decisions on both hubs
 * (tokens verified against the deciding hub's JWKS), a nonce replayed on the other hub, a call held
 * on hub B ended by hub A reaching the agent on hub B (LISTEN/NOTIFY, through the gateway), and a
 * hub started by the real CLI killed with SIGKILL mid-load: every decision an agent was told of is
 * in the database, and the agent carries on at the other hub.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest, type EnrollmentPayload } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { RawClient, signedEnvelope } from '../helpers/raw-client.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { compiledCli } from '../helpers/compiled-script.js';
import { ensureTeamPeople, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

const AGENT = 'finance-bot';

let cluster: PostgresCluster;
let db: pg.Pool;
let key: AgentKey;
let enrollment: EnrollmentPayload;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
const children: ChildProcess[] = [];

const room = { dirs, hubs };
const hubDir = (name: string) => teamHubDir(room, name);
const startHub = (name: string) => startTeamHub(room, name, cluster.url, hubDir(name));

function agentOn(app: RunningCountersign, onDecision?: (result: DecisionResult) => void): AgentClient {
  const client = new AgentClient({
    url: app.url,
    agentId: AGENT,
    key,
    webSocket: nodeWebSocket,
    reconnect: false,
    requestTimeoutMs: 15_000,
    ...(onDecision === undefined ? {} : { onDecision }),
  });
  clients.push(client);
  return client;
}

async function row(requestId: string) {
  const { rows } = await db.query<{ state: string; decided_by_hub: string | null; token: string | null }>(
    'SELECT r.state, r.decided_by_hub, t.token FROM requests r LEFT JOIN tokens t ON t.request_id = r.id WHERE r.id = $1',
    [requestId],
  );
  return rows[0];
}

async function jwksOf(app: RunningCountersign) {
  return (await (await fetch(`http://127.0.0.1:${app.port}/.well-known/jwks.json`)).json()) as { keys: never[] };
}

let a: RunningCountersign;
let b: RunningCountersign;

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  key = await importAgentKey(await generateAgentKey('EdDSA'));
  enrollment = await verifyEnrollmentRequest(await createEnrollmentRequest(key, AGENT, AGENT));
  a = await startHub('hub-a');
  b = await startHub('hub-b');
  // One directory for all hubs (ADR 0013): enrolled once, on hub A; hub B's replica applies it.
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  await a.team!.agents.enroll(enrollment, FINANCE_SCOPE);
  await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const child of children) child.kill('SIGKILL');
  for (const app of hubs.reverse()) await app.close().catch(() => undefined);
  await db?.end();
  cluster?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('a hub that cannot reach its database', () => {
  it('refuses to start without a database url (config_invalid), and holds nothing', async () => {
    const dataDir = hubDir('hub-nourl');
    const start = () => startCountersign({ dataDir, log: () => undefined, team: {} });
    await expect(start()).rejects.toMatchObject({ code: 'config_invalid' });
    // The data directory's lock was released: the same start fails the same way, not data_dir_locked.
    await expect(start()).rejects.toMatchObject({ code: 'config_invalid' });
  });

  it('refuses to start when nothing answers at the database url (store_unavailable), and holds nothing', async () => {
    const dataDir = hubDir('hub-nodb');
    const closedPort = cluster.port === 1 ? 2 : 1; // nothing listens on port 1 of loopback
    const start = () =>
      startCountersign({ dataDir, log: () => undefined, team: { databaseUrl: `postgres://countersign@127.0.0.1:${closedPort}/postgres` } });
    await expect(start()).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(start()).rejects.toMatchObject({ code: 'store_unavailable' });
  }, 60_000);
});

describe('two hubs on one PostgreSQL database', () => {
  it('decide automatically on both hubs, each token verifying against its hub, both rows in the shared database', async () => {
    for (const [app, name] of [
      [a, 'hub-a'],
      [b, 'hub-b'],
    ] as const) {
      const call = transferCall('250.00');
      const result = await agentOn(app).submit(call);
      expect(result).toMatchObject({ decision: 'allow', determiningPolicies: ['finance-transfers:small-known-payee'] });
      const verified = await verifyApprovalToken(result.token!, {
        call: { tool: call.tool, params: call.params },
        audience: 'payments-service',
        keys: await jwksOf(app),
        jtiStore: new MemoryJtiStore(),
        domain: 'test',
      });
      expect(verified.decision.id).toBe(result.requestId);
      expect(await row(result.requestId)).toEqual({ state: 'allowed', decided_by_hub: name, token: result.token });
    }
    const health = (await (await fetch(`http://127.0.0.1:${a.port}/healthz`)).json()) as { team?: { hub: string } };
    expect(health.team).toMatchObject({ hub: 'hub-a' });
  });

  it('refuses on hub B an envelope hub A already decided, and writes nothing for it', async () => {
    const envelope = await signedEnvelope(key, AGENT, transferCall('260.00'));
    const onA = await RawClient.connect(a.url);
    const onB = await RawClient.connect(b.url);
    try {
      expect((await onA.authenticate(AGENT, key)).result).toBeDefined();
      expect((await onB.authenticate(AGENT, key)).result).toBeDefined();
      const first = await onA.call('call.submit', { envelope });
      expect(first.result).toMatchObject({ decision: 'allow' });
      const replay = await onB.call('call.submit', { envelope });
      expect(replay.error?.data.code).toBe('envelope_replayed');
      const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM requests WHERE envelope_nonce = $1', [
        envelope.payload.nonce,
      ]);
      expect(Number(rows[0]!.n)).toBe(1);
    } finally {
      onA.close();
      onB.close();
    }
  });

  it('tells the agent held on hub B when hub A ends its call, through the database and hub B gateway', async () => {
    const pushed: DecisionResult[] = [];
    const agent = agentOn(b, (result) => pushed.push(result));
    const held = await agent.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(held).toMatchObject({ decision: 'pending', approval: { approvals: 2, groups: [['finance-approvers']] } });
    expect(await row(held.requestId)).toMatchObject({ state: 'pending', decided_by_hub: null });
    const waiting = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });
    // Hub A's expiry (what its gateway runs every second) ends the call held by hub B's agent.
    const ended = await a.decisions.expireDue(held.approval!.expiresAt);
    expect(ended.map((e) => e.result.requestId)).toContain(held.requestId);
    await expect(waiting).resolves.toMatchObject({ requestId: held.requestId, state: 'expired', decision: 'deny' });
    expect(pushed.map((p) => [p.requestId, p.state])).toContainEqual([held.requestId, 'expired']);
    expect(await row(held.requestId)).toMatchObject({ state: 'expired', decided_by_hub: 'hub-a', token: null });
    // Hub B, expiring later, finds nothing left to end.
    expect((await b.decisions.expireDue(held.approval!.expiresAt)).map((e) => e.result.requestId)).not.toContain(held.requestId);
  }, 60_000);

  it('loses no decision when a hub started by the CLI is killed mid-load; the agent carries on at the other hub', async () => {
    const dir = hubDir('hub-c');
    // Enrolled once in the team directory (beforeAll): hub C's replica catches up when it starts.
    const child = spawn(
      process.execPath,
      [compiledCli(), 'hub', '--database', cluster.url, '--name', 'hub-c', '--data-dir', dir, '--domain', 'test'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`hub-c did not start: ${stderr}`)), 120_000);
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const found = /listening on (ws:\/\/\S+)/.exec(stderr);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]!);
        }
      });
      child.once('exit', (code) => reject(new Error(`hub-c exited ${code}: ${stderr}`)));
    });
    const agent = new AgentClient({ url, agentId: AGENT, key, webSocket: nodeWebSocket, reconnect: false, requestTimeoutMs: 15_000 });
    clients.push(agent);
    const told = new Map<string, DecisionResult>();
    const failures: string[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const result = await agent.submit(transferCall(`${100 + w}.${String(i % 100).padStart(2, '0')}`, 'Acme Ltd'));
          told.set(result.requestId, result);
        } catch (error) {
          failures.push(error instanceof Error ? error.message : String(error));
          return;
        }
      }
    };
    const load = [0, 1, 2, 3].map(worker);
    const until = Date.now() + 60_000;
    while (told.size < 40 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(told.size).toBeGreaterThanOrEqual(40);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    stop = true;
    await Promise.all(load);
    expect(failures.length).toBeGreaterThan(0); // the kill cut calls in flight: they fail, they are not answered
    // Every decision the agent was told of is in the shared database, in the state it was told, with its token.
    for (const [requestId, result] of told) {
      const stored = await row(requestId);
      expect(stored, requestId).toMatchObject({ state: result.state, decided_by_hub: result.state === 'pending' ? null : 'hub-c' });
      if (result.token !== undefined) expect(stored!.token).toBe(result.token);
    }
    // The agent reconnects to hub B and keeps getting decisions; hub C's requests read back there.
    // Risk baselines are the team's: hub B scores the burst the agent made on hub C (call rate).
    const again = agentOn(b);
    const next = await again.submit(transferCall('270.00'));
    expect(['allow', 'pending']).toContain(next.decision);
    const scored = await db.query<{ risk: string }>('SELECT risk FROM requests WHERE id = $1', [next.requestId]);
    expect((JSON.parse(scored.rows[0]!.risk) as { factors: Array<{ name: string }> }).factors.map((f) => f.name)).toContain('call_rate');
    const [someId] = told.keys();
    expect(await again.getRequest(someId!)).toMatchObject({ requestId: someId, state: told.get(someId!)!.state });
  }, 240_000);
});
