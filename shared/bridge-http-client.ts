/**
 * CountersignBridge over the headless HTTP API (on the gateway port), derived from the bridge
 * table (shared/bridge-table.ts: each row's verb, path and argument places), for the renderer
 * served by `countersign headless` and for tests. Push events arrive as Server-Sent Events.
 * Pure TypeScript: `fetch` is injected or taken from globalThis. Every response is
 * validated; errors are CountersignErrors: not_authenticated (401), the server's own code when
 * it answers `{error: {code, message}}` with a known code (e.g. approver_conflicted),
 * schema_invalid (a response that does not match), connection_closed (no answer, timeout) or
 * internal_error (anything else).
 */
import { CountersignError, httpStatusFor } from './errors.js';
import { parseStrictJson } from './canonical-json.js';
import { httpErrorBodySchema, sessionSecretSchema } from './bridge.js';
import { DESK_SESSION_COOKIE } from './desk-session.js';
import {
  BRIDGE_EVENTS_PATH,
  BRIDGE_METHODS,
  createBridgeClient,
  fillBridgePath,
  parseBridgeEvent,
  type BridgeCall,
  type BridgeEvent,
  type BridgeListener,
  type BridgeMethodRow,
  type CountersignBridge,
} from './bridge-table.js';

// `cache` is a browser fetch option: Node's RequestInit type lacks it (its fetch accepts it).
export type FetchFn = (input: string, init: RequestInit & { cache?: 'no-store' }) => Promise<Response>;

export interface HttpBridgeOptions {
  /** Origin of the Countersign server, e.g. `http://localhost:7345` (a path is ignored). */
  baseUrl: string;
  /** The per-start UI session secret (`RunningCountersign.uiSessionSecret`). */
  sessionSecret: string;
  fetch?: FetchFn;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /**
   * Outside a browser (no cookie jar): the desk session id to send as the session cookie
   * (test/helpers/desk-session.ts signs a person in and passes it here). In a browser leave it
   * out: the HttpOnly cookie travels by itself (credentials: same-origin).
   */
  sessionCookie?: string;
  /**
   * A GET already sent for `path` (the renderer's boot reads, renderer/src/boot.ts), used once
   * instead of a new request; its answer is checked like any other. Undefined: send the request.
   */
  prefetched?: (path: string) => Promise<Response> | undefined;
}

const MAX_BODY_CHARS = 8 * 1024 * 1024;

export function createHttpBridge(options: HttpBridgeOptions): CountersignBridge {
  if (!sessionSecretSchema.safeParse(options.sessionSecret).success) {
    throw new CountersignError('not_authenticated', 'the UI session secret is missing or malformed');
  }
  let origin: string;
  try {
    const url = new URL(options.baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    origin = url.origin;
  } catch (cause) {
    throw new CountersignError('internal_error', 'the UI base URL is not an http(s) URL', { cause });
  }
  const doFetch: FetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const authorization = `Bearer ${options.sessionSecret}`;
  const cookie: Record<string, string> =
    options.sessionCookie === undefined ? {} : { cookie: `${DESK_SESSION_COOKIE}=${options.sessionCookie}` };
  const timeoutMs = options.timeoutMs ?? 10_000;

  /** One request: GET, or POST with an optional JSON body (the approval routes). */
  async function call(method: 'GET' | 'POST', path: string, payload?: unknown): Promise<unknown> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let status: number;
    let body: string;
    const headers: Record<string, string> = { authorization, accept: 'application/json', ...cookie };
    let requestBody: string | undefined;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      requestBody = JSON.stringify(payload);
    }
    try {
      const response = await ((method === 'GET' ? options.prefetched?.(path) : undefined) ??
        doFetch(`${origin}${path}`, {
          method,
          headers,
          ...(requestBody === undefined ? {} : { body: requestBody }),
          cache: 'no-store',
          credentials: 'same-origin',
          redirect: 'error',
          signal: controller.signal,
        }));
      status = response.status;
      body = await response.text();
    } catch (cause) {
      const timedOut = controller.signal.aborted;
      throw new CountersignError('connection_closed', timedOut ? `the request to ${path} timed out` : `the request to ${path} failed`, {
        cause,
      });
    } finally {
      clearTimeout(timer);
    }
    if (status === httpStatusFor('not_authenticated'))
      throw new CountersignError('not_authenticated', 'the UI session secret was not accepted', { details: { status } });
    if (body.length > MAX_BODY_CHARS) throw new CountersignError('schema_invalid', 'the response is too large');
    let json: unknown;
    try {
      json = parseStrictJson(body);
    } catch (cause) {
      if (status !== 200)
        throw new CountersignError('internal_error', `the server answered HTTP ${status}`, { details: { status }, cause });
      throw new CountersignError('schema_invalid', `the response to ${path} is not JSON`, { cause });
    }
    if (status !== 200) {
      // The server's own error, when it is one of ours (the schema only admits known codes).
      const error = httpErrorBodySchema.safeParse(json);
      if (error.success)
        throw new CountersignError(error.data.error.code, error.data.error.message, {
          details: { status, serverCode: error.data.error.code },
        });
      throw new CountersignError('internal_error', `the server answered HTTP ${status}`, { details: { status, serverCode: 'unknown' } });
    }
    // Validated against the method's row by createBridgeClient.
    return json;
  }

  /** One table method over HTTP: path arguments fill the template, query ones the search, the rest the JSON body. */
  const callMethod: BridgeCall = (name, args) => {
    const row: BridgeMethodRow = BRIDGE_METHODS[name];
    const pathValues: Record<string, unknown> = {};
    const search = new URLSearchParams();
    const body: Record<string, unknown> = {};
    row.args.forEach((spec, index) => {
      const value = args[index];
      if (spec.in === 'path') pathValues[spec.name] = value;
      else if (value === undefined) return;
      // Query arguments are whole numbers; anything else goes as JSON and the server refuses it.
      else if (spec.in === 'query') search.set(spec.name, typeof value === 'number' ? String(value) : JSON.stringify(value));
      else body[spec.name] = value;
    });
    // Path arguments are checked before anything is sent (a bad id never reaches the network).
    const path = fillBridgePath(row.http.path, pathValues);
    const encoded = search.toString();
    const query = encoded === '' ? '' : `?${encoded}`;
    return row.http.verb === 'GET' ? call('GET', `${path}${query}`) : call('POST', `${path}${query}`, body);
  };

  // One event stream however many subscribers: opened by the first, closed after the last.
  const listeners = new Set<BridgeListener>();
  let closeStream: (() => void) | undefined;
  const subscribe = (listener: BridgeListener): (() => void) => {
    listeners.add(listener);
    closeStream ??= subscribeToEvents((event) => {
      for (const each of [...listeners]) each(event);
    });
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && closeStream !== undefined) {
        closeStream();
        closeStream = undefined;
      }
    };
  };

  return createBridgeClient(callMethod, subscribe);

  /**
   * The push events as Server-Sent Events over fetch (EventSource cannot send the Bearer
   * secret). Each event is validated; a dropped stream is re-opened after a pause until the
   * returned function is called, with the last position seen as `Last-Event-ID`, so the server
   * replays what was sent while it was down (or sends `resync` when it cannot).
   */
  function subscribeToEvents(listener: BridgeListener): () => void {
    let stopped = false;
    let lastEventId: string | undefined;
    let controller: AbortController | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const open = async (): Promise<void> => {
      controller = new AbortController();
      try {
        const response = await doFetch(`${origin}${BRIDGE_EVENTS_PATH}`, {
          method: 'GET',
          headers: {
            authorization,
            accept: 'text/event-stream',
            ...cookie,
            ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }),
          },
          cache: 'no-store',
          credentials: 'same-origin',
          redirect: 'error',
          signal: controller.signal,
        });
        if (response.status !== 200 || response.body === null) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          buffer += value;
          if (buffer.length > MAX_EVENT_CHARS) throw new Error('event too large');
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const { id, event } = parseSseFrame(frame);
            if (id !== undefined) lastEventId = id;
            if (event !== undefined) listener(event);
          }
        }
      } catch {
        // Dropped, refused or stopped: try again below unless stopped.
      }
      if (!stopped) retry = setTimeout(() => void open(), EVENT_RETRY_MS);
    };
    void open();
    return () => {
      stopped = true;
      if (retry !== undefined) clearTimeout(retry);
      controller?.abort();
    };
  }
}

const MAX_EVENT_CHARS = 64 * 1024;
const EVENT_RETRY_MS = 3_000;

/** The server's positions: what `Last-Event-ID` may echo (anything else is not kept). */
const EVENT_ID = /^[0-9a-f]{16}-\d{1,15}$/;

/**
 * One SSE frame (`id: position`, `event: name`, `data: json` lines): its position, and the
 * validated event; comments and unknown events are dropped (their position still counts).
 */
function parseSseFrame(frame: string): { id: string | undefined; event: BridgeEvent | undefined } {
  let name: string | undefined;
  let id: string | undefined;
  let data = '';
  for (const line of frame.split('\n')) {
    if (line.startsWith('event: ')) name = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
    else if (line.startsWith('id: ') && EVENT_ID.test(line.slice(4))) id = line.slice(4);
  }
  if (name === undefined) return { id, event: undefined };
  try {
    return { id, event: parseBridgeEvent(name, parseStrictJson(data)) };
  } catch {
    return { id, event: undefined };
  }
}
