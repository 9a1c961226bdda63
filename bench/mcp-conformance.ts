/**
 * Runs the official `@modelcontextprotocol/conformance` server suite against the MCP proxy's
 * server side: a real Countersign (examples/mcp policy pack, test domain), the proxy in front of
 * bench/mcp-conformance-server.ts (the tools, resources and prompts the scenarios name), served over Streamable HTTP on a loopback port by the
 * proxy's own listener (main/mcp/http-listener.ts, as `--listen`). Prints the suite's
 * own report. `npx tsx bench/mcp-conformance.ts [extra conformance args, e.g. --scenario tools-list]`
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startCountersign } from '../main/core/app.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { McpProxy } from '../main/mcp/proxy.js';
import { listenMcpHttp } from '../main/mcp/http-listener.js';
import { parseMapping } from '../main/mcp/mapping.js';
import { ensurePeople } from '../test/helpers/harness.js';

const TOOL_SERVER = join(REPO_ROOT, 'bench', 'mcp-conformance-server.ts');
const CONFORMANCE = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');

const dataDir = mkdtempSync(join(tmpdir(), 'countersign-conformance-'));
writeFileSync(
  join(dataDir, 'config.json'),
  JSON.stringify({ domain: 'test', policyDir: join(REPO_ROOT, 'examples', 'mcp'), gateway: { port: 0 }, risk: { enabled: false } }),
);
const app = await startCountersign({ dataDir, log: () => undefined });
const key = await importAgentKey(await generateAgentKey('EdDSA'));
ensurePeople(app, 'olga@example.com');
app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'conformance-proxy', 'conformance-proxy')), {
  owner: 'olga@example.com',
  group: 'mcp-agents',
  allowedTools: ['demo.echo', 'demo.sum', 'demo.wait', 'mcp.unmapped'],
  dataClasses: ['unclassified'],
  jurisdictions: ['US'],
});
// Every tool of the conformance tool server maps to demo.echo, which the examples/mcp policy
// allows at once for read-only tools: the suite measures the proxy's protocol handling.
const CONFORMANCE_TOOLS = [
  'test_simple_text',
  'test_image_content',
  'test_audio_content',
  'test_embedded_resource',
  'test_multiple_content_types',
  'test_tool_with_logging',
  'test_tool_with_progress',
  'test_error_handling',
  'test_sampling',
  'test_elicitation',
  'test_elicitation_sep1034_defaults',
  'test_elicitation_sep1330_enums',
];
const mapping = parseMapping({
  server: 'conformance',
  audience: 'mcp:everything',
  dataClass: 'unclassified',
  jurisdiction: 'US',
  unmapped: 'deny',
  tools: Object.fromEntries(CONFORMANCE_TOOLS.map((name) => [name, { tool: 'demo.echo' }])),
});
const proxy = await McpProxy.start({
  agentId: 'conformance-proxy',
  key,
  countersignUrl: app.url,
  mapping,
  domain: 'test',
  downstream: { command: 'node', args: ['--import', 'tsx', TOOL_SERVER] },
});
// The product's own HTTP listener (loopback, Host/Origin allowlist, body limit).
const listener = await listenMcpHttp(proxy, { port: 0 });
const port = listener.port;
const outDir = join(dataDir, 'results');
// Asynchronously: the proxy answers the suite from this very process.
const status = await new Promise<number>((resolve) => {
  const child = spawn(
    'node',
    [
      '--import',
      join(REPO_ROOT, 'bench', 'node20-conformance-register.mjs'),
      CONFORMANCE,
      'server',
      '--url',
      `http://localhost:${port}/mcp`,
      '-o',
      outDir,
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit' },
  );
  child.on('exit', (code) => resolve(code ?? 1));
});
await listener.close();
await proxy.close();
await app.close();
rmSync(dataDir, { recursive: true, force: true });
process.exit(status);
