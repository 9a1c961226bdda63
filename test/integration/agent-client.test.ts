/**
 * The agent SDK (shared/agent-client.ts) against the real gateway: real SQLite, Cedar, signer and
 * WebSocket server from the harness, `ws` on the client side. The server is never mocked; the
 * only thing wrapped is the SDK's injected WebSocket factory, to count and time connection
 * attempts. Server outages are real: the app is stopped and a new one started on the same data
 * directory and port.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { performance } from 'node:perf_hooks';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { nodeWebSocket, startHarness, transferCall, type Harness } from '../helpers/harness.js';
import type { AgentClient, AgentClientOptions, AgentClientState, WebSocketFactory } from '../../shared/agent-client.js';
import type { AgentKey } from '../../shared/agent-keys.js';
import type { JsonObject } from '../../shared/canonical-json.js';
import type { DecisionResult } from '../../shared/protocol.js';
import type { BridgeEvent } from '../../shared/bridge-table.js';
import { isCountersignError, type ErrorCode } from '../../shared/errors.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitFor(predicate: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** The rejection of `promise`; fails if it resolves, or if it neither settles within `ms` (a hang). */
async function rejectionOf(promise: Promise<unknown>, ms = 2_000): Promise<unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), ms);
  });
  try {
    const outcome = await Promise.race([
      promise.then(
        (value: unknown) => ({ resolved: value }),
        (error: unknown) => ({ rejected: error }),
      ),
      hung,
    ]);
    if (outcome === 'hung') throw new Error(`the promise did not settle within ${ms} ms`);
    if ('resolved' in outcome) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.resolved)}`);
    return outcome.rejected;
  } finally {
    clearTimeout(timer);
  }
}

function expectCode(error: unknown, code: ErrorCode): void {
  expect(error, `expected a CountersignError with code ${code}, got ${String(error)}`).toSatisfy((e: unknown) =>
    isCountersignError(e, code),
  );
}

/** The SDK's own transport hook, wrapped to record when each connection attempt starts. */
function trackedWebSocket(): { attempts: number[]; factory: WebSocketFactory } {
  const attempts: number[] = [];
  return {
    attempts,
    factory: (url, protocols) => {
      attempts.push(performance.now());
      return nodeWebSocket(url, protocols);
    },
  };
}

/**
 * The delays the agent SDK gives setTimeout when it schedules a reconnect (recognised by its
 * caller, AgentClient.scheduleReconnect, on the stack); every call goes on to the real timer unchanged.
 */
function reconnectDelays(): { delays: number[]; stop: () => void } {
  const delays: number[] = [];
  const real = globalThis.setTimeout as unknown as (handler: unknown, ms?: number, ...rest: unknown[]) => NodeJS.Timeout;
  const spy = vi.spyOn(globalThis, 'setTimeout').mockImplementation((handler: unknown, ms?: number, ...rest: unknown[]) => {
    if (new Error().stack?.includes('scheduleReconnect')) delays.push(ms ?? 0);
    return real(handler, ms, ...rest);
  });
  return { delays, stop: () => spy.mockRestore() };
}

async function fetchJwks(app: RunningCountersign) {
  const res = await fetch(`http://127.0.0.1:${app.port}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  return (await res.json()) as { keys: never[] };
}

function countRequests(app: RunningCountersign): number {
  return (app.db.prepare('SELECT COUNT(*) AS n FROM requests').get() as { n: number }).n;
}

let h: Harness;
/** The app currently serving the harness' data directory (replaced by `restart`). */
let app: RunningCountersign;
const extraApps: RunningCountersign[] = [];
const clients: AgentClient[] = [];

beforeEach(async () => {
  h = await startHarness();
  app = h.app;
});

afterEach(async () => {
  vi.restoreAllMocks(); // a reconnect-delay observer left by a failed test
  for (const c of clients.splice(0)) c.close();
  for (const a of extraApps.splice(0)) await a.close();
  await h.close();
});

function client(agentId: string, key: AgentKey, options: Partial<AgentClientOptions> = {}): AgentClient {
  const c = h.client(agentId, key, options);
  clients.push(c);
  return c;
}

/** Stop the running app: the gateway closes every agent connection (1013) and frees the port. */
async function stopServer(): Promise<void> {
  await app.close();
}

/** Start a new app on the same data directory and port. */
async function startServer(start: { clock?: () => number } = {}): Promise<RunningCountersign> {
  const port = app.port;
  app = await startCountersign({ dataDir: h.dataDir, overrides: { port }, log: () => undefined, ...start });
  extraApps.push(app);
  return app;
}

describe('AgentClient: connect, authenticate, submit', () => {
  it('authenticates with the enrolled key and gets a token the tool side verifies', async () => {
    const key = await h.enroll('finance-bot');
    const states: AgentClientState[] = [];
    const { attempts, factory } = trackedWebSocket();
    const c = client('finance-bot', key, { webSocket: factory, onStateChange: (s) => states.push(s) });
    expect(c.connectionState).toBe('idle');
    await c.connect();
    expect(c.connectionState).toBe('ready');
    expect(states).toEqual(['connecting', 'ready']);
    expect(app.gateway.getStats()).toMatchObject({ connections: 1, authenticated: 1 });

    const call = transferCall('250.00');
    const result = await c.submit(call);
    expect(result).toMatchObject({ decision: 'allow', state: 'allowed', policyHash: app.policy.hash });
    expect(result.token).toBeTypeOf('string');
    const verified = await verifyApprovalToken(result.token!, {
      call: { tool: call.tool, params: call.params },
      audience: 'payments-service',
      keys: await fetchJwks(app),
      jtiStore: new MemoryJtiStore(),
    });
    expect(verified.sub).toBe('finance-bot');
    expect(verified.decision.id).toBe(result.requestId);
    // connect() again and further calls reuse the one authenticated connection.
    await c.connect();
    await c.getRequest(result.requestId);
    expect(attempts).toHaveLength(1);
    expect(app.gateway.getStats()).toMatchObject({ connections: 1, authenticated: 1 });
  });

  it('connects with the base URL and with the full agent URL the README shows, with or without a trailing slash', async () => {
    const key = await h.enroll('finance-bot');
    const opened: string[] = [];
    for (const url of [app.url, `${app.url}/`, `${app.url}/v1/agent`, `${app.url}/v1/agent/`]) {
      const c = client('finance-bot', key, { url, reconnect: false, webSocket: (u, p) => (opened.push(u), nodeWebSocket(u, p)) });
      await c.connect();
      expect(c.connectionState).toBe('ready');
      expect((await c.submit(transferCall(`${250 + opened.length}.00`))).decision).toBe('allow');
      c.close();
    }
    expect(new Set(opened)).toEqual(new Set([`${app.url}/v1/agent`]));
  });

  it('fails with auth_failed for a key not enrolled for the agent, and does not retry', async () => {
    await h.enroll('finance-bot');
    const otherKey = await h.enroll('other-bot');
    const { attempts, factory } = trackedWebSocket();
    const c = client('finance-bot', otherKey, { webSocket: factory, reconnect: { initialDelayMs: 5, maxDelayMs: 10 } });
    expectCode(await rejectionOf(c.connect()), 'auth_failed');
    await waitFor(() => c.connectionState === 'closed', 'the client to give up');
    await sleep(100); // several backoff periods: a retry loop would have shown up by now
    expect(attempts).toHaveLength(1);
    expectCode(await rejectionOf(c.submit(transferCall('1.00'))), 'connection_closed');
  });
});

describe('AgentClient.waitForDecision', () => {
  it('rejects with timeout after the configured time on a pending request, which stays fetchable', async () => {
    const key = await h.enroll('finance-bot');
    const c = client('finance-bot', key);
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(pending).toMatchObject({ decision: 'pending', state: 'pending' });

    const timeoutMs = 150;
    const started = performance.now();
    const error = await rejectionOf(c.waitForDecision(pending.requestId, { timeoutMs }));
    const elapsed = performance.now() - started;
    expectCode(error, 'timeout');
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 5);
    expect(elapsed).toBeLessThan(timeoutMs + 1_000);

    // The timeout is the caller's wait, not the request's: the connection and the request are intact.
    expect(c.connectionState).toBe('ready');
    const fetched = await c.getRequest(pending.requestId);
    expect(fetched).toMatchObject({ requestId: pending.requestId, state: 'pending', decision: 'pending' });
  });

  it('gets an end pushed in the same read as the answer to its own fetch (listens before it asks)', async () => {
    const key = await h.enroll('finance-bot');
    // The one fault injected: the SDK's transport holds the answer to request.get and hands it over
    // with the next frame in one turn, as one TCP read carrying both frames does under load.
    let armed = false;
    let held: { data: unknown } | undefined;
    const factory: WebSocketFactory = (url, protocols) => {
      const socket = nodeWebSocket(url, protocols);
      let deliver: ((event: { data: unknown }) => void) | null = null;
      socket.onmessage = (event) => {
        const frame = JSON.parse(String(event.data)) as { id?: unknown; result?: { state?: string } };
        if (armed && frame.id !== undefined && frame.result?.state === 'pending') {
          armed = false;
          held = event;
          return;
        }
        const first = held;
        held = undefined;
        if (first !== undefined) deliver?.(first);
        deliver?.(event);
      };
      return new Proxy(socket, {
        set(target, prop, value) {
          if (prop === 'onmessage') deliver = value as typeof deliver;
          else (target as unknown as Record<string | symbol, unknown>)[prop] = value;
          return true;
        },
      });
    };
    const c = client('finance-bot', key, { webSocket: factory });
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    armed = true;
    const waiting = c.waitForDecision(pending.requestId, { timeoutMs: 5_000 });
    await waitFor(() => held !== undefined, 'the fetch to be answered (and held)');
    const ended = await app.decisions.expireDue(Date.now() + 20 * 60_000);
    const [{ agentId, result }] = ended as [(typeof ended)[number]];
    app.gateway.notifyAgent(agentId, result);
    await expect(waiting).resolves.toMatchObject({ requestId: pending.requestId, state: 'expired' });
  });

  it('returns at once for a request that is already decided', async () => {
    const key = await h.enroll('finance-bot');
    const c = client('finance-bot', key);
    const allowed = await c.submit(transferCall('250.00'));
    const result = await c.waitForDecision(allowed.requestId, { timeoutMs: 60_000 });
    expect(result).toMatchObject({ requestId: allowed.requestId, state: 'allowed', decision: 'allow' });
  });
});

describe("a request's end is pushed to the agent once", () => {
  it("pushes an ended held call once when two paths report the same end (a hub's own approval and the outcome notice of that commit)", async () => {
    const key = await h.enroll('finance-bot');
    const pushed: DecisionResult[] = [];
    const c = client('finance-bot', key, { onDecision: (r) => pushed.push(r) });
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(pending.state).toBe('pending');
    // The request really ends (expired past its window); the gateway is then told of that end twice,
    // as a hub is when its own approval and the store's outcome notice both report one commit.
    const ended = await app.decisions.expireDue(Date.now() + 20 * 60_000);
    expect(ended.map((e) => e.result.requestId)).toEqual([pending.requestId]);
    const [{ agentId, result }] = ended as [(typeof ended)[number]];
    expect(app.gateway.notifyAgent(agentId, result)).toBe(1);
    expect(app.gateway.notifyAgent(agentId, result)).toBe(0);
    // Frames on one socket arrive in order: once this answer is in, any second push would be too.
    await c.getRequest(pending.requestId);
    expect(pushed.filter((r) => r.requestId === pending.requestId).map((r) => r.state)).toEqual(['expired']);
  });

  it('tells the desks of an end once when the agent is offline and two paths report it', async () => {
    const key = await h.enroll('finance-bot');
    const c = client('finance-bot', key);
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    c.close();
    await waitFor(() => app.gateway.getStats().connections === 0, 'the gateway to see the agent leave');
    const seen: BridgeEvent[] = [];
    const stop = app.bridgeEvents.subscribe((event) => seen.push(event));
    const ended = await app.decisions.expireDue(Date.now() + 20 * 60_000);
    const [{ agentId, result }] = ended as [(typeof ended)[number]];
    app.gateway.notifyAgent(agentId, result);
    app.gateway.notifyAgent(agentId, result);
    stop();
    expect(seen.filter((e) => e.name === 'decided')).toEqual([
      { name: 'decided', data: { requestId: pending.requestId, state: 'expired' } },
    ]);
  });
});

describe('AgentClient reconnect', () => {
  it('reconnects with growing backoff after the server drops it, re-authenticates, and submits again', async () => {
    const key = await h.enroll('finance-bot');
    const states: AgentClientState[] = [];
    const { attempts, factory } = trackedWebSocket();
    const initialDelayMs = 20;
    const maxDelayMs = 5_000;
    // The delays the client asks of its timer (observed, passed on unchanged): the schedule is checked
    // from them exactly, and the wall-clock gaps only from below (a timer never fires early; on a
    // loaded machine it fires late by any amount, so an upper bound on the gaps would be timing).
    const scheduled = reconnectDelays();
    const c = client('finance-bot', key, {
      webSocket: factory,
      reconnect: { initialDelayMs, maxDelayMs },
      onStateChange: (s) => states.push(s),
    });
    await c.connect();
    expect((await c.submit(transferCall('250.00'))).decision).toBe('allow');

    await stopServer();
    // Initial connection + four refused reconnect attempts while the server is down.
    await waitFor(() => attempts.length >= 5, 'four reconnect attempts');
    expect(c.connectionState).toBe('reconnecting');
    const fresh = await startServer();
    await waitFor(() => c.connectionState === 'ready', 'the client to reconnect');

    // The delay before reconnect attempt k+1 (k = 0 after the drop) is min(max, initial * 2^k) * [0.5, 1).
    const outage = scheduled.delays.slice();
    expect(outage.length).toBeGreaterThanOrEqual(4);
    outage.forEach((delay, k) => {
      const full = Math.min(maxDelayMs, initialDelayMs * 2 ** k);
      expect(delay, `delay before reconnect attempt ${k + 1}`).toBeGreaterThanOrEqual(0.5 * full);
      expect(delay, `delay before reconnect attempt ${k + 1}`).toBeLessThan(full);
    });
    // Growing below the cap: each delay's floor is its predecessor's ceiling, whatever the jitter drew.
    for (let k = 1; k < outage.length && initialDelayMs * 2 ** k <= maxDelayMs; k++) expect(outage[k]!).toBeGreaterThan(outage[k - 1]!);
    // And the client waited at least that long between its attempts.
    for (const k of [1, 2, 3])
      expect(attempts[k + 1]! - attempts[k]!, `gap after reconnect attempt ${k}`).toBeGreaterThanOrEqual(outage[k]! - 3);

    expect(states).toEqual(['connecting', 'ready', 'reconnecting', 'ready']);
    // The new server saw a real, authenticated session from the SDK.
    expect(fresh.gateway.getStats()).toMatchObject({ connections: 1, authenticated: 1 });
    const after = await c.submit(transferCall('251.00'));
    expect(after).toMatchObject({ decision: 'allow', policyHash: fresh.policy.hash });
    expect(countRequests(fresh)).toBe(2);

    // A successful reconnect resets the backoff: the next outage starts again from the initial delay.
    const before = attempts.length;
    const delaysBefore = scheduled.delays.length;
    await stopServer();
    await waitFor(() => attempts.length > before, 'a reconnect attempt after the second outage');
    const first = scheduled.delays[delaysBefore]!;
    expect(first).toBeGreaterThanOrEqual(0.5 * initialDelayMs);
    expect(first).toBeLessThan(initialDelayMs);
    scheduled.stop();
  });

  it('gives up after maxAttempts, then fails fast with connection_closed instead of hanging', async () => {
    const key = await h.enroll('finance-bot');
    const { attempts, factory } = trackedWebSocket();
    const states: AgentClientState[] = [];
    const c = client('finance-bot', key, {
      webSocket: factory,
      reconnect: { initialDelayMs: 10, maxDelayMs: 40, maxAttempts: 3 },
      onStateChange: (s) => states.push(s),
    });
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    const waiting = c.waitForDecision(pending.requestId, { timeoutMs: 60_000 });
    waiting.catch(() => undefined); // observed below
    await c.getRequest(pending.requestId); // replies are ordered: the waiter is now listening
    await stopServer();
    await waitFor(() => c.connectionState === 'closed', 'the client to give up');
    // A client that gave up can never receive the decision: the wait fails now, not in 60 s.
    expectCode(await rejectionOf(waiting, 500), 'connection_closed');
    expect(attempts).toHaveLength(1 + 3);
    expect(states).toEqual(['connecting', 'ready', 'reconnecting', 'closed']);

    expectCode(await rejectionOf(c.submit(transferCall('250.00')), 500), 'connection_closed');
    expectCode(await rejectionOf(c.getRequest('req_whatever'), 500), 'connection_closed');
    expectCode(await rejectionOf(c.connect(), 500), 'connection_closed');
    // Even with the server back, a client that gave up stays closed: no more attempts.
    await startServer();
    await sleep(150);
    expect(attempts).toHaveLength(4);
    expect(app.gateway.getStats().connections).toBe(0);
  });
});

describe('AgentClient submit while disconnected', () => {
  it('without reconnect: the client closes on a server drop and a submit fails with connection_closed', async () => {
    const key = await h.enroll('finance-bot');
    const { attempts, factory } = trackedWebSocket();
    const c = client('finance-bot', key, { webSocket: factory, reconnect: false });
    await c.connect();
    await stopServer();
    await waitFor(() => c.connectionState === 'closed', 'the client to see the drop');
    const fresh = await startServer();
    const before = countRequests(fresh);
    expectCode(await rejectionOf(c.submit(transferCall('250.00')), 1_000), 'connection_closed');
    expect(attempts).toHaveLength(1);
    expect(fresh.gateway.getStats()).toMatchObject({ connections: 0, decisions: 0 });
    expect(countRequests(fresh)).toBe(before);
  });

  it('with reconnect: a submit during the outage fails with connection_closed and is not replayed later', async () => {
    const key = await h.enroll('finance-bot');
    const { attempts, factory } = trackedWebSocket();
    const c = client('finance-bot', key, { webSocket: factory, reconnect: { initialDelayMs: 10, maxDelayMs: 40 } });
    await c.connect();
    const before = countRequests(app);
    await stopServer();
    await waitFor(() => c.connectionState === 'reconnecting', 'the client to see the drop');
    expectCode(await rejectionOf(c.submit(transferCall('250.00')), 1_000), 'connection_closed');
    // Reads fail the same way; nothing is queued for later.
    expectCode(await rejectionOf(c.getRequest('req_whatever'), 1_000), 'connection_closed');
    expectCode(await rejectionOf(c.waitForDecision('req_whatever', { timeoutMs: 5_000 }), 1_000), 'connection_closed');
    // Also while an attempt is in flight (the attempt itself is refused).
    await waitFor(() => attempts.length >= 3, 'reconnect attempts');
    expectCode(await rejectionOf(c.submit(transferCall('250.00')), 1_000), 'connection_closed');

    const fresh = await startServer();
    await waitFor(() => c.connectionState === 'ready', 'the client to reconnect');
    await sleep(50); // a queued call would reach the server right after authenticating
    expect(countRequests(fresh)).toBe(before);
    expect(fresh.gateway.getStats().decisions).toBe(0);
    expect((await c.submit(transferCall('252.00'))).decision).toBe('allow');
    expect(countRequests(fresh)).toBe(before + 1);
  });
});

describe('AgentClient outcome after reconnect', () => {
  it('fetches the outcome of its earlier request after reconnecting, and a waiter gets the missed decision', async () => {
    const key = await h.enroll('finance-bot');
    const pushed: DecisionResult[] = [];
    // While `away`, the client's reconnect attempts go to a port nothing listens on (refused, as
    // for a server still down), so it is back only once the request has expired.
    let away = false;
    const webSocket: WebSocketFactory = (url, protocols) => {
      const target = new URL(url);
      if (away) target.port = '1';
      return nodeWebSocket(target.toString(), protocols);
    };
    const c = client('finance-bot', key, {
      webSocket,
      reconnect: { initialDelayMs: 10, maxDelayMs: 40 },
      onDecision: (r) => pushed.push(r),
    });
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(pending.state).toBe('pending');
    // Long enough for a server restart on a loaded machine: what is checked is the answer, not how soon it came.
    const waiting = c.waitForDecision(pending.requestId, { timeoutMs: 25_000 });
    // waitForDecision listens before it fetches; once this later fetch is answered, so is its own.
    await c.getRequest(pending.requestId);

    away = true;
    await stopServer();
    // The approval window (900 s) passes while the agent is away; the request expires server-side
    // before the agent is back (the expiry here pushes to nobody), so only the SDK's own re-fetch
    // after its reconnect can tell it. Before, the client could be back before the expiry ran, read
    // the request still pending and wait for a push that never came (seen in the clean-clone CI).
    const fresh = await startServer({ clock: () => Date.now() + 20 * 60_000 });
    expect((await fresh.decisions.expireDue()).map((e) => e.result.requestId)).toEqual([pending.requestId]);
    expect(c.connectionState).toBe('reconnecting');
    away = false;

    const decided = await waiting;
    expect(decided).toMatchObject({ requestId: pending.requestId, state: 'expired', decision: 'deny' });
    expect(c.connectionState).toBe('ready');
    const fetched = await c.getRequest(pending.requestId);
    expect(fetched).toMatchObject({
      requestId: pending.requestId,
      state: 'expired',
      decision: 'deny',
      reasons: ['approval window expired'],
    });
    expect(fetched.token).toBeUndefined();
    expect(fetched.approval).toBeUndefined();
    expect(pushed.map((r) => [r.requestId, r.state])).toContainEqual([pending.requestId, 'expired']);
  }, 40_000);

  it('fails a wait in progress with connection_closed when the client is closed', async () => {
    const key = await h.enroll('finance-bot');
    const c = client('finance-bot', key);
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    const waiting = c.waitForDecision(pending.requestId, { timeoutMs: 60_000 });
    waiting.catch(() => undefined); // observed below
    await c.getRequest(pending.requestId);
    c.close();
    expectCode(await rejectionOf(waiting, 500), 'connection_closed');
    // The request itself is untouched: another connection still sees it pending.
    const other = client('finance-bot', key);
    expect((await other.getRequest(pending.requestId)).state).toBe('pending');
  });

  it('fetches a still-pending request on the same client after a reconnect', async () => {
    const key = await h.enroll('finance-bot');
    const c = client('finance-bot', key, { reconnect: { initialDelayMs: 10, maxDelayMs: 40 } });
    const pending = await c.submit(transferCall('48000.00', 'Northwind Traders'));
    await stopServer();
    await waitFor(() => c.connectionState === 'reconnecting', 'the client to see the drop');
    await startServer();
    await waitFor(() => c.connectionState === 'ready', 'the client to reconnect');
    expect(await c.getRequest(pending.requestId)).toMatchObject({
      requestId: pending.requestId,
      state: 'pending',
      approval: { approvals: 2 },
    });
  });
});

describe('AgentClient refuses calls that are not I-JSON', () => {
  const cases: Array<[string, JsonObject, ErrorCode]> = [
    ['an unsafe integer (2**60)', { amount: 2 ** 60, currency: 'USD', payee: 'Acme Ltd' }, 'json_unsafe_integer'],
    ['a lone surrogate', { amount: '10.00', currency: 'USD', payee: 'Acme \ud800 Ltd' }, 'json_lone_surrogate'],
    ['a NaN', { amount: Number.NaN, currency: 'USD', payee: 'Acme Ltd' }, 'json_non_finite'],
  ];
  it.each(cases)('refuses params with %s before anything reaches the server', async (_name, params, code) => {
    const key = await h.enroll('finance-bot');
    const c = client('finance-bot', key);
    await c.connect();
    const requests = countRequests(app);
    const audit = app.audit.entries().length;
    const stats = app.gateway.getStats();

    const error = await rejectionOf(c.submit({ tool: 'payments.transfer', params, dataClass: 'financial', jurisdiction: 'US' }));
    expectCode(error, code);
    await sleep(20); // anything sent would have been answered (and counted as rejected) by now
    expect(countRequests(app)).toBe(requests);
    expect(app.audit.entries()).toHaveLength(audit);
    // The server neither decided nor rejected anything: the frame was never sent.
    expect(app.gateway.getStats()).toEqual(stats);
    // The connection is still usable.
    expect((await c.submit(transferCall('250.00'))).decision).toBe('allow');
    expect(countRequests(app)).toBe(requests + 1);
  });
});
