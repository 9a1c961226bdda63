/**
 * Test harness: a real Countersign core (SQLite file, Cedar, software signer, WebSocket
 * gateway on an ephemeral loopback port) in a temp directory, plus real SDK clients.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { startCountersign, REPO_ROOT, type RunningCountersign, type StartOptions } from '../../main/core/app.js';
import { parseConfig, type CountersignConfig } from '../../main/core/config.js';
import { AgentClient, type AgentClientOptions, type WebSocketLike } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey, type AgentKeyAlgorithm } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import type { AgentScope } from '../../main/core/identity/agent-registry.js';
import { writeFileSync } from 'node:fs';

export const DEMO_POLICY_DIR = join(REPO_ROOT, 'examples', 'demo');

export interface Harness {
  app: RunningCountersign;
  dataDir: string;
  enroll(agentId: string, scope?: Partial<AgentScope>, alg?: AgentKeyAlgorithm): Promise<AgentKey>;
  client(agentId: string, key: AgentKey, options?: Partial<AgentClientOptions>): AgentClient;
  close(): Promise<void>;
}

export const FINANCE_SCOPE: AgentScope = {
  owner: 'dana@example.com',
  group: 'finance-agents',
  allowedTools: ['payments.transfer'],
  dataClasses: ['financial'],
  jurisdictions: ['US', 'GB'],
};
export const DEPLOY_SCOPE: AgentScope = {
  owner: 'sam@example.com',
  group: 'deploy-agents',
  allowedTools: ['deploy.staging', 'deploy.production'],
  dataClasses: ['source-code'],
  jurisdictions: ['US'],
};

/**
 * Owners are people of the approver directory: add each handle that names nobody yet as a person
 * with no approval groups (tests that need the owner to approve add them first, with groups).
 */
export function ensurePeople(app: RunningCountersign, ...handles: string[]): void {
  for (const handle of handles) {
    if (app.approvers.resolvePerson(handle) === undefined) app.approvers.addApprover({ id: handle, displayName: handle, groups: [] });
  }
}

export const nodeWebSocket = (url: string, protocols: string[]): WebSocketLike => new WebSocket(url, protocols) as unknown as WebSocketLike;

export function tempDir(prefix = 'countersign-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startHarness(
  options: { config?: Record<string, unknown>; policyDir?: string; start?: Partial<StartOptions>; dataDir?: string } = {},
): Promise<Harness> {
  const dataDir = options.dataDir ?? tempDir();
  const config = { gateway: { port: 0 }, policyDir: options.policyDir ?? DEMO_POLICY_DIR, ...options.config } as Record<string, unknown>;
  if (options.config?.gateway) config.gateway = { port: 0, ...options.config.gateway };
  const checked: CountersignConfig = parseConfig(config);
  writeFileSync(join(dataDir, 'config.json'), JSON.stringify(checked));
  const logs: string[] = [];
  const app = await startCountersign({ dataDir, log: (m) => logs.push(m), ...options.start });
  const clients: AgentClient[] = [];
  return {
    app,
    dataDir,
    async enroll(agentId, scope = {}, alg = 'EdDSA') {
      const key = await importAgentKey(await generateAgentKey(alg));
      const payload = await verifyEnrollmentRequest(await createEnrollmentRequest(key, agentId, agentId));
      const full = { ...FINANCE_SCOPE, ...scope };
      ensurePeople(app, full.owner);
      app.registry.enroll(payload, full);
      return key;
    },
    client(agentId, key, extra = {}) {
      const client = new AgentClient({
        url: app.url,
        agentId,
        key,
        webSocket: nodeWebSocket,
        reconnect: false,
        requestTimeoutMs: 5_000,
        ...extra,
      });
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) c.close();
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const transferCall = (amount: string, payee = 'Acme Ltd', jurisdiction = 'US') => ({
  tool: 'payments.transfer',
  params: { amount, currency: 'USD', payee, memo: 'test' },
  dataClass: 'financial',
  jurisdiction,
  provenance: ['user'],
});
