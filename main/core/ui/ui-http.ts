/**
 * The headless UI over HTTP, on the gateway's port (so the gateway's Host allowlist runs first):
 *
 * - `GET /api/ui/status | /api/ui/decisions?limit= | /api/ui/agents`: the bridge as JSON, only
 *   with `Authorization: Bearer <session secret>` (a per-start secret, compared in constant time).
 * - `GET /ui/...`: the built renderer (static files under `rendererDir` only, strict CSP).
 *
 * The handler returns false for any other path so the gateway answers it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { ERROR_CODES, httpStatusFor, isCountersignError, type ErrorCode } from '../../../shared/errors.js';
import { DECISION_LIMIT, UI_API_PATHS, UI_BASE_PATH, toBridgeError, type CountersignBridge } from '../../../shared/bridge.js';

export type ExtraHttpHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface UiHttpOptions {
  /** The per-start secret the API requires as a Bearer token. */
  sessionSecret: string;
  /** Directory of the built renderer (`renderer/dist`); static serving is off without it. */
  rendererDir?: string | undefined;
  log?: (message: string) => void;
}

/** The renderer's Content-Security-Policy: same-origin everything, no inline code, no framing. */
export const UI_CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

const API_PREFIX = '/api/ui/';
const MAX_STATIC_BYTES = 32 * 1024 * 1024;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'x-frame-options': 'DENY',
} as const;

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

export function createUiHttpHandler(service: CountersignBridge, options: UiHttpOptions): ExtraHttpHandler {
  if (options.sessionSecret.length < 32) throw new Error('the UI session secret must be at least 32 characters');
  const secretDigest = digest(options.sessionSecret);
  const log = options.log ?? (() => undefined);

  const authorized = (req: IncomingMessage): boolean => {
    const header = req.headers.authorization;
    if (typeof header !== 'string' || header.length > 1024) return false;
    const match = /^Bearer ([A-Za-z0-9_-]+)$/.exec(header);
    // Both sides are hashed to equal length first, so the comparison time says nothing.
    return timingSafeEqual(digest(match?.[1] ?? ''), secretDigest) && match !== null;
  };

  return (req, res) => {
    try {
      return route(req, res);
    } catch (error) {
      // Never let a fault here escape into the HTTP server (it would crash the process).
      log(`ui http failed: ${error instanceof Error ? error.message : String(error)}`);
      if (!res.headersSent) replyError(req, res, 500, 'internal_error', ERROR_CODES.internal_error);
      else res.destroy();
      return true;
    }
  };

  function route(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const search = query === -1 ? '' : url.slice(query + 1);
    if (path === API_PREFIX.slice(0, -1) || path.startsWith(API_PREFIX)) {
      handleApi(req, res, path, search);
      return true;
    }
    if (options.rendererDir !== undefined && (path === UI_BASE_PATH.slice(0, -1) || path.startsWith(UI_BASE_PATH))) {
      handleStatic(req, res, path, options.rendererDir);
      return true;
    }
    return false;
  }

  function handleApi(req: IncomingMessage, res: ServerResponse, path: string, search: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return replyError(req, res, 405, 'method_unknown', 'only GET is served here', { allow: 'GET, HEAD' });
    // A browser page on another origin never gets here with the secret, but refuse it anyway.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) return replyError(req, res, httpStatusFor('origin_not_allowed'), 'origin_not_allowed', ERROR_CODES.origin_not_allowed);
    if (!authorized(req)) {
      return replyError(req, res, httpStatusFor('not_authenticated'), 'not_authenticated', 'this API needs the UI session secret as a Bearer token', { 'www-authenticate': 'Bearer realm="countersign-ui"' });
    }
    let work: () => Promise<unknown>;
    switch (path) {
      case UI_API_PATHS.getStatus:
        work = () => service.getStatus();
        break;
      case UI_API_PATHS.listAgents:
        work = () => service.listAgents();
        break;
      case UI_API_PATHS.listRecentDecisions: {
        const raw = new URLSearchParams(search).get('limit');
        if (raw !== null && !/^\d{1,9}$/.test(raw)) return replyError(req, res, httpStatusFor('schema_invalid'), 'schema_invalid', 'limit must be a positive integer');
        const limit = raw === null ? DECISION_LIMIT.default : Number(raw);
        work = () => service.listRecentDecisions(limit);
        break;
      }
      default:
        return replyError(req, res, httpStatusFor('method_unknown'), 'method_unknown', 'not found');
    }
    void (async () => {
      try {
        replyJson(req, res, 200, await work());
      } catch (error) {
        if (!isCountersignError(error)) log(`ui api ${path} failed: ${error instanceof Error ? error.message : String(error)}`);
        const wire = toBridgeError(error);
        replyError(req, res, httpStatusFor(wire.code), wire.code, wire.message);
      }
    })();
  }

  function handleStatic(req: IncomingMessage, res: ServerResponse, path: string, rendererDir: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return replyError(req, res, 405, 'method_unknown', 'only GET is served here', { allow: 'GET, HEAD' });
    if (path === UI_BASE_PATH.slice(0, -1)) {
      res.writeHead(308, { location: UI_BASE_PATH, 'cache-control': 'no-store', ...COMMON_HEADERS });
      res.end();
      return;
    }
    let root: string;
    try {
      root = realpathSync(rendererDir);
      if (!statSync(root).isDirectory()) throw new Error('not a directory');
    } catch {
      return replyError(req, res, httpStatusFor('method_unknown'), 'method_unknown', 'the renderer is not built (npm run build:renderer)');
    }
    const file = resolveStatic(root, path.slice(UI_BASE_PATH.length));
    if (file === undefined) return replyError(req, res, httpStatusFor('method_unknown'), 'method_unknown', 'not found');
    let body: Buffer;
    try {
      const stat = statSync(file);
      if (!stat.isFile() || stat.size > MAX_STATIC_BYTES) return replyError(req, res, httpStatusFor('method_unknown'), 'method_unknown', 'not found');
      body = readFileSync(file);
    } catch {
      return replyError(req, res, httpStatusFor('method_unknown'), 'method_unknown', 'not found');
    }
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': String(body.length),
      'cache-control': 'no-cache',
      'content-security-policy': UI_CONTENT_SECURITY_POLICY,
      ...COMMON_HEADERS,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  function replyJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
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

  function replyError(req: IncomingMessage, res: ServerResponse, status: number, code: ErrorCode, message: string, extra: Record<string, string> = {}): void {
    replyJson(req, res, status, { error: { code, message } }, extra);
  }
}

/**
 * Map the part of a URL path after `/ui/` to a file strictly inside `root` (already a real
 * path), or undefined. Percent-decoding happens once, before the checks; `..`, absolute paths,
 * backslashes, NUL, dot-files and symlinks leading outside `root` all come out undefined.
 */
export function resolveStatic(root: string, encoded: string): string | undefined {
  let relative: string;
  try {
    relative = decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
  if (relative.includes('\0') || relative.includes('\\')) return undefined;
  if (relative === '' || relative.endsWith('/')) relative += 'index.html';
  const segments = relative.split('/');
  if (segments.some((s) => s === '..' || s.startsWith('.'))) return undefined;
  const candidate = resolve(root, `.${sep}${segments.join(sep)}`);
  if (!candidate.startsWith(root + sep)) return undefined;
  let real: string;
  try {
    real = realpathSync(candidate);
  } catch {
    return undefined;
  }
  return real.startsWith(root + sep) ? real : undefined;
}
