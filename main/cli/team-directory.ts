/**
 * The CLI's way into the team directory (`countersign agents ... --database URL`, ADR 0013): the
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

export interface TeamDirectoryCli {
  agents: TeamAgents;
  close(): Promise<void>;
}

export async function openTeamDirectory(
  config: CountersignConfig,
  url: string,
  local: { db: Db; registry: AgentRegistry },
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
  return {
    agents: new TeamAgents(local.registry, directory, store.hub),
    async close() {
      await directory.close();
      await store.close();
    },
  };
}
