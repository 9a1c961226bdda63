/**
 * Rotating the team's desk secrets while both hubs run (docs/team-mode.md "Rotating the desk
 * link's secret and the sign-in key", store/pg/pg-team-secrets.ts): `countersign hub
 * rotate-desk-secret` (the real CLI bundle, in its own process) replaces the desk link's secret
 * and ends every desk session in one transaction; both hubs take the new secret from its NOTIFY,
 * so the old link, the sessions signed in under it and the event streams opened with it are
 * refused or ended on both hubs at once, and the
 * new secret (written 0600 to --ui-secret-file, never printed or logged) opens both.
 * `countersign hub rotate-sign-in-key` replaces the sign-in challenge key: a sign-in begun
 * before it is refused on both hubs (challenge_invalid), one begun after it signs in. Two hubs on
 * a real PostgreSQL 15 cluster; real HTTP calls; software security keys.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningCountersign } from '../../main/core/app.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { BRIDGE_EVENTS_PATH } from '../../shared/bridge-table.js';
import { compiledCli } from '../helpers/compiled-script.js';
import { signInOverHttp, tapKey, type HttpSignIn } from '../helpers/desk-session.js';
import { tempDir } from '../helpers/harness.js';
import { newDeskSecret, TeamSecrets } from '../../main/core/store/pg/pg-team-secrets.js';
import { freePort, startPostgres, testPool, type PostgresCluster } from '../helpers/postgres.js';
import { closeTeamRoom, registerApprovers, startTeamHub, teamHubDir } from '../helpers/team-hubs.js';

const run = promisify(execFile);

let cluster: PostgresCluster;
let db: pg.Pool;
const dirs: string[] = [];
const hubs: RunningCountersign[] = [];
const logged: string[] = [];
let a: RunningCountersign;
let b: RunningCountersign;
let alice: VirtualAuthenticator;

/** The CLI in its own process with exactly `args`: its exit code and what it wrote. */
async function cliExit(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [compiledCli(), ...args, '--data-dir', dirs[0]!], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, output: failed.stdout + failed.stderr };
  }
}

/** The CLI in its own process, as an operator runs it; its printed output. */
async function cli(...args: string[]): Promise<string> {
  const { stdout, stderr } = await run(process.execPath, [compiledCli(), ...args, '--database', cluster.url, '--data-dir', dirs[0]!], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return stdout + stderr;
}

/** A call only a signed-in person may make (re-verify the audit log; not_signed_in without a session). */
const PERSON_CALL = '/api/ui/health/verify';

/** A desk call on `hub` with `secret` as the bearer and `cookie` (a session's), as a desk makes it. */
async function deskCall(
  hub: RunningCountersign,
  path: string,
  secret: string,
  cookie?: string,
): Promise<{ status: number; code?: string }> {
  const res = await fetch(`http://127.0.0.1:${hub.port}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', ...(cookie === undefined ? {} : { cookie }) },
    body: '{}',
  });
  const json = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, ...(json.error?.code === undefined ? {} : { code: json.error.code }) };
}

/** The desk's event stream on `hub` opened with `secret`; `ended` settles when the hub ends it ('ended') or after 10 s ('still open'). */
async function openEventStream(hub: RunningCountersign, secret: string): Promise<{ ended: Promise<string> }> {
  const res = await fetch(`http://127.0.0.1:${hub.port}${BRIDGE_EVENTS_PATH}`, { headers: { authorization: `Bearer ${secret}` } });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const drain = async (): Promise<string> => {
    for (;;) if ((await reader.read()).done) return 'ended';
  };
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still open'), 10_000).unref());
  return { ended: Promise.race([drain().catch(() => 'ended'), timeout]) };
}

/** The `team_secret.rotated` records the audit leader has sequenced into the team log, oldest first (the whole leaf data). */
async function rotationRecords(): Promise<string[]> {
  const { rows } = await db.query<{ record: string }>("SELECT record FROM audit_log WHERE kind = 'team_secret.rotated' ORDER BY seq");
  return rows.map((row) => row.record);
}

/** Begin a sign-in on `hub` over HTTP: the challenge's options. */
async function beginSignIn(
  hub: RunningCountersign,
  approverId: string,
): Promise<{ challenge: string; allowCredentials: Array<{ id: string }> }> {
  const res = await fetch(`http://127.0.0.1:${hub.port}/api/session/sign-in`, {
    method: 'POST',
    headers: { authorization: `Bearer ${hub.uiSessionSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ approverId }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { options: { challenge: string; allowCredentials: Array<{ id: string }> } }).options;
}

async function finishSignIn(hub: RunningCountersign, approverId: string, response: unknown): Promise<{ status: number; code?: string }> {
  const res = await fetch(`http://127.0.0.1:${hub.port}/api/session/sign-in/finish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${hub.uiSessionSecret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ approverId, response }),
  });
  const json = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, ...(json.error?.code === undefined ? {} : { code: json.error.code }) };
}

beforeAll(async () => {
  cluster = await startPostgres();
  db = testPool(cluster.url);
  const room = { dirs, hubs };
  const settings = { risk: { enabled: false } };
  a = await startTeamHub(room, 'hub-a', cluster.url, teamHubDir(room, 'hub-a', settings), (line) => logged.push(line));
  b = await startTeamHub(room, 'hub-b', cluster.url, teamHubDir(room, 'hub-b', settings), (line) => logged.push(line));
  alice = (await registerApprovers(a, ['alice'])).get('alice')!;
}, 240_000);

afterAll(async () => {
  await closeTeamRoom({ clients: [], hubs, db, cluster, dirs });
}, 120_000);

describe("rotating the team's desk secrets with every hub running", () => {
  it('rotate-desk-secret: the old link and every session signed in under it are refused on both hubs at once; the new secret, written 0600 and never printed, opens both', async () => {
    const old = a.uiSessionSecret;
    expect(b.uiSessionSecret).toBe(old);
    const signedIn: HttpSignIn[] = [await signInOverHttp(a, 'alice', alice), await signInOverHttp(b, 'alice', alice)];
    for (const hub of [a, b])
      for (const desk of signedIn) expect(await deskCall(hub, PERSON_CALL, old, desk.cookie)).toEqual({ status: 200 });

    // An event stream open on each hub under the old link (a desk's live updates).
    const streams = await Promise.all([a, b].map((hub) => openEventStream(hub, old)));

    const secretFile = join(tempDir('countersign-rotated-'), 'desk-secret');
    dirs.push(join(secretFile, '..'));
    const printed = await cli('hub', 'rotate-desk-secret', '--ui-secret-file', secretFile);
    const fresh = readFileSync(secretFile, 'utf8').trim();
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    expect(fresh).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fresh).not.toBe(old);
    expect(printed).not.toContain(fresh);
    expect(JSON.parse(printed)).toMatchObject({ rotated: 'desk secret', sessionsEnded: 2 });
    await vi.waitFor(() => expect([a.uiSessionSecret, b.uiSessionSecret]).toEqual([fresh, fresh]), { timeout: 10_000 });

    // Both streams were ended by their hubs, and reopening one with the old link is refused.
    expect(await Promise.all(streams.map((stream) => stream.ended))).toEqual(['ended', 'ended']);
    for (const hub of [a, b])
      for (const desk of signedIn) {
        // The old link: refused before anything else.
        expect(await deskCall(hub, PERSON_CALL, old, desk.cookie)).toEqual({ status: 401, code: 'not_authenticated' });
        // The new link with a session from before: the session ended with the rotation.
        expect(await deskCall(hub, PERSON_CALL, fresh, desk.cookie)).toEqual({ status: 403, code: 'not_signed_in' });
      }
    const again = [await signInOverHttp(a, 'alice', alice), await signInOverHttp(b, 'alice', alice)];
    for (const hub of [a, b])
      for (const desk of again) expect(await deskCall(hub, PERSON_CALL, fresh, desk.cookie)).toEqual({ status: 200 });
    expect(logged.join('\n')).not.toContain(fresh);
    expect(logged.join('\n')).not.toContain(old);
    // The rotation is in the team's audit log: which secret, by whom, the sessions it ended; never a secret.
    await vi.waitFor(async () => expect(await rotationRecords()).toHaveLength(1), { timeout: 10_000 });
    const [record] = await rotationRecords();
    expect(JSON.parse(record!)).toMatchObject({ kind: 'team_secret.rotated', secret: 'desk_secret', by: 'hub-a', sessionsEnded: 2 });
    expect(record).not.toContain(fresh);
    expect(record).not.toContain(old);
  }, 120_000);

  it('refuses an unknown hub command, --ui-secret-file with the sign-in key, and an unreachable database (nothing replaced, no secret file left)', async () => {
    const before = (await db.query<{ secret: string }>('SELECT secret FROM team_desk_secret')).rows;
    const recordsBefore = (await rotationRecords()).length;
    const refusedWith = (answer: { code: number; output: string }, code: string) => {
      expect(answer.code).toBe(1);
      expect(answer.output).toContain(`[${code}]`);
    };
    refusedWith(await cliExit('hub', 'rotate-everything', '--database', cluster.url), 'config_invalid');
    const file = join(dirs[0]!, 'never-written');
    refusedWith(await cliExit('hub', 'rotate-sign-in-key', '--database', cluster.url, '--ui-secret-file', file), 'config_invalid');
    // A port nothing listens on: the staged secret is removed, and a file already at the path
    // (the current secret, say) is left exactly as it was.
    const unreachable = `postgres://countersign@127.0.0.1:${await freePort()}/postgres`;
    refusedWith(await cliExit('hub', 'rotate-desk-secret', '--database', unreachable, '--ui-secret-file', file), 'store_unavailable');
    expect(existsSync(file)).toBe(false);
    const current = join(dirs[0]!, 'current-secret');
    writeFileSync(current, 'the-current-team-secret\n', { mode: 0o600 });
    refusedWith(await cliExit('hub', 'rotate-desk-secret', '--database', unreachable, '--ui-secret-file', current), 'store_unavailable');
    expect(readFileSync(current, 'utf8')).toBe('the-current-team-secret\n');
    expect((await db.query<{ secret: string }>('SELECT secret FROM team_desk_secret')).rows).toEqual(before);
    expect(readdirSync(dirs[0]!).filter((name) => name.endsWith('.new'))).toEqual([]);
    // Refused rotations record nothing.
    expect(await db.query("SELECT 1 FROM audit_submissions WHERE kind = 'team_secret.rotated'")).toMatchObject({ rowCount: 0 });
    expect(await rotationRecords()).toHaveLength(recordsBefore);
    // A path that cannot be replaced once the rotation committed: a clear refusal naming the staged
    // file, which holds the secret that is now the team's.
    const blocked = join(dirs[0]!, 'a-directory');
    mkdirSync(blocked);
    const refused = await cliExit('hub', 'rotate-desk-secret', '--database', cluster.url, '--ui-secret-file', blocked);
    refusedWith(refused, 'config_invalid');
    const staged = readdirSync(dirs[0]!).filter((name) => name.startsWith('.a-directory.') && name.endsWith('.new'));
    expect(staged).toHaveLength(1);
    expect(refused.output).toContain(staged[0]!);
    const team = (await db.query<{ secret: string }>('SELECT secret FROM team_desk_secret')).rows[0]!.secret;
    expect(readFileSync(join(dirs[0]!, staged[0]!), 'utf8')).toBe(`${team}\n`);
    expect(refused.output).not.toContain(team);
  }, 60_000);

  it('rotate-sign-in-key: a sign-in begun before it is refused on both hubs (challenge_invalid, no session); one begun after it signs in', async () => {
    const before = [await beginSignIn(a, 'alice'), await beginSignIn(b, 'alice')];
    const keyBefore = a.team!.deskSessions.signInKey;
    const printed = await cli('hub', 'rotate-sign-in-key');
    expect(JSON.parse(printed)).toMatchObject({ rotated: 'sign-in key' });
    await vi.waitFor(
      () => {
        expect(a.team!.deskSessions.signInKey.equals(keyBefore)).toBe(false);
        expect(b.team!.deskSessions.signInKey.equals(a.team!.deskSessions.signInKey)).toBe(true);
      },
      { timeout: 10_000 },
    );
    const sessions = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM desk_sessions')).rows[0]!.n);
    const count = await sessions();
    // Each begun challenge finished on the hub that made it and on the other.
    for (const options of before)
      for (const hub of [a, b])
        expect(await finishSignIn(hub, 'alice', tapKey(hub, alice, options))).toEqual({ status: 400, code: 'challenge_invalid' });
    expect(await sessions()).toBe(count);
    const after = await beginSignIn(a, 'alice');
    expect(await finishSignIn(b, 'alice', tapKey(b, alice, after))).toEqual({ status: 200 });
    expect(await sessions()).toBe(count + 1);
    expect(logged.join('\n')).not.toContain(a.team!.deskSessions.signInKey.toString('base64url'));
    await vi.waitFor(
      async () => expect(JSON.parse((await rotationRecords()).at(-1)!)).toMatchObject({ secret: 'sign_in_key', by: 'hub-a' }),
      { timeout: 10_000 },
    );
    const record = JSON.parse((await rotationRecords()).at(-1)!) as Record<string, unknown>;
    expect(Object.keys(record).sort()).toEqual(['at', 'by', 'kind', 'secret', 'seq']);
  }, 120_000);
  it('a hub that hears no NOTIFY (a listener cut without an error) still takes a rotated secret at its next timed re-read', async () => {
    const secrets = await TeamSecrets.open(db, 'hub-watch', Date.now());
    try {
      await secrets.start({ connectionString: cluster.url }, () => undefined, 100);
      const before = secrets.deskSecret;
      // The row replaced without the NOTIFY the command sends: only the timed re-read can see it.
      await db.query('UPDATE team_desk_secret SET secret = $1 WHERE id = 1', [newDeskSecret()]);
      const now = (await db.query<{ secret: string }>('SELECT secret FROM team_desk_secret WHERE id = 1')).rows[0]!.secret;
      expect(now).not.toBe(before);
      await vi.waitFor(() => expect(secrets.deskSecret).toBe(now), { timeout: 10_000 });
    } finally {
      await secrets.close();
    }
  }, 30_000);
});
