/**
 * The MCP gating proxy: an MCP server to the agent host and an MCP client to the real tool
 * server. Tools are listed unchanged; every tools/call becomes a signed Countersign call (the
 * proxy is an enrolled agent, using the agent SDK in shared/agent-client.ts) and is forwarded
 * only with an approval token the proxy has verified against the exact call, carried in the
 * forwarded request's `_meta` so the tool server can verify it too. docs/mcp.md is the guide.
 */
import { createHash, randomBytes } from 'node:crypto';
import { WebSocket } from 'ws';
import {
  CLIENT_CAPABILITIES_META_KEY,
  ProtocolError,
  ProtocolErrorCode,
  ResourceNotFoundError,
  Server,
  createRequestStateCodec,
  inputRequired,
  isInputRequiredResult,
  type CallToolResult,
  type ClientCapabilities,
  type InputRequiredResult,
  type RequestStateCodec,
  type ServerContext,
  type Tool,
} from '@modelcontextprotocol/server';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { AgentClient, type WebSocketFactory, type WebSocketLike } from '../../shared/agent-client.js';
import type { AgentKey } from '../../shared/agent-keys.js';
import { assertIJson, canonicalize, type JsonObject } from '../../shared/canonical-json.js';
import { computeCallDigestSync, type TokenDomain, type VerifiedApproval } from '../../shared/approval-token.js';
import { CountersignError, isCountersignError, type ErrorCode } from '../../shared/errors.js';
import { MemoryJtiStore, verifyApprovalToken, type JwkLike } from '../../shared/verify-approval-token.js';
import type { DecisionResult } from '../../shared/protocol.js';
import { requiredApprovers } from '../../shared/quorum.js';
import { mapCall, type MappedCall, type MappingFile } from './mapping.js';
import { HoldStore, type HoldState } from './hold-store.js';
import { getJson, tlsWebSocketFactory, type TlsTrust } from './tls-trust.js';
import { nodeVerifySignature } from './node-signature.js';

/** The `_meta` key the forwarded tools/call carries: the token and the exact call it approves. */
export const APPROVAL_META_KEY = 'dev.countersign/approval';
/** The `_meta` key on the proxy's own tool errors: a stable code and the request id, for hosts. */
export const OUTCOME_META_KEY = 'dev.countersign/outcome';
/** Optional `_meta` key a host may set on tools/call: where the input that led to the call came from. */
export const PROVENANCE_META_KEY = 'dev.countersign/provenance';

export const DEFAULT_MAX_ARGUMENT_BYTES = 48 * 1024;
/** How long `close` waits for Countersign answers on their way (a host's stop grace is usually longer). */
export const DEFAULT_CLOSE_DRAIN_MS = 3_000;
/** How long a tool server's roots/list waits for the first host connection to finish its handshake. */
export const ROOTS_WAIT_MS = 10_000;
/** The key of the URL-mode elicitation a held call asks the host to open (2026-07-28). */
export const DESK_INPUT_KEY = 'countersign-desk';

/**
 * What a 2026-07-28 host echoes back after opening the desk: the call digest and the request.
 * HMAC-sealed by the SDK's codec with a per-process key, bound to the method; the digest is
 * compared with the retried call's own, so the state cannot be moved to another call.
 */
interface DeskState {
  digest: string;
  requestId: string;
}

type ToolAnswer = CallToolResult | InputRequiredResult;

/**
 * A host request waiting for a call's answer: the one that started the call, or an identical
 * retry that joined it. Each leaves on its own cancel (notifications/cancelled, its host's
 * connection closing, its client's timeout: the SDK aborts `signal` for all three).
 */
interface Waiter {
  signal: AbortSignal;
  /** This host's progress token, when it sent one: a held call's progress goes to every waiter. */
  progressToken: string | number | undefined;
  notify: ServerContext['mcpReq']['notify'];
}

/**
 * One call being decided or run. `held` is undefined until Countersign's answer has reached the
 * proxy (and, if held, the hold store has its request id); `decided` resolves then. The call
 * keeps going while any waiter is left; `abandoned` aborts when the last one leaves, which ends
 * the wait for approvers and stops the call from being forwarded (the hold stays durable).
 */
interface InFlightCall {
  work: Promise<ToolAnswer>;
  held: boolean | undefined;
  decided: Promise<void>;
  waiters: Set<Waiter>;
  abandoned: AbortController;
}

/** What `untilAborted` gives when the signal aborted first. */
const CANCELLED = Symbol('cancelled');

export interface ApprovalMeta {
  token: string;
  call: { tool: string; params: JsonObject };
}

export type Downstream = { command: string; args: string[]; env?: Record<string, string>; cwd?: string } | { url: string };

export interface McpProxyOptions {
  agentId: string;
  key: AgentKey;
  /** Countersign's agent gateway, e.g. `ws://127.0.0.1:7345` or a hub's `wss://countersign.example:7345`. */
  countersignUrl: string;
  /** How a `wss://` hub's certificate is trusted (a CA file and/or a pinned fingerprint); default: Node's CA store. */
  tlsTrust?: TlsTrust;
  downstream: Downstream;
  mapping: MappingFile;
  /** Token domain to accept: `production` (default) or `test` (headless Countersign). */
  domain?: TokenDomain;
  /** Durable record of held calls; without it, holds survive only while this process runs. */
  stateFile?: string;
  /** How often a held call re-reads its request and tells the host (default 2 s). */
  holdPollMs?: number;
  /** Where approvers decide, named in the hold message (default: the Countersign UI). */
  deskUrl?: string;
  /**
   * Largest MCP arguments object accepted, as canonical JSON bytes (default 48 KiB, which keeps
   * the signed envelope under the gateway's default 64 KiB message limit; raise both together).
   */
  maxArgumentBytes?: number;
  /** How long stopping waits for Countersign answers still on their way, to record holds (default 3 s). */
  closeDrainMs?: number;
  /** Timeout for one forwarded call to the tool server (default 10 minutes). */
  downstreamTimeoutMs?: number;
  webSocket?: WebSocketFactory;
  log?: (line: string) => void;
  /**
   * Called as a tools/call passes each stage (the bench's per-stage timers; never needed to run).
   * `received`: the handler starts; `prepared`: arguments checked, canonicalised, mapped, digested;
   * `decided`: Countersign answered; `verified`: the token checked; `forwarded`: the tool server
   * answered; `answered`: the result is handed back to the host's SDK connection.
   */
  onStage?: (stage: CallStage) => void;
}

export type CallStage = 'received' | 'prepared' | 'decided' | 'verified' | 'forwarded' | 'answered';

interface Outcome {
  code: ErrorCode;
  requestId?: string;
}

const utf8 = new TextEncoder();
const nodeSha256 = (bytes: Uint8Array): Uint8Array => createHash('sha256').update(bytes).digest();

const nodeWebSocket: WebSocketFactory = (url, protocols) =>
  new WebSocket(url, protocols, { perMessageDeflate: false }) as unknown as WebSocketLike;

/**
 * The people a held call needs: the gateway's `required` (request.get), else the one quorum rule
 * on the requirement (an older gateway, or the submit answer, which carries no `required`).
 */
export function requiredOf(approval: DecisionResult['approval']): number {
  if (approval === undefined) return 1;
  return approval.required ?? requiredApprovers(approval);
}

function toolError(text: string, outcome: Outcome): CallToolResult {
  const meta: JsonObject = { code: outcome.code };
  if (outcome.requestId !== undefined) meta.requestId = outcome.requestId;
  return { content: [{ type: 'text', text }], isError: true, _meta: { [OUTCOME_META_KEY]: meta } };
}

/** `ws://host:port` → `http://host:port`, for the JWKS that tokens verify against. */
export function httpBaseOf(countersignUrl: string): string {
  const url = new URL(countersignUrl);
  if (url.protocol === 'ws:') url.protocol = 'http:';
  else if (url.protocol === 'wss:') url.protocol = 'https:';
  else if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CountersignError(
      'config_invalid',
      `the Countersign URL ${JSON.stringify(countersignUrl)} must be ws:, wss:, http: or https:`,
    );
  return url.origin;
}

export class McpProxy {
  readonly agent: AgentClient;
  private readonly client: Client;
  private readonly holds: HoldStore;
  private readonly jtis = new MemoryJtiStore();
  private readonly httpBase: string;
  private readonly log: (line: string) => void;
  private tools = new Map<string, Tool>();
  private toolList: Tool[] = [];
  private jwks: { keys: JwkLike[] } | undefined;
  private downstreamUp = false;
  private readonly servers = new Set<Server>();
  private readonly toolsChangedListeners = new Set<() => void>();
  /** Calls in flight in this process, by agent and call digest: an identical call (a host retry) waits for or joins one. */
  private readonly inFlight = new Map<string, InFlightCall>();
  private readonly deskState: RequestStateCodec<DeskState> = createRequestStateCodec<DeskState>({
    key: randomBytes(32),
    ttlSeconds: 24 * 3600,
    bind: (ctx) => `${ctx.mcpReq.method}\0${this.options.agentId}`,
  });
  /** Resource URIs each host connection subscribed to (the tool server is subscribed once per URI). */
  private readonly subscriptions = new Map<Server, Set<string>>();
  /** tools/call requests being answered, with their host connection: where a sampling or elicitation request of the tool server goes. */
  private readonly calling = new Map<ServerContext, Server>();
  /** Resolves when the first host connection has finished the 2025 handshake (a tool server may ask for roots before it). */
  private readonly firstHostInitialized: Promise<void>;
  private hostInitialized: () => void = () => undefined;
  /** A roots/list of the tool server was refused for want of a host: tell it the roots changed once one comes. */
  private rootsUnanswered = false;
  private closed = false;
  private stdioTransport: StdioClientTransport | undefined;

  private constructor(private readonly options: McpProxyOptions) {
    this.log = options.log ?? (() => undefined);
    this.httpBase = httpBaseOf(options.countersignUrl);
    this.agent = new AgentClient({
      url: options.countersignUrl,
      agentId: options.agentId,
      key: options.key,
      webSocket:
        options.webSocket ??
        (options.tlsTrust === undefined
          ? nodeWebSocket
          : tlsWebSocketFactory(options.tlsTrust, { onRefused: (error) => this.log(`mcp-proxy: ${error.message}`) })),
      reconnect: { initialDelayMs: 200, maxDelayMs: 5_000 },
      requestTimeoutMs: 10_000,
    });
    this.firstHostInitialized = new Promise((resolve) => {
      this.hostInitialized = resolve;
    });
    this.holds = new HoldStore(options.stateFile === undefined ? {} : { file: options.stateFile });

    this.client = new Client(
      { name: 'countersign-mcp-proxy', version: '1.0.0' },
      {
        // Passed through to the host (serverToClient below); a host without the capability gets
        // the request refused by its own SDK and the tool server sees that error.
        // Roots too: the tool server's roots/list is asked of the host (serverToClient below).
        capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } },
        listChanged: {
          tools: {
            onChanged: (error, tools) => {
              if (error || !tools) return;
              this.setTools(tools);
              for (const server of this.servers) server.sendToolListChanged().catch(() => undefined);
              for (const listener of this.toolsChangedListeners) listener();
            },
          },
          prompts: {
            onChanged: () => {
              for (const server of this.servers) server.sendPromptListChanged().catch(() => undefined);
            },
          },
          resources: {
            onChanged: () => {
              for (const server of this.servers) server.sendResourceListChanged().catch(() => undefined);
            },
          },
        },
      },
    );
    // The tool server's log lines reach the host as they are (stdio: the one host connection).
    this.client.setNotificationHandler('notifications/message', (notification) => {
      // During one running call the line goes with that call (an HTTP session's POST stream);
      // otherwise to every host connection.
      const only = this.calling.size === 1 ? [...this.calling.keys()][0] : undefined;
      if (only) {
        only.mcpReq.notify({ method: 'notifications/message', params: notification.params }).catch(() => undefined);
        return;
      }
      for (const server of this.servers) server.sendLoggingMessage(notification.params).catch(() => undefined);
    });
    // A subscribed resource changed: tell each host that subscribed to it.
    this.client.setNotificationHandler('notifications/resources/updated', (notification) => {
      for (const [server, uris] of this.subscriptions)
        if (uris.has(notification.params.uri)) server.sendResourceUpdated(notification.params).catch(() => undefined);
    });
    this.serverToClient();
    this.ready = Promise.resolve().then(() => this.connectDownstream());
    this.ready.catch(() => undefined); // reported to whoever awaits it
  }

  /** Resolves once the tool server is connected and its tools are read; rejects if it cannot start. */
  readonly ready: Promise<void>;

  /**
   * Start connecting to the tool server and to Countersign, without waiting: a host can be
   * answered at once (tools/list and tools/call wait for `ready`). Countersign may be down:
   * calls then fail closed until it is back.
   */
  static launch(options: McpProxyOptions): McpProxy {
    const proxy = new McpProxy(options);
    proxy.agent
      .connect()
      .catch((error: unknown) => proxy.log(`countersign: not reachable yet (${String(error)}); calls fail closed until it is`));
    return proxy;
  }

  /** Launch and wait until the tool server is connected. */
  static async start(options: McpProxyOptions): Promise<McpProxy> {
    const proxy = McpProxy.launch(options);
    await proxy.ready;
    return proxy;
  }

  private async connectDownstream(): Promise<void> {
    const d = this.options.downstream;
    const transport =
      'url' in d
        ? new StreamableHTTPClientTransport(new URL(d.url))
        : // The host configured this process's environment for the tool server: pass it on.
          new StdioClientTransport({
            command: d.command,
            args: d.args,
            env: { ...getDefaultEnvironment(), ...stringEnv(process.env), ...d.env },
            ...(d.cwd === undefined ? {} : { cwd: d.cwd }),
            stderr: 'inherit',
          });
    if (transport instanceof StdioClientTransport) this.stdioTransport = transport;
    transport.onclose = () => {
      this.downstreamUp = false;
      if (!this.closed) this.log('mcp-proxy: the tool server closed its connection');
    };
    await this.client.connect(transport);
    this.downstreamUp = true;
    this.setTools((await this.client.listTools()).tools);
  }

  private setTools(tools: Tool[]): void {
    this.toolList = tools;
    this.tools = new Map(tools.map((t) => [t.name, t]));
  }

  /** Called when the tool server's tool list changes (the HTTP listener tells its subscribers). */
  onToolsChanged(listener: () => void): () => void {
    this.toolsChangedListeners.add(listener);
    return () => this.toolsChangedListeners.delete(listener);
  }

  /** The tool server's process id when the proxy started it (stdio). */
  get downstreamPid(): number | null {
    return this.stdioTransport?.pid ?? null;
  }

  /** The protocol version agreed with the tool server. */
  get downstreamProtocolVersion(): string | undefined {
    return this.client.getNegotiatedProtocolVersion();
  }

  /**
   * A fresh MCP server for one host connection (stdio: the only one; HTTP: one per session).
   * Its calls are signed with the MCP session id kept in the state file (stdio: the host's entry,
   * across restarts, so a retry after a restart is byte-equal to the first attempt), or with a
   * new one (`freshSession`: each HTTP session, each stateless request).
   */
  createServer(options: { freshSession?: boolean } = {}): Server {
    const server = new Server(
      { name: `countersign-proxy:${this.options.mapping.server}`, version: '1.0.0' },
      {
        // A held call's echoed state is verified (HMAC, expiry, binding) before the handler runs.
        requestState: { verify: (state, ctx) => this.deskState.verify(state, ctx) },
        // Declared before the tool server is known (a host is answered at once); what the tool
        // server lacks answers empty lists, refusals and no-ops (see passthrough below).
        capabilities: {
          tools: { listChanged: true },
          resources: { listChanged: true, subscribe: true },
          prompts: { listChanged: true },
          completions: {},
          logging: {},
        },
      },
    );
    const sessionId = options.freshSession ? `mcp-${randomBytes(8).toString('hex')}` : this.holds.sessionId();
    server.oninitialized = () => {
      this.hostInitialized();
      // The tool server asked for roots before any host could answer: ask it to ask again.
      if (this.rootsUnanswered && server.getClientCapabilities()?.roots && this.downstreamUp) {
        this.rootsUnanswered = false;
        this.client.sendRootsListChanged().catch(() => undefined);
      }
    };
    // The host's roots changed: the tool server re-reads them with roots/list (asked of the host).
    server.setNotificationHandler('notifications/roots/list_changed', () => {
      if (this.downstreamUp) this.client.sendRootsListChanged().catch(() => undefined);
    });
    server.setRequestHandler('tools/list', async () => {
      await this.ready;
      return { tools: this.toolList };
    });
    this.passthrough(server);
    server.setRequestHandler('tools/call', async (request, ctx) => {
      this.options.onStage?.('received');
      try {
        await this.ready;
      } catch {
        return toolError('The tool server could not be started, so the tool was not run. Check the MCP server entry in your host.', {
          code: 'mcp_downstream_failed',
        });
      }
      this.calling.set(ctx, server);
      let result: ToolAnswer;
      try {
        result = await this.callTool(request.params.name, request.params.arguments, ctx, sessionId);
      } finally {
        this.calling.delete(ctx);
      }
      if (isInputRequiredResult(result)) return result;
      const advertised = this.tools.get(request.params.name)?.outputSchema;
      const answer = result.isError ? result : server.projectCallToolResult(result, advertised);
      this.options.onStage?.('answered');
      return answer;
    });
    this.servers.add(server);
    server.onclose = () => {
      this.servers.delete(server);
      const uris = this.subscriptions.get(server);
      this.subscriptions.delete(server);
      for (const uri of uris ?? []) this.releaseSubscription(uri);
    };
    return server;
  }

  /**
   * Resources, prompts, completions and logging level go to the tool server unchanged and are
   * not decided by Countersign: they read context the host chose to fetch and run no tool. A
   * mapping with `resources`/`prompts: "refuse"` hides them. docs/mcp.md says why.
   */
  private passthrough(server: Server): void {
    const mapping = this.options.mapping;
    const downstream = async () => {
      await this.ready;
      return this.client.getServerCapabilities() ?? {};
    };
    const opts = (ctx: ServerContext) => ({ signal: ctx.mcpReq.signal });
    server.setRequestHandler('resources/list', async (request, ctx) => {
      if (mapping.resources === 'refuse' || !(await downstream()).resources) return { resources: [] };
      return this.client.listResources(request.params, opts(ctx));
    });
    server.setRequestHandler('resources/templates/list', async (request, ctx) => {
      if (mapping.resources === 'refuse' || !(await downstream()).resources) return { resourceTemplates: [] };
      return this.client.listResourceTemplates(request.params, opts(ctx));
    });
    server.setRequestHandler('resources/read', async (request, ctx) => {
      if (mapping.resources === 'refuse' || !(await downstream()).resources) throw new ResourceNotFoundError(request.params.uri);
      return this.client.readResource(request.params, opts(ctx));
    });
    server.setRequestHandler('prompts/list', async (request, ctx) => {
      if (mapping.prompts === 'refuse' || !(await downstream()).prompts) return { prompts: [] };
      return this.client.listPrompts(request.params, opts(ctx));
    });
    server.setRequestHandler('prompts/get', async (request, ctx) => {
      if (mapping.prompts === 'refuse' || !(await downstream()).prompts)
        throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown prompt ${JSON.stringify(request.params.name)}`);
      return this.client.getPrompt(request.params, opts(ctx));
    });
    server.setRequestHandler('completion/complete', async (request, ctx) => {
      const refused = request.params.ref.type === 'ref/prompt' ? mapping.prompts === 'refuse' : mapping.resources === 'refuse';
      if (refused || !(await downstream()).completions) return { completion: { values: [] } };
      return this.client.complete(request.params, opts(ctx));
    });
    server.setRequestHandler('logging/setLevel', async (request, ctx) => {
      if ((await downstream()).logging) await this.client.setLoggingLevel(request.params.level, opts(ctx));
      return {};
    });
    // Subscriptions: the tool server is subscribed once per URI, while any host connection
    // wants it; a tool server without subscribe support makes these no-ops (no updates come).
    server.setRequestHandler('resources/subscribe', async (request, ctx) => {
      const uri = request.params.uri;
      if (mapping.resources === 'refuse') throw new ResourceNotFoundError(uri);
      if (!(await downstream()).resources?.subscribe) return {};
      if (!this.isSubscribed(uri)) await this.client.subscribeResource({ uri }, opts(ctx));
      let uris = this.subscriptions.get(server);
      if (!uris) this.subscriptions.set(server, (uris = new Set()));
      uris.add(uri);
      return {};
    });
    server.setRequestHandler('resources/unsubscribe', (request) => {
      const uri = request.params.uri;
      if (this.subscriptions.get(server)?.delete(uri)) this.releaseSubscription(uri);
      return {};
    });
  }

  private isSubscribed(uri: string): boolean {
    for (const uris of this.subscriptions.values()) if (uris.has(uri)) return true;
    return false;
  }

  /** No host connection wants `uri` any more: unsubscribe the tool server from it. */
  private releaseSubscription(uri: string): void {
    if (this.isSubscribed(uri) || !this.downstreamUp) return;
    this.client.unsubscribeResource({ uri }).catch(() => undefined);
  }

  /**
   * Sampling and elicitation requests of the tool server go to the host whose tools/call is
   * running (on stdio the one host connection). Countersign does not decide them: the host asks
   * its user or its model, which is what these requests are for. When calls of several host
   * connections (HTTP sessions) are running at once, the tool server's request cannot be
   * attributed to one of them (its transport carries no link to our call), so it is refused
   * rather than shown to the wrong host.
   */
  private serverToClient(): void {
    this.client.setRequestHandler('roots/list', async (request, ctx) => {
      const { ask } = await this.hostForRoots();
      const options = { signal: ctx.mcpReq.signal, timeout: this.options.downstreamTimeoutMs ?? 600_000 };
      return 'mcpReq' in ask
        ? ask.mcpReq.send({ method: 'roots/list', ...(request.params ? { params: request.params } : {}) }, options)
        : ask.listRoots(request.params, options);
    });
    this.client.setRequestHandler('sampling/createMessage', async (request, ctx) => {
      const host = this.hostForServerRequest();
      const options = { signal: ctx.mcpReq.signal, timeout: this.options.downstreamTimeoutMs ?? 600_000 };
      return 'mcpReq' in host ? host.mcpReq.requestSampling(request.params, options) : host.createMessage(request.params, options);
    });
    this.client.setRequestHandler('elicitation/create', async (request, ctx) => {
      const host = this.hostForServerRequest();
      const options = { signal: ctx.mcpReq.signal, timeout: this.options.downstreamTimeoutMs ?? 600_000 };
      return 'mcpReq' in host ? host.mcpReq.elicitInput(request.params, options) : host.elicitInput(request.params, options);
    });
  }

  /**
   * Where the tool server's roots/list goes: the host whose tools/call is running, else the one
   * host connection that has completed the handshake. A tool server asks when it starts, which
   * is usually before the host has connected (the proxy starts it at once): the request then
   * waits for the first host, up to ROOTS_WAIT_MS. A host that does not offer roots, several
   * host connections, or none, and the 2026-07-28 revision (no server-to-client requests) answer
   * an error, so the tool server keeps the directories it was started with.
   */
  private async hostForRoots(): Promise<{ ask: ServerContext | Server; server: Server }> {
    const initialized = () => [...this.servers].filter((s) => s.getClientCapabilities() !== undefined);
    if (this.calling.size === 0 && initialized().length === 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.firstHostInitialized,
        new Promise((resolve) => {
          timer = setTimeout(resolve, ROOTS_WAIT_MS);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    }
    let ask: ServerContext | Server;
    let server: Server | undefined;
    if (this.calling.size > 0) {
      ask = this.hostForServerRequest();
      server = 'mcpReq' in ask ? this.calling.get(ask) : ask;
    } else {
      const hosts = initialized();
      if (hosts.length !== 1) {
        if (hosts.length === 0) this.rootsUnanswered = true;
        throw new ProtocolError(
          ProtocolErrorCode.InvalidRequest,
          hosts.length === 0
            ? 'no host connection to ask for roots'
            : 'the roots request cannot be attributed to one host connection: several are open',
        );
      }
      ask = server = hosts[0] as Server;
    }
    if (!server?.getClientCapabilities()?.roots) throw new ProtocolError(ProtocolErrorCode.MethodNotFound, 'the host does not offer roots');
    return { ask, server };
  }

  private hostForServerRequest(): ServerContext | Server {
    const hosts = new Set(this.calling.values());
    if (hosts.size === 1 && this.calling.size === 1) return [...this.calling.keys()][0] as ServerContext;
    if (hosts.size === 1) return [...hosts][0] as Server;
    if (hosts.size === 0 && this.servers.size === 1) return [...this.servers][0] as Server;
    throw new ProtocolError(
      ProtocolErrorCode.InvalidRequest,
      hosts.size === 0
        ? 'no host connection to ask: the request came outside a tool call'
        : 'the request cannot be attributed to one host connection: calls of several are running',
    );
  }

  /**
   * Stop: the host connections first (every waiting request is aborted), then, for at most
   * `closeDrainMs`, the Countersign answers still on their way, so a call held the moment its
   * host left is recorded in the state file and its retry finds the request whatever approvers
   * decide meanwhile (docs/mcp.md, "The recording window"); then Countersign and the tool server.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const server of this.servers) await server.close().catch(() => undefined);
    const onTheWay = [...this.inFlight.values()].filter((entry) => entry.held === undefined).map((entry) => entry.decided);
    if (onTheWay.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(onTheWay),
        new Promise((resolve) => {
          timer = setTimeout(resolve, this.options.closeDrainMs ?? DEFAULT_CLOSE_DRAIN_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    this.agent.close();
    await this.client.close().catch(() => undefined);
  }

  // ---- one call ----

  private async callTool(name: string, rawArgs: unknown, ctx: ServerContext, sessionId: string): Promise<ToolAnswer> {
    let args: JsonObject;
    let canonicalArgs: string;
    try {
      const value = rawArgs ?? {};
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        throw new CountersignError('invalid_params', 'the arguments must be a JSON object');
      assertIJson(value);
      args = value as JsonObject;
      // Canonicalised once per call: the size check, the signed params and the digest share it.
      canonicalArgs = canonicalize(args);
      const size = utf8.encode(canonicalArgs).length;
      const max = this.options.maxArgumentBytes ?? DEFAULT_MAX_ARGUMENT_BYTES;
      if (size > max)
        return toolError(`The arguments are ${size} bytes, more than this proxy accepts (${max}). The tool was not run.`, {
          code: 'frame_too_large',
        });
    } catch (error) {
      const code = isCountersignError(error) ? error.code : 'invalid_params';
      return toolError(
        `The arguments could not be read as JSON Countersign can sign (${isCountersignError(error) ? error.message : 'invalid'}). The tool was not run.`,
        { code },
      );
    }
    if (!this.tools.has(name) && this.downstreamUp) {
      try {
        this.setTools((await this.client.listTools()).tools);
      } catch {
        // answered below
      }
    }
    const tool = this.tools.get(name);
    if (!tool)
      return toolError(`The tool ${JSON.stringify(name)} does not exist on this server. The tool was not run.`, { code: 'unknown_tool' });

    let mapped: MappedCall;
    try {
      mapped = mapCall(this.options.mapping, name, args, tool.annotations, canonicalArgs);
    } catch (error) {
      return toolError(`${isCountersignError(error) ? error.message : 'the arguments cannot be decided on'}. The tool was not run.`, {
        code: 'invalid_params',
      });
    }
    if (mapped.treatment === 'deny') {
      const why = mapped.mapped
        ? 'is configured to be refused by this proxy'
        : 'is not configured in this proxy, and unconfigured tools are refused';
      return toolError(
        `The tool ${JSON.stringify(name)} ${why}. The tool was not run. An administrator can add it to the proxy's mapping file.`,
        { code: 'mcp_tool_refused' },
      );
    }

    // Digested once, synchronously (node:crypto), from a frozen params object: the same object is
    // signed to Countersign, checked against the token (verify below) and forwarded in `_meta`.
    Object.freeze(mapped.params);
    const digest = computeCallDigestSync(mapped.tool, mapped.params, nodeSha256);
    this.options.onStage?.('prepared');
    const key = `${this.options.agentId}:${digest}`;
    const echoed = ctx.mcpReq.requestState<DeskState>();
    if (echoed !== undefined && (typeof echoed !== 'object' || echoed.digest !== digest)) {
      // Verified by the codec, so minted here, but for another call: never let it carry a hold over.
      return toolError(
        'This retry carries the approval state of a different call. The tool was not run; call it again without that state.',
        { code: 'invalid_params' },
      );
    }
    // An identical call already in this process (a host retry, or another host asking the same):
    // - its answer from Countersign is on the way: wait for it. The host may have left in the
    //   meantime (cancelled, disconnected); the first call still records the hold when the answer
    //   arrives, and this one then finds the request in the hold store instead of making a second;
    // - held, someone still waiting: join it (one request, one execution, one result each);
    // - held, everyone gone: it ends at once; then this call waits on the request itself;
    // - automatically decided: decided afresh (an allow is never shared or replayed).
    // Every wait here ends on this request's own cancel too: a retry whose host gave up asks
    // Countersign nothing and forwards nothing.
    const signal = ctx.mcpReq.signal;
    for (;;) {
      const running = this.inFlight.get(key);
      if (running === undefined) break;
      if (running.held === undefined) {
        if ((await untilAborted(running.decided, signal)) === CANCELLED) return cancelledAnswer();
      } else if (running.held && !running.abandoned.signal.aborted) {
        return this.join(running, ctx);
      } else if (running.held) {
        if (
          (await untilAborted(
            running.work.catch(() => undefined),
            signal,
          )) === CANCELLED
        )
          return cancelledAnswer();
      } else break;
    }
    if (signal.aborted) return cancelledAnswer();
    let decided: () => void = () => undefined;
    const entry: InFlightCall = {
      work: Promise.resolve<ToolAnswer>(toolError('internal', { code: 'internal_error' })),
      held: undefined,
      decided: new Promise((resolve) => {
        decided = resolve;
      }),
      waiters: new Set(),
      abandoned: new AbortController(),
    };
    const onDecided = (held: boolean) => {
      entry.held ??= held;
      decided();
    };
    const answer = this.join(entry, ctx);
    entry.work = this.decideAndForward(name, args, mapped, key, digest, echoed, ctx, sessionId, entry, onDecided).finally(() => {
      onDecided(false);
      if (this.inFlight.get(key) === entry) this.inFlight.delete(key);
    });
    this.inFlight.set(key, entry);
    return answer;
  }

  /**
   * Wait for a call's answer as one of its waiters: the answer, or at once on this request's own
   * cancel (the SDK sends nothing for a cancelled request). The last waiter to leave abandons the
   * call.
   */
  private async join(entry: InFlightCall, ctx: ServerContext): Promise<ToolAnswer> {
    const waiter: Waiter = { signal: ctx.mcpReq.signal, progressToken: ctx.mcpReq._meta?.progressToken, notify: ctx.mcpReq.notify };
    entry.waiters.add(waiter);
    try {
      // `work` is assigned after the first waiter joins (so it is never abandoned before it
      // starts): read it a tick later.
      await Promise.resolve();
      const answer = await untilAborted(entry.work, waiter.signal);
      return answer === CANCELLED ? cancelledAnswer() : answer;
    } finally {
      entry.waiters.delete(waiter);
      if (entry.waiters.size === 0 && waiter.signal.aborted) entry.abandoned.abort();
    }
  }

  /**
   * Only held calls are recorded in the hold store: an automatic allow is decided afresh every
   * time (its result is never replayed, and the fast path never writes to disk).
   */
  private async decideAndForward(
    name: string,
    args: JsonObject,
    mapped: MappedCall,
    key: string,
    digest: string,
    echoed: DeskState | undefined,
    ctx: ServerContext,
    sessionId: string,
    entry: InFlightCall,
    onDecided: (held: boolean) => void,
  ): Promise<ToolAnswer> {
    let previous: { state: HoldState; requestId: string; result?: JsonObject } | undefined = this.holds.get(key);
    // A 2026-07-28 retry names its request in the sealed state: found even without the hold file.
    if (!previous && echoed) previous = { state: 'held', requestId: echoed.requestId };
    if (previous?.state === 'done') {
      if (previous.result) return previous.result as CallToolResult;
      return toolError(
        'This exact call was already run once with its approval, and its result is no longer available. It was not run again.',
        { code: 'mcp_already_executed', requestId: previous.requestId },
      );
    }
    if (previous?.state === 'denied') {
      // An approver declined this exact call: a retry gets that answer, not a second prompt.
      return this.denial({ requestId: previous.requestId, state: 'denied' }, true);
    }
    if (previous?.state === 'executing') {
      // The proxy stopped (or the host cancelled) while this approved call was being forwarded:
      // it may have run. Deciding it afresh could run it a second time, so it is refused like a
      // call already run until the record ages out of the state file (docs/mcp.md).
      return toolError(
        "This exact call was approved and was being run when the proxy stopped; it may have taken effect, so it was not run again. Check the tool's side; retrying after ten minutes asks for a new approval.",
        { code: 'mcp_already_executed', requestId: previous.requestId },
      );
    }

    let decision: DecisionResult;
    try {
      let found: DecisionResult | undefined;
      if (previous?.state === 'held') {
        try {
          found = await this.agent.getRequest(previous.requestId);
        } catch (error) {
          // A request Countersign no longer knows (another data directory): forget it, ask anew.
          if (!isCountersignError(error, 'request_unknown')) throw error;
          this.holds.delete(key);
          previous = undefined;
        }
      }
      if (found) {
        decision = found;
      } else {
        const provenance = readProvenance(ctx);
        decision = await this.agent.submit({
          tool: mapped.tool,
          params: mapped.params,
          dataClass: mapped.dataClass,
          jurisdiction: mapped.jurisdiction,
          provenance,
          session: { id: sessionId, depth: 0 },
        });
      }
    } catch (error) {
      return this.countersignFailure(error, previous?.requestId);
    }
    this.options.onStage?.('decided');

    const held = previous?.state === 'held' || decision.state === 'pending';
    if (decision.state === 'pending') this.holds.set(key, decision.requestId, 'held');
    onDecided(held);
    if (decision.state === 'pending') {
      const desk = deskAnswer(ctx);
      if (desk === 'ask') return this.askToOpenDesk(decision, digest, ctx);
      if (desk === 'declined') {
        return toolError(
          `The call is waiting for approval (request ${decision.requestId}) and the approval page was not opened. Retrying the same call later picks up the same request.`,
          { code: 'timeout', requestId: decision.requestId },
        );
      }
      const settled = await this.waitWhileHeld(decision, entry);
      if (settled === 'cancelled') {
        return toolError(
          `The call is still waiting for approval (request ${decision.requestId}). Retrying the same call later picks up the same request.`,
          { code: 'timeout', requestId: decision.requestId },
        );
      }
      if (settled instanceof CountersignError || !(typeof settled === 'object'))
        return this.countersignFailure(settled, decision.requestId);
      decision = settled;
    }

    if (decision.state === 'denied' || decision.state === 'expired' || decision.decision === 'deny') {
      // An approver's denial is kept like a result (identical retries within the window get it);
      // an expiry is not (a retry asks again), nor a policy denial (decided afresh, as ever).
      if (held && decision.state === 'denied') this.holds.set(key, decision.requestId, 'denied');
      else this.holds.delete(key);
      return this.denial(decision, held);
    }
    // Every host waiting for this call has gone (cancelled, disconnected, timed out) before it
    // could run: it is not forwarded, and its token is not touched. A held call's record stays, so
    // a retry finds the decided request and runs it once with that approval.
    if (entry.abandoned.signal.aborted) return cancelledAnswer(held ? decision.requestId : undefined);
    if (!decision.token) {
      this.holds.delete(key);
      return toolError('Countersign allowed the call but sent no approval token, so the tool was not run.', {
        code: 'token_claims_invalid',
        requestId: decision.requestId,
      });
    }

    let claims: VerifiedApproval;
    try {
      claims = await this.verify(decision.token, mapped, digest);
    } catch (error) {
      this.holds.delete(key);
      const code = isCountersignError(error) ? error.code : 'internal_error';
      const text =
        code === 'token_expired'
          ? 'The approval for this call expired before it could be used. The tool was not run. Retry the call to ask again.'
          : `The approval token could not be verified (${code}), so the tool was not run.`;
      return toolError(text, { code, requestId: decision.requestId });
    }
    this.options.onStage?.('verified');
    if (mapped.treatment === 'approval' && claims.decision.mode !== 'approved') {
      this.holds.delete(key);
      return toolError(
        `The tool ${JSON.stringify(name)} runs only after people approve it, and this call was not approved by anyone. The tool was not run.`,
        { code: 'mcp_approval_required', requestId: decision.requestId },
      );
    }

    if (!this.downstreamUp) {
      this.holds.delete(key);
      return toolError('The tool server is not running, so the tool was not run. Restart the MCP server entry in your host.', {
        code: 'mcp_downstream_failed',
        requestId: decision.requestId,
      });
    }
    // Written before forwarding: if this process dies now, a retry is never run a second time
    // with the same approval.
    if (held) this.holds.set(key, decision.requestId, 'executing');
    const meta: ApprovalMeta = { token: decision.token, call: { tool: mapped.tool, params: mapped.params } };
    const progressToken = ctx.mcpReq._meta?.progressToken;
    let result: CallToolResult;
    try {
      result = await this.client.callTool(
        { name, arguments: args, _meta: { [APPROVAL_META_KEY]: meta as unknown as JsonObject } },
        {
          timeout: this.options.downstreamTimeoutMs ?? 600_000,
          // Cancelled only when every waiting host has gone (a retry that joined keeps it going).
          signal: entry.abandoned.signal,
          // The tool server's progress reaches the host under the host's token. Not for a held
          // call: its progress already counted approvals and must keep growing.
          ...(progressToken === undefined || held
            ? {}
            : {
                onprogress: (p: { progress: number; total?: number; message?: string }) => {
                  ctx.mcpReq.notify({ method: 'notifications/progress', params: { ...p, progressToken } }).catch(() => undefined);
                },
              }),
        },
      );
    } catch (error) {
      // Cancelled mid-flight by every host: the tool server may have acted, so a held call's
      // record stays `executing` (a retry gets mcp_already_executed, never a second run).
      if (!(held && entry.abandoned.signal.aborted)) this.holds.delete(key);
      this.log(`mcp-proxy: forwarding ${name} failed: ${error instanceof Error ? error.message : String(error)}`);
      return toolError(
        'The tool server failed before it answered. The call may or may not have taken effect; its approval is used up, so retrying asks for a new one.',
        { code: 'mcp_downstream_failed', requestId: decision.requestId },
      );
    }
    this.options.onStage?.('forwarded');
    if (held) this.holds.set(key, decision.requestId, 'done', result as unknown as JsonObject);
    return result;
  }

  /**
   * 2026-07-28, host able to open URLs: answer the held call with an input-required result whose
   * URL-mode elicitation points at the request in the desk. The host opens it, then retries the
   * call with the sealed state; the retry waits (with progress) for the approvers.
   */
  private async askToOpenDesk(decision: DecisionResult, digest: string, ctx: ServerContext): Promise<InputRequiredResult> {
    const required = requiredOf(decision.approval);
    const received = decision.approval?.received ?? 0;
    return inputRequired({
      inputRequests: {
        [DESK_INPUT_KEY]: inputRequired.elicitUrl({
          message: `This call needs ${required} approver${required === 1 ? '' : 's'} (${received} so far). Open Countersign to see request ${decision.requestId}; the call continues once it is decided.`,
          url: this.deskLink(decision.requestId),
        }),
      },
      requestState: await this.deskState.mint({ digest, requestId: decision.requestId }, ctx),
    });
  }

  /** The desk's view of one request: the UI with the request named in the fragment (never sent to a server). */
  deskLink(requestId: string): string {
    const desk = this.options.deskUrl ?? `${this.httpBase}/ui/`;
    return `${desk}#request=${encodeURIComponent(requestId)}`;
  }

  /**
   * Keep the host informed while approvers decide: a progress notification when the count
   * changes and a heartbeat every poll (progress must grow, so the heartbeat adds a shrinking
   * fraction below the next whole approval). Ends on a decision, on expiry, or when the host
   * cancels (the request stays durable in Countersign; a retry finds it).
   */
  private async waitWhileHeld(first: DecisionResult, entry: InFlightCall): Promise<DecisionResult | CountersignError | 'cancelled'> {
    const signal = entry.abandoned.signal;
    // Every waiting host is told, each under its own progress token (a retry that joined too).
    const tell = async (progress: number, total: number, message: string) => {
      for (const waiter of entry.waiters) {
        if (waiter.progressToken === undefined || waiter.signal.aborted) continue;
        await waiter
          .notify({ method: 'notifications/progress', params: { progressToken: waiter.progressToken, progress, total, message } })
          .catch(() => undefined);
      }
    };
    const pollMs = this.options.holdPollMs ?? 2_000;
    let beats = 0;
    let lastReceived = -1;
    let current = first;
    let required = requiredOf(first.approval);
    const desk = this.options.deskUrl ?? `${this.httpBase}/ui/`;
    // Countersign held this call in the group of an identical one already waiting (typically the
    // same call sent before the host left, whose answer never reached a proxy): say which.
    const joined =
      first.mergedInto === undefined
        ? ''
        : `, asked together with the identical request ${first.mergedInto.requestId}: approvers decide once for all ${first.mergedInto.size}`;
    while (!signal.aborted) {
      if (current.state !== 'pending') {
        // The last step the host sees before the result: the quorum complete ("2 of 2"), the
        // whole of `total`, so a progress bar ends full and the count the host saw climbs to it.
        if (current.state === 'approved')
          await tell(required, required, `approved: ${required} of ${required} (request ${current.requestId})`);
        return current;
      }
      required = requiredOf(current.approval);
      const received = current.approval?.received ?? 0;
      if (received !== lastReceived) beats = 0;
      else beats++;
      lastReceived = received;
      const progress = received + (beats === 0 ? 0 : 0.5 * (1 - 0.5 ** beats));
      await tell(
        progress,
        required,
        `waiting for ${required} approver${required === 1 ? '' : 's'}: ${received} of ${required} (request ${current.requestId}${joined}; approvers decide in ${desk})`,
      );
      try {
        const next = await untilAborted(this.agent.waitForDecision(current.requestId, { timeoutMs: pollMs }), signal);
        if (next === CANCELLED) return 'cancelled';
        current = next;
      } catch (error) {
        if (signal.aborted) return 'cancelled';
        if (isCountersignError(error, 'timeout')) {
          try {
            current = await this.agent.getRequest(current.requestId);
          } catch (inner) {
            return inner instanceof CountersignError ? inner : new CountersignError('internal_error', undefined, { cause: inner });
          }
          continue;
        }
        return error instanceof CountersignError ? error : new CountersignError('internal_error', undefined, { cause: error });
      }
    }
    return 'cancelled';
  }

  private denial(decision: Pick<DecisionResult, 'requestId' | 'state'>, wasHeld: boolean): CallToolResult {
    if (decision.state === 'expired') {
      return toolError(
        `No approver decided in time and the approval window closed (request ${decision.requestId}). The tool was not run. Retry the call to ask again.`,
        { code: 'mcp_approval_expired', requestId: decision.requestId },
      );
    }
    // Reasons are written by policy authors for people, but they can reveal thresholds: the
    // model is told only who refused, and the request id to look the decision up.
    const who = wasHeld ? 'An approver declined this call' : "Countersign's policy does not allow this call";
    return toolError(
      `${who} (request ${decision.requestId}). The tool was not run. Do not retry it unchanged; ask the user how to proceed.`,
      { code: 'mcp_call_denied', requestId: decision.requestId },
    );
  }

  private countersignFailure(error: unknown, requestId?: string): CallToolResult {
    const code = isCountersignError(error) ? error.code : 'internal_error';
    this.log(`mcp-proxy: countersign call failed: ${error instanceof Error ? error.message : String(error)}`);
    const outcome: Outcome =
      requestId === undefined ? { code: 'mcp_countersign_unavailable' } : { code: 'mcp_countersign_unavailable', requestId };
    if (code === 'connection_closed' || code === 'timeout') {
      return toolError(
        'Countersign, which must approve every call of this tool, cannot be reached right now, so the tool was not run. Retry later.',
        outcome,
      );
    }
    if (code === 'invalid_params' || code === 'unknown_tool') {
      return toolError(
        `Countersign cannot decide on this call (${code}): the tool or its arguments are not in its policy. The tool was not run.`,
        { ...outcome, code },
      );
    }
    return toolError(`Countersign refused to decide on this call (${code}), so the tool was not run.`, { ...outcome, code });
  }

  private async verify(token: string, mapped: MappedCall, digest: string): Promise<VerifiedApproval> {
    const attempt = async (refresh: boolean) =>
      verifyApprovalToken(token, {
        call: { tool: mapped.tool, params: mapped.params },
        callDigest: digest,
        audience: mapped.audience,
        keys: await this.keys(refresh),
        jtiStore: this.jtis,
        domain: this.options.domain ?? 'production',
        verifySignature: nodeVerifySignature,
      });
    try {
      return await attempt(false);
    } catch (error) {
      // A rotated signing key: fetch the published keys once more, then fail closed.
      if (isCountersignError(error, 'token_kid_unknown')) return attempt(true);
      throw error;
    }
  }

  private async keys(refresh: boolean): Promise<{ keys: JwkLike[] }> {
    if (this.jwks && !refresh) return this.jwks;
    let response: { status: number; body: unknown };
    try {
      // The same TLS trust as the agent socket: a hub's development certificate is pinned for both.
      response = await getJson(`${this.httpBase}/.well-known/jwks.json`, this.options.tlsTrust ?? { ca: undefined, pin: undefined });
    } catch (error) {
      throw new CountersignError('connection_closed', 'the signing keys could not be fetched', { cause: error });
    }
    if (response.status !== 200)
      throw new CountersignError('connection_closed', `the signing keys could not be fetched (HTTP ${response.status})`);
    const body = (typeof response.body === 'object' && response.body !== null ? response.body : {}) as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new CountersignError('config_invalid', 'the published signing keys are not a JWKS');
    this.jwks = { keys: body.keys as JwkLike[] };
    return this.jwks;
  }
}

/**
 * How a held call talks to this host: `ask` (a 2026-07-28 request from a host that declares
 * URL-mode elicitation, first round), `accepted` / `declined` (the retry after it), or
 * `progress` (every 2025 revision, and hosts without URL elicitation).
 */
function deskAnswer(ctx: ServerContext): 'ask' | 'accepted' | 'declined' | 'progress' {
  const capabilities = (ctx.mcpReq.envelope as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META_KEY] as
    ClientCapabilities | undefined;
  if (capabilities?.elicitation?.url === undefined) return 'progress';
  const response = ctx.mcpReq.inputResponses?.[DESK_INPUT_KEY] as { action?: unknown } | undefined;
  if (response === undefined) return 'ask';
  return response.action === 'accept' ? 'accepted' : 'declined';
}

function readProvenance(ctx: ServerContext): string[] {
  const value = ctx.mcpReq._meta?.[PROVENANCE_META_KEY];
  if (!Array.isArray(value)) return ['mcp-host'];
  const labels = value.filter((v): v is string => typeof v === 'string' && v.length > 0 && v.length <= 128).slice(0, 16);
  return labels.length > 0 ? labels : ['mcp-host'];
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (typeof value === 'string') out[name] = value;
  return out;
}

/**
 * `promise`'s value, or CANCELLED as soon as `signal` aborts (already aborted: at once). The
 * listener is removed when the promise settles, so a long hold polled every few seconds does not
 * pile listeners up on the request's signal.
 */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof CANCELLED> {
  if (signal.aborted) return Promise.resolve(CANCELLED);
  return new Promise<T | typeof CANCELLED>((resolve, reject) => {
    const onAbort = () => resolve(CANCELLED);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/**
 * The answer to a tools/call whose host cancelled it (or left, or timed out). The SDK sends no
 * response for a cancelled request; this only ends the handler.
 */
function cancelledAnswer(requestId?: string): CallToolResult {
  return toolError(
    requestId === undefined
      ? 'The call was cancelled by the host before it ran. The tool was not run.'
      : `The call was cancelled by the host before it ran (request ${requestId}). The tool was not run; retrying the same call picks up the same request.`,
    requestId === undefined ? { code: 'timeout' } : { code: 'timeout', requestId },
  );
}
