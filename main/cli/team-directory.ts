/**
 * The CLI's way into the team directory (`countersign agents|approvers ... --database URL`, ADR 0013): the
 * write goes to PostgreSQL in one transaction with its team audit record, and the data
 * directory's replica applies it (a hub running on the same data directory applies it too, or
 * finds it applied). Without --database the CLI writes the data directory itself (embedded mode).
 */
import { hostname } from 'node:os';
import type { CountersignConfig } from '../core/config.js';
import type { Db } from '../core/store/database.js';
import type { AgentRegistry } from '../core/identity/agent-registry.js';
import { PgDecisionStore } from '../core/store/pg/pg-decision-store.js';
import { PgDirectory } from '../core/store/pg/pg-directory.js';
import { TeamAgents } from '../core/identity/team-agents.js';
import { TeamApprovers } from '../core/approvals/team-approvers.js';
import type { ApproverDirectory } from '../core/approvals/approver-directory.js';

export interface TeamDirectoryCli {
  agents: TeamAgents;
  /** With `local.approvers`: approver writes for every hub (`countersign approvers ... --database URL`). */
  approvers?: TeamApprovers;
  close(): Promise<void>;
}

export async function openTeamDirectory(
  config: CountersignConfig,
  url: string,
  local: { db: Db; registry: AgentRegistry; approvers?: ApproverDirectory },
): Promise<TeamDirectoryCli> {
  const log = (message: string) => process.stderr.write(`${message}\n`);
  const store = await PgDecisionStore.open({ ...config.team.database, url, hub: `cli@${hostname()}`, onError: log });
  let directory: PgDirectory;
  try {
    directory = await PgDirectory.open(store, local.db, log);
  } catch (error) {
    await store.close();
    throw error;
  }
  local.registry.useTeamDirectory();
  const approvers = local.approvers === undefined ? undefined : new TeamApprovers(local.approvers, directory);
  if (approvers !== undefined) local.approvers!.useTeamDirectory(approvers);
  return {
    agents: new TeamAgents(local.registry, directory, store.hub),
    ...(approvers === undefined ? {} : { approvers }),
    async close() {
      await directory.close();
      await store.close();
    },
  };
}
