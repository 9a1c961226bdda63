/**
 * The agent gateway: one loopback port serving the WebSocket protocol at /v1/agent and a small
 * read-only HTTP surface (/healthz, /.well-known/jwks.json). Every connection must answer a
 * fresh challenge with its enrolled key before it may submit calls. Limits are explicit:
 * message size, connections, unauthenticated connections, handshake time, per-agent rate,
 * and a client that does not read its replies is disconnected.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { CountersignError, isCountersignError, quote, ERROR_CODES, type ErrorCode } from '../../../shared/errors.js';
import { canonicalBytes, parseStrictJson } from '../../../shared/canonical-json.js';
import { decodeSignature } from '../../../shared/agent-keys.js';
import {
  CLIENT_METHODS, CLOSE_CODES, PROTOCOL_VERSION, SIGNED_TYPES, WS_PATH, WS_SUBPROTOCOL, clientRequestSchema, rpcCodeFor,
  type ChallengeNotification, type ClientRequest, type DecisionResult, type RpcFailure,
} from '../../../shared/protocol.js';
import type { AgentRegistry } from '../identity/agent-registry.js';
import type { AuthenticatedSession, DecisionService } from '../decision/decision-service.js';
import type { CountersignConfig } from '../config.js';
import { KeyedRateLimiter, TokenBucket } from './token-bucket.js';

export interface GatewayDeps {
  config: CountersignConfig;
  registry: AgentRegistry;
  decisions: DecisionService;
  jwks: () => unknown;
  health: () => Record<string, unknown>;
  log: (message: string) => void;
  clock?: () => number;
  /** The audit entries about one of the agent's own requests, with inclusion proofs. */
  auditProof?: (agentId: string, requestId: string) => Promise<unknown>;
  /** Extra HTTP routes (the UI), run after the Host check; returns true if it answered. */
  extraHttp?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

interface Connection {
  socket: WebSocket;
  challenge: string;
  session?: AuthenticatedSession;
  preAuthBucket: TokenBucket;
  handshakeTimer?: NodeJS.Timeout | undefined;
  droppedForRate: number;
}

export interface GatewayStats {
  connections: number;
  authenticated: number;
  decisions: number;
  rejected: number;
}

export class Gateway {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<Connection>();
  private readonly byAgent = new Map<string, Set<Connection>>();
  private readonly agentRate: KeyedRateLimiter;
  private readonly clock: () => number;
  private allowedHosts = new Set<string>();
  private readonly stats = { decisions: 0, rejected: 0 };
  private maintenanceTimer?: NodeJS.Timeout;

  constructor(private readonly deps: GatewayDeps) {
    const gw = deps.config.gateway;
    this.clock = deps.clock ?? Date.now;
    this.agentRate = new KeyedRateLimiter(gw.ratePerSecond, gw.rateBurst);
    this.http = createServer({ requestTimeout: 10_000, headersTimeout: 5_000, maxHeaderSize: 8 * 1024 }, (req, res) => this.onHttp(req, res));
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: gw.maxMessageBytes,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
  }

  async listen(): Promise<{ host: string; port: number }> {
    const { host, port } = this.deps.config.gateway;
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const address = this.http.address();
    const bound = typeof address === 'object' && address ? address.port : port;
    const hosts = ['127.0.0.1', 'localhost', '[::1]', ...this.deps.config.gateway.allowedHosts];
    this.allowedHosts = new Set(hosts.map((h) => hostWithPort(h.toLowerCase(), bound)));
    this.maintenanceTimer = setInterval(() => this.maintenance(), 1_000);
    this.maintenanceTimer.unref();
    return { host, port: bound };
  }

  getStats(): GatewayStats {
    let authenticated = 0;
    for (const c of this.connections) if (c.session) authenticated++;
    return { connections: this.connections.size, authenticated, ...this.stats };
  }

  async close(): Promise<void> {
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    for (const c of this.connections) c.socket.close(CLOSE_CODES.tryAgainLater, 'server shutting down');
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.wss.close();
  }

  /** Push a decision to every live connection of the agent (pending calls resolved later). */
  notifyAgent(agentId: string, result: DecisionResult): number {
    const conns = this.byAgent.get(agentId);
    if (!conns) return 0;
    const frame = JSON.stringify({ jsonrpc: '2.0', method: 'request.decided', params: result });
    for (const c of conns) this.send(c, frame);
    return conns.size;
  }

  // ---- HTTP ----

  private hostAllowed(req: IncomingMessage): boolean {
    const host = req.headers.host;
    return typeof host === 'string' && this.allowedHosts.has(host.toLowerCase());
  }

  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const reply = (status: number, body: unknown, extra: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
        ...extra,
      });
      res.end(text);
    };
    if (!this.hostAllowed(req)) return reply(421, { error: { code: 'host_not_allowed', message: ERROR_CODES.host_not_allowed } });
    if (this.deps.extraHttp?.(req, res)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, { error: { code: 'method_unknown', message: 'only GET is served here' } }, { allow: 'GET, HEAD' });
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return reply(200, { status: 'ok', ...this.deps.health() });
    if (path === '/.well-known/jwks.json') return reply(200, this.deps.jwks(), { 'cache-control': 'public, max-age=60' });
    return reply(404, { error: { code: 'method_unknown', message: 'not found' } });
  }

  // ---- WebSocket handshake ----

  private refuseUpgrade(socket: Duplex, status: number, code: ErrorCode): void {
    const body = JSON.stringify({ error: { code, message: ERROR_CODES[code] } });
    socket.end(`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : status === 421 ? 'Misdirected Request' : status === 503 ? 'Service Unavailable' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    this.stats.rejected++;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const gw = this.deps.config.gateway;
    if (!this.hostAllowed(req)) return this.refuseUpgrade(socket, 421, 'host_not_allowed');
    const origin = req.headers.origin;
    // Agent hosts send no Origin; a browser always does, so a page on another site is refused.
    if (origin !== undefined && !gw.allowedOrigins.includes(origin)) return this.refuseUpgrade(socket, 403, 'origin_not_allowed');
    if ((req.url ?? '').split('?')[0] !== WS_PATH) return this.refuseUpgrade(socket, 400, 'method_unknown');
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!protocols.includes(WS_SUBPROTOCOL)) return this.refuseUpgrade(socket, 400, 'protocol_version_unsupported');
    if (this.connections.size >= gw.maxConnections) return this.refuseUpgrade(socket, 503, 'too_many_connections');
    let unauthenticated = 0;
    for (const c of this.connections) if (!c.session) unauthenticated++;
    if (unauthenticated >= gw.maxUnauthenticated) return this.refuseUpgrade(socket, 503, 'too_many_connections');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws));
  }

  private onConnection(socket: WebSocket): void {
    const gw = this.deps.config.gateway;
    const conn: Connection = {
      socket,
      challenge: randomBytes(32).toString('base64url'),
      preAuthBucket: new TokenBucket(1, gw.preAuthMessages, this.clock()),
      droppedForRate: 0,
    };
    this.connections.add(conn);
    conn.handshakeTimer = setTimeout(() => {
      if (!conn.session) this.fail(conn, null, new CountersignError('handshake_timeout'), CLOSE_CODES.handshakeTimeout);
    }, gw.handshakeTimeoutMs);
    socket.on('message', (data: RawData, isBinary: boolean) => this.onMessage(conn, data, isBinary));
    socket.on('error', () => socket.terminate());
    socket.on('close', () => this.onClose(conn));
    const challenge: ChallengeNotification = {
      jsonrpc: '2.0',
      method: 'session.challenge',
      params: { protocol: PROTOCOL_VERSION, challenge: conn.challenge, serverId: this.deps.config.serverId, expiresInMs: gw.handshakeTimeoutMs },
    };
    this.send(conn, JSON.stringify(challenge));
  }

  private onClose(conn: Connection): void {
    if (conn.handshakeTimer) clearTimeout(conn.handshakeTimer);
    this.connections.delete(conn);
    if (conn.session) {
      const set = this.byAgent.get(conn.session.agentId);
      set?.delete(conn);
      if (set && set.size === 0) this.byAgent.delete(conn.session.agentId);
    }
  }

  // ---- messages ----

  private onMessage(conn: Connection, data: RawData, isBinary: boolean): void {
    const now = this.clock();
    // Rate limits come first and cost nothing: a flooding client cannot make us parse.
    const allowed = conn.session ? this.agentRate.take(conn.session.agentId, now) : conn.preAuthBucket.take(now);
    if (!allowed) {
      conn.droppedForRate++;
      this.stats.rejected++;
      if (conn.droppedForRate === 1 && conn.session) {
        this.deps.decisions.recordRejection(now, { agentId: conn.session.agentId, code: 'rate_limited' });
      }
      // Not parsed (that is the point), but a request id at the very start of the frame is
      // echoed, so a client can fail that request at once instead of waiting for its timeout.
      const id = isBinary ? null : peekRequestId(data);
      if (!conn.session || conn.droppedForRate > this.deps.config.gateway.rateBurst) {
        this.fail(conn, id, new CountersignError('rate_limited'), CLOSE_CODES.rateLimited);
      } else {
        this.sendError(conn, id, new CountersignError('rate_limited'));
      }
      return;
    }
    conn.droppedForRate = 0;
    if (isBinary) return this.fail(conn, null, new CountersignError('frame_binary'), CLOSE_CODES.unsupportedData);
    // ws has already validated UTF-8 (invalid text frames close with 1007) and the size limit (1009).
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    let message: unknown;
    try {
      message = parseStrictJson(text);
    } catch (error) {
      return this.sendError(conn, null, error);
    }
    const id = typeof message === 'object' && message !== null && !Array.isArray(message) ? (message as Record<string, unknown>).id : undefined;
    const replyId = typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id)) ? id : null;
    const method = typeof message === 'object' && message !== null ? (message as Record<string, unknown>).method : undefined;
    if (typeof method === 'string' && !(CLIENT_METHODS as readonly string[]).includes(method)) {
      return this.sendError(conn, replyId, new CountersignError('method_unknown', `the method ${quote(method)} is not part of the protocol`));
    }
    const parsed = clientRequestSchema.safeParse(message);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.join('.') ?? '';
      const detail = issue?.code === 'unrecognized_keys' ? `unknown field ${quote(issue.keys.join(', '))}` : (issue?.message ?? 'invalid');
      return this.sendError(conn, replyId, new CountersignError('schema_invalid', `the message does not match the protocol at ${quote(where)}: ${detail}`));
    }
    this.dispatch(conn, parsed.data).catch((error: unknown) => this.sendError(conn, parsed.data.id, error));
  }

  private async dispatch(conn: Connection, request: ClientRequest): Promise<void> {
    switch (request.method) {
      case 'session.authenticate': {
        if (conn.session) throw new CountersignError('already_authenticated');
        const session = this.authenticate(conn, request.params);
        conn.session = session;
        if (conn.handshakeTimer) clearTimeout(conn.handshakeTimer);
        let set = this.byAgent.get(session.agentId);
        if (!set) this.byAgent.set(session.agentId, (set = new Set()));
        set.add(conn);
        this.reply(conn, request.id, { agentId: session.agentId, kid: session.kid, sessionId: conn.challenge.slice(0, 16) });
        return;
      }
      case 'call.submit': {
        const session = this.requireSession(conn);
        try {
          const result = await this.deps.decisions.submit(session, request.params.envelope);
          this.stats.decisions++;
          this.reply(conn, request.id, result);
        } catch (error) {
          if (isCountersignError(error) && (error.code === 'agent_revoked' || error.code === 'agent_expired' || error.code === 'key_revoked')) {
            return this.fail(conn, request.id, error, CLOSE_CODES.keyRevoked);
          }
          throw error;
        }
        return;
      }
      case 'request.get': {
        const session = this.requireSession(conn);
        this.reply(conn, request.id, this.deps.decisions.getRequest(session, request.params.requestId));
        return;
      }
      case 'session.report': {
        const session = this.requireSession(conn);
        try {
          this.reply(conn, request.id, this.deps.decisions.reportReads(session, request.params));
        } catch (error) {
          if (isCountersignError(error) && (error.code === 'agent_revoked' || error.code === 'agent_expired' || error.code === 'key_revoked')) {
            return this.fail(conn, request.id, error, CLOSE_CODES.keyRevoked);
          }
          throw error;
        }
        return;
      }
      case 'audit.proof': {
        const session = this.requireSession(conn);
        if (!this.deps.auditProof) throw new CountersignError('method_unknown', 'audit proofs are not available on this server');
        this.reply(conn, request.id, await this.deps.auditProof(session.agentId, request.params.requestId));
        return;
      }
    }
  }

  private requireSession(conn: Connection): AuthenticatedSession {
    if (!conn.session) throw new CountersignError('not_authenticated');
    return conn.session;
  }

  private authenticate(conn: Connection, params: { agentId: string; kid: string; proof: string }): AuthenticatedSession {
    const now = this.clock();
    try {
      // Proof first, status second: only the holder of the key learns it is revoked or expired.
      const resolved = this.deps.registry.lookup(params.agentId, params.kid);
      const { agent, key } = resolved;
      const proof = decodeSignature(params.proof);
      const signed = canonicalBytes({ typ: SIGNED_TYPES.auth, challenge: conn.challenge, serverId: this.deps.config.serverId, agentId: agent.id, kid: key.kid });
      if (proof === undefined || !this.deps.registry.verifySignature(key, signed, proof)) {
        throw new CountersignError('auth_failed', 'the challenge signature does not verify with the enrolled key');
      }
      this.deps.registry.assertUsable(resolved, now);
      return { agentId: agent.id, kid: key.kid };
    } catch (error) {
      const code = isCountersignError(error) ? error.code : 'internal_error';
      this.deps.decisions.recordRejection(now, { stage: 'authenticate', claimedAgentId: params.agentId, kid: params.kid, code });
      // One answer for every identity failure: do not tell a prober which agent ids exist.
      const external = code === 'agent_unknown' || code === 'key_unknown' ? new CountersignError('auth_failed', 'authentication failed', { cause: error }) : error;
      const closeCode = code === 'agent_revoked' || code === 'agent_expired' || code === 'key_revoked' ? CLOSE_CODES.keyRevoked : CLOSE_CODES.authFailed;
      throw Object.assign(external instanceof CountersignError ? external : new CountersignError('internal_error'), { closeAfter: closeCode });
    }
  }

  // ---- output ----

  private send(conn: Connection, frame: string): void {
    if (conn.socket.readyState !== conn.socket.OPEN) return;
    if (conn.socket.bufferedAmount > this.deps.config.gateway.maxBufferedBytes) {
      conn.socket.terminate();
      return;
    }
    conn.socket.send(frame);
  }

  private reply(conn: Connection, id: string | number, result: unknown): void {
    this.send(conn, JSON.stringify({ jsonrpc: '2.0', id, result }));
  }

  private errorFrame(id: string | number | null, error: unknown): RpcFailure {
    const err = isCountersignError(error) ? error : new CountersignError('internal_error');
    if (!isCountersignError(error)) this.deps.log(`internal error: ${error instanceof Error ? error.message : String(error)}`);
    const data: RpcFailure['error']['data'] = { code: err.code };
    if (err.details) data.details = { ...err.details };
    return { jsonrpc: '2.0', id, error: { code: rpcCodeFor(err.code), message: err.message, data } };
  }

  private sendError(conn: Connection, id: string | number | null, error: unknown): void {
    this.stats.rejected++;
    this.send(conn, JSON.stringify(this.errorFrame(id, error)));
    const closeAfter = (error as { closeAfter?: number } | null)?.closeAfter;
    if (closeAfter !== undefined) conn.socket.close(closeAfter, closeAfter === CLOSE_CODES.authFailed ? 'authentication failed' : (error as CountersignError).code);
  }

  private fail(conn: Connection, id: string | number | null, error: CountersignError, closeCode: number): void {
    this.sendError(conn, id, error);
    conn.socket.close(closeCode, error.code);
  }

  private maintenance(): void {
    try {
      for (const { agentId, result } of this.deps.decisions.expireDue()) this.notifyAgent(agentId, result);
      this.deps.decisions.pruneReplayCache();
    } catch (error) {
      this.deps.log(`maintenance failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/**
 * An allowlist entry as the Host header carries it: "name:port" or "[v6]:port". An entry
 * without a port means the gateway's own port; the Host header must always carry the port,
 * because browsers send it for every non-default port and the gateway never runs on 80.
 */
export function hostWithPort(entry: string, port: number): string {
  if (entry.startsWith('[')) return /\]:\d+$/.test(entry) ? entry : `${entry}:${port}`;
  return entry.includes(':') ? entry : `${entry}:${port}`;
}

const LEADING_ID = /^\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(\d{1,15})\s*[,}]/;

/**
 * The numeric id of a JSON-RPC request whose text starts `{"jsonrpc":"2.0","id":N` (as the SDK
 * writes it), read from the first 64 bytes only; null otherwise. Used solely to address the
 * rate_limited answer to the request that was dropped.
 */
export function peekRequestId(data: RawData): number | null {
  const head = (Array.isArray(data) ? data[0] : Buffer.isBuffer(data) ? data : Buffer.from(data));
  if (head === undefined) return null;
  const match = LEADING_ID.exec(head.subarray(0, 64).toString('latin1'));
  return match?.[1] === undefined ? null : Number(match[1]);
}
