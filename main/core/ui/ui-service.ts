/**
 * The core side of the UI bridge: CountersignBridge implemented on the running core's parts.
 * Read-only: every statement here is a bounded SELECT (better-sqlite3 confirms `readonly`).
 * Used by the headless HTTP API (ui-http.ts) and by the Electron shell's IPC handlers.
 */
import type { Db } from '../store/database.js';
import type { AgentRegistry } from '../identity/agent-registry.js';
import type { SignerCustody } from '../custody/signer.js';
import type { GatewayStats } from '../gateway/gateway-server.js';
import type { CountersignConfig } from '../config.js';
import { CountersignError } from '../../../shared/errors.js';
import {
  clampDecisionLimit, type AgentSummary, type BridgeStatus, type CountersignBridge, type DecisionSummary,
} from '../../../shared/bridge.js';
import type { RequestState } from '../../../shared/protocol.js';

/** What the service reads; a RunningCountersign provides all of it. */
export interface UiServiceDeps {
  db: Db;
  registry: Pick<AgentRegistry, 'list'>;
  policy: { readonly hash: string };
  signer: { readonly custody: SignerCustody };
  config: Pick<CountersignConfig, 'serverId' | 'domain'>;
  gateway: { getStats(): GatewayStats };
  /** The agent gateway URL (known once the server listens, hence a function). */
  gatewayUrl: () => string;
}

interface DecisionRow {
  id: string;
  agent_id: string;
  tool: string;
  state: RequestState;
  reasons: string;
  policy_hash: string;
  created_at: number;
}

function parseReasons(text: string): string[] {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((r): r is string => typeof r === 'string').slice(0, 64).map((r) => r.slice(0, 4096)) : [];
  } catch {
    return [];
  }
}

/** Run synchronous work as a promise (a throw becomes a rejection). */
function settle<T>(work: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(work()));
}

export class UiService implements CountersignBridge {
  private readonly recentDecisions;

  constructor(private readonly deps: UiServiceDeps) {
    this.recentDecisions = deps.db.prepare<[number], DecisionRow>(
      'SELECT id, agent_id, tool, state, reasons, policy_hash, created_at FROM requests ORDER BY created_at DESC, rowid DESC LIMIT ?',
    );
    if (!this.recentDecisions.readonly) throw new CountersignError('internal_error', 'the UI decision query must be read-only');
  }

  getStatus(): Promise<BridgeStatus> {
    return settle(() => {
      const stats = this.deps.gateway.getStats();
      return {
        serverId: this.deps.config.serverId,
        domain: this.deps.config.domain,
        policyHash: this.deps.policy.hash,
        custody: this.deps.signer.custody,
        gatewayUrl: this.deps.gatewayUrl(),
        connections: stats.connections,
        authenticated: stats.authenticated,
        decisions: stats.decisions,
      };
    });
  }

  listRecentDecisions(limit: number): Promise<DecisionSummary[]> {
    return settle(() =>
      this.recentDecisions.all(clampDecisionLimit(limit)).map((row) => ({
        requestId: row.id,
        agentId: row.agent_id,
        tool: row.tool,
        state: row.state,
        reasons: parseReasons(row.reasons),
        policyHash: row.policy_hash,
        createdAt: row.created_at,
      })),
    );
  }

  listAgents(): Promise<AgentSummary[]> {
    return settle(() =>
      this.deps.registry.list().map((agent) => ({
        id: agent.id,
        displayName: agent.displayName,
        owner: agent.owner,
        group: agent.group,
        status: agent.status,
        allowedTools: [...agent.allowedTools],
        keys: agent.keys.map((key) => ({ kid: key.kid, alg: key.alg, status: key.status })),
      })),
    );
  }
}

export function createUiService(deps: UiServiceDeps): UiService {
  return new UiService(deps);
}
