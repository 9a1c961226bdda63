/**
 * `--demo`: enroll two demo agents (a finance agent and a deploy agent) on first run and have
 * them send sample calls every few seconds through the real SDK over a real WebSocket, so a
 * newcomer sees allow, deny and pending decisions flow within a minute. A demo "tool server"
 * verifies each token with the shipped verifier, as a real one would before acting.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { RunningCountersign } from '../core/app.js';
import { AgentClient, type SubmitCall, type WebSocketLike } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { MemoryJtiStore } from '../../shared/verify-approval-token.js';
import { verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { isCountersignError } from '../../shared/errors.js';
import type { AgentScope } from '../core/identity/agent-registry.js';
import { readAgentKeyFile, writeAgentKeyFile } from './agent-key-file.js';
import { jwksFor } from '../core/tokens/jwks.js';
import { parseStoredRisk } from '../../shared/risk.js';

interface DemoAgent {
  id: string;
  name: string;
  /** The owner is a person of the approver directory: added (id, name, email alias) if missing. */
  owner: { id: string; name: string; alias: string };
  scope: AgentScope;
  calls: Array<{ label: string; call: SubmitCall }>;
}

const transfer = (amount: string, payee: string, jurisdiction = 'US', provenance = ['user']): SubmitCall => ({
  tool: 'payments.transfer',
  params: { amount, currency: 'USD', payee, memo: `invoice ${amount}` },
  dataClass: 'financial',
  jurisdiction,
  provenance,
});

export const DEMO_AGENTS: DemoAgent[] = [
  {
    id: 'finance-bot',
    name: 'Accounts payable agent',
    owner: { id: 'dana', name: 'Dana (finance)', alias: 'dana@example.com' },
    scope: { owner: 'dana@example.com', group: 'finance-agents', allowedTools: ['payments.transfer'], dataClasses: ['financial'], jurisdictions: ['US', 'GB'] },
    calls: [
      { label: 'pay 250.00 USD to Acme Ltd (known payee)', call: transfer('250.00', 'Acme Ltd') },
      // The same payment, but the instruction came from an external email: the risk scorer's
      // untrusted_provenance factor takes it past the automatic tier (docs/risk.md).
      { label: 'pay 250.00 USD to Acme Ltd, as an external email asked', call: transfer('250.00', 'Acme Ltd', 'US', ['email:external']) },
      { label: 'pay 48,000.00 USD to Northwind Traders (new payee)', call: transfer('48000.00', 'Northwind Traders') },
      { label: 'pay 4,200.00 USD to Globex Corporation', call: transfer('4200.00', 'Globex Corporation') },
      { label: 'pay 900.00 USD to a payee in KP', call: transfer('900.00', 'Pyongyang Trading', 'KP') },
      { label: 'pay 120.50 EUR to Initech LLC', call: { ...transfer('120.50', 'Initech LLC'), params: { amount: '120.50', currency: 'EUR', payee: 'Initech LLC', memo: 'eur invoice' } } },
    ],
  },
  {
    id: 'deploy-bot',
    name: 'Release agent',
    owner: { id: 'sam', name: 'Sam (SRE)', alias: 'sam@example.com' },
    scope: { owner: 'sam@example.com', group: 'deploy-agents', allowedTools: ['deploy.staging', 'deploy.production'], dataClasses: ['source-code'], jurisdictions: ['US'] },
    calls: [
      { label: 'deploy checkout@4f2c1a to staging', call: { tool: 'deploy.staging', params: { service: 'checkout', diff: 'bump checkout to 4f2c1a' }, dataClass: 'source-code', jurisdiction: 'US', provenance: ['ci'] } },
      { label: 'deploy checkout@4f2c1a to production', call: { tool: 'deploy.production', params: { service: 'checkout', environment: 'production-eu', changeId: 'CHG-1042', diff: '- replicas: 4\n+ replicas: 6' }, dataClass: 'source-code', jurisdiction: 'US', provenance: ['ci'] } },
    ],
  },
];

async function ensureAgent(app: RunningCountersign, dir: string, agent: DemoAgent) {
  const keyFile = join(dir, `${agent.id}.key.json`);
  if (!existsSync(keyFile) || !app.registry.getAgent(agent.id)) {
    if (app.registry.getAgent(agent.id)) app.registry.revoke(agent.id, 'demo key file missing');
    const privateJwk = await generateAgentKey('EdDSA');
    const key = await importAgentKey(privateJwk);
    const payload = await verifyEnrollmentRequest(await createEnrollmentRequest(key, agent.id, agent.name));
    if (!app.registry.getAgent(agent.id)) {
      if (existsSync(keyFile)) throw new Error(`demo key file ${keyFile} exists for an agent that is not enrolled; remove it`);
      writeAgentKeyFile(keyFile, { agentId: agent.id, privateJwk });
      if (app.approvers.resolvePerson(agent.owner.alias) === undefined) {
        app.approvers.addApprover({ id: agent.owner.id, displayName: agent.owner.name, groups: [], aliases: [agent.owner.alias] });
      }
      app.registry.enroll(payload, agent.scope);
    }
  }
  return importAgentKey((await readAgentKeyFile(keyFile)).privateJwk);
}

/** The risk the scorer recorded for a request, for the demo's output (agents are not told it). */
function riskLine(app: RunningCountersign, requestId: string): string {
  const row = app.db.prepare<[string], { risk: string }>('SELECT risk FROM requests WHERE id = ?').get(requestId);
  if (!row) return 'risk: not recorded';
  const risk = parseStoredRisk(row.risk);
  const factors = risk.factors.filter((f) => f.points > 0);
  return `risk ${risk.score}/100${factors.length === 0 ? '' : `: ${factors.map((f) => `${f.name} +${f.points} (${f.explanation})`).join('; ')}`}`;
}

/** Start the demo agents; returns a function that stops them. */
export async function runDemo(app: RunningCountersign, print: (line: string) => void): Promise<() => void> {
  const dir = join(app.dataDir, 'demo-agents');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const jwks = jwksFor([app.signer]);
  const jtis = new MemoryJtiStore();
  const clients: AgentClient[] = [];
  const timers: NodeJS.Timeout[] = [];
  print(`demo: ${DEMO_AGENTS.length} agents send sample calls to ${app.url}; ctrl-c to stop`);

  for (const agent of DEMO_AGENTS) {
    const key = await ensureAgent(app, dir, agent);
    const client = new AgentClient({
      url: app.url, agentId: agent.id, key,
      webSocket: (url, protocols) => new WebSocket(url, protocols) as unknown as WebSocketLike,
      onDecision: (r) => print(`  [${agent.id}] ${r.requestId} is now ${r.state.toUpperCase()}`),
    });
    clients.push(client);
    let next = 0;
    const tick = async () => {
      const entry = agent.calls[next++ % agent.calls.length]!;
      try {
        const result = await client.submit(entry.call);
        const why = result.reasons.join('; ');
        let line = `[${agent.id}] ${entry.label}: ${result.decision.toUpperCase()} — ${why}`;
        if (result.approval) line += ` (needs ${result.approval.approvals} approver(s) from ${result.approval.groups.map((g) => g.join(' or ')).join(' and ')})`;
        line += `\n    ${riskLine(app, result.requestId)}`;
        if (result.token) {
          const verified = await verifyApprovalToken(result.token, {
            call: { tool: entry.call.tool, params: entry.call.params }, audience: app.policy.tool(entry.call.tool)?.audience ?? '',
            keys: jwks, jtiStore: jtis, domain: app.config.domain, issuer: app.issuer.issuer,
          });
          line += `\n    tool server verified the token: jti ${verified.jti}, expires in ${verified.exp - verified.iat} s`;
        }
        print(line);
      } catch (error) {
        print(`[${agent.id}] ${entry.label}: ERROR ${isCountersignError(error) ? `${error.code}: ${error.message}` : String(error)}`);
      }
    };
    await client.connect();
    await tick();
    const timer = setInterval(() => void tick(), 4_000);
    timers.push(timer);
  }
  return () => {
    for (const t of timers) clearInterval(t);
    for (const c of clients) c.close();
  };
}
