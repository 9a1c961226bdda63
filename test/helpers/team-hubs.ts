/**
 * Whole hubs of one team database for the team tests and the team bench: a hub's data directory
 * and config, starting it in this process, and people and approvers in the team directory
 * (ADR 0013): written once, through a hub's TeamApprovers (as the desk's admin actions and
 * `countersign approvers ... --database` do), every hub's replica applying them; a key is
 * registered by the real registration ceremony on the hub named (its single-use code issued in the
 * team directory) and taps on every hub (the real approval service's ceremonies, answered by
 * VirtualAuthenticator).
 */
import { rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type pg from 'pg';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import type { ApprovalVerdict } from '../../main/core/approvals/approval-service.js';
import type { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { registerKeyWithCode } from './desk-session.js';
import { DEMO_POLICY_DIR, tempDir } from './harness.js';
import type { PostgresCluster } from './postgres.js';

/** What a test file started, for its afterAll: directories to remove, hubs to close. */
export interface HubRoom {
  dirs: string[];
  hubs: RunningCountersign[];
}

/**
 * A team test file's afterAll: its clients closed, its hubs closed newest first (a close that
 * fails does not keep the others open), its pool ended, its cluster destroyed and its
 * directories removed. `db` and `cluster` are undefined when the file's beforeAll failed early.
 */
export async function closeTeamRoom(
  room: HubRoom & { clients: Array<{ close(): void }>; db: pg.Pool | undefined; cluster: PostgresCluster | undefined },
): Promise<void> {
  for (const client of room.clients) client.close();
  for (const hub of room.hubs.reverse()) await hub.close().catch(() => undefined);
  await room.db?.end();
  room.cluster?.destroy();
  for (const dir of room.dirs) rmSync(dir, { recursive: true, force: true });
}

/**
 * A hub's data directory with its config.json: this hub's name, the test key domain, the demo
 * policy pack, a checkpoint every 200 ms (so tests see the team audit log move). `settings` adds
 * to the config or overrides it; its `team` is merged into those team settings.
 */
export function teamHubDir(room: Pick<HubRoom, 'dirs'>, name: string, settings: Record<string, unknown> = {}): string {
  const dir = tempDir(`countersign-${name}-`);
  room.dirs.push(dir);
  const team = { checkpointEveryMs: 200, ...(settings.team as Record<string, unknown> | undefined) };
  const config = { serverId: name, domain: 'test', gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR, ...settings, team };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/**
 * Start the hub `name` on `dataDir` in this process, joined to the team database at `databaseUrl`;
 * `rendererDir` is the desk it serves (a test's own renderer build).
 */
export async function startTeamHub(
  room: Pick<HubRoom, 'hubs'> | undefined,
  name: string,
  databaseUrl: string,
  dataDir: string,
  log: (line: string) => void = () => undefined,
  rendererDir?: string,
): Promise<RunningCountersign> {
  const app = await startCountersign({
    dataDir,
    log,
    ...(rendererDir === undefined ? {} : { rendererDir }),
    command: 'countersign hub (test)',
    team: { databaseUrl, hub: name },
  });
  room?.hubs.push(app);
  return app;
}

/** Make each handle a person (no groups) in the team directory unless it already names one. */
export async function ensureTeamPeople(hub: RunningCountersign, ...handles: string[]): Promise<void> {
  await hub.team!.directory.catchUp(); // another hub may have added them a moment ago
  for (const handle of handles)
    if (hub.approvers.resolvePerson(handle) === undefined) await hub.team!.approvers.add({ id: handle, displayName: handle, groups: [] });
}

/** Each approver (in `groups`) added to the team directory through `hub`, a software key registered there; the keys by approver id. */
export async function registerApprovers(
  hub: RunningCountersign,
  ids: readonly string[],
  groups: string[] = ['finance-approvers'],
): Promise<Map<string, VirtualAuthenticator>> {
  const keys = new Map<string, VirtualAuthenticator>();
  for (const id of ids) keys.set(id, await registerTeamPerson(hub, id, groups, `${id[0]!.toUpperCase()}${id.slice(1)} Example`));
  return keys;
}

/** A virtual approver added to the team directory through `hub`, with one key registered on `hub` (returned). */
export async function registerTeamPerson(
  hub: RunningCountersign,
  approverId: string,
  groups: string[],
  displayName = approverId,
): Promise<VirtualAuthenticator> {
  const { registration } = await hub.team!.approvers.add(
    { id: approverId, displayName, groups, virtual: true },
    { issuedBy: 'test-admin' },
  );
  return registerTeamKey(hub, approverId, registration!.code);
}

/** Register one more key for `approverId` on `hub` with a registration code (a fresh one when none is given). */
export async function registerTeamKey(hub: RunningCountersign, approverId: string, code?: string): Promise<VirtualAuthenticator> {
  return registerKeyWithCode(
    hub.approvers,
    approverId,
    code ?? (await hub.team!.approvers.issueRegistrationCode(approverId, 'test-admin')).code,
  );
}

/** Start a ceremony on `hub` and have the approver's key answer it (not yet submitted). */
export async function tapOn(
  hub: RunningCountersign,
  key: VirtualAuthenticator,
  requestId: string,
  approverId: string,
  verdict: ApprovalVerdict = 'approve',
) {
  const started = await hub.approvals.startCeremony({ requestId, approverId, verdict });
  const response = key.getAssertion({
    rpId: 'localhost',
    origin: hub.approvers.origins[0]!,
    challenge: started.options.challenge,
    allowCredentials: (started.options.allowCredentials ?? []).map((c) => c.id),
    userVerification: 'required',
  });
  return { requestId, approverId, verdict, response };
}

/**
 * Make `hub`'s replica unable to apply changes that insert into `table` (a real SQLite fault: a
 * trigger another connection adds to the hub's file, as a foreign tool might; it fails at once,
 * unlike a held write lock, whose busy wait blocks the hub's event loop). Returns what undoes it.
 */
export function refuseReplicaInserts(hub: RunningCountersign, table: string): () => void {
  if (!/^[a-z_]+$/.test(table)) throw new Error(`not a table name: ${table}`);
  const file = new Database(join(hub.dataDir, 'countersign.db'));
  try {
    file.exec(
      `CREATE TRIGGER test_refuse_${table} BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, 'replica write refused by the test'); END`,
    );
  } finally {
    file.close();
  }
  return () => {
    const again = new Database(join(hub.dataDir, 'countersign.db'));
    try {
      again.exec(`DROP TRIGGER IF EXISTS test_refuse_${table}`);
    } finally {
      again.close();
    }
  };
}
