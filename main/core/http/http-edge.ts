/**
 * The ONE HTTP edge of the core (everything on the gateway port except the WebSocket upgrade):
 * one route table, one bearer check, one origin policy, one body reader and one error mapper.
 * ui-http.ts (the bridge and the static renderer), approvals-http.ts, the gateway's /healthz and
 * JWKS and, in the test key domain only, the automation routes are all rows of the table.
 *
 * Order of checks for every request: Host allowlist (421) -> route lookup; for `session` routes
 * the session secret as a Bearer token (401, compared in constant time) and then the Origin
 * policy (403) BEFORE the route's existence or method is revealed (404 / 405).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';
import { CountersignError, ERROR_CODES, httpStatusFor, isCountersignError, type ErrorCode } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { DESK_SESSION_COOKIE } from '../../../shared/desk-session.js';

/** Who may call a route: anyone who passes the Host allowlist, or only the holder of the session secret. */
export type RouteAccess = 'public' | 'session';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  /** `{name}` segments of the route's path, percent-decoded once. */
  params: Readonly<Record<string, string>>;
  query: URLSearchParams;
  /** The path as requested (for prefix routes). */
  path: string;
  /** Read the JSON body (content type, size limit, strict I-JSON): see `readJsonBody`. */
  body: () => Promise<unknown>;
  /** The desk session cookie of this request, and how to set or clear it on the answer. */
  caller: SessionCookieCaller;
}

/** The desk session as an HTTP caller holds it: an HttpOnly, SameSite=Strict, Path=/ cookie (Secure over TLS). */
export interface SessionCookieCaller {
  readonly token: string | undefined;
  keep(token: string, maxAgeSeconds: number): void;
  forget(): void;
}

const COOKIE_VALUE = /^[A-Za-z0-9_-]{1,256}$/;

/** The value of the desk session cookie in a Cookie header (undefined when absent, repeated or malformed). */
export function sessionCookieOf(header: string | undefined): string | undefined {
  if (header === undefined || header.length > 8192) return undefined;
  const values = header
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.startsWith(`${DESK_SESSION_COOKIE}=`))
    .map((part) => part.slice(DESK_SESSION_COOKIE.length + 1));
  // Two cookies of that name (e.g. one planted for a sub-path) are ambiguous: neither is used.
  if (values.length !== 1 || !COOKIE_VALUE.test(values[0]!)) return undefined;
  return values[0];
}

/** The cookie caller of one request: Set-Cookie goes on whatever answer follows. */
export function cookieCaller(req: IncomingMessage, res: ServerResponse): SessionCookieCaller {
  const secure = (req.socket as { encrypted?: boolean }).encrypted === true ? '; Secure' : '';
  const set = (value: string, maxAge: number) =>
    res.setHeader('set-cookie', `${DESK_SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure}`);
  return {
    token: sessionCookieOf(req.headers.cookie),
    keep: (token, maxAgeSeconds) => set(token, Math.max(1, Math.floor(maxAgeSeconds))),
    forget: () => set('', 0),
  };
}

/**
 * What a handler answers: a JSON value (sent as 200), or `undefined` when it wrote the response
 * itself (static files, the event stream).
 */
export type RouteHandler = (ctx: RouteContext) => unknown;

export interface HttpRoute {
  /** GET routes also answer HEAD (same headers, no body). */
  verb: 'GET' | 'POST';
  /** `/api/x/{name}/y` (a `{name}` matches one non-empty segment), or a prefix ending in `/*`. */
  path: string;
  access: RouteAccess;
  handle: RouteHandler;
  /** Extra response headers for a JSON answer (e.g. a public cache lifetime). */
  headers?: Readonly<Record<string, string>>;
}

export interface HttpEdgeOptions {
  routes: readonly HttpRoute[];
  /**
   * The session secret `session` routes require as a Bearer token: per start, or read at each
   * request (a team hub's, which a rotation replaces while the hub runs; store/pg/pg-team-secrets.ts).
   */
  sessionSecret: string | (() => string);
  /** The Host allowlist (the gateway's: the bound port on loopback names plus configured hosts). */
  hostAllowed: (req: IncomingMessage) => boolean;
  /** Origins besides the page's own (`http://<allowed Host>`) a browser caller may come from (the approval origins). */
  origins: () => readonly string[];
  log?: (message: string) => void;
}

/** Headers on every answer: no sniffing, no referrer, no framing, no cross-origin reads. */
export const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'x-frame-options': 'DENY',
} as const;

/** JSON bodies: at most 64 KiB. */
export const MAX_BODY_BYTES = 64 * 1024;
const MAX_AUTHORIZATION_CHARS = 1024;

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** The one bearer check: `Authorization: Bearer <secret>`, both sides hashed to equal length and compared in constant time. */
export function bearerMatches(header: unknown, secretDigest: Buffer): boolean {
  if (typeof header !== 'string' || header.length > MAX_AUTHORIZATION_CHARS) return false;
  const match = /^Bearer ([A-Za-z0-9_-]+)$/.exec(header);
  return timingSafeEqual(digest(match?.[1] ?? ''), secretDigest) && match !== null;
}

/**
 * The one origin policy for browser callers: no Origin header (not a browser, or a same-origin
 * GET), the page's own origin on an allowed Host (https over TLS), or one of the approval origins.
 */
export function originAllowed(req: IncomingMessage, origins: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  // The page's own origin has the scheme the request arrived over: an http page cannot call a TLS edge as "itself".
  const scheme = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
  return origin === `${scheme}://${req.headers.host ?? ''}` || origins.includes(origin);
}

/** The one body reader: application/json, at most MAX_BODY_BYTES, strict I-JSON (duplicate keys, `__proto__`, lone surrogates refused). */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!type.toLowerCase().startsWith('application/json')) throw new CountersignError('schema_invalid', 'the body must be application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new CountersignError('frame_too_large', `the body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  return parseStrictJson(Buffer.concat(chunks).toString('utf8'));
}

/** Check a parsed body against a schema: `schema_invalid` naming the first bad member. */
export function parseBody<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new CountersignError(
      'schema_invalid',
      `the body does not match at ${JSON.stringify(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return result.data;
}

/** Write one JSON answer with the common headers (HEAD gets the headers only). */
export function sendJson(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  body: unknown,
  extra: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    ...COMMON_HEADERS,
    ...extra,
  });
  res.end(req.method === 'HEAD' ? undefined : text);
}

/**
 * The one error mapper: any thrown value becomes `{error: {code, message}}` with the status of
 * `httpStatusFor(code)`; internal details are never exposed. `status` is given only by the
 * router itself (404 no such route, 405 wrong method), which are answers about routing, not codes.
 */
export function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  error: unknown,
  status?: number,
  extra: Readonly<Record<string, string>> = {},
): void {
  const known = isCountersignError(error) ? error : new CountersignError('internal_error');
  const message = isCountersignError(error) ? known.message.slice(0, 2048) : ERROR_CODES.internal_error;
  sendJson(req, res, status ?? httpStatusFor(known.code), { error: { code: known.code, message } }, extra);
}

const refusal = (code: ErrorCode, message?: string) => new CountersignError(code, message);

interface CompiledRoute {
  route: HttpRoute;
  /** Literal segments, `{name}` parameters, or a trailing `*` (prefix). */
  segments: string[];
  prefix: boolean;
}

function compile(route: HttpRoute): CompiledRoute {
  const prefix = route.path.endsWith('/*');
  const path = prefix ? route.path.slice(0, -2) : route.path;
  return { route, segments: path.split('/').filter((s) => s.length > 0), prefix };
}

/**
 * Match raw path segments against a route; the parameters stay raw (undefined: no match).
 * Matching never throws: decoding happens only after the bearer and origin checks (`decodeParams`),
 * so a malformed segment cannot tell a caller without the secret anything.
 */
function match(compiled: CompiledRoute, parts: readonly string[]): Record<string, string> | undefined {
  const { segments, prefix } = compiled;
  if (prefix ? parts.length < segments.length : parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const part = parts[i]!;
    if (segment.startsWith('{') && segment.endsWith('}')) params[segment.slice(1, -1)] = part;
    else if (segment !== part) return undefined;
  }
  return params;
}

/** Percent-decode the raw parameters of the chosen route once (`schema_invalid` on bad encoding). */
function decodeParams(raw: Readonly<Record<string, string>>): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [name, part] of Object.entries(raw)) {
    try {
      params[name] = decodeURIComponent(part);
    } catch {
      throw new CountersignError('schema_invalid', 'a path segment is not valid percent-encoding');
    }
  }
  return params;
}

/** Two routes with the same verb and path would make the second unreachable: refuse the table. */
function assertNoDuplicateRoutes(routes: readonly HttpRoute[]): void {
  const seen = new Set<string>();
  for (const route of routes) {
    // `{a}` and `{b}` in the same place match the same requests.
    const key = `${route.verb} ${route.path.replace(/\{[^}]*\}/g, '{}')}`;
    if (seen.has(key)) throw new Error(`two routes answer ${key}`);
    seen.add(key);
  }
}

/** The edge as one request handler for the gateway's HTTP server. */
export function createHttpEdge(options: HttpEdgeOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const currentSecret = typeof options.sessionSecret === 'string' ? () => options.sessionSecret as string : options.sessionSecret;
  // The digest of the secret in force, made again only when the secret changed (a rotation).
  let digested: { secret: string; digest: Buffer } = { secret: currentSecret(), digest: Buffer.alloc(0) };
  const secretDigest = (): Buffer => {
    const secret = currentSecret();
    if (secret.length < 32) throw new Error('the session secret must be at least 32 characters');
    if (digested.digest.length === 0 || digested.secret !== secret) digested = { secret, digest: digest(secret) };
    return digested.digest;
  };
  secretDigest();
  const log = options.log ?? (() => undefined);
  assertNoDuplicateRoutes(options.routes);
  const routes = options.routes.map(compile);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!options.hostAllowed(req)) return sendError(req, res, refusal('host_not_allowed', ERROR_CODES.host_not_allowed));
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    const parts = path.split('/').filter((p) => p.length > 0);
    const candidates: Array<{ compiled: CompiledRoute; params: Record<string, string> }> = [];
    for (const compiled of routes) {
      const params = match(compiled, parts);
      if (params !== undefined) candidates.push({ compiled, params });
    }
    // Under /api/ the secret is checked before anything about the route is revealed.
    const needsSession = path.startsWith('/api/') || path === '/api' || candidates.some((c) => c.compiled.route.access === 'session');
    if (needsSession) {
      if (!bearerMatches(req.headers.authorization, secretDigest())) {
        return sendError(req, res, refusal('not_authenticated', 'this API needs the session secret as a Bearer token'), undefined, {
          'www-authenticate': 'Bearer realm="countersign"',
        });
      }
      if (!originAllowed(req, options.origins())) {
        return sendError(req, res, refusal('origin_not_allowed', `requests from ${JSON.stringify(req.headers.origin)} are not allowed`));
      }
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const chosen = candidates.find((c) => c.compiled.route.verb === method);
    if (chosen === undefined) {
      if (candidates.length === 0) return sendError(req, res, refusal('method_unknown', 'not found'), 404);
      const allow = [...new Set(candidates.map((c) => c.compiled.route.verb))].map((v) => (v === 'GET' ? 'GET, HEAD' : v)).join(', ');
      return sendError(req, res, refusal('method_unknown', `only ${allow} is served here`), 405, { allow });
    }
    const { route } = chosen.compiled;
    const value = await route.handle({
      req,
      res,
      params: decodeParams(chosen.params),
      query: url.searchParams,
      path,
      body: () => readJsonBody(req),
      caller: cookieCaller(req, res),
    });
    if (value !== undefined && !res.headersSent) sendJson(req, res, 200, value, route.headers);
  };

  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      // Never let a fault here escape into the HTTP server (it would crash the process).
      if (!isCountersignError(error))
        log(`http ${req.method ?? ''} ${(req.url ?? '').split('?')[0]} failed: ${error instanceof Error ? error.message : String(error)}`);
      if (!res.headersSent) sendError(req, res, error);
      else res.destroy();
    });
  };
}
