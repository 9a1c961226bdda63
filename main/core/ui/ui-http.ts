/**
 * The headless UI's own rows of the HTTP edge (main/core/http/), on the gateway's port:
 *
 * - `GET /ui/...`: the built renderer (static files under `rendererDir` only, strict CSP), public
 *   after the Host allowlist: the page carries no secret (it arrives in the URL fragment).
 *
 * The bridge API the page calls (`/api/ui/*`, `/api/approvals/*`, `/api/approvers/*` and the
 * event stream) is derived from the bridge table by bridge-routes.ts.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { CountersignError } from '../../../shared/errors.js';
import { UI_BASE_PATH } from '../../../shared/bridge.js';
import { COMMON_HEADERS, sendError, type HttpRoute } from '../http/http-edge.js';

/** The renderer's Content-Security-Policy: same-origin everything, no inline code, no framing. */
export const UI_CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

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

const notFound = (message = 'not found') => new CountersignError('method_unknown', message);

/** The static renderer's routes (none without a `rendererDir`). */
export function uiStaticRoutes(rendererDir: string | undefined): HttpRoute[] {
  if (rendererDir === undefined) return [];
  const handle = ({ req, res, path }: { req: IncomingMessage; res: ServerResponse; path: string }): undefined => {
    serveStatic(req, res, path, rendererDir);
    return undefined;
  };
  return [
    { verb: 'GET', path: UI_BASE_PATH.slice(0, -1), access: 'public', handle },
    { verb: 'GET', path: `${UI_BASE_PATH}*`, access: 'public', handle },
  ];
}

function serveStatic(req: IncomingMessage, res: ServerResponse, path: string, rendererDir: string): void {
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
    return sendError(req, res, notFound('the renderer is not built (npm run build:renderer)'));
  }
  const file = resolveStatic(root, path.slice(UI_BASE_PATH.length));
  if (file === undefined) return sendError(req, res, notFound());
  let body: Buffer;
  try {
    const stat = statSync(file);
    if (!stat.isFile() || stat.size > MAX_STATIC_BYTES) return sendError(req, res, notFound());
    body = readFileSync(file);
  } catch {
    return sendError(req, res, notFound());
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
