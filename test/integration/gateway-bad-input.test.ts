/**
 * Every bad input named by the decision-path issue, through a real WebSocket: each gets a
 * stable error code, and none creates a token or a request row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { nodeWebSocket, startHarness, transferCall, type Harness } from '../helpers/harness.js';
import { AgentClient } from '../../shared/agent-client.js';
import { isCountersignError } from '../../shared/errors.js';
import { RawClient, errorCode, signedEnvelope } from '../helpers/raw-client.js';
import { WS_PATH, WS_SUBPROTOCOL } from '../../shared/protocol.js';
import type { AgentKey } from '../../shared/agent-keys.js';

let h: Harness;
let key: AgentKey;
let otherKey: AgentKey;

function rows(): { requests: number; tokens: number } {
  const n = (t: string) => (h.app.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
  return { requests: n('requests'), tokens: n('tokens') };
}

async function authed(agentId = 'finance-bot', k = key): Promise<RawClient> {
  const c = await RawClient.connect(h.app.url);
  const auth = await c.authenticate(agentId, k);
  expect(auth.result).toMatchObject({ agentId });
  return c;
}

/** Run `body`, then assert it created no request and no token. */
async function createsNothing(body: () => Promise<void>): Promise<void> {
  const before = rows();
  await body();
  expect(rows()).toEqual(before);
}

beforeAll(async () => {
  h = await startHarness({
    config: {
      gateway: {
        maxConnections: 40,
        maxUnauthenticated: 20,
        handshakeTimeoutMs: 400,
        ratePerSecond: 20,
        rateBurst: 20,
        maxMessageBytes: 8192,
      },
    },
  });
  key = await h.enroll('finance-bot');
  otherKey = await h.enroll('other-bot');
});
afterAll(async () => h.close());

describe('envelopes', () => {
  it('rejects a replayed envelope', async () => {
    const c = await authed();
    const env = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
    const first = await c.call('call.submit', { envelope: env });
    expect(first.result).toMatchObject({ decision: 'allow' });
    await createsNothing(async () => {
      const again = await c.call('call.submit', { envelope: env });
      expect(errorCode(again)).toBe('envelope_replayed');
    });
    c.close();
  });

  it('rejects stale and future timestamps', async () => {
    const c = await authed();
    await createsNothing(async () => {
      const stale = await signedEnvelope(key, 'finance-bot', transferCall('250.00'), { timestamp: Date.now() - 120_000 });
      expect(errorCode(await c.call('call.submit', { envelope: stale }))).toBe('envelope_stale');
      const future = await signedEnvelope(key, 'finance-bot', transferCall('250.00'), { timestamp: Date.now() + 60_000 });
      expect(errorCode(await c.call('call.submit', { envelope: future }))).toBe('envelope_future');
    });
    c.close();
  });

  it("refuses agent A's key claiming to be agent B, at connect and in an envelope", async () => {
    const c = await RawClient.connect(h.app.url);
    const auth = await c.authenticate('other-bot', key); // finance-bot's key, other-bot's id
    expect(errorCode(auth)).toBe('auth_failed');
    expect((await c.waitClosed()).code).toBe(4001);

    const a = await authed('finance-bot', key);
    await createsNothing(async () => {
      const env = await signedEnvelope(key, 'other-bot', transferCall('250.00'));
      expect(errorCode(await a.call('call.submit', { envelope: env }))).toBe('agent_mismatch');
      // Right agent id, but the key of another agent.
      const wrongKey = await signedEnvelope(otherKey, 'finance-bot', transferCall('250.00'));
      expect(errorCode(await a.call('call.submit', { envelope: wrongKey }))).toBe('key_unknown');
    });
    a.close();
  });

  it('rejects a tampered envelope signature', async () => {
    const c = await authed();
    await createsNothing(async () => {
      const env = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
      env.payload.call.params.amount = '25000.00';
      expect(errorCode(await c.call('call.submit', { envelope: env }))).toBe('envelope_signature_invalid');
    });
    c.close();
  });

  it('rejects an unknown tool and parameters that do not match the tool schema', async () => {
    const c = await authed();
    await createsNothing(async () => {
      const unknown = await signedEnvelope(key, 'finance-bot', { ...transferCall('1.00'), tool: 'payments.refund' });
      expect(errorCode(await c.call('call.submit', { envelope: unknown }))).toBe('unknown_tool');
      const extra = await signedEnvelope(key, 'finance-bot', {
        ...transferCall('1.00'),
        params: { amount: '1.00', currency: 'USD', payee: 'Acme Ltd', memo: 'x', iban: 'DE00' },
      });
      expect(errorCode(await c.call('call.submit', { envelope: extra }))).toBe('invalid_params');
      const precise = await signedEnvelope(key, 'finance-bot', transferCall('1.000001'));
      expect(errorCode(await c.call('call.submit', { envelope: precise }))).toBe('invalid_params');
    });
    c.close();
  });
});

describe('revoked, expired and rotated keys', () => {
  it('refuses a revoked agent at connect with 4001 as documented, and closes a call found revoked with 4004', async () => {
    const k = await h.enroll('revoked-bot');
    const live = await authed('revoked-bot', k);
    // Revoked behind the gateway's back (as another process would), so the live connection
    // learns it on its next call.
    h.app.db
      .prepare("UPDATE agents SET status = 'revoked', revoked_at = ?, revoked_reason = 'test' WHERE id = 'revoked-bot'")
      .run(Date.now());
    await createsNothing(async () => {
      const env = await signedEnvelope(k, 'revoked-bot', transferCall('250.00'));
      expect(errorCode(await live.call('call.submit', { envelope: env }))).toBe('agent_revoked');
      expect((await live.waitClosed()).code).toBe(4004);
    });
    const c = await RawClient.connect(h.app.url);
    expect(errorCode(await c.authenticate('revoked-bot', k))).toBe('agent_revoked');
    expect(await c.waitClosed()).toEqual({ code: 4001, reason: 'authentication failed' });
  });

  it('tells only the key holder that an agent is revoked: a forged proof gets auth_failed', async () => {
    const k = await h.enroll('revoked-probe-bot');
    h.app.registry.revoke('revoked-probe-bot', 'test');
    const c = await RawClient.connect(h.app.url);
    // The revoked agent's public kid, but a proof made with another agent's key.
    const answer = await c.authenticate('revoked-probe-bot', otherKey, k.kid);
    expect(errorCode(answer)).toBe('auth_failed');
    expect((await c.waitClosed()).code).toBe(4001);
  });

  it('refuses an agent whose enrollment expired', async () => {
    const k = await h.enroll('expired-bot', { expiresAt: Date.now() - 1000 });
    const c = await RawClient.connect(h.app.url);
    expect(errorCode(await c.authenticate('expired-bot', k))).toBe('agent_expired');
    expect(await c.waitClosed()).toEqual({ code: 4001, reason: 'authentication failed' });
  });

  it('keeps the old key during the rotation overlap and refuses it afterwards', async () => {
    const { generateAgentKey, importAgentKey } = await import('../../shared/agent-keys.js');
    const { createEnrollmentRequest, verifyEnrollmentRequest } = await import('../../shared/enrollment.js');
    const oldKey = await h.enroll('rotating-bot');
    const newKey = await importAgentKey(await generateAgentKey('ES256'));
    const payload = await verifyEnrollmentRequest(await createEnrollmentRequest(newKey, 'rotating-bot', 'rotating-bot'));
    h.app.registry.rotate('rotating-bot', payload, 60_000);
    const during = await RawClient.connect(h.app.url);
    expect((await during.authenticate('rotating-bot', oldKey)).result).toBeDefined();
    const withNew = await RawClient.connect(h.app.url);
    expect((await withNew.authenticate('rotating-bot', newKey)).result).toBeDefined();
    const env = await signedEnvelope(newKey, 'rotating-bot', transferCall('250.00'));
    expect((await withNew.call('call.submit', { envelope: env })).result).toMatchObject({ decision: 'allow' });
    // End the overlap window now.
    h.app.db.prepare("UPDATE agent_keys SET not_after = ? WHERE agent_id = 'rotating-bot' AND status = 'retiring'").run(Date.now() - 1);
    const after = await RawClient.connect(h.app.url);
    expect(errorCode(await after.authenticate('rotating-bot', oldKey))).toBe('key_revoked');
    expect((await after.waitClosed()).code).toBe(4001);
    during.close();
    withNew.close();
  });
});

describe('frames and JSON', () => {
  it('closes on an oversized frame (1009) and creates nothing', async () => {
    const c = await authed();
    await createsNothing(async () => {
      c.sendText(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'request.get', params: { requestId: 'x'.repeat(10_000) } }));
      expect((await c.waitClosed()).code).toBe(1009);
    });
  });

  it('refuses binary frames (1003)', async () => {
    const c = await authed();
    c.ws.send(Buffer.from('{"jsonrpc":"2.0"}'), { binary: true });
    expect(errorCode(await c.next())).toBe('frame_binary');
    expect((await c.waitClosed()).code).toBe(1003);
  });

  it('closes on invalid UTF-8 (1007)', async () => {
    const c = await authed();
    // A text frame carrying bytes that are not UTF-8; ws on the client side does not validate outgoing data.
    c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await c.waitClosed()).code).toBe(1007);
  });

  it.each([
    ['invalid JSON', '{"jsonrpc":"2.0",', 'json_invalid'],
    ['duplicate keys', '{"jsonrpc":"2.0","id":1,"id":2,"method":"request.get","params":{"requestId":"a"}}', 'json_duplicate_key'],
    ['unsafe integer', '{"jsonrpc":"2.0","id":9007199254740993,"method":"request.get","params":{"requestId":"a"}}', 'json_unsafe_integer'],
    ['lone surrogate', '{"jsonrpc":"2.0","id":1,"method":"request.get","params":{"requestId":"\\ud800"}}', 'json_lone_surrogate'],
    ['unknown field', '{"jsonrpc":"2.0","id":1,"method":"request.get","params":{"requestId":"a","admin":true}}', 'schema_invalid'],
    ['unknown top-level field', '{"jsonrpc":"2.0","id":1,"method":"request.get","params":{"requestId":"a"},"extra":1}', 'schema_invalid'],
    ['unknown method', '{"jsonrpc":"2.0","id":1,"method":"admin.shutdown","params":{}}', 'method_unknown'],
    ['wrong jsonrpc version', '{"jsonrpc":"1.0","id":1,"method":"request.get","params":{"requestId":"a"}}', 'schema_invalid'],
  ])('rejects %s with its code', async (_name, text, code) => {
    const c = await authed();
    await createsNothing(async () => {
      c.sendText(text);
      expect(errorCode(await c.next())).toBe(code);
    });
    c.close();
  });

  it('rejects duplicate keys and unknown fields inside a signed envelope', async () => {
    const c = await authed();
    await createsNothing(async () => {
      const env = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
      const text = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'call.submit', params: { envelope: env } });
      c.sendText(text.replace('"currency":"USD"', '"currency":"USD","currency":"EUR"'));
      expect(errorCode(await c.next())).toBe('json_duplicate_key');
      const withExtra = { ...env, payload: { ...env.payload, priority: 'high' } };
      expect(errorCode(await c.call('call.submit', { envelope: withExtra }))).toBe('schema_invalid');
    });
    c.close();
  });

  it('requires authentication before calls: the call is refused and the connection closed with 4001', async () => {
    const c = await RawClient.connect(h.app.url);
    await createsNothing(async () => {
      const env = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
      expect(errorCode(await c.call('call.submit', { envelope: env }))).toBe('not_authenticated');
      expect(await c.waitClosed()).toEqual({ code: 4001, reason: 'not_authenticated' });
    });
  });
});

describe('before authentication', () => {
  it.each([
    ['invalid JSON', '{"jsonrpc":"2.0",', 'json_invalid'],
    ['a call', '{"jsonrpc":"2.0","id":1,"method":"request.get","params":{"requestId":"a"}}', 'not_authenticated'],
    ['an unknown method', '{"jsonrpc":"2.0","id":1,"method":"admin.shutdown","params":{}}', 'method_unknown'],
    [
      'a malformed session.authenticate',
      '{"jsonrpc":"2.0","id":1,"method":"session.authenticate","params":{"agentId":"finance-bot"}}',
      'schema_invalid',
    ],
  ])('closes with 4001 on %s as the first frame', async (_name, text, code) => {
    const c = await RawClient.connect(h.app.url);
    c.sendText(text);
    expect(errorCode(await c.next())).toBe(code);
    expect(await c.waitClosed()).toEqual({ code: 4001, reason: code });
  });

  it('answers only the first of several frames sent before authentication, then closes', async () => {
    const c = await RawClient.connect(h.app.url);
    for (let i = 1; i <= 4; i++) c.sendText(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'request.get', params: { requestId: 'a' } }));
    expect((await c.waitClosed()).code).toBe(4001);
    expect(c.messages.map((m) => [m.id, errorCode(m)])).toEqual([[1, 'not_authenticated']]);
  });

  it('closes a binary first frame with 1003', async () => {
    const c = await RawClient.connect(h.app.url);
    c.ws.send(Buffer.from('{"jsonrpc":"2.0"}'), { binary: true });
    expect(errorCode(await c.next())).toBe('frame_binary');
    expect((await c.waitClosed()).code).toBe(1003);
  });

  it('still authenticates when session.authenticate is the first frame', async () => {
    const c = await authed();
    const env = await signedEnvelope(key, 'finance-bot', transferCall('250.00'));
    expect((await c.call('call.submit', { envelope: env })).result).toMatchObject({ decision: 'allow' });
    c.close();
  });
});

describe('handshake checks', () => {
  function upgradeStatus(headers: Record<string, string>, path = WS_PATH): Promise<number> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${h.app.port}${path}`, [WS_SUBPROTOCOL], { headers });
      ws.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on('open', () => {
        resolve(101);
        ws.close();
      });
      ws.on('error', (e) => reject(e));
    });
  }

  it('refuses a browser page from another origin', async () => {
    expect(await upgradeStatus({ Origin: 'https://evil.example' })).toBe(403);
    expect(await upgradeStatus({})).toBe(101);
  });

  it('refuses a DNS-rebound Host header', async () => {
    expect(await upgradeStatus({ Host: `attacker.example:${h.app.port}` })).toBe(421);
    const status = await new Promise<number>((resolve) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: h.app.port, path: '/.well-known/jwks.json', headers: { Host: 'rebind.example' } },
        (res) => {
          resolve(res.statusCode ?? 0);
          res.resume();
        },
      );
      req.end();
    });
    expect(status).toBe(421);
  });

  it('refuses a connection without the protocol', async () => {
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${h.app.port}${WS_PATH}`, ['other.v1']);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(-1));
    });
    expect(status).toBe(400);
  });

  it('closes a connection that never authenticates', async () => {
    const c = await RawClient.connect(h.app.url);
    expect(errorCode(await c.next())).toBe('handshake_timeout');
    expect((await c.waitClosed()).code).toBe(4002);
  });
});

describe('HTTP header timeout', () => {
  let slow: Harness;
  beforeAll(async () => {
    slow = await startHarness({ config: { gateway: { headersTimeoutMs: 300 } } });
  });
  afterAll(async () => slow.close());

  it("answers 408 and closes a connection whose request headers never finish, within seconds rather than at Node's 30 s check", async () => {
    const socket = connect({ host: '127.0.0.1', port: slow.app.port });
    let received = '';
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    socket.write(`GET ${WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:${slow.app.port}\r\nUpgrade: websocket\r\n`); // never ends the headers
    // Node's default connectionsCheckingInterval (30 s from listen) could not close it within this bound.
    await new Promise<void>((resolve, reject) => {
      const bound = setTimeout(() => reject(new Error('the half-sent request was still open after 10 s')), 10_000);
      socket.once('close', () => {
        clearTimeout(bound);
        resolve();
      });
      socket.once('error', () => undefined);
    });
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
  }, 20_000);
});

describe('floods', () => {
  it('rate-limits a flooding agent while another agent stays responsive', async () => {
    const flooder = await authed('finance-bot', key);
    const calm = await authed('other-bot', otherKey);
    for (let i = 0; i < 60; i++)
      flooder.sendText(JSON.stringify({ jsonrpc: '2.0', id: i + 100, method: 'request.get', params: { requestId: 'nope' } }));
    const codes: string[] = [];
    while (codes.length < 60 && !flooder.closed) {
      try {
        codes.push(errorCode(await flooder.next(2_000)) ?? 'ok');
      } catch {
        break;
      }
    }
    expect(codes).toContain('rate_limited');
    const env = await signedEnvelope(otherKey, 'other-bot', transferCall('250.00'));
    const answer = await calm.call('call.submit', { envelope: env });
    expect(answer.result).toMatchObject({ decision: 'allow' });
    flooder.close();
    calm.close();
  });

  it('answers a dropped request by its id, so the SDK fails it at once with rate_limited', async () => {
    const client = new AgentClient({
      url: h.app.url,
      agentId: 'finance-bot',
      key,
      reconnect: false,
      requestTimeoutMs: 10_000,
      webSocket: nodeWebSocket,
    });
    await client.connect();
    const results = await Promise.allSettled(Array.from({ length: 40 }, () => client.getRequest('req_none')));
    const codes = results.map((r) => (r.status === 'rejected' && isCountersignError(r.reason) ? r.reason.code : 'other'));
    expect(codes).toContain('rate_limited');
    expect(codes).not.toContain('timeout');
    client.close();
  });
});

describe('unauthenticated connection cap', () => {
  // Its own core with a long handshake timeout: with the shared core's 400 ms, a loaded machine
  // lets the first connections time out (freeing their slots) before the 30th is opened, and the
  // cap could not be counted exactly.
  let capped: Harness;
  let cappedKey: AgentKey;
  beforeAll(async () => {
    capped = await startHarness({ config: { gateway: { maxConnections: 40, maxUnauthenticated: 20, handshakeTimeoutMs: 60_000 } } });
    cappedKey = await capped.enroll('other-bot');
  });
  afterAll(async () => capped.close());

  it('caps unauthenticated connections and keeps serving authenticated agents', async () => {
    const calm = await RawClient.connect(capped.app.url);
    expect((await calm.authenticate('other-bot', cappedKey)).result).toMatchObject({ agentId: 'other-bot' });
    const opened: RawClient[] = [];
    const refusals: string[] = [];
    for (let i = 0; i < 30; i++) {
      try {
        opened.push(await RawClient.connect(capped.app.url));
      } catch (e) {
        refusals.push(String(e));
      }
    }
    expect(opened).toHaveLength(20);
    expect(refusals).toHaveLength(10);
    for (const r of refusals) expect(r).toContain('503');
    const env = await signedEnvelope(cappedKey, 'other-bot', transferCall('250.00'));
    expect((await calm.call('call.submit', { envelope: env })).result).toMatchObject({ decision: 'allow' });
    for (const c of opened) c.close();
    calm.close();
  });
});
