/**
 * The agent gateway: one port (loopback by default; a hub's host name over TLS, then https and
 * wss) serving the WebSocket protocol at /v1/agent and the one HTTP edge (/healthz,
 * /.well-known/jwks.json and the app's rows). Every connection must answer a
 * fresh challenge with its enrolled key before it may submit calls. Limits are explicit:
 * message size, connections, unauthenticated connections, handshake time, per-agent rate,
 * and a client that does not read its replies is disconnected.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerOptions } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  AUTHENTICATION_FAILED_CLOSE,
  CountersignError,
  isCountersignError,
  quote,
  ERROR_CODES,
  closeCodeFor,
  httpStatusFor,
  type ErrorCode,
} from '../../../shared/errors.js';
import { canonicalBytes, parseStrictJson } from '../../../shared/canonical-json.js';
import { decodeSignature } from '../../../shared/agent-keys.js';
import {
  CLIENT_METHODS,
  CLOSE_CODES,
  PROTOCOL_VERSION,
  SIGNED_TYPES,
  WS_PATH,
  WS_SUBPROTOCOL,
  clientRequestSchema,
  rpcCodeFor,
  type ChallengeNotification,
  type ClientRequest,
  type DecisionResult,
  type RpcFailure,
} from '../../../shared/protocol.js';
import type { AgentRegistry } from '../identity/agent-registry.js';
import type { AuthenticatedSession, DecisionService } from '../decision/decision-service.js';
import type { CountersignConfig } from '../config.js';
import { KeyedRateLimiter } from './token-bucket.js';
import { createHttpEdge, type HttpRoute } from '../http/http-edge.js';
import { publicEdgeOf, type PublicEdge } from '../http/public-edge.js';

export interface GatewayDeps {
  config: CountersignConfig;
  /** Host name, scheme and TLS material (http/public-edge.ts); default: plain http on the loopback names. */
  edge?: PublicEdge;
  registry: AgentRegistry;
  decisions: DecisionService;
  jwks: () => unknown;
  health: () => Record<string, unknown>;
  log: (message: string) => void;
  clock?: () => number;
  /** The audit entries about one of the agent's own requests, with inclusion proofs. */
  auditProof?: (agentId: string, requestId: string) => Promise<unknown>;
  /**
   * The rest of the HTTP edge (main/core/http/): routes besides /healthz and the JWKS, the
   * session secret their `session` routes require and the approval origins a browser may call from.
   */
  http?: { routes: readonly HttpRoute[]; sessionSecret: string | (() => string); origins: () => readonly string[] };
  /**
   * Follow every held call this gateway answered to its final state through the decision store
   * and push it to the agent (team hubs: the approval may be made on another hub, which wakes
   * this one by LISTEN/NOTIFY). The embedded default pushes from the approval service instead.
   */
  followOutcomes?: boolean;
  /**
   * The held calls a revocation of the agent ended, read where they were ended (team hubs: the
   * team database, since the revocation may have been committed on another hub). Default: the
   * registry's local rows.
   */
  endedByRevocation?: (agentId: string) => Promise<DecisionResult[]>;
  /** Push events for the UI bridge: a call now waits for approvers; a held call reached its end. */
  events?: { pending(agentId: string, result: DecisionResult): void; decided(agentId: string, result: DecisionResult): void };
}

interface Connection {
  socket: WebSocket;
  challenge: string;
  session?: AuthenticatedSession;
  handshakeTimer?: NodeJS.Timeout | undefined;
  droppedForRate: number;
  /** The session was ended by the gateway (revoked, expired, rotated out); it is closing. */
  ended?: boolean;
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
  private readonly edge: PublicEdge;
  private readonly stats = { decisions: 0, rejected: 0 };
  private maintenanceTimer?: NodeJS.Timeout;
  private maintaining = false;
  /** Held calls followed to their end (followOutcomes), by request id. */
  private readonly following = new Map<string, AbortController>();
  /** Agents whose revoked sessions wait for the ended calls to be read (endedByRevocation), so they are read once. */
  private readonly ending = new Set<string>();
  /**
   * Request ids whose end was told lately (to the agent's live connections, if any, and to the
   * desks; bounded, oldest dropped), so no call is told twice: not by a revocation that ends
   * sessions when its follower got there first, nor by a hub's own approval and the outcome notice
   * of the same commit (both are woken by the same commit, on different connections, in either
   * order). Every caller reports a terminal result, so a request told once has nothing more to say.
   */
  private readonly recentlyTold = new Set<string>();

  /** The HTTP edge's route table: the gateway's rows (/healthz, JWKS) and the app's. */
  readonly routeTable: readonly HttpRoute[];

  constructor(private readonly deps: GatewayDeps) {
    const gw = deps.config.gateway;
    this.routeTable = [...this.httpRoutes(), ...(deps.http?.routes ?? [])];
    this.clock = deps.clock ?? Date.now;
    this.agentRate = new KeyedRateLimiter(gw.ratePerSecond, gw.rateBurst);
    // Node checks header and request timeouts only every `connectionsCheckingInterval` (30 s by
    // default), so a 5 s header timeout used to bite after 5 to 35 s: check at least once a second.
    this.edge = deps.edge ?? publicEdgeOf(deps.config);
    const serverOptions: ServerOptions = {
      headersTimeout: gw.headersTimeoutMs,
      requestTimeout: Math.max(10_000, gw.headersTimeoutMs),
      connectionsCheckingInterval: Math.min(1_000, gw.headersTimeoutMs),
      maxHeaderSize: 8 * 1024,
    };
    const tls = this.edge.tls;
    // Over TLS the same edge and the same upgrade handler serve https and wss; a client speaking
    // plain http to it fails the TLS handshake and gets no answer.
    const createListener = (handler: Parameters<typeof createServer>[1]): Server =>
      tls === undefined
        ? createServer(serverOptions, handler)
        : createTlsServer({ ...serverOptions, cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler);
    this.http = createListener(
      createHttpEdge({
        routes: this.routeTable,
        // Without a session secret no session route exists; a random one keeps /api/ closed.
        sessionSecret: deps.http?.sessionSecret ?? randomBytes(32).toString('base64url'),
        hostAllowed: (req) => this.hostAllowed(req),
        origins: deps.http?.origins ?? (() => []),
        log: deps.log,
      }),
    );
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
      const failed = (error: NodeJS.ErrnoException) => {
        // Another process (often a second Countersign) holds the port: say which, with a stable code.
        if (error.code === 'EADDRINUSE') {
          reject(
            new CountersignError(
              'port_in_use',
              `port ${port} on ${host} is already in use by another process; stop it or choose another port with --port (or gateway.port in config.json)`,
              { cause: error, details: { host, port } },
            ),
          );
        } else reject(error);
      };
      this.http.once('error', failed);
      this.http.listen(port, host, () => {
        this.http.off('error', failed);
        resolve();
      });
    });
    const address = this.http.address();
    const bound = typeof address === 'object' && address ? address.port : port;
    this.allowedHosts = new Set(this.edge.allowedHosts(bound));
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
    for (const follower of this.following.values()) follower.abort();
    this.following.clear();
    for (const c of this.connections) c.socket.close(CLOSE_CODES.tryAgainLater, 'server shutting down');
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.wss.close();
  }

  /**
   * Push a decision to every live connection of the agent (pending calls resolved later). A
   * request's end is pushed once, however many paths report it: on a hub, the approval committed
   * here (onDecided) and the store's outcome notice for the same commit (the follower) both arrive,
   * in either order, and the agent must not be told twice.
   */
  notifyAgent(agentId: string, result: DecisionResult): number {
    // Told once: a held call being followed needs no second push.
    const follower = this.following.get(result.requestId);
    if (follower !== undefined) {
      this.following.delete(result.requestId);
      follower.abort();
    }
    // Marked told before anything is said, connected or not: the desks hear of it once too.
    if (this.recentlyTold.has(result.requestId)) return 0;
    this.recentlyTold.add(result.requestId);
    if (this.recentlyTold.size > RECENTLY_TOLD_LIMIT) this.recentlyTold.delete(this.recentlyTold.values().next().value!);
    this.emit(() => this.deps.events?.decided(agentId, result));
    const conns = this.byAgent.get(agentId);
    if (!conns) return 0;
    const frame = JSON.stringify({ jsonrpc: '2.0', method: 'request.decided', params: result });
    for (const c of conns) this.send(c, frame);
    return conns.size;
  }

  /** Tell the UI bridge's subscribers; a fault there never reaches the agent's answer. */
  private emit(push: () => void): void {
    try {
      push();
    } catch (error) {
      this.deps.log(`bridge event failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * The agent was revoked in this process: tell each of its live connections which pending
   * requests the revocation ended (`request.decided`, denied), then close it with 4004.
   */
  agentRevoked(agentId: string, ended: DecisionResult[]): void {
    for (const c of this.byAgent.get(agentId) ?? []) {
      this.endSession(c, null, new CountersignError('agent_revoked', `agent ${quote(agentId)} has been revoked`), ended);
    }
  }

  private endSession(conn: Connection, id: string | number | null, error: CountersignError, ended: DecisionResult[]): void {
    if (conn.ended) return;
    conn.ended = true;
    for (const result of ended) this.send(conn, JSON.stringify({ jsonrpc: '2.0', method: 'request.decided', params: result }));
    this.fail(conn, id, error);
  }

  /**
   * Live sessions whose agent or key is no longer usable — revoked by another process (the
   * CLI), enrollment expired, a rotated-out key past its overlap — are ended as a revocation in
   * this process is: the requests it ended are pushed, then the socket closes with 4004.
   */
  private sweepSessions(now: number): void {
    // One statement finds the sessions that may have to end; only those are checked one by one.
    const pairs: Array<[string, string]> = [];
    for (const [agentId, conns] of this.byAgent) {
      const kids = new Set<string>();
      for (const c of conns) if (!c.ended && c.session) kids.add(c.session.kid);
      for (const kid of kids) pairs.push([agentId, kid]);
    }
    let suspects: Iterable<string>;
    try {
      suspects = new Set(this.deps.registry.unusableOf(pairs, now).map(([agentId]) => agentId));
    } catch {
      suspects = [...this.byAgent.keys()]; // the statement failed: check every session one by one
    }
    for (const agentId of suspects) {
      const conns = this.byAgent.get(agentId);
      if (conns !== undefined) this.sweepAgent(agentId, conns, now);
    }
  }

  private sweepAgent(agentId: string, conns: Iterable<Connection>, now: number): void {
    const verdicts = new Map<string, CountersignError | null>();
    let ended: DecisionResult[] | undefined;
    for (const c of conns) {
      if (c.ended || !c.session) continue;
      const kid = c.session.kid;
      let verdict = verdicts.get(kid);
      if (verdict === undefined) {
        try {
          this.deps.registry.assertUsable(this.deps.registry.lookup(agentId, kid), now);
          verdict = null;
        } catch (error) {
          // Anything else ends nothing here (the agent's next call is checked again), and one
          // agent's odd state must never stop the sweep for every other agent.
          verdict = isCountersignError(error) && SESSION_ENDING_CODES.has(error.code) ? error : null;
        }
        verdicts.set(kid, verdict);
      }
      if (verdict === null) continue;
      if (verdict.code === 'agent_revoked' && this.deps.endedByRevocation !== undefined) {
        this.endRevoked(agentId, this.deps.endedByRevocation);
        continue;
      }
      if (verdict.code === 'agent_revoked') ended ??= this.deps.registry.endedByRevocation(agentId);
      this.endSession(c, null, verdict, verdict.code === 'agent_revoked' ? (ended ?? []) : []);
    }
  }

  /**
   * Check the agent's live sessions now, as the sweep does (team hubs: the directory replica
   * applied a revocation committed on any hub, so its sessions end at once, not at the next sweep).
   */
  checkSessions(agentId: string): void {
    const conns = this.byAgent.get(agentId);
    if (conns !== undefined) this.sweepAgent(agentId, conns, this.clock());
  }

  /**
   * End every session of a revoked agent once the calls its revocation ended are read, so each
   * is told of them before it closes (4004). A failed read still closes them (fail closed), told
   * nothing; the calls stay denied where they were ended.
   */
  private endRevoked(agentId: string, read: (agentId: string) => Promise<DecisionResult[]>): void {
    if (this.ending.has(agentId)) return;
    this.ending.add(agentId);
    const end = (ended: DecisionResult[]) => {
      this.ending.delete(agentId);
      // Told once: a call already told is skipped, and a follower still waiting is stopped.
      const untold = ended.filter((result) => !this.recentlyTold.has(result.requestId));
      for (const { requestId } of untold) {
        this.following.get(requestId)?.abort();
        this.following.delete(requestId);
      }
      const error = new CountersignError('agent_revoked', `agent ${quote(agentId)} has been revoked`);
      for (const c of this.byAgent.get(agentId) ?? []) this.endSession(c, null, error, untold);
    };
    read(agentId).then(end, (error: unknown) => {
      this.deps.log(
        `reading the calls the revocation of ${agentId} ended failed (its sessions close untold): ${error instanceof Error ? error.message : String(error)}`,
      );
      end([]);
    });
  }

  // ---- HTTP ----

  private hostAllowed(req: IncomingMessage): boolean {
    const host = req.headers.host;
    return typeof host === 'string' && this.allowedHosts.has(host.toLowerCase());
  }

  /** The gateway's own rows of the HTTP edge: read-only, public, after the Host allowlist. */
  private httpRoutes(): HttpRoute[] {
    return [
      { verb: 'GET', path: '/healthz', access: 'public', handle: () => ({ status: 'ok', ...this.deps.health() }) },
      {
        verb: 'GET',
        path: '/.well-known/jwks.json',
        access: 'public',
        handle: () => this.deps.jwks(),
        headers: { 'cache-control': 'public, max-age=60' },
      },
    ];
  }

  // ---- WebSocket handshake ----

  /** Refuse a WebSocket upgrade with the HTTP status of the code's record (or the one given). */
  private refuseUpgrade(socket: Duplex, code: ErrorCode, status = httpStatusFor(code)): void {
    const body = JSON.stringify({ error: { code, message: ERROR_CODES[code] } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    this.stats.rejected++;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const gw = this.deps.config.gateway;
    if (!this.hostAllowed(req)) return this.refuseUpgrade(socket, 'host_not_allowed');
    const origin = req.headers.origin;
    // Agent hosts send no Origin; a browser always does, so a page on another site is refused.
    if (origin !== undefined && !gw.allowedOrigins.includes(origin)) return this.refuseUpgrade(socket, 'origin_not_allowed');
    // An upgrade to another path is a bad handshake: 400 here, where a plain GET of an unknown path is 404.
    if ((req.url ?? '').split('?')[0] !== WS_PATH) return this.refuseUpgrade(socket, 'method_unknown', 400);
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!protocols.includes(WS_SUBPROTOCOL)) return this.refuseUpgrade(socket, 'protocol_version_unsupported');
    if (this.connections.size >= gw.maxConnections) return this.refuseUpgrade(socket, 'too_many_connections');
    let unauthenticated = 0;
    for (const c of this.connections) if (!c.session) unauthenticated++;
    if (unauthenticated >= gw.maxUnauthenticated) return this.refuseUpgrade(socket, 'too_many_connections');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws));
  }

  private onConnection(socket: WebSocket): void {
    const gw = this.deps.config.gateway;
    const conn: Connection = {
      socket,
      challenge: randomBytes(32).toString('base64url'),
      droppedForRate: 0,
    };
    this.connections.add(conn);
    conn.handshakeTimer = setTimeout(() => {
      if (!conn.session) this.fail(conn, null, new CountersignError('handshake_timeout'));
    }, gw.handshakeTimeoutMs);
    socket.on('message', (data: RawData, isBinary: boolean) => this.onMessage(conn, data, isBinary));
    socket.on('error', () => socket.terminate());
    socket.on('close', () => this.onClose(conn));
    const challenge: ChallengeNotification = {
      jsonrpc: '2.0',
      method: 'session.challenge',
      params: {
        protocol: PROTOCOL_VERSION,
        challenge: conn.challenge,
        serverId: this.deps.config.serverId,
        expiresInMs: gw.handshakeTimeoutMs,
      },
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
    // Frames that arrive after the gateway decided to close are not answered.
    if (conn.socket.readyState !== conn.socket.OPEN) return;
    if (!conn.session) return this.onFirstFrame(conn, data, isBinary);
    const now = this.clock();
    // Rate limits come first and cost nothing: a flooding client cannot make us parse.
    if (!this.agentRate.take(conn.session.agentId, now)) {
      conn.droppedForRate++;
      this.stats.rejected++;
      if (conn.droppedForRate === 1) this.deps.decisions.recordRejection(now, { agentId: conn.session.agentId, code: 'rate_limited' });
      // Not parsed (that is the point), but a request id at the very start of the frame is
      // echoed, so a client can fail that request at once instead of waiting for its timeout.
      const id = isBinary ? null : peekRequestId(data);
      if (conn.droppedForRate > this.deps.config.gateway.rateBurst) {
        this.fail(conn, id, new CountersignError('rate_limited'));
      } else {
        this.sendError(conn, id, new CountersignError('rate_limited'));
      }
      return;
    }
    conn.droppedForRate = 0;
    if (isBinary) return this.fail(conn, null, new CountersignError('frame_binary'));
    const parsed = parseFrame(data);
    if (!parsed.ok) return this.sendError(conn, parsed.id, parsed.error);
    this.dispatch(conn, parsed.request).catch((error: unknown) => this.sendError(conn, parsed.request.id, error));
  }

  /**
   * Before authentication the only frame the protocol allows is one `session.authenticate`
   * (authentication gets exactly one attempt), so anything else is answered with its error and
   * the connection closes: 1003 for a binary frame, 4001 for everything else.
   */
  private onFirstFrame(conn: Connection, data: RawData, isBinary: boolean): void {
    if (isBinary) return this.fail(conn, null, new CountersignError('frame_binary'));
    const parsed = parseFrame(data);
    if (!parsed.ok) return this.fail(conn, parsed.id, parsed.error, AUTHENTICATION_FAILED_CLOSE);
    if (parsed.request.method !== 'session.authenticate') {
      return this.fail(
        conn,
        parsed.request.id,
        new CountersignError('not_authenticated', 'the first message on a connection must be session.authenticate'),
      );
    }
    this.dispatch(conn, parsed.request).catch((error: unknown) => this.sendError(conn, parsed.request.id, error));
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
          if (result.decision === 'pending') {
            this.emit(() => this.deps.events?.pending(session.agentId, result));
            if (this.deps.followOutcomes) this.follow(session.agentId, result.requestId);
          }
        } catch (error) {
          if (
            isCountersignError(error) &&
            (error.code === 'agent_revoked' ||
              error.code === 'agent_held_for_review' ||
              error.code === 'agent_expired' ||
              error.code === 'key_revoked')
          ) {
            if (error.code === 'agent_revoked' && this.deps.endedByRevocation !== undefined) {
              // A hub: the revocation may be another hub's and this replica behind it, so the calls
              // it ended are read in the team database before the agent's sessions close, told of them.
              this.sendError(conn, request.id, error);
              return this.endRevoked(session.agentId, this.deps.endedByRevocation);
            }
            const ended = error.code === 'agent_revoked' ? this.deps.registry.endedByRevocation(session.agentId) : [];
            return this.endSession(conn, request.id, error, ended);
          }
          throw error;
        }
        return;
      }
      case 'request.get': {
        const session = this.requireSession(conn);
        this.reply(conn, request.id, await this.deps.decisions.getRequest(session, request.params.requestId));
        return;
      }
      case 'session.report': {
        const session = this.requireSession(conn);
        try {
          this.reply(conn, request.id, this.deps.decisions.reportReads(session, request.params));
        } catch (error) {
          if (
            isCountersignError(error) &&
            (error.code === 'agent_revoked' || error.code === 'agent_expired' || error.code === 'key_revoked')
          ) {
            return this.fail(conn, request.id, error);
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
      const signed = canonicalBytes({
        typ: SIGNED_TYPES.auth,
        challenge: conn.challenge,
        serverId: this.deps.config.serverId,
        agentId: agent.id,
        kid: key.kid,
      });
      if (proof === undefined || !this.deps.registry.verifySignature(key, signed, proof)) {
        throw new CountersignError('auth_failed', 'the challenge signature does not verify with the enrolled key');
      }
      this.deps.registry.assertUsable(resolved, now);
      return { agentId: agent.id, kid: key.kid };
    } catch (error) {
      const code = isCountersignError(error) ? error.code : 'internal_error';
      this.deps.decisions.recordRejection(now, { stage: 'authenticate', claimedAgentId: params.agentId, kid: params.kid, code });
      // One answer for every identity failure: do not tell a prober which agent ids exist.
      const external =
        code === 'agent_unknown' || code === 'key_unknown'
          ? new CountersignError('auth_failed', 'authentication failed', { cause: error })
          : error;
      // Every failed attempt closes with 4001, whatever the reason (docs/protocol.md).
      throw Object.assign(external instanceof CountersignError ? external : new CountersignError('internal_error'), {
        closeAfter: AUTHENTICATION_FAILED_CLOSE,
      });
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
    if (closeAfter !== undefined)
      conn.socket.close(
        closeAfter,
        closeAfter === AUTHENTICATION_FAILED_CLOSE ? 'authentication failed' : (error as CountersignError).code,
      );
  }

  /**
   * Answer with the error and close the connection with the close code of its record (or the
   * one given, for the rule that any failure before authentication closes with 4001). A code
   * with no close code in its record is never passed here without one; 1008 is only a guard.
   */
  private fail(
    conn: Connection,
    id: string | number | null,
    error: CountersignError,
    closeCode = closeCodeFor(error.code) ?? CLOSE_CODES.policyViolation,
  ): void {
    this.sendError(conn, id, error);
    conn.socket.close(closeCode, error.code);
  }

  /** Wait (no polling: the store wakes it) for a held call's end and push it to the agent. */
  private follow(agentId: string, requestId: string): void {
    const follower = new AbortController();
    this.following.set(requestId, follower);
    this.deps.decisions.finalResult(requestId, follower.signal).then(
      (result) => {
        if (this.following.get(requestId) === follower) this.notifyAgent(agentId, result);
      },
      (error: unknown) => {
        if (this.following.get(requestId) !== follower) return;
        this.following.delete(requestId);
        this.deps.log(`following request ${requestId} failed: ${error instanceof Error ? error.message : String(error)}`);
      },
    );
  }

  private maintenance(): void {
    // Expiry and pruning are store writes; a slow store must not stack them up.
    if (!this.maintaining) {
      this.maintaining = true;
      void (async () => {
        try {
          for (const { agentId, result } of await this.deps.decisions.expireDue()) this.notifyAgent(agentId, result);
          await this.deps.decisions.pruneReplayCache();
        } catch (error) {
          this.deps.log(`maintenance failed: ${error instanceof Error ? error.message : String(error)}`);
        } finally {
          this.maintaining = false;
        }
      })();
    }
    try {
      this.sweepSessions(this.clock());
    } catch (error) {
      this.deps.log(`session sweep failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** Host allowlist entries with the port (kept here for callers of the gateway; the rule lives with the public edge). */
export { hostWithPort } from '../http/public-edge.js';

const LEADING_ID = /^\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*(\d{1,15})\s*[,}]/;

/**
 * The numeric id of a JSON-RPC request whose text starts `{"jsonrpc":"2.0","id":N` (as the SDK
 * writes it), read from the first 64 bytes only; null otherwise. Used solely to address the
 * rate_limited answer to the request that was dropped.
 */
export function peekRequestId(data: RawData): number | null {
  const head = Array.isArray(data) ? data[0] : Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (head === undefined) return null;
  const match = LEADING_ID.exec(head.subarray(0, 64).toString('latin1'));
  return match?.[1] === undefined ? null : Number(match[1]);
}

/** How many pushed request ids a revocation's end checks against (a few hundred bytes each at most). */
const RECENTLY_TOLD_LIMIT = 4096;

/** Why a live session ends: its agent or key is no longer usable (or no longer exists). */
const SESSION_ENDING_CODES: ReadonlySet<ErrorCode> = new Set([
  'agent_revoked',
  'agent_held_for_review',
  'agent_expired',
  'key_revoked',
  'agent_unknown',
  'key_unknown',
]);

type ParsedFrame = { ok: true; request: ClientRequest } | { ok: false; id: string | number | null; error: CountersignError };

/** Strict JSON, then the method name (an unknown one is method_unknown), then the schema. */
function parseFrame(data: RawData): ParsedFrame {
  // ws has already validated UTF-8 (invalid text frames close with 1007) and the size limit (1009).
  // A Buffer is decoded where it lies (Buffer.from would copy it first: every frame, every call).
  const text = Array.isArray(data)
    ? Buffer.concat(data).toString('utf8')
    : Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Buffer.from(data).toString('utf8');
  let message: unknown;
  try {
    message = parseStrictJson(text);
  } catch (error) {
    return { ok: false, id: null, error: isCountersignError(error) ? error : new CountersignError('internal_error') };
  }
  const id =
    typeof message === 'object' && message !== null && !Array.isArray(message) ? (message as Record<string, unknown>).id : undefined;
  const replyId = typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id)) ? id : null;
  const method = typeof message === 'object' && message !== null ? (message as Record<string, unknown>).method : undefined;
  if (typeof method === 'string' && !(CLIENT_METHODS as readonly string[]).includes(method)) {
    return {
      ok: false,
      id: replyId,
      error: new CountersignError('method_unknown', `the method ${quote(method)} is not part of the protocol`),
    };
  }
  const parsed = clientRequestSchema.safeParse(message);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') ?? '';
    const detail = issue?.code === 'unrecognized_keys' ? `unknown field ${quote(issue.keys.join(', '))}` : (issue?.message ?? 'invalid');
    return {
      ok: false,
      id: replyId,
      error: new CountersignError('schema_invalid', `the message does not match the protocol at ${quote(where)}: ${detail}`),
    };
  }
  return { ok: true, request: parsed.data };
}
