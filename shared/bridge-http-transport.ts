/**
 * The headless HTTP API as a transport, without zod: one request (GET, or POST with a JSON body)
 * answered as parsed JSON or a CountersignError, and the push events' Server-Sent Events stream
 * as named frames. shared/bridge-http-client.ts builds the table's bridge on it (each answer and
 * event checked against the table's schemas); the desk's first paint calls it directly and checks
 * its first answers by hand (shared/desk-first-answers.ts, renderer/src/deferred-bridge.ts), so
 * its script need not load zod. Pure TypeScript: `fetch` is injected or taken from globalThis.
 *
 * Errors: not_authenticated (401), the server's own code when it answers `{error: {code,
 * message}}` with a known code (e.g. approver_conflicted), schema_invalid (an answer that is not
 * JSON or is too large), connection_closed (no answer, timeout) or internal_error (anything else).
 */
import { CountersignError, httpStatusFor } from './errors.js';
import { parseStrictJson } from './canonical-json.js';
import { httpErrorOf } from './desk-first-answers.js';
import { DESK_SESSION_COOKIE, SESSION_SECRET_PATTERN } from './ui-address.js';

// `cache` is a browser fetch option: Node's RequestInit type lacks it (its fetch accepts it).
export type FetchFn = (input: string, init: RequestInit & { cache?: 'no-store' }) => Promise<Response>;

export interface HttpTransportOptions {
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

/** One pushed frame: its event name and its data parsed as JSON (not yet checked against its schema). */
export type RawEventListener = (name: string, data: unknown) => void;

export interface HttpTransport {
  /** One request; the answer parsed as JSON (status 200 only), every failure a CountersignError. */
  call(method: 'GET' | 'POST', path: string, payload?: unknown): Promise<unknown>;
  /** Open the event stream (re-opened after a drop, replaying from the last position) until the returned function is called. */
  events(listener: RawEventListener): () => void;
}

const MAX_BODY_CHARS = 8 * 1024 * 1024;

export function createHttpTransport(options: HttpTransportOptions): HttpTransport {
  if (typeof options.sessionSecret !== 'string' || !SESSION_SECRET_PATTERN.test(options.sessionSecret)) {
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
      // The server's own error, when it is one of ours (only known codes are admitted).
      const error = httpErrorOf(json);
      if (error !== undefined) throw new CountersignError(error.code, error.message, { details: { status, serverCode: error.code } });
      throw new CountersignError('internal_error', `the server answered HTTP ${status}`, { details: { status, serverCode: 'unknown' } });
    }
    return json;
  }

  /**
   * The push events as Server-Sent Events over fetch (EventSource cannot send the Bearer
   * secret). A dropped stream is re-opened after a pause until the returned function is called,
   * with the last position seen as `Last-Event-ID`, so the server replays what was sent while it
   * was down (or sends `resync` when it cannot).
   */
  function events(listener: RawEventListener): () => void {
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
            const { id, name, data } = parseSseFrame(frame);
            if (id !== undefined) lastEventId = id;
            if (name !== undefined) listener(name, data);
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

  return { call, events };
}

/** The one HTTP path serving the push events as Server-Sent Events (session secret required). */
export const BRIDGE_EVENTS_PATH = '/api/ui/events';

const MAX_EVENT_CHARS = 64 * 1024;
const EVENT_RETRY_MS = 3_000;

/** The server's positions: what `Last-Event-ID` may echo (anything else is not kept). */
const EVENT_ID = /^[0-9a-f]{16}-\d{1,15}$/;

/**
 * One SSE frame (`id: position`, `event: name`, `data: json` lines): its position, its name and
 * its data parsed as JSON; comments, nameless frames and data that is not JSON yield no event
 * (their position still counts).
 */
function parseSseFrame(frame: string): { id: string | undefined; name: string | undefined; data: unknown } {
  let name: string | undefined;
  let id: string | undefined;
  let data = '';
  for (const line of frame.split('\n')) {
    if (line.startsWith('event: ')) name = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
    else if (line.startsWith('id: ') && EVENT_ID.test(line.slice(4))) id = line.slice(4);
  }
  if (name === undefined) return { id, name: undefined, data: undefined };
  try {
    return { id, name, data: parseStrictJson(data) };
  } catch {
    return { id, name: undefined, data: undefined };
  }
}

/** Where a bridge method's arguments travel over HTTP, as a row of the bridge table says (shared/bridge-table.ts). */
export interface BridgeRoute {
  readonly args: readonly { readonly name: string; readonly in: 'path' | 'query' | 'body' }[];
  readonly http: { readonly verb: 'GET' | 'POST'; readonly path: string };
}

/**
 * The request for one call of a route: path arguments fill the template (`fillPath` checks them),
 * query ones the search, the rest the JSON body (POST only).
 */
export function routeRequest(
  route: BridgeRoute,
  args: readonly unknown[],
  fillPath: (template: string, values: Readonly<Record<string, unknown>>) => string,
): { verb: 'GET' | 'POST'; path: string; body?: Record<string, unknown> } {
  const pathValues: Record<string, unknown> = {};
  const search = new URLSearchParams();
  const body: Record<string, unknown> = {};
  route.args.forEach((spec, index) => {
    const value = args[index];
    if (spec.in === 'path') pathValues[spec.name] = value;
    else if (value === undefined) return;
    // Query arguments are whole numbers; anything else goes as JSON and the server refuses it.
    else if (spec.in === 'query') search.set(spec.name, typeof value === 'number' ? String(value) : JSON.stringify(value));
    else body[spec.name] = value;
  });
  const path = fillPath(route.http.path, pathValues);
  const encoded = search.toString();
  const full = `${path}${encoded === '' ? '' : `?${encoded}`}`;
  return route.http.verb === 'GET' ? { verb: 'GET', path: full } : { verb: 'POST', path: full, body };
}
