/**
 * MCP proxy test harness: a real Countersign (test/helpers/harness.ts) on the examples/mcp
 * policy pack, the proxy's agent enrolled with a key file on disk, virtual approvers, and an
 * agent host made of the MCP SDK's real client that starts `countersign mcp-proxy` over stdio
 * exactly as Claude Desktop or Cursor would, in front of a real MCP server.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/client';
import { InMemoryTransport } from '@modelcontextprotocol/server';
import { McpProxy, type CallStage } from '../../main/mcp/proxy.js';
import type { WebSocketFactory, WebSocketLike } from '../../shared/agent-client.js';
import { parseMapping } from '../../main/mcp/mapping.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { REPO_ROOT } from '../../main/core/app.js';
import { writeAgentKeyFile } from '../../main/cli/agent-key-file.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { ensurePeople, nodeWebSocket, startHarness, tempDir, type Harness } from './harness.js';
import { compiledCli } from './compiled-script.js';

export const MCP_POLICY_DIR = join(REPO_ROOT, 'examples', 'mcp');
// The proxy CLI compiled once for the run (compile-scripts.ts), started with plain Node.
export const NODE = process.execPath;
export const CLI = compiledCli();
export const FILESYSTEM_SERVER = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
export const EVERYTHING_SERVER = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
export const PAYMENTS_SERVER = 'examples/mcp/payments-server.ts';
export const MAPS = {
  filesystem: join(MCP_POLICY_DIR, 'filesystem-map.json'),
  everything: join(MCP_POLICY_DIR, 'everything-map.json'),
  payments: join(MCP_POLICY_DIR, 'payments-map.json'),
};

export const PROXY_AGENT = 'mcp-proxy-bot';
export const MCP_SCOPE = {
  owner: 'olga@example.com',
  group: 'mcp-agents',
  allowedTools: ['fs.read', 'fs.list', 'fs.write', 'demo.echo', 'demo.sum', 'demo.wait', 'payments.pay', 'mcp.unmapped'],
  dataClasses: ['files', 'unclassified', 'financial'],
  jurisdictions: ['US'],
};

export interface McpHarness {
  h: Harness;
  dir: string;
  keyFile: string;
  key: AgentKey;
  api(path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }>;
  approve(requestId: string, approverId: string, verdict?: 'approve' | 'deny'): Promise<Record<string, unknown>>;
  pending(): Promise<Array<{ requestId: string; tool: string; params: Record<string, unknown> }>>;
  close(): Promise<void>;
}

export async function startMcpHarness(config: Record<string, unknown> = {}): Promise<McpHarness> {
  const h = await startHarness({ config: { domain: 'test', ...config }, policyDir: MCP_POLICY_DIR });
  const dir = tempDir('countersign-mcp-');
  const jwk = await generateAgentKey('EdDSA');
  const key = await importAgentKey(jwk);
  ensurePeople(h.app, MCP_SCOPE.owner);
  h.app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, PROXY_AGENT, PROXY_AGENT)), MCP_SCOPE);
  const keyFile = join(dir, 'proxy-agent.key');
  writeAgentKeyFile(keyFile, { agentId: PROXY_AGENT, privateJwk: jwk });
  const api = async (path: string, body?: unknown) => {
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${h.app.uiSessionSecret}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`http://127.0.0.1:${h.app.port}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  for (const [id, groups] of [
    ['alice', ['file-approvers']],
    ['bob', ['file-approvers']],
    ['carol', ['finance-approvers']],
  ] as const) {
    const created = await api('/api/automation/virtual-approvers', { id, displayName: id, groups });
    if (created.status !== 200) throw new Error(`could not create virtual approver ${id}: ${JSON.stringify(created.json)}`);
  }
  return {
    h,
    dir,
    keyFile,
    key,
    api,
    async approve(requestId, approverId, verdict = 'approve') {
      return (await api(`/api/automation/requests/${requestId}/decide`, { approverId, verdict })).json;
    },
    async pending() {
      return (await api('/api/approvals/pending')).json.pending as Array<{
        requestId: string;
        tool: string;
        params: Record<string, unknown>;
      }>;
    },
    async close() {
      await h.close();
    },
  };
}

export interface HostOptions {
  map?: string;
  /** The MCP server command line after `--`. */
  server: string[];
  stateFile: string;
  countersignUrl?: string;
  extra?: string[];
  env?: Record<string, string>;
}

export interface Host {
  client: Client;
  transport?: StdioClientTransport;
  proxy?: McpProxy;
  stderr(): string;
  close(): Promise<void>;
}

/** An agent host: the SDK's real client, starting the proxy CLI over stdio. */
export async function startHost(m: McpHarness, options: HostOptions): Promise<Host> {
  const args = [
    CLI,
    'mcp-proxy',
    '--agent',
    m.keyFile,
    '--countersign',
    options.countersignUrl ?? m.h.app.url,
    '--domain',
    'test',
    '--state',
    options.stateFile,
    '--hold-poll-ms',
    '200',
  ];
  if (options.map) args.push('--map', options.map);
  args.push(...(options.extra ?? []), '--', ...options.server);
  const transport = new StdioClientTransport({
    command: NODE,
    args,
    stderr: 'pipe',
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const client = new Client({ name: 'test-host', version: '1.0.0' });
  await client.connect(transport, { timeout: 120_000 });
  return { client, transport, stderr: () => stderr, close: () => client.close() };
}

/**
 * The same proxy in this process (McpProxy, as the CLI builds it), with the host's SDK client
 * linked to it by the SDK's in-memory transport: one process fewer to start per case on a
 * loaded machine. The tool server is still a real child process.
 */
export async function startInProcessHost(
  m: McpHarness,
  options: HostOptions & {
    maxArgumentBytes?: number;
    onToolsChanged?: (names: string[]) => void;
    /** The proxy's socket to Countersign (default: a plain `ws` socket). */
    webSocket?: WebSocketFactory;
    onStage?: (stage: CallStage) => void;
  },
): Promise<Host> {
  const [command, ...args] = options.server;
  const mapping = parseMapping(parseStrictJson(readFileSync(options.map ?? '', 'utf8')));
  const proxy = await McpProxy.start({
    agentId: PROXY_AGENT,
    key: m.key,
    countersignUrl: options.countersignUrl ?? m.h.app.url,
    mapping,
    domain: 'test',
    stateFile: options.stateFile,
    holdPollMs: 200,
    downstream: { command: command ?? 'node', args, env: options.env ?? {} },
    ...(options.maxArgumentBytes === undefined ? {} : { maxArgumentBytes: options.maxArgumentBytes }),
    ...(options.webSocket === undefined ? {} : { webSocket: options.webSocket }),
    ...(options.onStage === undefined ? {} : { onStage: options.onStage }),
  });
  const [hostSide, proxySide] = InMemoryTransport.createLinkedPair();
  await proxy.createServer().connect(proxySide);
  const onToolsChanged = options.onToolsChanged;
  const client = new Client(
    { name: 'test-host', version: '1.0.0' },
    onToolsChanged
      ? {
          listChanged: {
            tools: {
              onChanged: (error, tools) => {
                if (!error && tools) onToolsChanged(tools.map((t) => t.name));
              },
            },
          },
        }
      : {},
  );
  await client.connect(hostSide);
  return {
    client,
    proxy,
    stderr: () => '',
    close: async () => {
      await client.close();
      await proxy.close();
    },
  };
}

/**
 * A seam for the hold-recording race: the proxy's real WebSocket to Countersign, except that the
 * answers to `call.submit` are held back in the test (not delivered to the proxy) until
 * `release()`. Nothing is faked: Countersign decided and committed the call; only the moment its
 * answer reaches the proxy is chosen by the test, which a real socket cannot do. `withheld`
 * resolves when the first answer is held back; `submits` counts the calls the proxy sent.
 */
export interface SubmitAnswerSeam {
  factory: WebSocketFactory;
  withheld: Promise<void>;
  submits(): number;
  release(): void;
}

export function withholdSubmitAnswers(): SubmitAnswerSeam {
  let submits = 0;
  let released = false;
  const heldBack: Array<() => void> = [];
  let signalWithheld: () => void = () => undefined;
  const withheld = new Promise<void>((resolve) => {
    signalWithheld = resolve;
  });
  const factory: WebSocketFactory = (url, protocols) => {
    const real = nodeWebSocket(url, protocols);
    const submitIds = new Set<unknown>();
    const socket: WebSocketLike = {
      get readyState() {
        return real.readyState;
      },
      send(data: string) {
        const message = JSON.parse(data) as { id?: unknown; method?: unknown };
        if (message.method === 'call.submit') {
          submits++;
          submitIds.add(message.id);
        }
        real.send(data);
      },
      close: (code?: number, reason?: string) => real.close(code, reason),
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
    };
    real.onopen = (event) => socket.onopen?.(event);
    real.onclose = (event) => socket.onclose?.(event);
    real.onerror = (event) => socket.onerror?.(event);
    real.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as { id?: unknown };
      if (!released && message.id !== undefined && submitIds.has(message.id)) {
        heldBack.push(() => socket.onmessage?.(event));
        signalWithheld();
        return;
      }
      socket.onmessage?.(event);
    };
    return socket;
  };
  return {
    factory,
    withheld,
    submits: () => submits,
    release() {
      released = true;
      for (const deliver of heldBack.splice(0)) deliver();
    },
  };
}
