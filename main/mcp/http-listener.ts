/**
 * The MCP proxy's Streamable HTTP listener toward agent hosts (`countersign mcp-proxy --listen`):
 * node:http in front of the SDK's `createMcpHandler`, which serves the 2026-07-28 revision per
 * request and the 2025 revisions statelessly. Loopback by default; before the SDK sees a request
 * this file checks the path, the Host header (DNS-rebinding protection), the Origin header and
 * the body size. docs/mcp.md "Serving hosts over HTTP".
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  WebStandardStreamableHTTPServerTransport,
  createMcpHandler,
  hostHeaderValidationResponse,
  isInitializeRequest,
  originValidationResponse,
  type McpHttpHandler,
} from '@modelcontextprotocol/server';
import { CountersignError, errorRecord } from '../../shared/errors.js';
import type { McpProxy } from './proxy.js';

export const DEFAULT_MCP_HTTP_PATH = '/mcp';
/** Largest POST body accepted (1 MiB): far above the proxy's argument cap, far below the SDK's 4 MiB. */
export const DEFAULT_MCP_HTTP_MAX_BODY_BYTES = 1024 * 1024;
/** 2025 sessions open at once; a further `initialize` gets 503 until one closes. */
export const MAX_MCP_HTTP_SESSIONS = 256;
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

export interface McpHttpListenerOptions {
  /** Interface to bind (default 127.0.0.1). A non-loopback address must be asked for explicitly. */
  host?: string;
  /** Port (0 picks a free one). */
  port: number;
  /** The MCP endpoint path (default /mcp). */
  path?: string;
  /** Largest request body in bytes (default 1 MiB); larger bodies get 413 before anything is parsed. */
  maxBodyBytes?: number;
  /** Host header names accepted besides the loopback names and the bound address. */
  allowedHosts?: string[];
  /** Origin host names accepted (default: the loopback names only; absent Origin always passes). */
  allowedOrigins?: string[];
  log?: (line: string) => void;
}

export interface McpHttpListener {
  /** The endpoint URL hosts connect to. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Parse `--listen HOST:PORT` (or `PORT`, or `[::1]:PORT`). */
export function parseListenAddress(value: string): { host: string; port: number } {
  const match = /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port > 65535)
    throw new CountersignError('config_invalid', `--listen ${JSON.stringify(value)} must be HOST:PORT or PORT, e.g. 127.0.0.1:7400`);
  const host = match[1] ?? '127.0.0.1';
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export async function listenMcpHttp(proxy: McpProxy, options: McpHttpListenerOptions): Promise<McpHttpListener> {
  const bindHost = options.host ?? '127.0.0.1';
  const path = options.path ?? DEFAULT_MCP_HTTP_PATH;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MCP_HTTP_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024)
    throw new CountersignError('config_invalid', 'the HTTP body limit must be a whole number of bytes, at least 1024');
  const hostName = bindHost.includes(':') ? `[${bindHost}]` : bindHost;
  const allowedHosts = [...new Set([...LOOPBACK_NAMES, hostName, ...(options.allowedHosts ?? [])])];
  const allowedOrigins = [...new Set([...LOOPBACK_NAMES, ...(options.allowedOrigins ?? [])])];
  const log = options.log ?? (() => undefined);
  if (!isLoopback(bindHost))
    log(
      `mcp-proxy: listening on ${bindHost}, which is not a loopback address; anyone who can reach it can call the proxied tools as this agent (docs/mcp.md)`,
    );

  const handler: McpHttpHandler = createMcpHandler(() => proxy.createServer({ freshSession: true }), {
    maxRequestBodySize: maxBodyBytes,
    onerror: (error) => log(`mcp-proxy: http: ${error.message}`),
  });
  const stopNotifying = proxy.onToolsChanged(() => handler.notify.toolsChanged());
  // 2025 hosts that `initialize` get a session (Mcp-Session-Id): one proxy server per session,
  // so the tool server's sampling and elicitation requests and resource updates can reach the
  // host (a GET stream, and answers POSTed back to the same server). Requests without a session
  // id (2026-07-28, or a 2025 client that never initialized) go to the stateless handler.
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
  async function openSession(request: Request, parsedBody: unknown): Promise<Response> {
    if (sessions.size >= MAX_MCP_HTTP_SESSIONS) return new Response('too many sessions', { status: 503 });
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, transport);
      },
      onsessionclosed: (id) => {
        sessions.delete(id);
      },
    });
    // Set before connect: the SDK chains it with the server's own close (which drops the server).
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await proxy.createServer({ freshSession: true }).connect(transport);
    return transport.handleRequest(request, { parsedBody });
  }

  const server: HttpServer = createServer((req, res) => {
    serve(req, res).catch((error: unknown) => {
      log(`mcp-proxy: http: ${error instanceof Error ? error.message : String(error)}`);
      if (!res.headersSent) plain(res, 500, 'internal error');
      else res.destroy();
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = new URL(req.url ?? '/', 'http://localhost');
    if (target.pathname !== path) return plain(res, 404, 'not found');
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string') headers.set(name, value);
      else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    }
    const method = req.method ?? 'GET';
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    // The URL's host comes from our own bind address, never from the request: the Host header is
    // checked below against the allowlist, not trusted.
    const probe = new Request(`http://${hostName}${target.pathname}${target.search}`, { method, headers });
    const refused = hostHeaderValidationResponse(probe, allowedHosts) ?? originValidationResponse(probe, allowedOrigins);
    if (refused) {
      req.resume();
      return send(res, refused);
    }
    let body: Uint8Array<ArrayBuffer> | undefined;
    if (method !== 'GET' && method !== 'HEAD') {
      const declared = Number(req.headers['content-length'] ?? '0');
      if (declared > maxBodyBytes) return tooLarge(req, res, maxBodyBytes);
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > maxBodyBytes) return tooLarge(req, res, maxBodyBytes);
        chunks.push(chunk as Buffer);
      }
      body = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        body.set(chunk, offset);
        offset += chunk.length;
      }
    }
    const request = new Request(probe.url, { method, headers, signal: abort.signal, ...(body === undefined ? {} : { body }) });
    const sessionId = headers.get('mcp-session-id');
    if (sessionId !== null) {
      const session = sessions.get(sessionId);
      if (!session) return send(res, sessionNotFound());
      return send(res, await session.handleRequest(request));
    }
    if (method === 'POST' && body !== undefined) {
      const parsed = parseJson(body);
      if (isInitializeRequest(parsed)) return send(res, await openSession(request, parsed));
    }
    await send(res, await handler.fetch(request));
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, bindHost, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${hostName}:${port}${path}`,
    port,
    async close() {
      stopNotifying();
      for (const session of [...sessions.values()]) await session.close().catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await handler.close();
    },
  };
}

function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(body)) as unknown;
  } catch {
    return undefined;
  }
}

/** The Streamable HTTP answer to an unknown or closed session: 404, and the client initializes again. */
function sessionNotFound(): Response {
  return Response.json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'session not found' } }, { status: 404 });
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}

function tooLarge(req: IncomingMessage, res: ServerResponse, max: number): void {
  // Status and JSON-RPC number from the frame_too_large record (shared/errors.ts), with its string code in data.
  const record = errorRecord('frame_too_large');
  res.writeHead(record.http, { 'content-type': 'application/json', connection: 'close' });
  // The rest of the body is not read: the connection closes once the answer is out.
  res.end(
    JSON.stringify({
      jsonrpc: '2.0',
      id: null,
      error: { code: record.rpc, message: `request body larger than ${max} bytes`, data: { code: 'frame_too_large' } },
    }),
    () => req.destroy(),
  );
}

async function send(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  res.on('close', () => void reader.cancel().catch(() => undefined));
  for (;;) {
    const next = await reader.read();
    if (next.done) break;
    if (!res.write(next.value)) await new Promise<void>((resolve) => res.once('drain', resolve));
  }
  res.end();
}
