/**
 * Example downstream MCP server (stdio) that trusts nobody, not even the proxy: its `pay` tool
 * runs only when the forwarded call's `_meta` carries a Countersign token approving exactly these
 * arguments (shared/verify-mcp-approval.ts). Each payment is appended to a ledger file, so a test
 * can see what ran. Run behind the proxy:
 *
 *   COUNTERSIGN_JWKS_URL=http://127.0.0.1:7345/.well-known/jwks.json PAYMENTS_LEDGER=/tmp/ledger.jsonl \
 *   countersign mcp-proxy --agent agent.key --map examples/mcp/payments-map.json -- npx tsx examples/mcp/payments-server.ts
 */
import { appendFileSync } from 'node:fs';
import { Server, type CallToolResult, type Tool } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { MemoryJtiStore, type JwkLike } from '../../shared/verify-approval-token.js';
import { verifyMcpApproval } from '../../shared/verify-mcp-approval.js';
import { isCountersignError } from '../../shared/errors.js';
import type { JsonObject } from '../../shared/canonical-json.js';

const jwksUrl = process.env.COUNTERSIGN_JWKS_URL ?? 'http://127.0.0.1:7345/.well-known/jwks.json';
const domain = process.env.COUNTERSIGN_DOMAIN === 'test' ? 'test' : 'production';
const ledger = process.env.PAYMENTS_LEDGER;
/** One replay store for this process: a token pays once. */
const jtiStore = new MemoryJtiStore();
let keys: { keys: JwkLike[] } | undefined;

async function trustedKeys(refresh = false): Promise<{ keys: JwkLike[] }> {
  if (!keys || refresh) keys = (await (await fetch(jwksUrl)).json()) as { keys: JwkLike[] };
  return keys;
}

/** `refund` appears at run time (SIGUSR2), to show that new tools reach the host and stay unmapped. */
let refundsEnabled = false;
const servers = new Set<Server>();

const text = (value: string, isError = false): CallToolResult => ({
  content: [{ type: 'text', text: value }],
  ...(isError ? { isError: true } : {}),
});

function createServer(): Server {
  const server = new Server({ name: 'example-payments', version: '1.0.0' }, { capabilities: { tools: { listChanged: true } } });
  servers.add(server);
  const refund: Tool = {
    name: 'refund',
    description: 'Refund a payment by its request id.',
    inputSchema: { type: 'object', properties: { requestId: { type: 'string' } }, required: ['requestId'] },
    annotations: { destructiveHint: true, readOnlyHint: false },
  };
  server.setRequestHandler('tools/list', () => ({
    tools: [
      ...(refundsEnabled ? [refund] : []),
      {
        name: 'pay',
        description: 'Pay an amount (a decimal string, e.g. "12.50") to a payee.',
        inputSchema: {
          type: 'object',
          properties: { amount: { type: 'string' }, payee: { type: 'string' } },
          required: ['amount', 'payee'],
        },
        annotations: { destructiveHint: true, readOnlyHint: false, idempotentHint: false, openWorldHint: true },
      },
    ],
  }));
  server.setRequestHandler('tools/call', async (request, ctx) => {
    if (request.params.name !== 'pay') return text(`unknown tool ${JSON.stringify(request.params.name)}`, true);
    const args = (request.params.arguments ?? {}) as JsonObject;
    const check = async (refresh: boolean) =>
      verifyMcpApproval(ctx.mcpReq._meta, {
        server: 'payments',
        mcpTool: 'pay',
        arguments: args,
        audience: 'mcp:payments',
        keys: await trustedKeys(refresh),
        jtiStore,
        domain,
      });
    let requestId: string;
    try {
      requestId = (
        await check(false).catch((error: unknown) => {
          if (isCountersignError(error, 'token_kid_unknown')) return check(true);
          throw error;
        })
      ).decision.id;
    } catch (error) {
      const code = isCountersignError(error) ? error.code : 'internal_error';
      return text(`refused: no valid Countersign approval for this exact call (${code})`, true);
    }
    if (ledger) appendFileSync(ledger, `${JSON.stringify({ requestId, amount: args.amount, payee: args.payee })}\n`);
    return text(`paid ${JSON.stringify(args.amount)} to ${JSON.stringify(args.payee)} (approved by Countersign request ${requestId})`);
  });
  return server;
}

const handle = serveStdio(createServer);
process.on('SIGUSR2', () => {
  refundsEnabled = true;
  for (const server of servers) server.sendToolListChanged().catch(() => undefined);
});
process.stdin.once('end', () => void handle.close());
