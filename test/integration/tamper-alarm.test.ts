/**
 * The tamper alarm end to end, on a real server (SQLite file, Cedar worker, software signer,
 * WebSocket agents, HTTP admin API): a record rewritten in place in the database file by a second
 * connection (as someone with the file would) is found by the background re-verification or by
 * the next checkpoint; the alarm is audited, stored, shown in /healthz and the UI bridge; while it
 * is open high-impact calls are held for approvers and low-impact ones still flow; an admin's key
 * tap (the project's software authenticator) acknowledges it and calls flow again.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import Database from 'better-sqlite3';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEPLOY_SCOPE,
  DEMO_POLICY_DIR,
  FINANCE_SCOPE,
  ensurePeople,
  nodeWebSocket,
  startHarness,
  tempDir,
  transferCall,
  type Harness,
} from '../helpers/harness.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { AuditVerifier } from '../../main/core/audit/audit-verifier.js';
import { spawnSync } from 'node:child_process';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { tamperHoldReason } from '../../main/core/decision/decision-service.js';
import { loadPolicyDirectory } from '../../main/core/policy/policy-set.js';
import { compiledCli } from '../helpers/compiled-script.js';

let h: Harness | undefined;
const extraApps: RunningCountersign[] = [];
const extraDirs: string[] = [];

afterEach(async () => {
  for (const app of extraApps.splice(0)) await app.close();
  await h?.close();
  h = undefined;
  for (const dir of extraDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const stagingCall = {
  tool: 'deploy.staging',
  params: { service: 'checkout', diff: '+a' },
  dataClass: 'source-code',
  jurisdiction: 'US',
  provenance: ['ci'],
};

/** What someone with write access to the database file can do: rewrite a record in place (the table's triggers are only a speed bump). */
function rewriteRecord(dbFile: string, seq: number, rewrite: (record: string) => string, options: { rehash?: boolean } = {}): void {
  const db = new Database(dbFile);
  try {
    db.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_leaf_once; DROP TRIGGER audit_tree_no_delete;');
    const { record } = db.prepare<[number], { record: string }>('SELECT record FROM audit_log WHERE seq = ?').get(seq)!;
    db.prepare('UPDATE audit_log SET record = ? WHERE seq = ?').run(rewrite(record), seq);
    // A thorough forger also throws the tree's hashes away; the server recomputes them from the records.
    if (options.rehash) db.exec('UPDATE audit_log SET leaf = NULL, subtrees = NULL; DELETE FROM audit_tree');
    db.exec(`CREATE TRIGGER audit_log_no_update BEFORE UPDATE OF seq, at, kind, record, request_key ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
             CREATE TRIGGER audit_log_leaf_once BEFORE UPDATE OF leaf, subtrees ON audit_log WHEN OLD.leaf IS NOT NULL BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
             CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;`);
  } finally {
    db.close();
  }
}

const addField = (record: string) => `${record.slice(0, -1)},"forged":true}`;

async function post(app: RunningCountersign, path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${app.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${app.uiSessionSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function healthz(app: RunningCountersign): Promise<Record<string, unknown>> {
  return (await (await fetch(`http://127.0.0.1:${app.port}/healthz`)).json()) as Record<string, unknown>;
}

async function addApprover(app: RunningCountersign, id: string, groups: string[]): Promise<VirtualAuthenticator> {
  app.approvers.addApprover({ id, displayName: id, groups, virtual: true });
  const key = new VirtualAuthenticator();
  const { code } = app.approvers.issueRegistrationCode(id, 'test');
  const options = await app.approvers.beginRegistration(id, code);
  await app.approvers.finishRegistration(
    id,
    key.createCredential({
      rpId: 'localhost',
      origin: app.approvers.origins[0]!,
      challenge: options.challenge,
      user: options.user,
      userVerification: 'required',
    }),
  );
  return key;
}

function tap(app: RunningCountersign, key: VirtualAuthenticator, options: { challenge: string; allowCredentials?: Array<{ id: string }> }) {
  return key.getAssertion({
    rpId: 'localhost',
    origin: app.approvers.origins[0]!,
    challenge: options.challenge,
    allowCredentials: (options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
}

/** The admin action that closes alarm `alarmId`, confirmed by `key`'s tap. */
async function acknowledge(app: RunningCountersign, adminId: string, key: VirtualAuthenticator, alarmId: number) {
  const started = await post(app, '/api/admin/ceremony', { adminId, action: { kind: 'audit.acknowledge_alarm', alarmId } });
  if (started.status !== 200) return started;
  return post(app, '/api/admin/submit', { adminId, response: tap(app, key, started.json.options as { challenge: string }) });
}

const auditKinds = (app: RunningCountersign, kind: string) =>
  (app.db.prepare('SELECT record FROM audit_log WHERE kind = ? ORDER BY seq').all(kind) as Array<{ record: string }>).map(
    (r) => JSON.parse(r.record) as Record<string, unknown>,
  );

describe('the tamper alarm', () => {
  it('raises on a record rewritten in place in a running server, holds high-impact calls until an admin acknowledges it with a key tap', async () => {
    // Risk scoring off: repeated transfers would otherwise climb a tier on their own (docs/risk.md).
    h = await startHarness({ config: { domain: 'test', risk: { enabled: false } } });
    const app = h.app;
    const rootKey = await addApprover(app, 'root', ['countersign-admins']);
    const finance = h.client('finance-bot', await h.enroll('finance-bot'));
    const deploy = h.client('deploy-bot', await h.enroll('deploy-bot', DEPLOY_SCOPE));
    const bridge = createHttpBridge({
      baseUrl: `http://127.0.0.1:${app.port}`,
      sessionSecret: app.uiSessionSecret,
      fetch: (input, init) => fetch(input, init),
    });

    // Before: a small transfer to a known payee is automatic (payments.transfer is impact "high").
    expect((await finance.submit(transferCall('250.00'))).decision).toBe('allow');
    expect((await app.auditVerifier.verifyNow()).findings).toEqual([]);
    expect(await healthz(app)).toMatchObject({ status: 'ok', auditAlarm: null });
    expect((await bridge.getStatus()).auditAlarm).toBeNull();

    // Entry 1 is covered by the checkpoint signed at start; rewrite it in the file.
    await app.checkpoints.checkpoint();
    rewriteRecord(join(h.dataDir, 'countersign.db'), 1, addField);

    const report = await app.auditVerifier.verifyNow();
    expect(report.findings).toEqual([expect.objectContaining({ kind: 'record', seq: 1 })]);
    const alarm = report.raised!;
    expect(alarm).toMatchObject({ source: 'verification', firstBadSeq: 1 });

    // Audited, stored, in /healthz and in the UI bridge.
    expect(auditKinds(app, 'audit.tamper_alarm')).toEqual([
      expect.objectContaining({
        alarmId: alarm.id,
        firstBadSeq: 1,
        source: 'verification',
        findings: [expect.objectContaining({ kind: 'record', seq: 1 })],
      }),
    ]);
    expect(await healthz(app)).toMatchObject({ status: 'tamper_alarm', auditAlarm: { id: alarm.id, firstBadSeq: 1, findings: 1 } });
    expect((await bridge.getStatus()).auditAlarm).toMatchObject({ id: alarm.id, firstBadSeq: 1, source: 'verification', findings: 1 });

    // A high-impact call the policy allows is held, and says why; a low-impact one still flows.
    const held = await finance.submit(transferCall('250.00'));
    expect(held.decision).toBe('pending');
    expect(held.token).toBeUndefined();
    expect(held.reasons).toContain(tamperHoldReason(alarm));
    expect(held.determiningPolicies).toEqual(['finance-transfers:small-known-payee']);
    expect(held.approval).toMatchObject({ approvals: 1, groups: [], ttlSeconds: 900, userVerification: 'required' });
    const pendingRecord = auditKinds(app, 'decision.pending').find((r) => r.requestId === held.requestId);
    expect(pendingRecord).toMatchObject({ tamperAlarm: { alarmId: alarm.id, firstBadSeq: 1 } });
    expect(pendingRecord?.reasons).toContain(tamperHoldReason(alarm));
    const staging = await deploy.submit(stagingCall);
    expect(staging.decision).toBe('allow');
    expect(staging.token).toBeDefined();

    // Another pass finds the same damage (it cannot be repaired in place) but raises nothing new.
    const again = await app.auditVerifier.verifyNow();
    expect(again.findings).toHaveLength(1);
    expect(again.raised).toBeUndefined();

    // The held call is for approvers: one approver's tap releases it.
    const aliceKey = await addApprover(app, 'alice', ['finance-approvers']);
    const ceremony = await app.approvals.startCeremony({ requestId: held.requestId, approverId: 'alice', verdict: 'approve' });
    const approved = await app.approvals.submitCeremony({
      requestId: held.requestId,
      approverId: 'alice',
      response: tap(app, aliceKey, ceremony.options),
    });
    expect(approved).toMatchObject({ state: 'approved' });
    expect(approved.token).toBeDefined();

    // A non-admin cannot acknowledge; the admin's tap does, audited with the assertion.
    expect((await acknowledge(app, 'alice', aliceKey, alarm.id)).json).toMatchObject({ error: { code: 'approver_not_eligible' } });
    const acked = await acknowledge(app, 'root', rootKey, alarm.id);
    expect(acked.status).toBe(200);
    expect(acked.json.result).toMatchObject({ acknowledged: { id: alarm.id, acknowledgedBy: 'root' } });
    const adminRecord = auditKinds(app, 'admin.action').at(-1);
    expect(adminRecord).toMatchObject({ adminId: 'root', action: { kind: 'audit.acknowledge_alarm', alarmId: alarm.id } });
    expect(typeof (adminRecord?.evidence as { signature?: unknown } | undefined)?.signature).toBe('string');

    // Calls flow again.
    expect(await healthz(app)).toMatchObject({ status: 'ok', auditAlarm: null });
    expect((await bridge.getStatus()).auditAlarm).toBeNull();
    const flowing = await finance.submit(transferCall('250.00'));
    expect(flowing.decision).toBe('allow');
    expect(flowing.reasons).not.toContain(tamperHoldReason(alarm));

    // The acknowledged alarm cannot be acknowledged twice.
    expect(await acknowledge(app, 'root', rootKey, alarm.id)).toMatchObject({
      status: 409,
      json: { error: { code: 'tamper_alarm_unknown' } },
    });
    expect(await acknowledge(app, 'root', rootKey, 999)).toMatchObject({ status: 409, json: { error: { code: 'tamper_alarm_unknown' } } });

    // New damage after the acknowledgement raises a new alarm.
    rewriteRecord(join(h.dataDir, 'countersign.db'), 2, addField);
    const next = await app.auditVerifier.verifyNow();
    expect(next.findings.map((f) => f.seq)).toEqual([1, 2]);
    expect(next.raised).toMatchObject({ firstBadSeq: 2, findings: [expect.objectContaining({ kind: 'record', seq: 2 })] });
    expect((await finance.submit(transferCall('250.00'))).decision).toBe('pending');
  });

  it('keeps the alarm across a restart, and the re-verification at start finds damage done while the server was down', async () => {
    const dataDir = tempDir();
    extraDirs.push(dataDir);
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR, domain: 'test' }));
    const first = await startCountersign({ dataDir, log: () => undefined });
    const entries = first.audit.size();
    await first.close();

    // Rewritten while stopped: the start-up check compares stored hashes with the external
    // checkpoint, which still agree, so the server starts — and the background pass at start finds it.
    rewriteRecord(join(dataDir, 'countersign.db'), 3, addField);
    expect(entries).toBeGreaterThan(3);
    const second = await startCountersign({ dataDir, log: () => undefined });
    extraApps.push(second);
    await vi.waitFor(() => expect(second.tamperAlarm.current()).toMatchObject({ firstBadSeq: 3, source: 'verification' }), {
      timeout: 20_000,
    });
    const alarmId = second.tamperAlarm.current()!.id;
    await second.close();
    extraApps.pop();

    // Stored: still open after another restart, and still holding high-impact calls.
    const third = await startCountersign({ dataDir, log: () => undefined });
    extraApps.push(third);
    expect(third.tamperAlarm.current()?.id).toBe(alarmId);
    expect(await healthz(third)).toMatchObject({ status: 'tamper_alarm', auditAlarm: { id: alarmId } });
    const client = await financeClient(third);
    try {
      expect((await client.submit(transferCall('250.00'))).decision).toBe('pending');
    } finally {
      client.close();
    }
    await third.close();
    extraApps.pop();

    // The CLI lists it for the admin who will acknowledge it.
    const cli = spawnSync(process.execPath, [compiledCli(), 'audit', 'alarms', '--data-dir', dataDir], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(cli.status).toBe(0);
    const listed = JSON.parse(cli.stdout) as {
      open: Array<{ id: number; firstBadSeq: number; findings: Array<{ kind: string }> }>;
      acknowledged: unknown[];
    };
    expect(listed.open).toEqual([
      expect.objectContaining({ id: alarmId, firstBadSeq: 3, findings: [expect.objectContaining({ kind: 'record' })] }),
    ]);
    expect(listed.acknowledged).toEqual([]);
  }, 120_000);

  it('an alarm raised while an automatic allow is being signed holds that call too (checked again in its commit)', async () => {
    let raiseNow: (() => void) | undefined;
    // The decision path's stage hook runs after the alarm check and before signing: raise the alarm right there.
    h = await startHarness({
      config: { risk: { enabled: false } },
      start: {
        onTiming: (stage) => {
          if (stage === 'policy' && raiseNow !== undefined) {
            const raise = raiseNow;
            raiseNow = undefined;
            raise();
          }
        },
      },
    });
    const app = h.app;
    const finance = h.client('finance-bot', await h.enroll('finance-bot'));
    raiseNow = () => app.tamperAlarm.raise('verification', [{ kind: 'record', seq: 1, reason: 'raised mid-decision by the test' }]);
    const result = await finance.submit(transferCall('250.00'));
    expect(raiseNow).toBeUndefined();
    expect(result.decision).toBe('pending');
    expect(result.token).toBeUndefined();
    expect(result.reasons).toContain(tamperHoldReason(app.tamperAlarm.current()!));
    // One decision, one record: the rolled-back attempt left nothing behind (no token, no allow).
    expect(app.db.prepare('SELECT COUNT(*) AS n FROM tokens').get()).toEqual({ n: 0 });
    expect(auditKinds(app, 'decision.allow')).toEqual([]);
    expect(auditKinds(app, 'decision.pending').map((r) => r.requestId)).toEqual([result.requestId]);
  });

  it('an alarm cannot be closed by editing the database while the server runs: high-impact calls stay held', async () => {
    h = await startHarness({ config: { risk: { enabled: false } } });
    const app = h.app;
    const finance = h.client('finance-bot', await h.enroll('finance-bot'));
    const raised = app.tamperAlarm.raise('verification', [{ kind: 'record', seq: 1, reason: 'raised by the test' }])!;
    // Someone with write access to the database marks it acknowledged, then deletes it.
    const other = new Database(join(h.dataDir, 'countersign.db'));
    other.prepare('UPDATE audit_alarms SET acknowledged_at = 1, acknowledged_by = ? WHERE id = ?').run('nobody', raised.id);
    expect(app.tamperAlarm.current()?.id).toBe(raised.id);
    other.prepare('DELETE FROM audit_alarms').run();
    other.close();
    expect(app.tamperAlarm.current()?.id).toBe(raised.id);
    const held = await finance.submit(transferCall('250.00'));
    expect(held.decision).toBe('pending');
    expect(held.token).toBeUndefined();
  });

  it('the scheduled pass finds a rewrite without anyone asking', async () => {
    h = await startHarness({ config: { audit: { verifyEveryMs: 1_000 } } });
    const app = h.app;
    await app.checkpoints.checkpoint();
    rewriteRecord(join(h.dataDir, 'countersign.db'), 2, addField);
    await vi.waitFor(() => expect(app.tamperAlarm.current()).toMatchObject({ source: 'verification', firstBadSeq: 2 }), {
      timeout: 20_000,
      interval: 100,
    });
    expect(app.auditVerifier.lastReport()?.findings).toEqual([expect.objectContaining({ kind: 'record', seq: 2 })]);
  });

  it('raises from the checkpointer when a record written since the last checkpoint is rewritten', async () => {
    h = await startHarness({ config: { risk: { enabled: false } } });
    const app = h.app;
    const finance = h.client('finance-bot', await h.enroll('finance-bot'));
    await app.checkpoints.checkpoint();
    const allowed = await finance.submit(transferCall('250.00'));
    app.audit.syncTree();
    const seq = (
      app.db
        .prepare("SELECT seq FROM audit_log WHERE kind = 'decision.allow' AND json_extract(record, '$.requestId') = ?")
        .get(allowed.requestId) as { seq: number }
    ).seq;
    rewriteRecord(join(h.dataDir, 'countersign.db'), seq, (r) => r.replace('"250.00"', '"25000.00"'));

    await expect(app.checkpoints.checkpoint()).rejects.toMatchObject({ code: 'audit_corrupt' });
    expect(app.tamperAlarm.current()).toMatchObject({
      source: 'checkpoint',
      firstBadSeq: seq,
      findings: [expect.objectContaining({ kind: 'record', seq })],
    });
    expect(auditKinds(app, 'audit.tamper_alarm')).toHaveLength(1);
    // The full pass finds the same entry: the same finding, no second alarm.
    const report = await app.auditVerifier.verifyNow();
    expect(report.findings).toEqual([expect.objectContaining({ kind: 'record', seq })]);
    expect(report.raised).toBeUndefined();
    expect((await finance.submit(transferCall('250.00'))).decision).toBe('pending');
  });

  it('finds a record rewritten and re-hashed by the signed checkpoint it no longer matches', async () => {
    h = await startHarness();
    const app = h.app;
    await app.checkpoints.checkpoint();
    rewriteRecord(join(h.dataDir, 'countersign.db'), 2, addField, { rehash: true });
    app.audit.syncTree();
    const report = await app.auditVerifier.verifyNow();
    // Leaves and subtrees agree with the rewritten records; only the signature over the old root does not.
    expect(report.findings).toEqual([expect.objectContaining({ kind: 'checkpoint', seq: 1 })]);
    expect(report.raised?.firstBadSeq).toBe(1);
  });

  it('yields to the event loop between chunks, so appends are served while a pass runs', async () => {
    h = await startHarness();
    const app = h.app;
    const append = app.db.transaction((from: number, count: number) => {
      for (let i = from; i < from + count; i++) app.audit.append('config.loaded', Date.now(), { configSha256: String(i) });
    });
    append.immediate(0, 3_000);
    app.audit.syncTree();
    const verifier = new AuditVerifier({
      db: app.db,
      log: app.audit,
      alarm: app.tamperAlarm,
      everyMs: 3_600_000,
      chunkRows: 100,
      now: Date.now,
      onError: () => undefined,
    });
    const size = app.audit.size();
    let finished = false;
    const pass = verifier.verifyNow().then((r) => {
      finished = true;
      return r;
    });
    await new Promise((resolve) => setImmediate(resolve));
    // One turn of the event loop later the pass has not finished: it gave way after a chunk.
    expect(finished).toBe(false);
    append.immediate(-1, 1);
    const report = await pass;
    expect(report).toMatchObject({ entries: size, findings: [] });
    expect(app.audit.size()).toBe(size + 1);
  });

  it('refuses a tool impact that is not low, medium, high or critical (a typo must not make a tool low impact)', async () => {
    const dir = tempDir();
    extraDirs.push(dir);
    cpSync(DEMO_POLICY_DIR, dir, { recursive: true });
    const entitiesFile = join(dir, 'entities.json');
    writeFileSync(entitiesFile, readFileSync(entitiesFile, 'utf8').replace('"impact": "high"', '"impact": "hihg"'));
    const refused = await loadPolicyDirectory(dir).then(
      () => undefined,
      (error: unknown) => error as { code: string; message: string },
    );
    expect(refused?.code).toBe('policy_invalid');
    expect(refused?.message).toContain('has impact "hihg"; it must be one of low, medium, high, critical');
  });
});

/** Enroll a finance agent on `app` (outside the harness) and connect it. */
async function financeClient(app: RunningCountersign): Promise<AgentClient> {
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  ensurePeople(app, FINANCE_SCOPE.owner);
  app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot', 'finance-bot')), FINANCE_SCOPE);
  return new AgentClient({
    url: app.url,
    agentId: 'finance-bot',
    key,
    webSocket: nodeWebSocket,
    reconnect: false,
    requestTimeoutMs: 5_000,
  });
}
