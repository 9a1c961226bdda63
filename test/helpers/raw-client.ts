/** A raw WebSocket client for sending exactly the bytes a hostile or broken agent host would. */
import { WebSocket } from 'ws';
import { signCanonical, type AgentKey } from '../../shared/agent-keys.js';
import { base64url, randomBytes } from '../../shared/encoding.js';
import { SIGNED_TYPES, WS_PATH, WS_SUBPROTOCOL, type CallPayload, type SignedEnvelope } from '../../shared/protocol.js';

export interface RawMessage {
  id?: number | string | null;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data: { code: string } };
}

export class RawClient {
  readonly messages: RawMessage[] = [];
  private waiters: Array<() => void> = [];
  closed: { code: number; reason: string } | undefined;
  challenge = '';
  serverId = '';
  private nextId = 1;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        const text = Buffer.isBuffer(data)
          ? data.toString('utf8')
          : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8');
        this.messages.push(JSON.parse(text) as RawMessage);
      }
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => this.wake());
  }

  static async connect(baseUrl: string, headers: Record<string, string> = {}, protocols = [WS_SUBPROTOCOL]): Promise<RawClient> {
    const ws = new WebSocket(`${baseUrl}${WS_PATH}`, protocols, { headers });
    const client = new RawClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`http ${res.statusCode}`)));
    });
    const challenge = await client.next();
    client.challenge = String(challenge.params?.challenge);
    client.serverId = String(challenge.params?.serverId);
    return client;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The next message not yet consumed. */
  async next(timeoutMs = 5_000): Promise<RawMessage> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length === 0) {
      if (this.closed) throw new Error(`closed ${this.closed.code} ${this.closed.reason}`);
      if (Date.now() > deadline) throw new Error('timeout waiting for a message');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.messages.shift()!;
  }

  async waitClosed(timeoutMs = 5_000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('timeout waiting for close');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.closed;
  }

  sendText(text: string): void {
    this.ws.send(text);
  }

  async call(method: string, params: unknown): Promise<RawMessage> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return this.next();
  }

  async authenticate(agentId: string, key: AgentKey, kid = key.kid): Promise<RawMessage> {
    const proof = await signCanonical(key, { typ: SIGNED_TYPES.auth, challenge: this.challenge, serverId: this.serverId, agentId, kid });
    return this.call('session.authenticate', { agentId, kid, proof });
  }

  close(): void {
    this.ws.close();
  }
}

export async function signedEnvelope(
  key: AgentKey,
  agentId: string,
  call: CallPayload['call'],
  overrides: Partial<CallPayload> = {},
): Promise<SignedEnvelope> {
  const payload: CallPayload = {
    typ: SIGNED_TYPES.call,
    agentId,
    kid: key.kid,
    nonce: base64url(randomBytes(24)),
    timestamp: Date.now(),
    call,
    ...overrides,
  };
  return { payload, signature: await signCanonical(key, payload) };
}

export function errorCode(message: RawMessage): string | undefined {
  return message.error?.data.code;
}
