/**
 * The agent SDK: connect to Countersign, prove the agent's identity with its enrolled key,
 * submit signed tool calls and await decisions. Pure TypeScript: the WebSocket implementation
 * is injected (the `ws` package in Node, the global WebSocket in browsers and Node 22+).
 */
import { CLOSE_CODES, CountersignError, isErrorCode, type ErrorCode } from './errors.js';
import { parseStrictJson, type JsonObject } from './canonical-json.js';
import { base64url, randomBytes } from './encoding.js';
import { signCanonical, type AgentKey } from './agent-keys.js';
import {
  SIGNED_TYPES,
  WS_PATH,
  WS_SUBPROTOCOL,
  type AuditProofResult,
  type AuthenticateResult,
  type CallPayload,
  type DecisionResult,
  type SessionRead,
  type SessionReportResult,
  type SignedEnvelope,
  type ToolCall,
} from './protocol.js';

/** The subset of the WHATWG WebSocket API the client needs (`ws` implements it too). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

export interface AgentClientOptions {
  /**
   * The gateway, e.g. `ws://127.0.0.1:7345` (the protocol path `/v1/agent` is appended) or the
   * full agent endpoint `ws://127.0.0.1:7345/v1/agent` (used as it is).
   */
  url: string;
  agentId: string;
  key: AgentKey;
  webSocket: WebSocketFactory;
  /** Timeout for one request/response (default 10 s). */
  requestTimeoutMs?: number;
  /** Reconnect after an unexpected close, with exponential backoff and jitter (default on). */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number; maxAttempts?: number } | false;
  /** Called for decisions pushed by the server (pending calls resolved by approvers). */
  onDecision?: (result: DecisionResult) => void;
  /** Called when the connection state changes. */
  onStateChange?: (state: AgentClientState) => void;
  /** The model and agent version this host runs, sent with every call (compared with the enrolled ones). */
  model?: string;
  agentVersion?: string;
  clock?: () => number;
}

/**
 * The agent endpoint for a configured URL: the base URL gets the protocol path appended, a URL
 * that already ends in it is kept (both spellings appear in docs and configs; appending twice
 * would reach no endpoint and fail with a bare close 1006).
 */
export function agentEndpoint(url: string): string {
  const base = url.replace(/\/+$/, '');
  return base.endsWith(WS_PATH) ? base : `${base}${WS_PATH}`;
}

export type AgentClientState = 'idle' | 'connecting' | 'ready' | 'reconnecting' | 'closed';

/** The call an agent submits; dataClass, jurisdiction and provenance are declared by the host. */
export interface SubmitCall {
  tool: string;
  params: JsonObject;
  dataClass: string;
  jurisdiction: string;
  provenance?: string[];
  /** The agent run this call belongs to, and how deep in it (0 = started by a person). */
  session?: { id: string; depth: number };
  /** Override the client's model / agent version for this call. */
  model?: string;
  agentVersion?: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: CountersignError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;

export class AgentClient {
  private socket: WebSocketLike | undefined;
  private state: AgentClientState = 'idle';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waiters = new Map<string, Array<(r: DecisionResult | CountersignError) => void>>();
  private ready: Promise<void> | undefined;
  private reconnectAttempts = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Why the server ended the session for good (a revoked agent or key, failed authentication):
   * every later call is refused with that code, not as a client that was closed.
   */
  private endedBy: CountersignError | undefined;
  private readonly clock: () => number;

  constructor(private readonly options: AgentClientOptions) {
    this.clock = options.clock ?? Date.now;
  }

  get connectionState(): AgentClientState {
    return this.state;
  }

  /** Open the connection and authenticate. Resolves once calls can be submitted. */
  connect(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(this.endedBy ?? new CountersignError('connection_closed', 'the client was closed'));
    if (this.ready && (this.state === 'ready' || this.state === 'connecting' || this.state === 'reconnecting')) return this.ready;
    this.setState(this.state === 'idle' ? 'connecting' : 'reconnecting');
    this.ready = this.open();
    return this.ready;
  }

  /** Sign and submit one call; resolves with the decision (`pending` until approvers act). */
  async submit(call: SubmitCall, options: { timeoutMs?: number } = {}): Promise<DecisionResult> {
    await this.connect();
    const toolCall: ToolCall = {
      tool: call.tool,
      params: call.params,
      dataClass: call.dataClass,
      jurisdiction: call.jurisdiction,
      provenance: call.provenance ?? [],
    };
    if (call.session !== undefined) toolCall.session = call.session;
    const model = call.model ?? this.options.model;
    if (model !== undefined) toolCall.model = model;
    const agentVersion = call.agentVersion ?? this.options.agentVersion;
    if (agentVersion !== undefined) toolCall.agentVersion = agentVersion;
    const payload: CallPayload = {
      typ: SIGNED_TYPES.call,
      agentId: this.options.agentId,
      kid: this.options.key.kid,
      nonce: base64url(randomBytes(24)),
      timestamp: this.clock(),
      call: toolCall,
    };
    const envelope: SignedEnvelope = { payload, signature: await signCanonical(this.options.key, payload) };
    return (await this.request('call.submit', { envelope }, options.timeoutMs)) as DecisionResult;
  }

  /** Fetch the current outcome of one of this agent's requests. */
  async getRequest(requestId: string, options: { timeoutMs?: number } = {}): Promise<DecisionResult> {
    await this.connect();
    return (await this.request('request.get', { requestId }, options.timeoutMs)) as DecisionResult;
  }

  /**
   * The audit entries about one of this agent's requests, each with its inclusion proof against
   * a signed checkpoint (docs/audit.md says how to verify them).
   */
  async auditProof(requestId: string, options: { timeoutMs?: number } = {}): Promise<AuditProofResult> {
    await this.connect();
    return (await this.request('audit.proof', { requestId }, options.timeoutMs)) as AuditProofResult;
  }

  /**
   * Data-flow provenance (optional; docs/protocol.md "session.report"): tell Countersign what
   * the agent session `sessionId` just read — the person's prompt (`trust: 'trusted'`), an
   * e-mail, a web page, a tool result (`'untrusted'` when anyone else could have written it) —
   * before submitting the calls that follow from it with `session: { id: sessionId, ... }`. The
   * server keeps only digests of the addresses, links, identifiers and names in the text, and
   * scores a later call higher when one of its destinations came from untrusted content.
   */
  async reportReads(sessionId: string, reads: SessionRead[], options: { timeoutMs?: number } = {}): Promise<SessionReportResult> {
    await this.connect();
    return (await this.request('session.report', { sessionId, reads }, options.timeoutMs)) as SessionReportResult;
  }

  /**
   * Wait until a request leaves `pending` (approved, denied or expired). Survives reconnects:
   * after reconnecting, the client asks for the outcome it may have missed. Rejects with
   * `timeout` after `timeoutMs`, or with `connection_closed` once the client is closed.
   */
  async waitForDecision(requestId: string, options: { timeoutMs: number }): Promise<DecisionResult> {
    return new Promise<DecisionResult>((resolve, reject) => {
      let settled = false;
      const finish = (settle: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        remove();
        settle();
      };
      const timer = setTimeout(
        () => finish(() => reject(new CountersignError('timeout', 'no decision arrived before the timeout'))),
        options.timeoutMs,
      );
      const listener = (result: DecisionResult | CountersignError) => {
        if (result instanceof CountersignError) finish(() => reject(result));
        else if (result.state !== 'pending') finish(() => resolve(result));
      };
      const remove = () => {
        const list = (this.waiters.get(requestId) ?? []).filter((l) => l !== listener);
        if (list.length === 0) this.waiters.delete(requestId);
        else this.waiters.set(requestId, list);
      };
      // Listen first, then ask: the push of the end can come in the same read as the answer to the
      // question, and is then dispatched before code after an `await` of that answer would run.
      this.waiters.set(requestId, [...(this.waiters.get(requestId) ?? []), listener]);
      this.getRequest(requestId).then(
        (current) => {
          if (current.state !== 'pending') finish(() => resolve(current));
        },
        (error: Error) => finish(() => reject(error)),
      );
    });
  }

  close(): void {
    this.setState('closed');
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.socket?.close(1000, 'client closed');
    this.failPending(new CountersignError('connection_closed', 'the client was closed'));
  }

  // ---- internals ----

  private setState(state: AgentClientState): void {
    if (this.state === state) return;
    this.state = state;
    // Once closed, no decision can arrive any more: fail the waiters now instead of at their timeouts.
    if (state === 'closed') {
      const error = new CountersignError('connection_closed', 'the client is closed, so no decision can arrive');
      for (const listeners of [...this.waiters.values()]) for (const listener of listeners) listener(error);
    }
    this.options.onStateChange?.(state);
  }

  private open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const url = agentEndpoint(this.options.url);
      let settled = false;
      const settle = (error?: CountersignError) => {
        if (settled) return;
        settled = true;
        if (error) reject(error);
        else resolve();
      };
      let socket: WebSocketLike;
      try {
        socket = this.options.webSocket(url, [WS_SUBPROTOCOL]);
      } catch (cause) {
        settle(new CountersignError('connection_closed', 'could not open the connection', { cause }));
        return;
      }
      this.socket = socket;
      socket.onerror = () => undefined; // onclose follows and carries the outcome
      socket.onclose = (event) => {
        this.socket = undefined;
        const final = event.code === CLOSE_CODES.authFailed || event.code === CLOSE_CODES.keyRevoked;
        const error =
          final && isErrorCode(event.reason)
            ? new CountersignError(event.reason, `the server ended the session (${event.code}: ${event.reason})`, {
                details: { closeCode: event.code },
              })
            : new CountersignError('connection_closed', `the connection closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`, {
                details: { closeCode: event.code },
              });
        if (final && error.code !== 'connection_closed') this.endedBy = error;
        this.failPending(error);
        settle(error);
        this.scheduleReconnect(event.code);
      };
      socket.onmessage = (event) => {
        if (typeof event.data !== 'string') return;
        let message: unknown;
        try {
          message = parseStrictJson(event.data);
        } catch {
          return; // a server that sends malformed JSON gets ignored, requests time out
        }
        if (typeof message !== 'object' || message === null || Array.isArray(message)) return;
        const m = message as Record<string, unknown>;
        if (m.method === 'session.challenge') {
          const params = m.params as { challenge?: unknown; serverId?: unknown } | undefined;
          if (typeof params?.challenge !== 'string' || typeof params.serverId !== 'string')
            return settle(new CountersignError('schema_invalid', 'the server sent a malformed challenge'));
          this.authenticate(params.challenge, params.serverId).then(
            () => {
              this.reconnectAttempts = 0;
              this.setState('ready');
              settle();
              this.refreshWaiters();
            },
            (error: unknown) => {
              const err = error instanceof CountersignError ? error : new CountersignError('auth_failed', undefined, { cause: error });
              settle(err);
            },
          );
          return;
        }
        if (m.method === 'request.decided') {
          this.deliver(m.params as DecisionResult);
          return;
        }
        if (typeof m.id === 'number') {
          const entry = this.pending.get(m.id);
          if (!entry) return;
          this.pending.delete(m.id);
          clearTimeout(entry.timer);
          if ('error' in m) entry.reject(toError(m.error));
          else entry.resolve(m.result);
        }
      };
    });
  }

  private async authenticate(challenge: string, serverId: string): Promise<void> {
    const { agentId, key } = this.options;
    const proof = await signCanonical(key, { typ: SIGNED_TYPES.auth, challenge, serverId, agentId, kid: key.kid });
    (await this.request('session.authenticate', { agentId, kid: key.kid, proof })) as AuthenticateResult;
  }

  private request(method: string, params: unknown, timeoutMs = this.options.requestTimeoutMs ?? 10_000): Promise<unknown> {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return Promise.reject(new CountersignError('connection_closed', 'not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CountersignError('timeout', `no answer to ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      socket.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  private deliver(result: DecisionResult): void {
    this.options.onDecision?.(result);
    for (const listener of this.waiters.get(result.requestId) ?? []) listener(result);
  }

  /** After a reconnect, ask for outcomes that may have been pushed while we were away. */
  private refreshWaiters(): void {
    for (const requestId of this.waiters.keys()) {
      this.request('request.get', { requestId }).then(
        (r) => this.deliver(r as DecisionResult),
        () => undefined,
      );
    }
  }

  private failPending(error: CountersignError): void {
    for (const [id, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(error);
      this.pending.delete(id);
    }
  }

  private scheduleReconnect(closeCode: number): void {
    const policy = this.options.reconnect;
    // Authentication and revocation failures are final: retrying cannot fix them.
    if (this.state === 'closed' || policy === false || closeCode === CLOSE_CODES.authFailed || closeCode === CLOSE_CODES.keyRevoked) {
      if (this.state !== 'closed') this.setState('closed');
      return;
    }
    const max = policy?.maxAttempts ?? Infinity;
    if (this.reconnectAttempts >= max) {
      this.setState('closed');
      return;
    }
    const initial = policy?.initialDelayMs ?? 200;
    const cap = policy?.maxDelayMs ?? 10_000;
    const delay = Math.min(cap, initial * 2 ** this.reconnectAttempts) * (0.5 + randomFraction() / 2);
    this.reconnectAttempts++;
    this.setState('reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.ready = this.open();
      this.ready.catch(() => undefined);
    }, delay);
  }
}

function toError(error: unknown): CountersignError {
  const e = error as { message?: unknown; data?: { code?: unknown; details?: Record<string, string | number | boolean> } } | undefined;
  const code: ErrorCode = isErrorCode(e?.data?.code) ? e.data.code : 'internal_error';
  const message = typeof e?.message === 'string' ? e.message : undefined;
  return new CountersignError(code, message, e?.data?.details ? { details: e.data.details } : undefined);
}

/** A uniform number in [0, 1) from WebCrypto (reconnect jitter; shared/ and core never use Math.random). */
function randomFraction(): number {
  return (globalThis.crypto.getRandomValues(new Uint32Array(1))[0] ?? 0) / 2 ** 32;
}
/**
 * Check what `auditProof` returns against the log's signing keys (the JWKS), with the same
 * portable verifier the CLI runs offline: a tool server or a browser can hold the gateway to
 * the record of a decision. docs/audit.md "Verifying a proof with the SDK".
 */
export { verifyAuditProof, type VerifiedAuditProof, type NoteVerificationKey } from './audit-verify.js';
