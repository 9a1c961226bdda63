/**
 * The bridge table served over both transports by ONE server implementation (ui-service.ts):
 * `callBridgeMethod` validates a call's arguments against its row once (IPC and HTTP alike),
 * resolves the caller's desk session and binds the call to that person (bridge-caller.ts), and
 * runs it; `bridgeRoutes` derives the HTTP edge's routes from the rows (path, query and body
 * arguments as each row places them) plus the Server-Sent Events route for the push events.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CountersignError } from '../../../shared/errors.js';
import {
  BRIDGE_EVENTS_PATH,
  BRIDGE_METHODS,
  BRIDGE_METHOD_NAMES,
  createBridgeClient,
  parseBridgeArguments,
  type BridgeEvent,
  type CountersignBridge,
  type BridgeMethodName,
  type BridgeMethodRow,
  type BridgeMethods,
} from '../../../shared/bridge-table.js';
import { COMMON_HEADERS, type HttpRoute, type RouteContext } from '../http/http-edge.js';
import type { BridgeEventHub } from './bridge-events.js';
import { ANONYMOUS_CALLER, authorizeBridgeCall, runBridgeCall, windowCaller, type BridgeCaller } from './bridge-caller.js';
import type { DeskSessions } from './desk-sessions.js';
import { callerRuleOf } from '../../../shared/desk-session.js';

/** The server side of the bridge: the table's methods and, where people sign in, the desk sessions. */
export type BridgeServer = BridgeMethods & { readonly deskSessions?: Pick<DeskSessions, 'resolve'> | undefined };

/**
 * Run one table method on the server implementation after checking its arguments
 * (`schema_invalid` otherwise) and binding it to the caller's signed-in person (`not_signed_in`,
 * `approver_mismatch`, `admin_required`): the ONE place both transports pass through.
 */
export async function callBridgeMethod(
  service: BridgeServer,
  name: BridgeMethodName,
  rawArgs: readonly unknown[],
  caller: BridgeCaller = ANONYMOUS_CALLER,
): Promise<unknown> {
  const args = parseBridgeArguments(name, rawArgs) as unknown[];
  const row = BRIDGE_METHODS[name];
  const session = await service.deskSessions?.resolve(caller.token, { touch: callerRuleOf(row) !== 'transport' });
  // A token that names no live session (ended, idle, expired) is dropped from the transport too.
  if (session === undefined && caller.token !== undefined) caller.forget();
  authorizeBridgeCall(row, args, session);
  return runBridgeCall({ caller, session }, () => (service[name] as (...a: unknown[]) => Promise<unknown>)(...args));
}

const QUERY_INTEGER = /^\d{1,9}$/;

/** The positional arguments of one HTTP call, gathered from where the row places each. */
async function httpArguments(row: BridgeMethodRow, ctx: RouteContext): Promise<unknown[]> {
  const bodyNames = row.args.filter((a) => a.in === 'body').map((a) => a.name);
  let body: Record<string, unknown> = {};
  if (row.http.verb === 'POST') {
    const raw = await ctx.body();
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new CountersignError('schema_invalid', 'the body must be a JSON object');
    body = raw as Record<string, unknown>;
    const extra = Object.keys(body).find((key) => !bodyNames.includes(key));
    if (extra !== undefined) throw new CountersignError('schema_invalid', `the body has an unknown member ${JSON.stringify(extra)}`);
  }
  return row.args.map((spec) => {
    if (spec.in === 'path') return ctx.params[spec.name];
    if (spec.in === 'body') return body[spec.name];
    const value = ctx.query.get(spec.name);
    if (value === null) return undefined;
    if (!QUERY_INTEGER.test(value))
      throw new CountersignError('schema_invalid', `the query parameter ${JSON.stringify(spec.name)} must be a whole number`);
    return Number(value);
  });
}

export interface BridgeRoutesOptions {
  /** Most open event streams at once (each holds a socket). */
  maxEventStreams?: number;
  /** Most open event streams from one remote address, so one client cannot take every slot. */
  maxEventStreamsPerAddress?: number;
  /**
   * Most bytes a stream may have waiting for its client: a client that stops reading would make
   * Node buffer without bound, so past this its stream is destroyed.
   */
  maxBufferedBytes?: number;
  /** Comment lines that keep idle streams open through proxies. */
  keepAliveMs?: number;
}

/** The HTTP edge's rows for the bridge: one per table method, plus the event stream. All need the session secret. */
export function bridgeRoutes(service: BridgeServer, events: BridgeEventHub, options: BridgeRoutesOptions = {}): HttpRoute[] {
  const routes: HttpRoute[] = BRIDGE_METHOD_NAMES.map((name) => {
    const row: BridgeMethodRow = BRIDGE_METHODS[name];
    return {
      verb: row.http.verb,
      path: row.http.path,
      access: 'session',
      handle: async (ctx) => callBridgeMethod(service, name, await httpArguments(row, ctx), ctx.caller),
    };
  });
  const maxStreams = options.maxEventStreams ?? 32;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const maxPerAddress = options.maxEventStreamsPerAddress ?? 4;
  const maxBuffered = options.maxBufferedBytes ?? 256 * 1024;
  let open = 0;
  const openByAddress = new Map<string, number>();
  routes.push({
    verb: 'GET',
    path: BRIDGE_EVENTS_PATH,
    access: 'session',
    handle: ({ req, res }) => {
      const address = req.socket.remoteAddress ?? '';
      const mine = openByAddress.get(address) ?? 0;
      if (open >= maxStreams) throw new CountersignError('too_many_connections', `at most ${maxStreams} event streams may be open`);
      if (mine >= maxPerAddress)
        throw new CountersignError('too_many_connections', `at most ${maxPerAddress} event streams may be open from one address`);
      open++;
      openByAddress.set(address, mine + 1);
      streamEvents(req, res, events, keepAliveMs, maxBuffered, () => {
        open--;
        const left = (openByAddress.get(address) ?? 1) - 1;
        if (left <= 0) openByAddress.delete(address);
        else openByAddress.set(address, left);
      });
      return undefined;
    },
  });
  return routes;
}

/** The longest `Last-Event-ID` looked at (a position is ~35 characters); longer ones count as unknown. */
const MAX_LAST_EVENT_ID_CHARS = 64;

/**
 * Server-Sent Events: `id: <position>`, `event: <name>` and `data: <json>` per pushed event until
 * the client goes away. A client that reconnects with `Last-Event-ID` first gets the events it
 * missed from the hub's ring, or one `resync` event when the ring cannot cover its gap; a first
 * connection gets the current position (an `id:` line) so even a stream that saw no event can
 * resume from where it opened.
 */
function streamEvents(
  req: IncomingMessage,
  res: ServerResponse,
  events: BridgeEventHub,
  keepAliveMs: number,
  maxBuffered: number,
  closed: () => void,
): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    ...COMMON_HEADERS,
  });
  if (req.method === 'HEAD') {
    res.end();
    closed();
    return;
  }
  // A client that stops reading leaves the bytes in Node's buffer: past the bound, drop the stream.
  const send = (text: string) => {
    if (res.destroyed) return;
    res.write(text);
    if (res.writableLength > maxBuffered) res.destroy();
  };
  const frame = (event: BridgeEvent, seq: number) =>
    `id: ${events.position(seq)}\nevent: ${event.name}\ndata: ${JSON.stringify(event.data)}\n\n`;
  // What was missed and the live subscription are taken in one synchronous step: no event falls between.
  const header = req.headers['last-event-id'];
  const lastEventId = typeof header === 'string' && header.length <= MAX_LAST_EVENT_ID_CHARS ? header : undefined;
  const missed = header === undefined ? undefined : events.since(lastEventId ?? '');
  const unsubscribe = events.subscribe((event, seq) => send(frame(event, seq)));
  let opening = `: countersign events\n`;
  if (missed === undefined) opening += `id: ${events.position()}\n\n`;
  else if (missed.kind === 'resync') opening += `\n${frame({ name: 'resync', data: {} }, events.latest)}`;
  else opening += `\n${missed.events.map((entry) => frame(entry.event, entry.seq)).join('')}`;
  send(opening);
  const keepAlive = setInterval(() => send(': keep-alive\n\n'), keepAliveMs);
  keepAlive.unref();
  const release = events.holdStream(() => res.destroy());
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearInterval(keepAlive);
    release();
    unsubscribe();
    closed();
  };
  // The response's close: the client went away or the server is shutting down.
  res.on('close', finish);
}

/**
 * The bridge exactly as the Electron IPC transport runs it, without Electron: each call's
 * arguments checked by callBridgeMethod, each result validated by the client. Like one window,
 * it holds its own desk session (sign in through it). For tests and in-process callers.
 */
export function inProcessBridge(service: BridgeServer, events: BridgeEventHub, caller: BridgeCaller = windowCaller()): CountersignBridge {
  return createBridgeClient(
    (name, args) => callBridgeMethod(service, name, args, caller),
    (listener) => events.subscribe(listener),
  );
}
