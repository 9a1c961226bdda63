/**
 * Whole hubs of one team database for the team tests and the team bench: a hub's data directory
 * and config, starting it in this process, and approvers with software keys registered on a hub
 * and tapping there (the real approval service's ceremonies, answered by VirtualAuthenticator).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import type { ApprovalVerdict } from '../../main/core/approvals/approval-service.js';
import { VirtualAuthenticator } from '../../main/core/testing/virtual-authenticator.js';
import { DEMO_POLICY_DIR, tempDir } from './harness.js';

/** What a test file started, for its afterAll: directories to remove, hubs to close. */
export interface HubRoom {
  dirs: string[];
  hubs: RunningCountersign[];
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

/** Start the hub `name` on `dataDir` in this process, joined to the team database at `databaseUrl`. */
export async function startTeamHub(
  room: Pick<HubRoom, 'hubs'> | undefined,
  name: string,
  databaseUrl: string,
  dataDir: string,
  log: (line: string) => void = () => undefined,
): Promise<RunningCountersign> {
  const app = await startCountersign({
    dataDir,
    log,
    command: 'countersign hub (test)',
    team: { databaseUrl, hub: name },
  });
  room?.hubs.push(app);
  return app;
}

/** Each approver (in `groups`) added to `hub` with a software key registered there; the keys by approver id. */
export async function registerApprovers(
  hub: RunningCountersign,
  ids: readonly string[],
  groups: string[] = ['finance-approvers'],
): Promise<Map<string, VirtualAuthenticator>> {
  const keys = new Map<string, VirtualAuthenticator>();
  for (const id of ids) {
    hub.approvers.addApprover({ id, displayName: `${id[0]!.toUpperCase()}${id.slice(1)} Example`, groups, virtual: true });
    const options = await hub.approvers.beginRegistration(id, hub.approvers.issueRegistrationCode(id, 'test-admin').code);
    const authenticator = new VirtualAuthenticator();
    await hub.approvers.finishRegistration(
      id,
      authenticator.createCredential({
        rpId: 'localhost',
        origin: hub.approvers.origins[0]!,
        challenge: options.challenge,
        user: options.user,
        userVerification: 'required',
        excludeCredentials: [],
      }),
    );
    keys.set(id, authenticator);
  }
  return keys;
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
