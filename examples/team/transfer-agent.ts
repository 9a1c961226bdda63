/**
 * A one-call agent for the team-mode walkthrough (README "Team mode"): it connects to a hub over
 * wss:// with the hub's certificate pinned, submits one payments.transfer and waits for its end,
 * printing each step. Usage:
 *   npx tsx examples/team/transfer-agent.ts --hub wss://countersign.test:7402 \
 *     --fingerprint AB:CD:... --key finance-bot.key.json --amount 48000.00 --payee "Northwind Traders"
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AgentClient } from '../../shared/agent-client.js';
import { importAgentKey } from '../../shared/agent-keys.js';
import { readTlsTrust, tlsWebSocketFactory } from '../../main/mcp/tls-trust.js';

const { values } = parseArgs({
  options: {
    hub: { type: 'string' },
    fingerprint: { type: 'string' },
    ca: { type: 'string' },
    key: { type: 'string' },
    amount: { type: 'string', default: '48000.00' },
    payee: { type: 'string', default: 'Northwind Traders' },
    memo: { type: 'string', default: 'walkthrough' },
  },
});
if (values.hub === undefined || values.key === undefined || (values.fingerprint === undefined && values.ca === undefined)) {
  console.error(
    'usage: transfer-agent.ts --hub wss://HOST:PORT (--fingerprint HEX | --ca FILE) --key AGENT.key.json [--amount 48000.00] [--payee NAME]',
  );
  process.exit(2);
}

const keyFile = JSON.parse(readFileSync(values.key, 'utf8')) as { agentId: string; privateJwk: Parameters<typeof importAgentKey>[0] };
const client = new AgentClient({
  url: values.hub,
  agentId: keyFile.agentId,
  key: await importAgentKey(keyFile.privateJwk),
  webSocket: tlsWebSocketFactory(readTlsTrust({ fingerprint256: values.fingerprint, caFile: values.ca })),
});
await client.connect();
const call = {
  tool: 'payments.transfer',
  params: { amount: values.amount, currency: 'USD', payee: values.payee, memo: values.memo },
  dataClass: 'financial',
  jurisdiction: 'US',
  provenance: ['user'],
};
const submitted = await client.submit(call);
console.log(JSON.stringify({ submitted: submitted.decision, requestId: submitted.requestId, reasons: submitted.reasons }));
const result = submitted.decision === 'pending' ? await client.waitForDecision(submitted.requestId, { timeoutMs: 15 * 60_000 }) : submitted;
console.log(
  JSON.stringify({
    decision: result.decision,
    state: result.state,
    requestId: result.requestId,
    token: result.token === undefined ? undefined : `${result.token.slice(0, 24)}…`,
    reasons: result.reasons,
  }),
);
client.close();
