/**
 * One custody key for all hubs of a team (ADR 0014, docs/team-mode.md), on a real PostgreSQL 15
 * cluster and a real SoftHSM2 token shared by the hubs (the token directory plays the network
 * HSM; each hub opens its own logged-in sessions): the first hub publishes the key `keys init`
 * made (in its own process) to the team, the second signs with the same kid, a token from hub A
 * verifies against hub B's JWKS; a rotation started on hub A is served by hub B before any hub
 * signs with it, then both sign with it; the signing point refuses a key that is only published;
 * a hub whose token holds a different key under the team key's label and id, or whose data
 * directory pins a key that is not the team's, refuses to start (hsm_key_mismatch).
 */
import { spawnSync } from 'node:child_process';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningCountersign } from '../../main/core/app.js';
import type { Pkcs11Config } from '../../main/core/config.js';
import { AdoptingCustody } from '../../main/core/keys/adopting-custody.js';
import { rotateTeamKey, type TeamKeySet, type TeamKeyRecord } from '../../main/core/keys/team-key-set.js';
import { defaultOpenToken } from '../../main/core/keys/open-custody.js';
import { AgentClient } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest, type EnrollmentPayload } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { FINANCE_SCOPE, nodeWebSocket, transferCall } from '../helpers/harness.js';
import { startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { compiledCli } from '../helpers/compiled-script.js';
import { closeTeamRoom, ensureTeamPeople, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

// The CLI compiled once for the run (test/helpers/compile-scripts.ts), started with plain Node.
const NODE = process.execPath;
const CLI = compiledCli();
const AGENT = 'finance-bot';
const PIN_ENV = 'COUNTERSIGN_TEAM_KEYS_HSM_PIN';
/** How long a rotated-in key is published before any hub may sign with it. */
const PUBLISH_LEAD_MS = 3_000;

let cluster: PostgresCluster;
let db: pg.Pool;
let teamToken: SoftHsmToken;
let otherToken: SoftHsmToken;
let key: AgentKey;
let enrollment: EnrollmentPayload;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const clients: AgentClient[] = [];

const pkcs11Of = (token: SoftHsmToken): Pkcs11Config => ({
  module: token.module,
  tokenLabel: token.label,
  pin: { env: PIN_ENV },
  callTimeoutMs: 5_000,
  reconnectAttempts: 2,
  reconnectDelayMs: 20,
  sessions: 2,
});

const hubDir = (name: string, token: SoftHsmToken, keyPublishLeadMs = PUBLISH_LEAD_MS): string =>
  teamHubDir({ dirs }, name, {
    tokens: { ttlSeconds: 5 },
    custody: { requireHardware: true, pkcs11: pkcs11Of(token) },
    team: { keyPublishLeadMs },
    // Signing is under test, not risk: the team's shared baseline would hold this file's bursts of transfers.
    risk: { enabled: false },
  });

/** The real CLI in its own process (its own SoftHSM instance on the shared token directory). */
function cli(dataDir: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args, '--data-dir', dataDir], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, SOFTHSM2_CONF: teamToken.confPath, [PIN_ENV]: teamToken.pin },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function keysInit(dataDir: string): string {
  const r = cli(dataDir, 'keys', 'init');
  if (r.status !== 0) throw new Error(`keys init failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { kid: string }).kid;
}

const startHub = (name: string, dataDir: string) => startTeamHub(undefined, name, cluster.url, dataDir);

async function submitOn(app: RunningCountersign, amount: string): Promise<{ token: string; kid: string; requestId: string }> {
  const client = new AgentClient({
    url: app.url,
    agentId: AGENT,
    key,
    webSocket: nodeWebSocket,
    reconnect: false,
    requestTimeoutMs: 15_000,
  });
  clients.push(client);
  try {
    const result = await client.submit(transferCall(amount));
    expect(result.decision).toBe('allow');
    return { token: result.token!, kid: kidOf(result.token!), requestId: result.requestId };
  } finally {
    client.close();
  }
}

const kidOf = (jws: string): string =>
  (JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid: string }).kid;

async function jwksOf(app: RunningCountersign): Promise<{ keys: PublicJwk[] }> {
  return (await (await fetch(`http://127.0.0.1:${app.port}/.well-known/jwks.json`)).json()) as { keys: PublicJwk[] };
}

/** Resolves when `test` holds for the hub's team key set (checked now and at each change it hears: LISTEN/NOTIFY). */
function whenKeys(app: RunningCountersign, test: (set: TeamKeySet) => boolean, what: string): Promise<void> {
  const set = app.teamKeys!;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`${app.config.serverId}: timed out waiting until ${what}`));
    }, 30_000);
    const check = () => {
      if (!test(set)) return;
      clearTimeout(timer);
      stop();
      resolve();
    };
    const stop = set.onChanged(check);
    check();
  });
}

async function tokenRows(): Promise<Array<{ kid: string; issued_at: number }>> {
  const { rows } = await db.query<{ kid: string; issued_at: string }>('SELECT kid, issued_at FROM tokens ORDER BY issued_at');
  return rows.map((r) => ({ kid: r.kid, issued_at: Number(r.issued_at) }));
}

async function teamAuditKinds(): Promise<Array<{ kind: string; hub: string }>> {
  // Sequenced by the leader or still waiting for it: both are the team's audit records.
  const { rows } = await db.query<{ kind: string; record: string }>(
    "SELECT kind, record FROM audit_log WHERE kind LIKE 'team_key.%' UNION ALL SELECT kind, fields FROM audit_submissions WHERE kind LIKE 'team_key.%'",
  );
  return rows.map((r) => ({ kind: r.kind, hub: (JSON.parse(r.record) as { hub: string }).hub }));
}

let a: RunningCountersign;
let b: RunningCountersign;
let firstKid = '';

beforeAll(async () => {
  // Every token before SoftHSM is first loaded in this process (test/helpers/softhsm.ts).
  teamToken = createSoftHsmToken({ label: 'team-hsm', pin: '246810', soPin: '13579111' });
  otherToken = createSoftHsmToken({ label: 'other-hsm', pin: '246810', soPin: '13579111' });
  process.env[PIN_ENV] = teamToken.pin;
  cluster = await startPostgres();
  db = testPool(cluster.url);
  key = await importAgentKey(await generateAgentKey('EdDSA'));
  enrollment = await verifyEnrollmentRequest(await createEnrollmentRequest(key, AGENT, AGENT));
  const dirA = hubDir('hub-a', teamToken);
  firstKid = keysInit(dirA);
  a = await startHub('hub-a', dirA);
  hubs.push(a);
  b = await startHub('hub-b', hubDir('hub-b', teamToken));
  hubs.push(b);
  // One directory for all hubs (ADR 0013): enrolled once, on hub A; hub B's replica applies it.
  await ensureTeamPeople(a, FINANCE_SCOPE.owner);
  await a.team!.agents.enroll(enrollment, FINANCE_SCOPE);
  await b.team!.directory.waitForSeq(a.team!.directory.appliedSeq);
}, 240_000);

afterAll(async () => {
  await closeTeamRoom({ clients, hubs, db, cluster, dirs });
  otherToken?.cleanup();
  teamToken?.cleanup();
}, 120_000);

describe('one custody key for all hubs', () => {
  it('the first hub publishes its key to the team; both hubs sign with that kid; a token from hub A verifies against hub B JWKS', async () => {
    const { rows } = await db.query<{ kid: string; state: string; published_by: string; activated_by: string }>(
      'SELECT kid, state, published_by, activated_by FROM team_signing_keys',
    );
    expect(rows).toEqual([{ kid: firstKid, state: 'active', published_by: 'hub-a', activated_by: 'hub-a' }]);
    // Hub B's data directory now pins the team's key (its local audit log's key history).
    expect(b.signingKeys.active('test')).toMatchObject({ kid: firstKid, custody: 'pkcs11', tokenLabel: 'team-hsm' });
    expect(b.custody.status()).toMatchObject({ custody: 'pkcs11', kid: firstKid, loggedIn: true });

    const onA = await submitOn(a, '250.00');
    const onB = await submitOn(b, '251.00');
    expect([onA.kid, onB.kid]).toEqual([firstKid, firstKid]);
    const verified = await verifyApprovalToken(onA.token, {
      call: transferCall('250.00'),
      audience: 'payments-service',
      keys: await jwksOf(b),
      jtiStore: new MemoryJtiStore(),
      domain: 'test',
    });
    expect(verified.decision.id).toBe(onA.requestId);
    expect((await jwksOf(a)).keys.map((k) => k.kid)).toEqual([firstKid]);
    expect((await a.teamKeys!.servingHubs(firstKid)).map((h) => h.hub).sort()).toEqual(['hub-a', 'hub-b']);
    expect(await teamAuditKinds()).toEqual(
      expect.arrayContaining([
        { kind: 'team_key.published', hub: 'hub-a' },
        { kind: 'team_key.activated', hub: 'hub-a' },
      ]),
    );
  }, 60_000);

  it('a rotation started on hub A is served by hub B before any hub signs with it, then both hubs sign with it', async () => {
    const pkcs11 = pkcs11Of(teamToken);
    const log: string[] = [];
    const rotated: TeamKeyRecord = await rotateTeamKey(a.teamKeys!, pkcs11, { domain: 'test', now: Date.now, log: (m) => log.push(m) });
    expect(rotated).toMatchObject({ state: 'published', publishedBy: 'hub-a' });
    expect(rotated.signFrom).toBe(rotated.publishedAt + PUBLISH_LEAD_MS);
    const newKid = rotated.kid;

    // Hub B hears of it by NOTIFY and serves it beside the key both still sign with.
    await whenKeys(b, (set) => set.has(newKid), 'hub B knows the new key');
    expect((await jwksOf(b)).keys.map((k) => k.kid).sort()).toEqual([firstKid, newKid].sort());
    const during = [await submitOn(a, '252.00'), await submitOn(b, '253.00')];

    // Any hub activates it once its sign_from passed (the hubs' one-second key watch); both follow.
    await whenKeys(a, (set) => set.activeKid('test') === newKid, 'hub A signs with the new key');
    await whenKeys(b, (set) => set.activeKid('test') === newKid, 'hub B signs with the new key');
    const after = [await submitOn(a, '254.00'), await submitOn(b, '255.00')];
    expect(after.map((t) => t.kid)).toEqual([newKid, newKid]);
    // The old key stays published (tokens it signed are still valid); a token of either key verifies at either hub.
    for (const app of [a, b]) expect((await jwksOf(app)).keys.map((k) => k.kid).sort()).toEqual([firstKid, newKid].sort());
    for (const [t, amount] of [
      [during[0]!, '252.00'],
      [after[1]!, '255.00'],
    ] as const) {
      await verifyApprovalToken(t.token, {
        call: transferCall(amount),
        audience: 'payments-service',
        keys: await jwksOf(t === during[0] ? b : a),
        jtiStore: new MemoryJtiStore(),
        domain: 'test',
      });
    }

    // What the database recorded: no token of the new key before it was active, activation not
    // before sign_from, and both hubs served the key before its first signature.
    const { rows } = await db.query<{ state: string; activated_at: string; sign_from: string }>(
      'SELECT state, activated_at, sign_from FROM team_signing_keys WHERE kid = $1',
      [newKid],
    );
    const activatedAt = Number(rows[0]!.activated_at);
    expect(rows[0]!.state).toBe('active');
    expect(activatedAt).toBeGreaterThanOrEqual(Number(rows[0]!.sign_from));
    const tokens = await tokenRows();
    const firstNew = Math.min(...tokens.filter((t) => t.kid === newKid).map((t) => t.issued_at));
    expect(firstNew).toBeGreaterThanOrEqual(activatedAt);
    for (const t of tokens) if (t.issued_at < activatedAt) expect(t.kid).toBe(firstKid);
    for (const t of during) if (t.kid !== firstKid) expect(t.kid).toBe(newKid); // only when the test ran slower than the lead
    const serving = await a.teamKeys!.servingHubs(newKid);
    expect(serving.map((s) => s.hub).sort()).toEqual(['hub-a', 'hub-b']);
    for (const s of serving) expect(s.since).toBeLessThan(firstNew);
    const { rows: old } = await db.query<{ state: string; published_until: string }>(
      'SELECT state, published_until FROM team_signing_keys WHERE kid = $1',
      [firstKid],
    );
    expect(old[0]!.state).toBe('retiring');
    expect(Number(old[0]!.published_until)).toBeGreaterThanOrEqual(activatedAt + 5_000 + 60_000);
    // Each hub's data directory pins the new key, the old one retiring there too; the team log says who did what.
    for (const app of [a, b]) expect(app.signingKeys.active('test')?.kid).toBe(newKid);
    expect(await teamAuditKinds()).toEqual(expect.arrayContaining([{ kind: 'team_key.published', hub: 'hub-a' }]));
    expect((await teamAuditKinds()).filter((k) => k.kind === 'team_key.activated')).toHaveLength(2);
  }, 120_000);

  it('never signs with a key that is published but not yet the team key, and allows one rotation at a time', async () => {
    // An operator rotates with the CLI in its own process, from a data directory whose publish lead is an hour.
    const operatorDir = hubDir('operator', teamToken, 3_600_000);
    const rotated = cli(operatorDir, 'keys', 'rotate', '--database', cluster.url, '--name', 'operator');
    expect(rotated.status, rotated.stderr).toBe(0);
    const waiting = JSON.parse(rotated.stdout) as { kid: string; state: string; label: string; id: string; alg: 'ES256' };
    expect(waiting).toMatchObject({ state: 'published', publishedBy: 'operator' });
    // One rotation at a time: another, from any hub, is refused and publishes nothing.
    await expect(
      rotateTeamKey(b.teamKeys!, pkcs11Of(teamToken), { domain: 'test', now: Date.now, log: () => undefined }),
    ).rejects.toMatchObject({
      code: 'config_invalid',
      message: expect.stringContaining('already has a rotation waiting') as unknown as string,
    });
    const { rows } = await db.query("SELECT kid FROM team_signing_keys WHERE state = 'published'");
    expect(rows).toEqual([{ kid: waiting.kid }]);

    // The hubs serve it at once, and do not sign with it.
    await whenKeys(a, (set) => set.has(waiting.kid), 'hub A knows the waiting key');
    expect((await jwksOf(a)).keys.map((k) => k.kid)).toContain(waiting.kid);
    const current = a.teamKeys!.activeKid('test')!;
    expect(a.teamKeys!.maySign(waiting.kid, Date.now(), 5_000)).toBe(false);
    expect(a.teamKeys!.maySign('not-a-team-key', Date.now(), 5_000)).toBe(false);

    // The signing point itself: a custody holding the waiting key (made by the other process, open
    // here from this process's own session) refuses to sign with it.
    const pkcs11 = pkcs11Of(teamToken);
    const token = await defaultOpenToken(pkcs11, () => undefined);
    try {
      const held = await token.openSigner({ label: waiting.label, id: waiting.id, algorithm: waiting.alg, pinnedKid: waiting.kid });
      const custody = new AdoptingCustody(
        { signer: held, status: () => ({ custody: 'pkcs11', kid: held.keyId, algorithm: held.algorithm }), close: () => Promise.resolve() },
        {
          keys: a.teamKeys!,
          domain: 'test',
          now: Date.now,
          reserveMs: 5_000,
          open: () => Promise.reject(new Error('this test opens no other key')),
          onAdopted: () => undefined,
          log: () => undefined,
        },
      );
      await expect(custody.signer.sign(new Uint8Array([1, 2, 3]))).rejects.toMatchObject({ code: 'signing_key_unpublished' });
    } finally {
      await token.close();
    }
    // The hubs go on signing with the team's active key.
    expect((await submitOn(a, '256.00')).kid).toBe(current);
  }, 120_000);
});

describe('the team key set in the database', () => {
  it('refuses an activation before sign_from, a changed key, a backward move and a deletion', async () => {
    const { rows } = await db.query<{ kid: string; sign_from: string }>(
      "SELECT kid, sign_from FROM team_signing_keys WHERE state = 'published'",
    );
    const waiting = rows[0]!;
    const refused = (sql: string, params: unknown[]) =>
      expect(db.query(sql, params)).rejects.toMatchObject({ code: expect.any(String) as unknown as string });
    // Early: activated_at before sign_from breaks the CHECK, whichever hub tries.
    await refused("UPDATE team_signing_keys SET state = 'active', activated_at = $2, activated_by = 'x' WHERE kid = $1", [
      waiting.kid,
      Number(waiting.sign_from) - 1,
    ]);
    await refused("UPDATE team_signing_keys SET public_jwk = '{}' WHERE kid = $1", [waiting.kid]);
    await refused("UPDATE team_signing_keys SET state = 'published' WHERE kid = $1", [firstKid]);
    await refused('DELETE FROM team_signing_keys WHERE kid = $1', [firstKid]);
    const { rows: after } = await db.query<{ kid: string; state: string }>(
      'SELECT kid, state FROM team_signing_keys ORDER BY published_at',
    );
    expect(after.map((r) => r.state)).toEqual(['retiring', 'active', 'published']);
  });
});

describe('a hub whose key is not the team key', () => {
  it('refuses to start when its token holds a different key under the team key label and id (hsm_key_mismatch)', async () => {
    const team = a.teamKeys!.active()!;
    // Another token with a key made under the same label and CKA_ID: the label matches, the key does not.
    const other = await defaultOpenToken(pkcs11Of(otherToken), () => undefined);
    try {
      await other.generateSigningKey({ label: team.keyLabel, id: team.keyId, algorithm: team.algorithm });
    } finally {
      await other.close();
    }
    const dir = hubDir('hub-c', otherToken);
    await expect(startHub('hub-c', dir)).rejects.toMatchObject({ code: 'hsm_key_mismatch' });
    // Nothing was left held: the same start fails the same way (not data_dir_locked).
    await expect(startHub('hub-c', dir)).rejects.toMatchObject({ code: 'hsm_key_mismatch' });
  }, 120_000);

  it('refuses to start when its data directory pins a PKCS#11 key that is not one of the team keys (hsm_key_mismatch)', async () => {
    const dir = hubDir('hub-d', teamToken);
    const ownKid = keysInit(dir);
    await expect(startHub('hub-d', dir)).rejects.toMatchObject({
      code: 'hsm_key_mismatch',
      message: expect.stringContaining(ownKid) as unknown as string,
    });
    const { rows } = await db.query('SELECT 1 FROM team_signing_keys WHERE kid = $1', [ownKid]);
    expect(rows).toHaveLength(0);
  }, 120_000);
});
