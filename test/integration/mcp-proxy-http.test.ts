/**
 * The MCP proxy's Streamable HTTP listener toward hosts and its resources/prompts passthrough,
 * with real parts only: a real Countersign on the examples/mcp pack, the reference
 * `server-everything` as the tool server, and the MCP SDK's real Streamable HTTP client as the
 * host (2025 handshake and the 2026-07-28 revision). Refusals are checked with raw HTTP requests.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { spawn } from 'node:child_process';
import { Client, StreamableHTTPClientTransport, type CallToolResult } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { InMemoryTransport } from '@modelcontextprotocol/server';
import { parseMapping } from '../../main/mcp/mapping.js';
import { McpProxy } from '../../main/mcp/proxy.js';
import { listenMcpHttp, parseListenAddress, type McpHttpListener } from '../../main/mcp/http-listener.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import { CLI, EVERYTHING_SERVER, MAPS, NODE, PROXY_AGENT, startMcpHarness, type McpHarness } from '../helpers/mcp-harness.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

let m: McpHarness;
let proxy: McpProxy;
let listener: McpHttpListener;
let caseNo = 0;
const closers: Array<() => Promise<unknown>> = [];

const everythingMap = () => parseMapping(parseStrictJson(readFileSync(MAPS.everything, 'utf8')));
const textOf = (result: CallToolResult): string => result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

async function startProxy(mapping = everythingMap()): Promise<McpProxy> {
  const started = await McpProxy.start({
    agentId: PROXY_AGENT,
    key: m.key,
    countersignUrl: m.h.app.url,
    mapping,
    domain: 'test',
    holdPollMs: 200,
    stateFile: `${m.dir}/http-state-${++caseNo}.json`,
    downstream: { command: 'node', args: [EVERYTHING_SERVER, 'stdio'] },
  });
  closers.push(() => started.close());
  return started;
}

async function httpHost(url: string, options: ConstructorParameters<typeof Client>[1] = {}): Promise<Client> {
  const client = new Client({ name: 'http-host', version: '1.0.0' }, options);
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  closers.push(() => client.close());
  return client;
}

/** One raw HTTP POST (node:http, so the Host header is exactly what the test says). */
function rawPost(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString('utf8');
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});
const echoCall = (message: string) =>
  JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message } } });

beforeAll(async () => {
  m = await startMcpHarness();
  proxy = await startProxy();
  listener = await listenMcpHttp(proxy, { port: 0, maxBodyBytes: 64 * 1024 });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await listener.close();
  await m.close();
});

describe('mcp-proxy serving hosts over Streamable HTTP', () => {
  it("binds loopback by default and serves the SDK's real HTTP client on the 2025 handshake: tools listed and an allowed call forwarded", async () => {
    expect(listener.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const client = await httpHost(listener.url);
    expect(client.getNegotiatedProtocolVersion()).toMatch(/^2025-/);
    const tools = (await client.listTools()).tools;
    expect(tools.find((t) => t.name === 'echo')?.annotations).toMatchObject({ readOnlyHint: true });
    const echoed = await client.callTool({ name: 'echo', arguments: { message: 'over the listener' } });
    expect(echoed.isError ?? false).toBe(false);
    expect(textOf(echoed)).toContain('over the listener');
  });

  it('serves a client pinned to the 2026-07-28 revision: the same tools and the same gated call', async () => {
    const client = await httpHost(listener.url, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
    expect(client.getNegotiatedProtocolVersion()).toBe('2026-07-28');
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('echo');
    const echoed = await client.callTool({ name: 'echo', arguments: { message: 'modern' } });
    expect(textOf(echoed)).toContain('modern');
  });

  it('refuses a request whose Host header is not a loopback name (DNS rebinding), and the call is never made', async () => {
    const decisions = async () => {
      const { json } = await m.api('/api/ui/decisions?limit=500');
      return (Array.isArray(json) ? json : (json.decisions as unknown[])).length;
    };
    const before = await decisions();
    const refused = await rawPost(listener.url, { host: `attacker.example:${listener.port}` }, initialize);
    expect(refused.status).toBe(403);
    expect(refused.text).toMatch(/Invalid Host/);
    const call = await rawPost(listener.url, { host: `rebound.example:${listener.port}` }, echoCall('must not run'));
    expect(call.status).toBe(403);
    expect(await decisions()).toBe(before);
  });

  it('refuses a browser request from a foreign Origin, and accepts one from a loopback origin', async () => {
    const foreign = await rawPost(listener.url, { origin: 'https://evil.example' }, initialize);
    expect(foreign.status).toBe(403);
    expect(foreign.text).toMatch(/Invalid Origin/);
    const local = await rawPost(listener.url, { origin: `http://localhost:${listener.port}` }, initialize);
    expect(local.status).toBe(200);
  });

  it('answers 413 to a body over the limit before parsing it', async () => {
    const big = echoCall('z'.repeat(70 * 1024));
    const declared = await rawPost(listener.url, { 'content-length': String(Buffer.byteLength(big)) }, big);
    expect(declared.status).toBe(413);
    // The frame_too_large record's JSON-RPC number, not a literal -32600.
    expect(JSON.parse(declared.text)).toMatchObject({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32005, data: { code: 'frame_too_large' } },
    });
    const chunked = await rawPost(listener.url, { 'transfer-encoding': 'chunked' }, big);
    expect(chunked.status).toBe(413);
    // The listener still serves afterwards.
    const ok = await rawPost(listener.url, {}, initialize);
    expect(ok.status).toBe(200);
  });

  it('answers 404 on any other path', async () => {
    const other = await rawPost(listener.url.replace(/\/mcp$/, '/other'), {}, initialize);
    expect(other.status).toBe(404);
  });

  it("`countersign mcp-proxy --listen` serves the SDK's HTTP client from the CLI, and refuses a malformed address before starting anything", async () => {
    const base = [
      CLI,
      'mcp-proxy',
      '--agent',
      m.keyFile,
      '--countersign',
      m.h.app.url,
      '--domain',
      'test',
      '--state',
      `${m.dir}/cli-listen-state.json`,
      '--map',
      MAPS.everything,
    ];
    const child = spawn(NODE, [...base, '--listen', '127.0.0.1:0', '--', 'node', EVERYTHING_SERVER, 'stdio'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    closers.push(() => Promise.resolve(child.kill('SIGTERM')));
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
        const found = /serving MCP over Streamable HTTP at (\S+)/.exec(stderr);
        if (found?.[1]) resolve(found[1]);
      });
      child.on('exit', (code) => reject(new Error(`the proxy exited (${code}): ${stderr}`)));
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const client = await httpHost(url);
    expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'from the cli listener' } }))).toContain(
      'from the cli listener',
    );

    const bad = spawn(NODE, [...base, '--listen', 'localhost:99999', '--', 'node', EVERYTHING_SERVER, 'stdio'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let badErr = '';
    bad.stderr.on('data', (chunk: Buffer) => {
      badErr += chunk.toString('utf8');
    });
    const code = await new Promise<number | null>((resolve) => bad.on('exit', resolve));
    expect(code).not.toBe(0);
    expect(badErr).toMatch(/--listen "localhost:99999" must be HOST:PORT/);
  });

  it('parses --listen values and refuses malformed ones', () => {
    expect(parseListenAddress('7400')).toEqual({ host: '127.0.0.1', port: 7400 });
    expect(parseListenAddress('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseListenAddress('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(() => parseListenAddress('localhost:99999')).toThrow(/HOST:PORT/);
    expect(() => parseListenAddress('http://x:1')).toThrow(/HOST:PORT/);
  });
});

describe('mcp-proxy passing resources, prompts and completions through', () => {
  async function direct(): Promise<Client> {
    const client = new Client({ name: 'direct', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: 'node', args: [EVERYTHING_SERVER, 'stdio'], stderr: 'ignore' }));
    closers.push(() => client.close());
    return client;
  }
  async function linked(p: McpProxy): Promise<Client> {
    const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
    await p.createServer().connect(proxySide);
    const client = new Client({ name: 'host', version: '1.0.0' });
    await client.connect(hostSide);
    closers.push(() => client.close());
    return client;
  }

  it("lists and reads the everything server's resources and gets its prompts exactly as a direct client does", async () => {
    const [through, plain] = await Promise.all([httpHost(listener.url), direct()]);
    const listed = await through.listResources();
    expect(listed.resources.length).toBeGreaterThan(0);
    expect(listed).toEqual(await plain.listResources());
    expect(await through.listResourceTemplates()).toEqual(await plain.listResourceTemplates());
    const uri = listed.resources[0]?.uri ?? '';
    expect(await through.readResource({ uri })).toEqual(await plain.readResource({ uri }));
    const prompts = await through.listPrompts();
    expect(prompts.prompts.length).toBeGreaterThan(0);
    expect(prompts).toEqual(await plain.listPrompts());
    const simple = prompts.prompts.find((p) => (p.arguments ?? []).every((a) => !a.required));
    expect(simple).toBeDefined();
    expect(await through.getPrompt({ name: simple?.name ?? '' })).toEqual(await plain.getPrompt({ name: simple?.name ?? '' }));
    // Nothing of this is a tool call: Countersign saw no request for it.
    expect((await m.pending()).length).toBe(0);
  });

  it('hides resources and prompts when the mapping says refuse', async () => {
    const mapping = parseMapping({
      ...(parseStrictJson(readFileSync(MAPS.everything, 'utf8')) as object),
      resources: 'refuse',
      prompts: 'refuse',
    });
    const client = await linked(await startProxy(mapping));
    expect((await client.listResources()).resources).toEqual([]);
    expect((await client.listPrompts()).prompts).toEqual([]);
    await expect(client.readResource({ uri: 'demo://resource/static/document/architecture.md' })).rejects.toThrow(/not found/i);
    await expect(client.getPrompt({ name: 'simple-prompt' })).rejects.toThrow(/unknown prompt/);
    // Tools are still served.
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('echo');
  });

  it('refuses a mapping whose resources member is neither pass nor refuse', () => {
    expect(() => parseMapping({ server: 's', audience: 'a', resources: 'allow' })).toThrow(/at resources/);
  });
});

describe('mcp-proxy holds on the 2026-07-28 revision', () => {
  const modernHost = async (
    onDesk: (params: { url?: string; message: string }) => Promise<{ action: 'accept' | 'decline' | 'cancel' }>,
  ) => {
    const client = await httpHost(listener.url, {
      versionNegotiation: { mode: { pin: '2026-07-28' } },
      capabilities: { elicitation: { url: {} } },
    });
    client.setRequestHandler('elicitation/create', async (request) => onDesk(request.params as { url?: string; message: string }));
    return client;
  };
  const heldGetEnv = async () => (await m.pending()).filter((p) => p.tool === 'mcp.unmapped' && p.params.tool === 'get-env');

  it('answers a held call with a URL elicitation naming the request in the desk; the host opens it, retries with the sealed state and gets the result after approval, from one request', async () => {
    const asked: Array<{ url?: string; message: string }> = [];
    const client = await modernHost(async (params) => {
      asked.push(params);
      // The person opens the desk page and approves there (a virtual approver here).
      const [held] = await heldGetEnv();
      if (held) await m.approve(held.requestId, 'alice');
      return { action: 'accept' };
    });
    const result = await client.callTool({ name: 'get-env', arguments: {} });
    expect(result.isError ?? false, textOf(result)).toBe(false);
    expect(textOf(result)).toContain('PATH');
    expect(asked).toHaveLength(1);
    const requestId = /#request=(.+)$/.exec(asked[0]?.url ?? '')?.[1] ?? '';
    expect(asked[0]?.url).toBe(`http://127.0.0.1:${m.h.app.port}/ui/#request=${requestId}`);
    expect(asked[0]?.message).toMatch(new RegExp(`needs 1 approver \\(0 so far\\).*${requestId}`));
    expect(await heldGetEnv()).toHaveLength(0);
  });

  it('tells the host the call is still waiting when the desk is declined; a 2025 host retrying the same call joins the same request', async () => {
    const client = await modernHost(() => Promise.resolve({ action: 'decline' }));
    // Arguments of its own: the approved get-env of the case above is a finished call whose
    // result the hold record replays for ten minutes.
    const args = { note: 'declined at first' };
    const declined = await client.callTool({ name: 'get-env', arguments: args });
    expect(declined.isError).toBe(true);
    const outcome = declined._meta?.['dev.countersign/outcome'] as { code: string; requestId: string };
    expect(outcome.code).toBe('timeout');
    const pending = await heldGetEnv();
    expect(pending.map((p) => p.requestId)).toEqual([outcome.requestId]);
    // The same call from a 2025 host: progress, not an elicitation, and no second request.
    const legacy = await httpHost(listener.url);
    const progress: string[] = [];
    const retried = legacy.callTool(
      { name: 'get-env', arguments: args },
      { onprogress: (p) => progress.push(p.message ?? ''), resetTimeoutOnProgress: true },
    );
    const deadline = Date.now() + 30_000;
    while (!progress.some((p) => p.includes(outcome.requestId)) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await heldGetEnv()).map((p) => p.requestId)).toEqual([outcome.requestId]);
    await m.approve(outcome.requestId, 'alice');
    expect(textOf(await retried)).toContain('PATH');
  });

  it('refuses a retry that carries the sealed state of a different call, and a forged state', async () => {
    const client = await modernHost(() => Promise.resolve({ action: 'accept' }));
    const first = (await client.callTool({ name: 'get-env', arguments: { note: 'first' } }, { allowInputRequired: true })) as unknown as {
      resultType?: string;
      requestState?: string;
    };
    expect(first.resultType).toBe('input_required');
    expect(typeof first.requestState).toBe('string');
    const moved = await client.callTool(
      {
        name: 'get-env',
        arguments: { note: 'second' },
        requestState: first.requestState,
        inputResponses: { 'countersign-desk': { action: 'accept' } },
      } as Parameters<Client['callTool']>[0],
      { allowInputRequired: true },
    );
    expect(moved.isError).toBe(true);
    expect((moved._meta?.['dev.countersign/outcome'] as { code: string }).code).toBe('invalid_params');
    expect(textOf(moved)).toMatch(/different call/);
    const forged = `${(first.requestState ?? '').slice(0, -4)}AAAA`;
    await expect(
      client.callTool(
        { name: 'get-env', arguments: { note: 'first' }, requestState: forged, inputResponses: {} } as Parameters<Client['callTool']>[0],
        { allowInputRequired: true },
      ),
    ).rejects.toThrow(/Invalid or expired requestState/);
    for (const held of await heldGetEnv()) await m.approve(held.requestId, 'alice', 'deny');
  });
});
