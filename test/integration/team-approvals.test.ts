/**
 * Approvals on hubs (docs/team-mode.md, ADR 0015): two hubs started the way `countersign hub`
 * starts them, on one real PostgreSQL 15 cluster started by the test; a real SDK agent on a real
 * WebSocket to hub B; approvers tapping software P-256 authenticators (the tests' virtual
 * authenticator) through each hub's approval service. Checks: a 48,000 USD transfer held on hub
 * B approved by one person on hub A and another on hub B reaches the agent on B with one token
 * that verifies (signature, call digest, both approvers' assertions); two approvers completing
 * the quorum at the same moment on two hubs make exactly one token and one final state, and the
 * team audit log verifies offline; a denial on hub A ends the request on B; bad input and stale
 * challenges get the embedded error codes.
 */
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningCountersign } from '../../main/core/app.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import type { ApprovalVerdict } from '../../main/core/approvals/approval-service.js';
import { exportPgAudit } from '../../main/core/audit/pg-audit-export.js';
import { verifyExport } from '../../main/core/audit/audit-export.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest, type EnrollmentPayload } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { satisfiesQuorum, verifyApprovals } from '../../shared/verify-approvals.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import {
  closeTeamRoom,
  ensureTeamPeople,
  refuseReplicaInserts,
  registerApprovers,
  registerTeamKey,
  registerTeamPerson,
  startTeamHub,
  tapOn,
  teamHubDir,
} from '../helpers/team-hubs.js';
import { signInOverHttp } from '../helpers/desk-session.js';
import { PgDirectory, TeamCounterRegression } from '../../main/core/store/pg/pg-directory.js';
import { ADMIN_GROUP_NAME } from '../../shared/bridge.js';
import { hashCode } from '../../main/core/approvals/approver-directory.js';
import { verifyHistoryEntryProof } from '../../shared/desk-records.js';
import { verifyAuditProof } from '../../shared/audit-verify.js';
import { PG_LOCKS } from '../../main/core/store/pg/pg-locks.js';

const AGENT = 'finance-bot';
const APPROVERS = ['alice', 'bob', 'carol'] as const;
const NORTHWIND = transferCall('48000.00', 'Northwind Traders');

let cluster: PostgresCluster;
let db: pg.Pool;
let key: AgentKey;
let enrollment: EnrollmentPayload;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];
/** Each approver's key: registered once, on hub A, in the team directory; it taps on every hub. */
const keys = new Map<string, VirtualAuthenticator>();

async function startHub(name: string): Promise<RunningCountersign> {
  const room = { dirs, hubs };
  // Risk scoring off: its call-rate factor depends on timing, and this file submits many 48,000 USD
  // transfers in a few seconds (a loaded machine scored some of them 90+ and denied them: a flake).
  // With team baselines (team-risk.test.ts) every hub counts them too.
  return startTeamHub(room, name, cluster.url, teamHubDir(room, name, { risk: { enabled: false } }));
}

/** Start a ceremony on `hub` and have the approver's key answer it (not yet submitted). */
const tap = (hub: RunningCountersign, requestId: string, approverId: string, verdict: ApprovalVerdict = 'approve') =>
  tapOn(hub, keys.get(approverId)!, requestId, approverId, verdict);

async function decide(hub: RunningCountersign, requestId: string, approverId: string, verdict: ApprovalVerdict = 'approve') {
  return hub.approvals.submitCeremony(await tap(hub, requestId, approverId, verdict));
}

/** What a tool server trusts: every hub's keys; the approver directory is one (hub A's replica, every hub's origins). */
async function verifyAtToolServer(token: string) {
  const published = [a.approvers.published()];
  const claims = await verifyApprovalToken(token, {
    call: { tool: NORTHWIND.tool, params: NORTHWIND.params },
    audience: 'payments-service',
    keys: { keys: hubs.flatMap((h) => h.signingKeys.published('test', Date.now())) },
    jtiStore: new MemoryJtiStore(),
    domain: 'test',
  });
  const set = await verifyApprovals(claims.approvals, {
    directory: {
      rpId: 'localhost',
      origins: hubs.flatMap((h) => h.approvers.origins),
      approvers: APPROVERS.map((id) => published[0]!.approvers.find((p) => p.id === id)!),
    },
    requestId: claims.decision.id,
    callSha256: claims.call_sha256,
    policyHash: claims.decision.policy_hash,
    allowVirtual: true,
  });
  return { claims, set };
}

async function stored(requestId: string) {
  const request = await db.query<{ state: string; decided_by_hub: string | null }>(
    'SELECT state, decided_by_hub FROM requests WHERE id = $1',
    [requestId],
  );
  const tokens = await db.query<{ token: string }>('SELECT token FROM tokens WHERE request_id = $1', [requestId]);
  const approvals = await db.query<{ approver_id: string; verdict: string; hub: string }>(
    'SELECT approver_id, verdict, hub FROM approvals WHERE request_id = $1 ORDER BY at, approver_id',
    [requestId],
  );
  return { ...request.rows[0], tokens: tokens.rows.map((r) => r.token), approvals: approvals.rows };
}

let a: RunningCountersign;
let b: RunningCountersign;
/** The agent, connected to hub B only, and every result pushed to it. */
let agent: AgentClient;
const pushed: DecisionResult[] = [];

async function holdOnB(): Promise<DecisionResult> {
  const held = await agent.submit(NORTHWIND);
  expect(held).toMatchObject({ decision: 'pending', approval: { approvals: 2, groups: [['finance-approvers']] } });
  return held;
}

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  key = await importAgentKey(await generateAgentKey('EdDSA'));
  enrollment = await verifyEnrollmentRequest(await createEnrollmentRequest(key, AGENT, AGENT));
  a = await startHub('hub-a');
  b = await startHub('hub-b');
  // One directory for all hubs (ADR 0013): people, keys and the agent added once, on hub A.
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  for (const [id, approverKey] of await registerApprovers(a, APPROVERS)) keys.set(id, approverKey);
  await a.team!.agents.enroll(enrollment, FINANCE_SCOPE);
  await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
  agent = new AgentClient({
    url: b.url,
    agentId: AGENT,
    key,
    webSocket: nodeWebSocket,
    reconnect: false,
    requestTimeoutMs: 15_000,
    onDecision: (result) => pushed.push(result),
  });
  clients.push(agent);
}, 240_000);

afterAll(async () => {
  await closeTeamRoom({ clients, hubs, db, cluster, dirs });
}, 120_000);

describe('approvals on two hubs of one database', () => {
  it('a transfer held on hub B, approved by one person on hub A and another on hub B: one verified token at the agent on B', async () => {
    const held = await holdOnB();
    // Hub A's desk sees the call held on hub B.
    expect((await a.approvals.listQueue()).map((p) => p.requestId)).toContain(held.requestId);
    const answer = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });

    expect(await decide(a, held.requestId, 'alice')).toMatchObject({ state: 'pending', approvalsSoFar: [{ approverId: 'alice' }] });
    // request.get on hub B reports the progress made on hub A.
    expect(await agent.getRequest(held.requestId)).toMatchObject({ state: 'pending', approval: { required: 2, received: 1 } });
    const view = await b.approvals.requestFor(held.requestId, 'bob');
    expect(view.request.approvals.map((e) => e.approverId)).toEqual(['alice']);
    expect(view.approve).toEqual({ ok: true });

    const done = await decide(b, held.requestId, 'bob');
    expect(done).toMatchObject({ state: 'approved' });
    const result = await answer;
    expect(result).toMatchObject({ requestId: held.requestId, state: 'approved', decision: 'allow', token: done.token });
    expect(pushed.filter((p) => p.requestId === held.requestId).map((p) => p.state)).toEqual(['approved']);

    const { claims, set } = await verifyAtToolServer(result.token!);
    expect(claims.decision).toMatchObject({ id: held.requestId, mode: 'approved' });
    expect(set.approvers.map((p) => p.approverId)).toEqual(['alice', 'bob']);
    expect(satisfiesQuorum(set, { approvals: 2, groups: [['finance-approvers']] })).toBe(true);

    expect(await stored(held.requestId)).toEqual({
      state: 'approved',
      decided_by_hub: 'hub-b',
      tokens: [result.token],
      approvals: [
        { approver_id: 'alice', verdict: 'approve', hub: 'hub-a' },
        { approver_id: 'bob', verdict: 'approve', hub: 'hub-b' },
      ],
    });
    expect((await a.approvals.history(10)).map((h) => [h.requestId, h.state])).toContainEqual([held.requestId, 'approved']);
  }, 60_000);

  it('two first approvals racing on two hubs: the one whose plan went stale is planned again and completes the quorum, no key is taken out of service', async () => {
    const held = await holdOnB();
    const answer = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });
    // Both tap with no approval recorded yet, so both plan "record 1 of 2"; the later commit finds
    // its plan stale and plans again. Before, the retry repeated the key's counter the first try
    // had already written into the hub's replica, and the key was marked suspect on every hub.
    const onA = await tap(a, held.requestId, 'bob');
    const onB = await tap(b, held.requestId, 'carol');
    const raced = await Promise.allSettled([a.approvals.submitCeremony(onA), b.approvals.submitCeremony(onB)]);
    expect(raced.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect((await answer).state).toBe('approved');
    const suspects = await db.query(
      "SELECT approver_id FROM directory_credentials WHERE approver_id IN ('bob', 'carol') AND status <> 'active'",
    );
    expect(suspects.rows).toEqual([]);
  }, 90_000);

  it('two approvers completing the quorum at the same moment on two hubs: exactly one token, one final state, the audit log verifies', async () => {
    const held = await holdOnB();
    const answer = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });
    await decide(a, held.requestId, 'alice');
    // Both ceremonies are started and tapped first; then both submits race.
    const onA = await tap(a, held.requestId, 'bob');
    const onB = await tap(b, held.requestId, 'carol');
    const raced = await Promise.allSettled([a.approvals.submitCeremony(onA), b.approvals.submitCeremony(onB)]);
    const won = raced.filter((r) => r.status === 'fulfilled');
    const lost = raced.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(won[0]!.value).toMatchObject({ state: 'approved' });
    expect(lost).toHaveLength(1);
    expect(lost[0]!.reason).toMatchObject({ code: 'request_not_pending' });
    const result = await answer;
    expect(result).toMatchObject({ state: 'approved', token: won[0]!.value.token });

    const row = await stored(held.requestId);
    expect(row.state).toBe('approved');
    expect(row.tokens).toEqual([result.token]);
    expect(row.approvals.map((r) => r.approver_id)).toHaveLength(2);
    expect(pushed.filter((p) => p.requestId === held.requestId)).toHaveLength(1);

    // Every submission sequenced and checkpointed; one decision.approved for this request.
    const submitted = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM audit_submissions')).rows[0]!.n);
    const until = Date.now() + 30_000;
    for (;;) {
      const { rows } = await db.query<{ size: string | null }>('SELECT max(tree_size) AS size FROM audit_checkpoints');
      if (Number(rows[0]!.size ?? 0) >= submitted || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const approvedEvents = await db.query('SELECT 1 FROM audit_log WHERE request_id = $1 AND kind = $2', [
      held.requestId,
      'decision.approved',
    ]);
    expect(approvedEvents.rowCount).toBe(1);
    const file = join(dirs[0]!, 'team-export.jsonl');
    const exported = await exportPgAudit(db, 'countersign/team', file);
    expect(exported.treeSize).toBeGreaterThanOrEqual(submitted);
    const verified = await verifyExport(
      file,
      hubs.flatMap((h) => h.signingKeys.published('test', Date.now())),
    );
    expect(verified).toMatchObject({ ok: true, complete: true });
  }, 90_000);

  it('a denial on hub A ends the request held on hub B, and the agent on B is told', async () => {
    const held = await holdOnB();
    const answer = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });
    expect(await decide(a, held.requestId, 'carol', 'deny')).toMatchObject({ state: 'denied' });
    await expect(answer).resolves.toMatchObject({ requestId: held.requestId, state: 'denied', decision: 'deny' });
    expect(await stored(held.requestId)).toMatchObject({ state: 'denied', decided_by_hub: 'hub-a', tokens: [] });
    // Nothing more on any hub: the request is no longer pending anywhere.
    await expect(b.approvals.startCeremony({ requestId: held.requestId, approverId: 'bob', verdict: 'approve' })).rejects.toMatchObject({
      code: 'request_not_pending',
    });
  }, 60_000);

  it('refuses bad input and stale or foreign challenges on a hub with the embedded codes, and records nothing', async () => {
    const held = await holdOnB();
    await expect(
      a.approvals.startCeremony({ requestId: 'no-such-request', approverId: 'alice', verdict: 'approve' }),
    ).rejects.toMatchObject({
      code: 'request_unknown',
    });
    await expect(
      a.approvals.startCeremony({ requestId: held.requestId, approverId: 'alice', verdict: 'maybe' as ApprovalVerdict }),
    ).rejects.toMatchObject({ code: 'schema_invalid' });
    await expect(a.approvals.startCeremony({ requestId: held.requestId, approverId: 'nobody', verdict: 'approve' })).rejects.toMatchObject({
      code: 'approver_unknown',
    });
    // The challenge is the team's, but these hubs do not share an origin (each serves its own,
    // team-one-origin.test.ts has hubs behind one): a tap at hub A's origin does not verify on B.
    const onA = await tap(a, held.requestId, 'alice');
    await expect(b.approvals.submitCeremony(onA)).rejects.toMatchObject({ code: 'assertion_invalid' });
    expect((await stored(held.requestId)).approvals).toEqual([]);
    await a.approvals.submitCeremony(onA);
    // The same tap again: the challenge is spent.
    await expect(a.approvals.submitCeremony(onA)).rejects.toMatchObject({ code: 'challenge_invalid' });
    // Alice decided on hub A: hub B refuses her a second decision.
    await expect(b.approvals.startCeremony({ requestId: held.requestId, approverId: 'alice', verdict: 'approve' })).rejects.toMatchObject({
      code: 'approver_already_decided',
    });
    // A ceremony outlived by the request's end (bob denies on B): carol's tap on A is refused.
    const stale = await tap(a, held.requestId, 'carol');
    await decide(b, held.requestId, 'bob', 'deny');
    await expect(a.approvals.submitCeremony(stale)).rejects.toMatchObject({ code: 'request_not_pending' });
    const row = await stored(held.requestId);
    expect(row).toMatchObject({ state: 'denied', tokens: [] });
    expect(row.approvals.map((r) => [r.approver_id, r.verdict, r.hub])).toEqual([
      ['alice', 'approve', 'hub-a'],
      ['bob', 'deny', 'hub-b'],
    ]);
  }, 60_000);

  it("shows every hub's decisions in the desk's History and recent activity on hub A, and finds them by search", async () => {
    const allowed = await agent.submit(transferCall('12.00', 'Acme Ltd')); // decided on hub B
    expect(allowed).toMatchObject({ decision: 'allow' });
    expect((await a.ui.listRecentDecisions(5)).map((d) => d.requestId)).toContain(allowed.requestId);

    // Every decided request, newest decision first, in keyed pages of two: the team database's order.
    const { rows: all } = await db.query<{ id: string }>(
      `SELECT id FROM requests WHERE state <> 'pending' ORDER BY decided_at DESC, id COLLATE "C" DESC`,
    );
    expect(all.length).toBeGreaterThan(4);
    const paged: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await a.ui.searchHistory({ limit: 2, ...(cursor === undefined ? {} : { cursor }) });
      paged.push(...page.rows.map((r) => r.requestId));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    expect(paged).toEqual(all.map((r) => r.id));

    // Search: payee, agent and id substrings, case-insensitive; LIKE syntax is matched as text.
    expect((await a.ui.searchHistory({ text: 'acme lt' })).rows.map((r) => r.requestId)).toEqual([allowed.requestId]);
    expect((await a.ui.searchHistory({ text: allowed.requestId.slice(4, 16) })).rows.map((r) => r.requestId)).toEqual([allowed.requestId]);
    const northwind = await a.ui.searchHistory({ text: 'NORTHWIND tr', states: ['approved'] });
    expect(northwind.rows.length).toBeGreaterThan(0);
    expect(northwind.rows.every((r) => r.payee === 'Northwind Traders' && r.approvals === 2)).toBe(true);
    expect((await a.ui.searchHistory({ text: 'finance-b', tool: 'payments.transfer' })).rows.length).toBe(Math.min(all.length, 25));
    expect((await a.ui.searchHistory({ text: '%_%' })).rows).toEqual([]);

    // One request in full on hub A: held and approved on hub B (alice tapped on A, bob on B).
    const entry = await a.ui.getHistoryEntry(northwind.rows.at(-1)!.requestId);
    expect(entry.approvals.map((x) => [x.approverId, x.displayName, x.verdict])).toEqual([
      ['alice', 'Alice Example', 'approve'],
      ['bob', 'Bob Example', 'approve'],
    ]);
    expect(entry.tokenId).not.toBeNull();
    await expect(a.ui.getHistoryEntry('no-such-request')).rejects.toMatchObject({ code: 'history_request_unknown' });
  }, 60_000);

  it("shows, in hub A's History over HTTP, the team audit log's proof of a request decided on hub B, which verifies offline; a tampered proof does not", async () => {
    const allowed = await agent.submit(transferCall('13.00', 'Acme Ltd')); // decided on hub B
    expect(allowed).toMatchObject({ decision: 'allow' });
    expect((await stored(allowed.requestId)).decided_by_hub).toBe('hub-b');
    // Whichever hub leads sequences the request's entries and signs a checkpoint covering them now.
    const leading = hubs.find((h) => h.team!.leader.isLeader())!;
    await leading.team!.leader.tick(true);

    const desk = await signInOverHttp(a, 'alice', keys.get('alice')!);
    const entry = await desk.bridge.getHistoryEntry(allowed.requestId);
    expect(entry.origin).toBe('countersign/team');
    expect(entry.proof).not.toBeNull();
    const latest = await db.query<{ tree_size: string; signed_by_hub: string }>(
      'SELECT tree_size, signed_by_hub FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1',
    );
    expect(entry.proof!.treeSize).toBe(Number(latest.rows[0]!.tree_size));
    // The page's own check (the embedded desk's verifier): the checkpoint signed by a team key, every entry in its tree.
    const check = await verifyHistoryEntryProof(entry);
    expect(check).toMatchObject({ ok: true, treeSize: entry.proof!.treeSize, entries: 1 });
    expect(JSON.parse(entry.proof!.entries[0]!.record)).toMatchObject({ kind: 'decision.allow', requestId: allowed.requestId });

    // Tampering with any part fails verification: a proof hash, the record, the claimed tree size, the keys.
    const proof = entry.proof!;
    const flipped = (b64: string) =>
      Buffer.from(Buffer.from(b64, 'base64').map((byte, i) => (i === 0 ? byte ^ 1 : byte))).toString('base64');
    const withEntry = (change: Partial<(typeof proof.entries)[number]>) => ({
      ...entry,
      proof: { ...proof, entries: [{ ...proof.entries[0]!, ...change }] },
    });
    expect(proof.entries[0]!.proof.length).toBeGreaterThan(0);
    const tampered = [
      withEntry({ proof: [flipped(proof.entries[0]!.proof[0]!), ...proof.entries[0]!.proof.slice(1)] }),
      withEntry({ record: proof.entries[0]!.record.replace('13.00', '13000.00') }),
      withEntry({ leafHash: flipped(proof.entries[0]!.leafHash) }),
      { ...entry, proof: { ...proof, treeSize: proof.treeSize + 1 } },
    ];
    for (const bad of tampered) expect(await verifyHistoryEntryProof(bad)).toMatchObject({ ok: false, code: 'audit_proof_invalid' });
    const otherKey = hubs
      .flatMap((h) => h.signingKeys.published('test', Date.now()))
      .find((k) => !entry.noteKeys.some((n) => n.x === k.x))!;
    expect(await verifyHistoryEntryProof({ ...entry, noteKeys: [otherKey] })).toMatchObject({
      ok: false,
      code: 'audit_checkpoint_invalid',
    });

    // A request with many entries (held on B, approved on A and B): every entry proven in one checkpoint.
    const northwind = (await a.ui.searchHistory({ text: 'northwind', states: ['approved'] })).rows.at(-1)!;
    const approved = await desk.bridge.getHistoryEntry(northwind.requestId);
    const kinds = approved.proof!.entries.map((e) => (JSON.parse(e.record) as { kind: string }).kind);
    expect(kinds).toEqual(expect.arrayContaining(['decision.pending', 'approval.given', 'decision.approved']));
    expect(await verifyHistoryEntryProof(approved)).toMatchObject({ ok: true, entries: kinds.length });

    // The agent's own audit.proof on hub B is the same team proof, checked by the SDK's verifier.
    const own = await agent.auditProof(allowed.requestId);
    await expect(
      verifyAuditProof(own, { keys: entry.noteKeys, origin: 'countersign/team', requestId: allowed.requestId }),
    ).resolves.toMatchObject({
      treeSize: own.treeSize,
    });
    await expect(agent.auditProof(northwind.requestId.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a')))).rejects.toMatchObject({
      code: 'audit_proof_unavailable',
    });
  }, 60_000);
});

/** Rows that say a directory write happened: its change, its team audit records. */
async function directoryWrites() {
  const changes = await db.query<{ n: string }>('SELECT count(*) AS n FROM directory_changes');
  // Submitted or already sequenced by the leader (which moves them in one transaction): one snapshot.
  const audit = await db.query<{ n: string }>(
    "SELECT (SELECT count(*) FROM audit_submissions WHERE kind LIKE 'approver.%') + (SELECT count(*) FROM audit_log WHERE kind LIKE 'approver.%') AS n",
  );
  return { changes: Number(changes.rows[0]!.n), audit: Number(audit.rows[0]!.n) };
}

/** Hub `app`'s replica has applied everything hub `from` has. */
const caughtUp = (app: RunningCountersign, from: RunningCountersign) => app.team!.directory.waitForSeq(from.team!.directory.appliedSeq);

describe('approvers in the team directory', () => {
  it('an approver added and registered once, on hub A, signs in and approves on hub B', async () => {
    const daveKey = await registerTeamPerson(a, 'dave', ['finance-approvers'], 'Dave Example');
    await caughtUp(b, a);
    // Hub B never saw dave's registration: its replica has him and his key.
    expect(b.approvers.get('dave')).toMatchObject({ status: 'active', groups: ['finance-approvers'] });
    expect(b.approvers.credentialsOf('dave')).toHaveLength(1);
    const signedIn = await signInOverHttp(b, 'dave', daveKey);
    expect(signedIn.session).toMatchObject({ approverId: 'dave' });

    const held = await holdOnB();
    const answer = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });
    await decide(a, held.requestId, 'alice');
    keys.set('dave', daveKey);
    expect(await decide(b, held.requestId, 'dave')).toMatchObject({ state: 'approved' });
    await expect(answer).resolves.toMatchObject({ state: 'approved', decision: 'allow' });
    expect((await stored(held.requestId)).approvals.map((r) => [r.approver_id, r.hub])).toEqual([
      ['alice', 'hub-a'],
      ['dave', 'hub-b'],
    ]);
    // The team keeps dave's key's counter, advanced in the approval's commit on hub B.
    const credentialId = b.approvers.credentialsOf('dave')[0]!.credentialId;
    const counter = await db.query<{ sign_count: string }>('SELECT sign_count FROM directory_credentials WHERE credential_id = $1', [
      credentialId,
    ]);
    expect(Number(counter.rows[0]!.sign_count)).toBe(daveKey.listCredentials()[0]!.signCount);
  }, 60_000);

  it('an approver removed on hub A is refused on hub B (approver_disabled), also in a ceremony begun before the removal; a key removed on A is refused on B', async () => {
    const erinKey = await registerTeamPerson(a, 'erin', ['finance-approvers']);
    keys.set('erin', erinKey);
    const held = await holdOnB();
    const begun = await tap(b, held.requestId, 'erin');
    await a.team!.approvers.disable('erin');
    await expect(b.approvals.submitCeremony(begun)).rejects.toMatchObject({ code: 'approver_disabled' });
    await caughtUp(b, a);
    await expect(b.approvals.startCeremony({ requestId: held.requestId, approverId: 'erin', verdict: 'approve' })).rejects.toMatchObject({
      code: 'approver_disabled',
    });
    // The commit itself checks the team directory, whatever a hub's replica says (no window).
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      const credentialId = b.approvers.credentialsOf('erin')[0]!.credentialId;
      await expect(
        PgDirectory.checkTap(client, { approverId: 'erin', credentialId, counter: 1_000, at: Date.now() }),
      ).rejects.toMatchObject({
        code: 'approver_disabled',
      });
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }

    // A key removed on hub A: carol's tap begun on hub B is refused there.
    const carols = a.approvers.credentialsOf('carol');
    const second = await registerTeamKey(a, 'carol');
    await caughtUp(b, a);
    const begunByCarol = await b.approvals.startCeremony({ requestId: held.requestId, approverId: 'carol', verdict: 'approve' });
    const response = second.getAssertion({
      rpId: 'localhost',
      origin: b.approvers.origins[0]!,
      challenge: begunByCarol.options.challenge,
      allowCredentials: (begunByCarol.options.allowCredentials ?? []).map((c) => c.id),
      userVerification: 'required',
    });
    await a.team!.approvers.removeCredential(response.id);
    await expect(
      b.approvals.submitCeremony({ requestId: held.requestId, approverId: 'carol', verdict: 'approve', response }),
    ).rejects.toMatchObject({ code: 'credential_unknown' });
    expect(a.approvers.credentialsOf('carol').map((c) => c.credentialId)).toEqual(carols.map((c) => c.credentialId));
    expect((await stored(held.requestId)).approvals).toEqual([]);
  }, 60_000);

  it("a key's counter that goes backwards on hub B after a tap on hub A is caught: the key is suspect on every hub, nothing is recorded", async () => {
    const gretaKey = await registerTeamPerson(a, 'greta', ['finance-approvers']);
    keys.set('greta', gretaKey);
    const first = await holdOnB();
    await decide(a, first.requestId, 'greta', 'deny');
    const credentialId = gretaKey.listCredentials()[0]!.id;
    const used = gretaKey.listCredentials()[0]!.signCount;
    // A clone of the key, as it was before that tap: its next assertion repeats the counter hub A stored.
    gretaKey.setCounter(credentialId, used - 1);
    const second = await holdOnB();
    await expect(decide(b, second.requestId, 'greta')).rejects.toMatchObject({ code: 'credential_suspect' });
    expect((await stored(second.requestId)).approvals).toEqual([]);
    const row = await db.query<{ status: string }>('SELECT status FROM directory_credentials WHERE credential_id = $1', [credentialId]);
    expect(row.rows[0]!.status).toBe('suspect');
    await caughtUp(a, b);
    expect(a.approvers.credential(credentialId).status).toBe('suspect');
    const audited = await db.query(
      `SELECT 1 FROM audit_submissions WHERE kind = 'approver.credential_suspect' AND fields LIKE $1
       UNION ALL SELECT 1 FROM audit_log WHERE kind = 'approver.credential_suspect' AND record LIKE $1`,
      [`%${credentialId}%`],
    );
    expect(audited.rowCount).toBe(1);
    await expect(a.approvals.startCeremony({ requestId: second.requestId, approverId: 'greta', verdict: 'approve' })).rejects.toMatchObject(
      {
        code: 'credential_unknown',
      },
    );
  }, 60_000);

  it('refuses bad approver writes with stable codes and records nothing', async () => {
    const before = await directoryWrites();
    const team = a.team!.approvers;
    await expect(team.add({ id: 'bad id!', displayName: 'x', groups: [] })).rejects.toMatchObject({ code: 'config_invalid' });
    await expect(team.add({ id: 'alice', displayName: 'Alice again', groups: [] })).rejects.toMatchObject({ code: 'config_invalid' });
    await expect(team.add({ id: 'ALICE', displayName: 'Alice shouting', groups: [] })).rejects.toMatchObject({ code: 'alias_conflict' });
    await expect(team.add({ id: 'hal', displayName: 'Hal', groups: [], aliases: ['Bob'] })).rejects.toMatchObject({
      code: 'alias_conflict',
    });
    await expect(team.add({ id: 'hal', displayName: 'Hal', groups: ['no spaces allowed'] })).rejects.toMatchObject({
      code: 'config_invalid',
    });
    await expect(team.disable('nobody')).rejects.toMatchObject({ code: 'approver_unknown' });
    await expect(team.issueRegistrationCode('erin', 'test-admin')).rejects.toMatchObject({ code: 'approver_disabled' });
    await expect(team.removeCredential('no-such-key')).rejects.toMatchObject({ code: 'credential_unknown' });
    // A hub's replica is not written by hand in team mode.
    expect(() => b.approvers.addApprover({ id: 'hal', displayName: 'Hal', groups: [] })).toThrow(/team database/);
    expect(await directoryWrites()).toEqual(before);
    expect(b.approvers.resolvePerson('hal')).toBeUndefined();
  }, 60_000);

  it('a database fault during an approver write fails closed with store_unavailable, records nothing, and the next write succeeds', async () => {
    const before = await directoryWrites();
    // The directory lock held elsewhere, so hub A's write waits inside its transaction; then its backend is ended.
    const holder = await db.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [PG_LOCKS.directory]);
      const write = a.team!.approvers.add({ id: 'ivan', displayName: 'Ivan', groups: ['finance-approvers'] }, { issuedBy: 'test-admin' });
      const settled = write.then(
        () => undefined,
        (error: unknown) => error,
      );
      let pid: number | undefined;
      for (let i = 0; pid === undefined && i < 500; i++) {
        const { rows } = await holder.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'",
        );
        pid = rows[0]?.pid;
      }
      expect(pid).toBeDefined();
      await holder.query('SELECT pg_terminate_backend($1)', [pid]);
      expect(await settled).toMatchObject({ code: 'store_unavailable' });
    } finally {
      await holder.query('SELECT pg_advisory_unlock($1)', [PG_LOCKS.directory]);
      holder.release();
    }
    expect(await directoryWrites()).toEqual(before);
    expect((await db.query("SELECT 1 FROM directory_approvers WHERE id = 'ivan'")).rowCount).toBe(0);
    expect(a.approvers.resolvePerson('ivan')).toBeUndefined();
    const added = await a.team!.approvers.add({ id: 'ivan', displayName: 'Ivan', groups: [] }, { issuedBy: 'test-admin' });
    expect(added.registration?.code).toMatch(/^[A-Za-z0-9_-]{32}$/);
  }, 60_000);

  it("answers a committed first run and key registration with what was committed while the hub's own replica cannot apply them: the single-use code is not lost", async () => {
    const latestSeq = async () => Number((await db.query<{ seq: string }>('SELECT max(seq) AS seq FROM directory_changes')).rows[0]!.seq);
    // No admin in this team yet: the desk's first run on hub B, whose replica refuses the new approver row.
    const releaseApprovers = refuseReplicaInserts(b, 'approvers');
    let made: { approverId: string; code: string };
    try {
      // Without the fix this answered approver_unknown (a re-read of the replica), and the code, issued once, was lost.
      made = await b.ui.createFirstAdmin('first-admin', 'First Admin');
      expect(made.approverId).toBe('first-admin');
      expect(made.code).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(b.approvers.resolvePerson('first-admin')).toBeUndefined();
    } finally {
      releaseApprovers();
    }
    await b.team!.directory.waitForSeq(await latestSeq());
    // The code, shown once, is the one committed, unused, for the first admin (now on hub B too).
    expect(b.db.prepare('SELECT approver_id, used_at FROM registration_codes WHERE code_hash = ?').get(hashCode(made.code))).toEqual({
      approver_id: 'first-admin',
      used_at: null,
    });
    await expect(b.approvers.beginRegistration(made.approverId, made.code)).resolves.toMatchObject({ user: { name: made.approverId } });
    // A key's registration commits while the replica refuses the key row: answered with the key as committed.
    await registerTeamPerson(b, 'kim', ['finance-approvers']);
    await b.team!.directory.waitForSeq(await latestSeq());
    const releaseKeys = refuseReplicaInserts(b, 'approver_credentials');
    let kimKey: VirtualAuthenticator;
    try {
      kimKey = await registerTeamKey(b, 'kim');
      expect(b.approvers.credentialsOf('kim')).toHaveLength(1);
    } finally {
      releaseKeys();
    }
    await b.team!.directory.waitForSeq(await latestSeq());
    expect(b.approvers.credentialsOf('kim')).toHaveLength(2);
    expect(b.approvers.credentialsOf('kim').map((c) => c.credentialId)).toContain(kimKey.listCredentials()[0]!.id);
  }, 60_000);

  it('keeps the first run closed for the team while any admin exists, a disabled one too (else any desk could make a new admin)', async () => {
    await a.team!.approvers.add({ id: 'root-admin', displayName: 'Root', groups: [ADMIN_GROUP_NAME] }, { issuedBy: 'test-admin' });
    // Every admin of the team disabled (as by an older hub, or by hand): the first run must still refuse.
    const { rows } = await db.query<{ id: string }>(
      "UPDATE directory_approvers SET status = 'disabled' WHERE status = 'active' AND row::text LIKE $1 RETURNING id",
      [`%${ADMIN_GROUP_NAME}%`],
    );
    try {
      expect(rows.map((r) => r.id)).toContain('root-admin');
      await expect(
        a.team!.approvers.add(
          { id: 'mallory', displayName: 'Mallory', groups: [ADMIN_GROUP_NAME] },
          { issuedBy: 'first-run', firstRun: true },
        ),
      ).rejects.toMatchObject({ code: 'first_run_closed' });
      expect((await db.query("SELECT 1 FROM directory_approvers WHERE id = 'mallory'")).rows).toEqual([]);
    } finally {
      await db.query("UPDATE directory_approvers SET status = 'active' WHERE id = ANY($1)", [rows.map((r) => r.id)]);
    }
  }, 60_000);

  it("checks a desk sign-in on hub B in the team directory: an approver removed on hub A cannot sign in while B's replica lags, and the team's counter advances", async () => {
    const lenaKey = await registerTeamPerson(a, 'lena', ['finance-approvers']);
    await caughtUp(b, a);
    expect((await signInOverHttp(b, 'lena', lenaKey)).session).toMatchObject({ approverId: 'lena' });
    const credentialId = lenaKey.listCredentials()[0]!.id;
    const teamCounter = async () =>
      Number(
        (await db.query<{ sign_count: string }>('SELECT sign_count FROM directory_credentials WHERE credential_id = $1', [credentialId]))
          .rows[0]!.sign_count,
      );
    expect(await teamCounter()).toBe(lenaKey.listCredentials()[0]!.signCount);
    const release = refuseReplicaInserts(b, 'approvers'); // hub B's replica cannot apply the removal yet
    try {
      await a.team!.approvers.disable('lena');
      expect(b.approvers.get('lena').status).toBe('active');
      // Without the fix hub B opened a session (its replica still said active).
      await expect(signInOverHttp(b, 'lena', lenaKey)).rejects.toThrow(/approver_disabled/);
    } finally {
      release();
    }
  }, 60_000);

  it('refuses to disable the last active admin of the team (last_admin), and records nothing', async () => {
    const active = await db.query<{ id: string }>(
      "SELECT id FROM directory_approvers WHERE status = 'active' AND row::text LIKE $1 ORDER BY id",
      [`%${ADMIN_GROUP_NAME}%`],
    );
    const admins = active.rows.map((r) => r.id);
    expect(admins.length).toBeGreaterThan(1); // the first run's admin and root-admin, from the tests above
    for (const id of admins.slice(1)) await b.team!.approvers.disable(id); // another admin is still active
    const before = await directoryWrites();
    await expect(a.team!.approvers.disable(admins[0]!)).rejects.toMatchObject({ code: 'last_admin' });
    expect(await directoryWrites()).toEqual(before);
    expect((await db.query('SELECT status FROM directory_approvers WHERE id = $1', [admins[0]])).rows).toEqual([{ status: 'active' }]);
  }, 60_000);

  it("refuses a directory change whose admin tap repeats the team's counter as a counter regression, not store_failed", async () => {
    const credentialId = a.approvers.credentialsOf('alice')[0]!.credentialId;
    const stored = await db.query<{ sign_count: string }>('SELECT sign_count FROM directory_credentials WHERE credential_id = $1', [
      credentialId,
    ]);
    const before = await directoryWrites();
    const tap = { approverId: 'alice', credentialId, counter: Number(stored.rows[0]!.sign_count), at: Date.now() };
    expect(tap.counter).toBeGreaterThan(0); // alice tapped in the tests above, so the team holds her counter
    const refused: unknown = await a
      .team!.directory.change('test.write', Date.now(), () => Promise.resolve({ ops: [], audit: [], result: undefined }), tap)
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(TeamCounterRegression);
    expect(await directoryWrites()).toEqual(before);
  }, 60_000);

  it("runs the test domain's virtual approvers on hubs: created once in the team directory, each deciding on the hub that holds its key; the wait follows the team database", async () => {
    const automation = async (hub: RunningCountersign, path: string, body?: unknown) => {
      const res = await fetch(`http://127.0.0.1:${hub.port}/api/automation${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${hub.uiSessionSecret}`, accept: 'application/json', 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    // vera is made on hub A, victor on hub B: each one team directory write, seen by both hubs.
    expect(await automation(a, '/virtual-approvers', { id: 'vera', displayName: 'Vera', groups: ['finance-approvers'] })).toMatchObject({
      status: 200,
      json: { id: 'vera', virtual: true },
    });
    expect((await automation(b, '/virtual-approvers', { id: 'victor', displayName: 'Victor', groups: ['finance-approvers'] })).status).toBe(
      200,
    );
    await a.team!.directory.waitForSeq(b.team!.directory.appliedSeq);
    await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
    for (const hub of [a, b]) expect([hub.approvers.get('vera').virtual, hub.approvers.get('victor').virtual]).toEqual([true, true]);
    const registered = await db.query<{ approver_id: string }>(
      "SELECT approver_id FROM directory_credentials WHERE approver_id IN ('vera', 'victor') ORDER BY approver_id",
    );
    expect(registered.rows.map((r) => r.approver_id)).toEqual(['vera', 'victor']);

    const held = await holdOnB();
    const decided = agent.waitForDecision(held.requestId, { timeoutMs: 30_000 });
    const waitOnA = automation(a, `/requests/${held.requestId}/wait?timeoutMs=30000`);
    // Hub B holds none of vera's keys: refused, nothing recorded.
    const refused = await automation(b, `/requests/${held.requestId}/decide`, { approverId: 'vera', verdict: 'approve' });
    expect(refused.json).toMatchObject({ error: { code: 'credential_unknown' } });
    expect((await stored(held.requestId)).approvals).toEqual([]);
    expect(await automation(a, `/requests/${held.requestId}/wait?timeoutMs=50`)).toMatchObject({ json: { error: { code: 'timeout' } } });

    expect((await automation(a, `/requests/${held.requestId}/decide`, { approverId: 'vera', verdict: 'approve' })).status).toBe(200);
    expect((await automation(b, `/requests/${held.requestId}/decide`, { approverId: 'victor', verdict: 'approve' })).status).toBe(200);
    expect(await waitOnA).toMatchObject({ status: 200, json: { requestId: held.requestId, state: 'approved' } });
    expect(await decided).toMatchObject({ decision: 'allow', state: 'approved' });
    expect(await stored(held.requestId)).toMatchObject({
      state: 'approved',
      approvals: expect.arrayContaining([
        expect.objectContaining({ approver_id: 'vera', hub: 'hub-a' }),
        expect.objectContaining({ approver_id: 'victor', hub: 'hub-b' }),
      ]) as unknown,
    });
    expect(await automation(a, '/requests/req_nothing_here/wait?timeoutMs=1000')).toMatchObject({
      json: { error: { code: 'request_unknown' } },
    });
  }, 60_000);
});
