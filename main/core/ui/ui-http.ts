/**
 * The headless UI's own rows of the HTTP edge (main/core/http/), on the gateway's port:
 *
 * - `GET /ui/...`: the built renderer (static files under `rendererDir` only, strict CSP), public
 *   after the Host allowlist: the page carries no secret (it arrives in the URL fragment).
 *   Vite names everything under `assets/` by its content hash, so those are cached as immutable for
 *   a year; the rest (index.html) is revalidated on every load by its ETag (304 when unchanged).
 *   Text files go out brotli- or gzip-compressed when the browser accepts it: each file is
 *   compressed once, on the thread pool (never the event loop the decisions share), and served
 *   uncompressed until that finishes.
 *
 * The bridge API the page calls (`/api/ui/*`, `/api/approvals/*`, `/api/approvers/*` and the
 * event stream) is derived from the bridge table by bridge-routes.ts.
 */
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlibConstants, gzip } from 'node:zlib';
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

/** Vite's content-hashed output: a changed file gets a new name, so a cached copy never goes stale. */
const IMMUTABLE_DIR = 'assets/';
const IMMUTABLE_CACHE = 'public, max-age=31536000, immutable';
/** Worth compressing: text. Images and fonts are compressed already. */
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.svg', '.txt']);
const MIN_COMPRESS_BYTES = 1024;
/** Bodies kept in memory (the renderer is about 0.6 MB; this bounds a stray large file). */
const MAX_CACHED_BYTES = 64 * 1024 * 1024;

type Encoding = 'br' | 'gzip';
const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/** One file as last read: its identity, body, ETag and the compressed forms made so far. */
interface StaticEntry {
  readonly mtimeMs: number;
  readonly size: number;
  readonly body: Buffer;
  readonly etag: string;
  readonly encoded: Map<Encoding, Buffer | 'pending'>;
}

/** The static renderer's routes (none without a `rendererDir`). */
export function uiStaticRoutes(rendererDir: string | undefined): HttpRoute[] {
  if (rendererDir === undefined) return [];
  const files = new StaticFiles();
  const handle = ({ req, res, path }: { req: IncomingMessage; res: ServerResponse; path: string }): undefined => {
    serveStatic(req, res, path, rendererDir, files);
    return undefined;
  };
  return [
    { verb: 'GET', path: UI_BASE_PATH.slice(0, -1), access: 'public', handle },
    { verb: 'GET', path: `${UI_BASE_PATH}*`, access: 'public', handle },
  ];
}

/** The renderer's files in memory, reread when a file's size or mtime changes (a rebuild). */
class StaticFiles {
  private readonly entries = new Map<string, StaticEntry>();
  private bytes = 0;

  /** The file's current entry, or undefined when it is not a regular file within the size limit. */
  read(file: string): StaticEntry | undefined {
    const stat = statSync(file);
    if (!stat.isFile() || stat.size > MAX_STATIC_BYTES) return undefined;
    const known = this.entries.get(file);
    if (known !== undefined && known.mtimeMs === stat.mtimeMs && known.size === stat.size) return known;
    const body = readFileSync(file);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    const entry: StaticEntry = { mtimeMs: stat.mtimeMs, size: stat.size, body, etag, encoded: new Map() };
    if (known !== undefined) this.forget(file, known);
    if (this.bytes + body.length <= MAX_CACHED_BYTES) {
      this.entries.set(file, entry);
      this.bytes += body.length;
    }
    return entry;
  }

  /** The body in `encoding` if it is ready; otherwise start making it (once) and answer undefined. */
  encoded(file: string, entry: StaticEntry, encoding: Encoding): Buffer | undefined {
    const ready = entry.encoded.get(encoding);
    if (ready !== undefined) return ready === 'pending' ? undefined : ready;
    if (this.entries.get(file) !== entry) return undefined; // not kept: not worth compressing
    entry.encoded.set(encoding, 'pending');
    const made =
      encoding === 'br'
        ? brotli(entry.body, {
            params: {
              [zlibConstants.BROTLI_PARAM_MODE]: zlibConstants.BROTLI_MODE_TEXT,
              [zlibConstants.BROTLI_PARAM_QUALITY]: zlibConstants.BROTLI_MAX_QUALITY,
              [zlibConstants.BROTLI_PARAM_SIZE_HINT]: entry.body.length,
            },
          })
        : gzipAsync(entry.body, { level: zlibConstants.Z_BEST_COMPRESSION });
    made.then(
      (compressed) => {
        // Kept only when smaller; an entry replaced meanwhile (a rebuild) is dropped with its forms.
        if (compressed.length < entry.body.length && this.entries.get(file) === entry) {
          entry.encoded.set(encoding, compressed);
          this.bytes += compressed.length;
        }
      },
      () => entry.encoded.delete(encoding), // tried again on a later request
    );
    return undefined;
  }

  private forget(file: string, entry: StaticEntry): void {
    this.entries.delete(file);
    this.bytes -= entry.body.length;
    for (const form of entry.encoded.values()) if (form !== 'pending') this.bytes -= form.length;
  }
}

/** The encodings the request accepts, in the order we prefer them (q=0 refuses one). */
function acceptedEncodings(req: IncomingMessage): Encoding[] {
  const header = req.headers['accept-encoding'];
  if (typeof header !== 'string') return [];
  const accepted = new Set<string>();
  for (const part of header.split(',')) {
    const [name = '', ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (q !== undefined && Number(q.slice(2)) === 0) continue;
    accepted.add(name.trim());
  }
  return (['br', 'gzip'] as const).filter((e) => accepted.has(e));
}

/** If-None-Match names this ETag (or `*`): the browser's copy is current. */
function notModified(req: IncomingMessage, etag: string): boolean {
  const header = req.headers['if-none-match'];
  if (typeof header !== 'string') return false;
  return header.split(',').some((tag) => {
    const t = tag.trim();
    return t === '*' || t === etag || t === `W/${etag}`;
  });
}

function serveStatic(req: IncomingMessage, res: ServerResponse, path: string, rendererDir: string, files: StaticFiles): void {
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
  const relative = path.slice(UI_BASE_PATH.length);
  const file = resolveStatic(root, relative);
  if (file === undefined) return sendError(req, res, notFound());
  let entry: StaticEntry | undefined;
  try {
    entry = files.read(file);
  } catch {
    return sendError(req, res, notFound());
  }
  if (entry === undefined) return sendError(req, res, notFound());
  const extension = extname(file).toLowerCase();
  const compressible = COMPRESSIBLE.has(extension) && entry.body.length >= MIN_COMPRESS_BYTES;
  const headers: Record<string, string> = {
    'content-type': CONTENT_TYPES[extension] ?? 'application/octet-stream',
    'cache-control': file.startsWith(resolve(root, IMMUTABLE_DIR) + sep) ? IMMUTABLE_CACHE : 'no-cache',
    etag: entry.etag,
    'content-security-policy': UI_CONTENT_SECURITY_POLICY,
    ...(compressible ? { vary: 'accept-encoding' } : {}),
    ...COMMON_HEADERS,
  };
  if (notModified(req, entry.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  let body = entry.body;
  if (compressible) {
    for (const encoding of acceptedEncodings(req)) {
      const encoded = files.encoded(file, entry, encoding);
      if (encoded === undefined) continue;
      body = encoded;
      headers['content-encoding'] = encoding;
      break;
    }
  }
  headers['content-length'] = String(body.length);
  res.writeHead(200, headers);
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
