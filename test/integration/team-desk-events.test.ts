/**
 * The desks' request push events on two hubs (docs/team-mode.md "Push events of every hub",
 * store/pg/pg-desk-events.ts): a desk's real event stream (Server-Sent Events over HTTP) on hub A
 * sees a call held by an agent on hub B appear (`pending`), get its first approval on hub B
 * (`approvalRecorded`) and be decided on hub A (`decided`), each event once on each hub's desks,
 * the writing hub's included; and a notification sent while hub A's listener was cut off (its
 * backend terminated by pg_terminate_backend, its reconnect refused by a role that may not log
 * in for that moment) reaches hub A's desk once the listener is back; and a burst of more events
 * than the bridge's replay ring (1,024) between two reads reaches every desk as one `resync`,
 * a burst of exactly 1,024 as the events. Two hubs on a real
 * PostgreSQL 15 cluster, a real SDK agent on a real WebSocket to hub B.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import type { BridgeEvent } from '../../shared/bridge-table.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { DEFAULT_REPLAY_LIMIT } from '../../main/core/ui/bridge-events.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { signInOverHttp, type HttpSignIn } from '../helpers/desk-session.js';
import { closeTeamRoom, ensureTeamPeople, registerApprovers, startTeamHub, tapOn, teamHubDir } from '../helpers/team-hubs.js';

const AGENT = 'events-bot';
const TRANSFER = transferCall('48000.00', 'Northwind Traders');
/** Hub A joins as its own role, so the test can refuse that role's logins (and only hub A's) for a moment. */
const HUB_A_ROLE = 'hub_a';

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
let a: RunningCountersign;
let b: RunningCountersign;
let agent: AgentClient;
let keys: Map<string, VirtualAuthenticator>;
/** The request events the desk of alice on hub A and of bob on hub B received (each its hub's real event stream). */
let onA: { seen: BridgeEvent[] };
let onB: { seen: BridgeEvent[] };

/** The request events a desk's stream on `hub` receives from now on. */
async function deskEvents(hub: RunningCountersign, desk: HttpSignIn): Promise<{ seen: BridgeEvent[] }> {
  const seen: BridgeEvent[] = [];
  const before = hub.bridgeEvents.subscribers;
  desk.bridge.subscribe((event) => {
    if (event.name !== 'adminProposal') seen.push(event);
  });
  await vi.waitFor(() => expect(hub.bridgeEvents.subscribers).toBe(before + 1));
  return { seen };
}

const decide = async (hub: RunningCountersign, requestId: string, approverId: string, verdict: 'approve' | 'deny' = 'approve') =>
  hub.approvals.submitCeremony(await tapOn(hub, keys.get(approverId)!, requestId, approverId, verdict));

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  await db.query(`CREATE ROLE ${HUB_A_ROLE} LOGIN SUPERUSER`);
  const room = { dirs, hubs };
  const settings = { risk: { enabled: false } };
  a = await startTeamHub(room, 'hub-a', cluster.url.replace('//countersign@', `//${HUB_A_ROLE}@`), teamHubDir(room, 'hub-a', settings));
  b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b', settings));
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  keys = await registerApprovers(a, ['alice', 'bob']);
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  await a.team!.agents.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, AGENT, AGENT)), FINANCE_SCOPE);
  await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
  agent = new AgentClient({ url: b.url, agentId: AGENT, key, webSocket: nodeWebSocket, reconnect: false, requestTimeoutMs: 15_000 });
  clients.push(agent);
  onA = await deskEvents(a, await signInOverHttp(a, 'alice', keys.get('alice')!));
  onB = await deskEvents(b, await signInOverHttp(b, 'bob', keys.get('bob')!));
}, 240_000);

afterAll(async () => {
  await closeTeamRoom({ clients, hubs, db, cluster, dirs });
}, 120_000);

describe("the desks' request events on two hubs", () => {
  it('a call held on hub B appears on the desk of hub A, gets its first approval on B and is decided on A: each desk gets each event once, in order', async () => {
    const held = await agent.submit(TRANSFER);
    expect(held).toMatchObject({ decision: 'pending', approval: { approvals: 2 } });
    const requestId = held.requestId;
    // Before, only hub B's desks were told; hub A's desk saw the call on its next reload.
    await vi.waitFor(() => expect(onA.seen).toEqual([{ name: 'pending', data: { requestId, agentId: AGENT } }]), { timeout: 10_000 });

    expect(await decide(b, requestId, 'bob')).toMatchObject({ state: 'pending' });
    await vi.waitFor(() => expect(onA.seen.at(-1)).toEqual({ name: 'approvalRecorded', data: { requestId } }), { timeout: 10_000 });

    const answer = agent.waitForDecision(requestId, { timeoutMs: 15_000 });
    expect(await decide(a, requestId, 'alice')).toMatchObject({ state: 'approved' });
    expect(await answer).toMatchObject({ state: 'approved' });
    const expected: BridgeEvent[] = [
      { name: 'pending', data: { requestId, agentId: AGENT } },
      { name: 'approvalRecorded', data: { requestId } },
      { name: 'approvalRecorded', data: { requestId } },
      { name: 'decided', data: { requestId, state: 'approved' } },
    ];
    await vi.waitFor(() => expect(onA.seen).toHaveLength(4), { timeout: 10_000 });
    await vi.waitFor(() => expect(onB.seen).toHaveLength(4), { timeout: 10_000 });

    // A later call, denied on B, proves no duplicate of the first was on its way to either desk.
    const second = await agent.submit(TRANSFER);
    await decide(b, second.requestId, 'bob', 'deny');
    const denied: BridgeEvent[] = [
      { name: 'pending', data: { requestId: second.requestId, agentId: AGENT } },
      { name: 'approvalRecorded', data: { requestId: second.requestId } },
      { name: 'decided', data: { requestId: second.requestId, state: 'denied' } },
    ];
    await vi.waitFor(() => expect(onA.seen).toHaveLength(7), { timeout: 10_000 });
    await vi.waitFor(() => expect(onB.seen).toHaveLength(7), { timeout: 10_000 });
    expect({ onA: onA.seen, onB: onB.seen }).toEqual({ onA: [...expected, ...denied], onB: [...expected, ...denied] });
  }, 60_000);

  it("a call held while hub A's listener is cut off reaches hub A's desk once the listener is back, once", async () => {
    const from = onA.seen.length;
    const since = () => onA.seen.slice(from);
    // A real fault: hub A's LISTEN connection ended by the server, and its reconnect refused
    // (hub A's role may not log in) until the call below is committed and notified.
    await db.query(`ALTER ROLE ${HUB_A_ROLE} NOLOGIN`);
    const terminated = await db.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE usename = $1 AND query = 'LISTEN countersign_desk_events'`,
      [HUB_A_ROLE],
    );
    expect(terminated.rows).toEqual([{ ok: true }]);
    const held = await agent.submit(TRANSFER);
    // Hub B's desk is told at once; hub A's listener is away, so its NOTIFY is lost.
    await vi.waitFor(async () => expect(await listenersOf(HUB_A_ROLE)).toBe(0));
    await db.query(`ALTER ROLE ${HUB_A_ROLE} LOGIN`);
    await vi.waitFor(() => expect(since()).toEqual([{ name: 'pending', data: { requestId: held.requestId, agentId: AGENT } }]), {
      timeout: 15_000,
    });
    await vi.waitFor(async () => expect(await listenersOf(HUB_A_ROLE)).toBe(1));
    // Once: a decision after the reconnect is the next event, with no second `pending` before it.
    await decide(b, held.requestId, 'bob', 'deny');
    await vi.waitFor(() => expect(onA.seen.at(-1)).toEqual({ name: 'decided', data: { requestId: held.requestId, state: 'denied' } }), {
      timeout: 10_000,
    });
    expect(since().map((e) => e.name)).toEqual(['pending', 'approvalRecorded', 'decided']);
  }, 60_000);

  it('a gap of more than 1,024 events reaches each desk as one resync, and the events after it as events; a gap of exactly 1,024 as the events', async () => {
    // The tests before end with an event on hub B that only hub A's desk was waited for: both desks get the same events.
    await vi.waitFor(() => expect(onB.seen).toEqual(onA.seen), { timeout: 10_000 });
    const fromA = onA.seen.length;
    const fromB = onB.seen.length;
    // Rows as the triggers write them, each burst in one transaction with one NOTIFY, so each hub
    // reads the whole burst in one read (a burst this size is otherwise a long wait between reads).
    const burst = async (n: number, tag: string) => {
      const client = await db.connect();
      try {
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO desk_events (name, subject, detail) SELECT 'pending', $1 || i, $2 FROM generate_series(1, $3::int) i`,
          [tag, AGENT, n],
        );
        await client.query("SELECT pg_notify('countersign_desk_events', '')");
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    await burst(DEFAULT_REPLAY_LIMIT + 1, 'burst-over-');
    const held = await agent.submit(TRANSFER);
    const afterGap: BridgeEvent[] = [
      { name: 'resync', data: {} },
      { name: 'pending', data: { requestId: held.requestId, agentId: AGENT } },
    ];
    await vi.waitFor(() => expect(onA.seen.slice(fromA)).toEqual(afterGap), { timeout: 15_000 });
    await vi.waitFor(() => expect(onB.seen.slice(fromB)).toEqual(afterGap), { timeout: 15_000 });
    await decide(b, held.requestId, 'bob', 'deny');
    // This call's approvalRecorded and decided reach each desk, and nothing else: counted from the
    // events seen, since either may already have arrived when the decision's promise settles.
    const decidedHeld: BridgeEvent[] = [
      ...afterGap,
      { name: 'approvalRecorded', data: { requestId: held.requestId } },
      { name: 'decided', data: { requestId: held.requestId, state: 'denied' } },
    ];
    await vi.waitFor(() => expect(onA.seen.slice(fromA)).toEqual(decidedHeld), { timeout: 10_000 });
    await vi.waitFor(() => expect(onB.seen.slice(fromB)).toEqual(decidedHeld), { timeout: 10_000 });

    // At the ring's size the events themselves are pushed: each desk gets all 1,024, in order.
    const atLimitA = onA.seen.length;
    const atLimitB = onB.seen.length;
    await burst(DEFAULT_REPLAY_LIMIT, 'burst-at-');
    const expected = Array.from({ length: DEFAULT_REPLAY_LIMIT }, (_, i) => ({
      name: 'pending',
      data: { requestId: `burst-at-${i + 1}`, agentId: AGENT },
    }));
    await vi.waitFor(() => expect(onA.seen.slice(atLimitA)).toEqual(expected), { timeout: 15_000 });
    await vi.waitFor(() => expect(onB.seen.slice(atLimitB)).toEqual(expected), { timeout: 15_000 });
  }, 60_000);
});

/** How many LISTEN connections for the desks' events the role holds now. */
async function listenersOf(role: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1 AND query = 'LISTEN countersign_desk_events'`,
    [role],
  );
  return Number(rows[0]!.n);
}
