/**
 * Runs the official `@modelcontextprotocol/conformance` server suite against the MCP proxy's
 * server side: a real Countersign (examples/mcp policy pack, test domain), the proxy in front of
 * the reference `server-everything`, served over Streamable HTTP on a loopback port with the
 * SDK's `createMcpHandler` for the run (the product serves hosts on stdio). Prints the suite's
 * own report. `npx tsx bench/mcp-conformance.ts [extra conformance args, e.g. --scenario tools-list]`
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMcpHandler } from '@modelcontextprotocol/server';
import { REPO_ROOT, startCountersign } from '../main/core/app.js';
import { generateAgentKey, importAgentKey } from '../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../shared/enrollment.js';
import { McpProxy } from '../main/mcp/proxy.js';
import { parseMapping } from '../main/mcp/mapping.js';
import { parseStrictJson } from '../shared/canonical-json.js';
import { ensurePeople } from '../test/helpers/harness.js';

const EVERYTHING = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const CONFORMANCE = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');

const dataDir = mkdtempSync(join(tmpdir(), 'countersign-conformance-'));
writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ domain: 'test', policyDir: join(REPO_ROOT, 'examples', 'mcp'), gateway: { port: 0 }, risk: { enabled: false } }));
const app = await startCountersign({ dataDir, log: () => undefined });
const key = await importAgentKey(await generateAgentKey('EdDSA'));
ensurePeople(app, 'olga@example.com');
app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'conformance-proxy', 'conformance-proxy')), {
  owner: 'olga@example.com', group: 'mcp-agents', allowedTools: ['demo.echo', 'demo.sum', 'demo.wait', 'mcp.unmapped'], dataClasses: ['unclassified'], jurisdictions: ['US'],
});
const mapping = parseMapping(parseStrictJson(readFileSync(join(REPO_ROOT, 'examples', 'mcp', 'everything-map.json'), 'utf8')));
const proxy = await McpProxy.start({ agentId: 'conformance-proxy', key, countersignUrl: app.url, mapping, domain: 'test', downstream: { command: 'node', args: [EVERYTHING, 'stdio'] } });
const handler = createMcpHandler(() => proxy.createServer());

const http = createServer((req, res) => {
  void (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string') headers.set(name, value);
    const method = req.method ?? 'GET';
    const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, { method, headers, body: method === 'GET' || method === 'HEAD' ? undefined : Buffer.concat(chunks) });
    const response = await handler.fetch(request);
    const out: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      out[name] = value;
    });
    res.writeHead(response.status, out);
    const reader = response.body?.getReader();
    for (;;) {
      const next = await reader?.read();
      if (!next || next.done) break;
      res.write(next.value);
    }
    res.end();
  })().catch((error: unknown) => {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(error));
  });
});
await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
const port = (http.address() as AddressInfo).port;
const outDir = join(dataDir, 'results');
// Asynchronously: the proxy answers the suite from this very process.
const status = await new Promise<number>((resolve) => {
  const child = spawn('node', ['--import', join(REPO_ROOT, 'bench', 'node20-conformance-register.mjs'), CONFORMANCE, 'server', '--url', `http://localhost:${port}/mcp`, '-o', outDir, ...process.argv.slice(2)], { stdio: 'inherit' });
  child.on('exit', (code) => resolve(code ?? 1));
});
http.close();
await handler.close();
await proxy.close();
await app.close();
rmSync(dataDir, { recursive: true, force: true });
process.exit(status);
