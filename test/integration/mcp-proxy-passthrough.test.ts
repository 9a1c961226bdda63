/**
 * The MCP proxy passing server-to-client requests (sampling, elicitation) and resource
 * subscriptions between a host and the tool server, with real parts only: a real Countersign on
 * the examples/mcp pack, the reference `server-everything` as the tool server (its
 * `trigger-sampling-request`, `trigger-elicitation-request` and `toggle-subscriber-updates`
 * tools; its `get-roots-list` for roots), the reference `server-filesystem` (which replaces its
 * directories with the host's roots), and the MCP SDK's real client as the host, linked in
 * process (stdio's one connection) or over the proxy's Streamable HTTP listener (sessions).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, StreamableHTTPClientTransport, type CallToolResult } from '@modelcontextprotocol/client';
import { InMemoryTransport } from '@modelcontextprotocol/server';
import { parseMapping } from '../../main/mcp/mapping.js';
import { McpProxy } from '../../main/mcp/proxy.js';
import { listenMcpHttp, type McpHttpListener } from '../../main/mcp/http-listener.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import { EVERYTHING_SERVER, FILESYSTEM_SERVER, MAPS, PROXY_AGENT, startMcpHarness, type McpHarness } from '../helpers/mcp-harness.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

let m: McpHarness;
let proxy: McpProxy;
let listener: McpHttpListener;
const closers: Array<() => Promise<unknown>> = [];

const textOf = (result: CallToolResult): string => result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A host declaring sampling and elicitation, linked to the proxy in process. */
async function inProcessHost(): Promise<{ client: Client; logs: string[]; updated: string[] }> {
  const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
  await proxy.createServer().connect(proxySide);
  const client = new Client({ name: 'passthrough-host', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: { form: {} } } });
  const logs: string[] = [];
  const updated: string[] = [];
  client.setNotificationHandler('notifications/message', (n) => {
    logs.push(String(n.params.data));
  });
  client.setNotificationHandler('notifications/resources/updated', (n) => {
    updated.push(n.params.uri);
  });
  await client.connect(hostSide);
  closers.push(() => client.close());
  return { client, logs, updated };
}

/**
 * The everything server's sampling, elicitation and subscription tools are not in the mapping,
 * and this mapping holds unmapped tools for a person: approve the held call, as alice.
 */
async function approveNext(tool: string): Promise<void> {
  const held = await waitFor(
    async () => (await m.pending()).find((p) => p.tool === 'mcp.unmapped' && p.params.tool === tool),
    `the held ${tool} call`,
  );
  await m.approve(held.requestId, 'alice');
}

beforeAll(async () => {
  m = await startMcpHarness();
  proxy = await McpProxy.start({
    agentId: PROXY_AGENT,
    key: m.key,
    countersignUrl: m.h.app.url,
    mapping: parseMapping(parseStrictJson(readFileSync(MAPS.everything, 'utf8'))),
    domain: 'test',
    holdPollMs: 200,
    stateFile: `${m.dir}/passthrough-state.json`,
    downstream: { command: 'node', args: [EVERYTHING_SERVER, 'stdio'] },
  });
  listener = await listenMcpHttp(proxy, { port: 0 });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await listener.close();
  await proxy.close();
  await m.close();
});

describe('mcp-proxy passing server-to-client requests and subscriptions through', () => {
  it("passes the tool server's sampling request of an approved call to the host and the host's answer back", async () => {
    const { client } = await inProcessHost();
    const asked: string[] = [];
    client.setRequestHandler('sampling/createMessage', (request) => {
      const first = request.params.messages[0]?.content;
      asked.push(first && 'text' in first ? String(first.text) : '');
      return { role: 'assistant', model: 'host-model-7', content: { type: 'text', text: 'the host answered' } };
    });
    const call = client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'summarise the ledger', maxTokens: 20 } });
    await approveNext('trigger-sampling-request');
    const result = await call;
    expect(result.isError ?? false).toBe(false);
    expect(asked).toEqual([expect.stringContaining('summarise the ledger')]);
    expect(textOf(result)).toContain('the host answered');
    expect(textOf(result)).toContain('host-model-7');
  });

  it("passes the tool server's elicitation request to the host; the user's declining reaches the tool server", async () => {
    const { client } = await inProcessHost();
    const messages: string[] = [];
    client.setRequestHandler('elicitation/create', (request) => {
      messages.push(request.params.message);
      return { action: 'decline' };
    });
    const call = client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
    await approveNext('trigger-elicitation-request');
    const result = await call;
    expect(messages).toEqual([expect.stringContaining('Please provide inputs')]);
    expect(textOf(result)).toMatch(/decline/i);
  });

  it('passes the elicitation to a host connected over HTTP in a session, and its answer back', async () => {
    const client = new Client({ name: 'http-host', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } } });
    const transport = new StreamableHTTPClientTransport(new URL(listener.url));
    await client.connect(transport);
    closers.push(() => client.close());
    expect(transport.sessionId).toEqual(expect.any(String));
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { name: 'Olga', check: true } }));
    // Arguments differ per case: an identical approved call would get its recorded result back.
    const call = client.callTool({ name: 'trigger-elicitation-request', arguments: { case: 'http session' } });
    await approveNext('trigger-elicitation-request');
    const result = await call;
    expect(textOf(result)).toContain('Olga');
  });

  it('subscribes the tool server once for a host, relays its updates only to the subscribed host, and unsubscribes it', async () => {
    const subscriber = await inProcessHost();
    const bystander = await inProcessHost();
    const uri = (await subscriber.client.listResources()).resources[0]?.uri;
    expect(uri).toEqual(expect.any(String));
    await subscriber.client.subscribeResource({ uri: uri as string });
    await waitFor(
      () => subscriber.logs.find((l) => l.includes(`Received Subscribe Resource request for URI: ${uri}`)),
      'the subscribe at the tool server',
    );
    const toggle = subscriber.client.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
    await approveNext('toggle-subscriber-updates');
    expect((await toggle).isError ?? false).toBe(false);
    await waitFor(() => subscriber.updated.find((u) => u === uri), 'the resource update at the subscribed host');
    expect(bystander.updated).toEqual([]);
    await subscriber.client.unsubscribeResource({ uri: uri as string });
    await waitFor(
      () => subscriber.logs.find((l) => l.includes(`Received Unsubscribe Resource request: ${uri}`)),
      'the unsubscribe at the tool server',
    );
  });

  it("refuses the tool server's elicitation when the host did not declare elicitation, and the tool server gets the error", async () => {
    const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
    await proxy.createServer().connect(proxySide);
    const client = new Client({ name: 'plain-host', version: '1.0.0' });
    await client.connect(hostSide);
    closers.push(() => client.close());
    const call = client.callTool({ name: 'trigger-elicitation-request', arguments: { case: 'host without elicitation' } });
    await approveNext('trigger-elicitation-request');
    const result = await call;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/elicitation/i);
  });
});

describe('mcp-proxy passing roots/list through', () => {
  it("asks the host for roots when the tool server asks (everything's get-roots-list), and returns the host's list", async () => {
    const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
    await proxy.createServer().connect(proxySide);
    const client = new Client({ name: 'roots-host', version: '1.0.0' }, { capabilities: { roots: { listChanged: true } } });
    let asked = 0;
    client.setRequestHandler('roots/list', () => {
      asked++;
      return { roots: [{ uri: 'file:///srv/host-workspace', name: 'host workspace' }] };
    });
    await client.connect(hostSide);
    closers.push(() => client.close());
    const call = client.callTool({ name: 'get-roots-list', arguments: {} });
    await approveNext('get-roots-list');
    const result = await call;
    expect(result.isError ?? false).toBe(false);
    expect(textOf(result)).toContain('Current MCP Roots (1 total)');
    expect(textOf(result)).toContain('URI: file:///srv/host-workspace');
    expect(textOf(result)).toContain('host workspace');
    expect(asked).toBeGreaterThanOrEqual(1);
  });

  it("serves the filesystem server the host's roots: asked at its start (before the host connected) and again on roots/list_changed", async () => {
    const started = join(m.dir, 'roots-started-with');
    const offered = join(m.dir, 'roots-offered-by-host');
    const changed = join(m.dir, 'roots-changed-by-host');
    for (const dir of [started, offered, changed]) mkdirSync(dir, { recursive: true });
    // The tool server asks for roots as soon as its handshake ends, which is before any host is
    // linked here: the proxy holds that request until the host below has initialized.
    const fsProxy = await McpProxy.start({
      agentId: PROXY_AGENT,
      key: m.key,
      countersignUrl: m.h.app.url,
      mapping: parseMapping(parseStrictJson(readFileSync(MAPS.filesystem, 'utf8'))),
      domain: 'test',
      stateFile: `${m.dir}/roots-state.json`,
      downstream: { command: 'node', args: [FILESYSTEM_SERVER, started] },
    });
    closers.push(() => fsProxy.close());
    let roots = [{ uri: pathToFileURL(offered).href, name: 'offered' }];
    const asked: string[][] = [];
    const client = new Client({ name: 'roots-host', version: '1.0.0' }, { capabilities: { roots: { listChanged: true } } });
    client.setRequestHandler('roots/list', () => {
      asked.push(roots.map((r) => r.uri));
      return { roots };
    });
    const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
    await fsProxy.createServer().connect(proxySide);
    await client.connect(hostSide);
    closers.push(() => client.close());
    // list_allowed_directories is the server's own view (fs.list, allowed by the example policy).
    const allowed = async () => textOf(await client.callTool({ name: 'list_allowed_directories', arguments: {} }));
    await waitFor(async () => ((await allowed()).includes(offered) ? true : undefined), "the host's root at the filesystem server");
    expect(await allowed()).not.toContain(started);
    expect(asked[0]).toEqual([pathToFileURL(offered).href]);

    roots = [{ uri: pathToFileURL(changed).href, name: 'changed' }];
    await client.sendRootsListChanged();
    await waitFor(async () => ((await allowed()).includes(changed) ? true : undefined), "the host's changed root at the filesystem server");
    expect(await allowed()).not.toContain(offered);
    expect(asked.at(-1)).toEqual([pathToFileURL(changed).href]);
  });
});
