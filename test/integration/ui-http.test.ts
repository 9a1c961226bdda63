/**
 * The headless UI over real HTTP: a real core (gateway, SQLite, Cedar, software signer), the
 * shared HTTP bridge client with the app's per-start session secret, and raw requests for the
 * things a well-behaved client never sends (wrong Host, traversal paths, no secret).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import type { CountersignBridge } from '../../shared/bridge-table.js';
import { isCountersignError } from '../../shared/errors.js';
import { UI_CONTENT_SECURITY_POLICY } from '../../main/core/ui/ui-http.js';

const SECRET_MARKER = 'TOP-SECRET-OUTSIDE-RENDERER-DIR';
const INDEX_HTML = '<!doctype html><title>ui</title><script type="module" src="/ui/assets/app.js"></script>';
/** A text asset big enough to be worth compressing (the desk's entry chunk is about 280 KB). */
const BIG_SCRIPT = Array.from({ length: 2000 }, (_, i) => `export const value${i} = "row ${i} of the queue";`).join('\n');

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request exactly as written: node:http sends the path verbatim (no `..` normalisation). */
function raw(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<RawResponse> {
  return rawBytes(port, path, headers, method).then(({ bytes, ...rest }) => ({ ...rest, body: bytes.toString('utf8') }));
}

/** As raw, with the body's bytes as sent (a compressed body stays compressed). */
function rawBytes(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<Omit<RawResponse, 'body'> & { bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isCountersignError(error), String(error)).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

let h: Harness;
let root: string;
let rendererDir: string;
let base: string;
let bridge: CountersignBridge;

beforeAll(async () => {
  // rendererDir holds a tiny "built renderer"; its parent holds a file that must never be served.
  root = tempDir('countersign-ui-');
  rendererDir = join(root, 'dist');
  mkdirSync(join(rendererDir, 'assets'), { recursive: true });
  writeFileSync(join(rendererDir, 'index.html'), INDEX_HTML);
  writeFileSync(join(rendererDir, 'assets', 'app.js'), 'console.log("ui");\n');
  writeFileSync(join(rendererDir, 'assets', 'big-0a1b2c.js'), BIG_SCRIPT);
  writeFileSync(join(rendererDir, '.env'), SECRET_MARKER);
  writeFileSync(join(root, 'secret.txt'), SECRET_MARKER);
  symlinkSync(join(root, 'secret.txt'), join(rendererDir, 'link.txt'));
  h = await startHarness({ start: { rendererDir } });
  base = `http://127.0.0.1:${h.app.port}`;
  bridge = createHttpBridge({ baseUrl: base, sessionSecret: h.app.uiSessionSecret, fetch: (input, init) => fetch(input, init) });
});

afterAll(async () => {
  await h.close();
  rmSync(root, { recursive: true, force: true });
});

describe('the UI bridge over HTTP', () => {
  it('has a fresh 32-byte base64url session secret per start', () => {
    expect(h.app.uiSessionSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('reports the status of the running core', async () => {
    const status = await bridge.getStatus();
    expect(status).toMatchObject({
      serverId: h.app.config.serverId,
      domain: 'production',
      policyHash: h.app.policy.hash,
      custody: 'software',
      gatewayUrl: h.app.url,
    });
    expect(status.connections).toBeGreaterThanOrEqual(0);
  });

  it('lists decisions after an agent submits calls, newest first, and clamps the limit', async () => {
    const key = await h.enroll('finance-bot');
    const client = h.client('finance-bot', key);
    const allowed = await client.submit(transferCall('250.00'));
    const held = await client.submit(transferCall('48000.00', 'Northwind Traders'));
    expect(allowed.decision).toBe('allow');
    expect(held.decision).toBe('pending');

    const decisions = await bridge.listRecentDecisions(10);
    const ids = decisions.map((d) => d.requestId);
    expect(ids).toContain(allowed.requestId);
    expect(ids).toContain(held.requestId);
    expect(decisions.find((d) => d.requestId === allowed.requestId)).toMatchObject({
      agentId: 'finance-bot',
      tool: 'payments.transfer',
      state: 'allowed',
      policyHash: h.app.policy.hash,
    });
    expect(decisions.find((d) => d.requestId === held.requestId)?.state).toBe('pending');
    expect(ids.indexOf(held.requestId)).toBeLessThan(ids.indexOf(allowed.requestId));

    expect(await bridge.listRecentDecisions(1)).toHaveLength(1);
    expect(await bridge.listRecentDecisions(0)).toHaveLength(1);
    const huge = await raw(h.app.port, '/api/ui/decisions?limit=999999', { authorization: `Bearer ${h.app.uiSessionSecret}` });
    expect(huge.status).toBe(200);
    expect((JSON.parse(huge.body) as unknown[]).length).toBe(2);
    const bad = await raw(h.app.port, '/api/ui/decisions?limit=-1', { authorization: `Bearer ${h.app.uiSessionSecret}` });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ error: { code: 'schema_invalid' } });

    const status = await bridge.getStatus();
    expect(status.decisions).toBe(2);
    expect(status.authenticated).toBe(1);
  });

  it('lists enrolled agents with their keys', async () => {
    const key = await h.enroll(
      'deploy-bot',
      { owner: 'sam@example.com', group: 'deploy-agents', allowedTools: ['deploy.staging'] },
      'ES256',
    );
    const agents = await bridge.listAgents();
    const agent = agents.find((a) => a.id === 'deploy-bot');
    expect(agent).toMatchObject({ owner: 'sam@example.com', group: 'deploy-agents', status: 'active', allowedTools: ['deploy.staging'] });
    expect(agent?.keys).toEqual([{ kid: key.kid, alg: 'ES256', status: 'active' }]);
  });

  it('answers JSON with no-store and nosniff', async () => {
    const res = await raw(h.app.port, '/api/ui/status', { authorization: `Bearer ${h.app.uiSessionSecret}` });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('the UI API refuses', () => {
  it('a missing or wrong session secret with 401 not_authenticated', async () => {
    const variants: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: `Bearer ${h.app.uiSessionSecret}x` },
      { authorization: `Basic ${h.app.uiSessionSecret}` },
      { authorization: h.app.uiSessionSecret },
    ];
    for (const headers of variants) {
      for (const path of ['/api/ui/status', '/api/ui/decisions?limit=5', '/api/ui/agents']) {
        const res = await raw(h.app.port, path, headers);
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'not_authenticated' } });
        expect(res.headers['cache-control']).toBe('no-store');
        expect(res.body).not.toContain(h.app.uiSessionSecret);
      }
    }
    const wrong = createHttpBridge({ baseUrl: base, sessionSecret: 'A'.repeat(43) });
    await expectCode(wrong.getStatus(), 'not_authenticated');
    await expectCode(wrong.listRecentDecisions(5), 'not_authenticated');
    await expectCode(wrong.listAgents(), 'not_authenticated');
    expect(() => createHttpBridge({ baseUrl: base, sessionSecret: '' })).toThrow(expect.objectContaining({ code: 'not_authenticated' }));
  });

  it('a malformed percent-encoded path segment without the secret with 401, not a schema answer', async () => {
    const paths = [
      '/api/approvals/requests/%ZZ',
      '/api/approvals/requests/%ZZ/ceremony',
      '/api/approvals/requests/%E0%A4%A',
      '/api/ui/%ZZ',
      '/api/%ZZ/x',
    ];
    for (const path of paths) {
      for (const method of ['GET', 'POST']) {
        const res = await raw(h.app.port, path, {}, method);
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(JSON.parse(res.body), `${method} ${path}`).toMatchObject({ error: { code: 'not_authenticated' } });
      }
      // A cross-origin caller with the secret is refused by the origin policy before decoding too.
      const foreign = await raw(h.app.port, path, { authorization: `Bearer ${h.app.uiSessionSecret}`, origin: 'https://evil.example' });
      expect(foreign.status, path).toBe(403);
    }
    // With the secret, the bad encoding is a schema answer.
    const authed = await raw(h.app.port, '/api/approvals/requests/%ZZ', { authorization: `Bearer ${h.app.uiSessionSecret}` });
    expect(authed.status).toBe(400);
    expect(JSON.parse(authed.body)).toMatchObject({ error: { code: 'schema_invalid' } });
  });

  it('a Host header that is not on the allowlist with 421, even with the secret', async () => {
    for (const path of ['/api/ui/status', '/ui/', '/ui/index.html']) {
      const res = await raw(h.app.port, path, { host: 'evil.example', authorization: `Bearer ${h.app.uiSessionSecret}` });
      expect(res.status).toBe(421);
      expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'host_not_allowed' } });
    }
    const rebinding = await raw(h.app.port, '/api/ui/status', {
      host: `attacker.example:${h.app.port}`,
      authorization: `Bearer ${h.app.uiSessionSecret}`,
    });
    expect(rebinding.status).toBe(421);
  });

  it('a cross-origin caller and methods other than GET', async () => {
    const cross = await raw(h.app.port, '/api/ui/status', {
      origin: 'http://evil.example',
      authorization: `Bearer ${h.app.uiSessionSecret}`,
    });
    expect(cross.status).toBe(403);
    const same = await raw(h.app.port, '/api/ui/status', {
      origin: `http://127.0.0.1:${h.app.port}`,
      authorization: `Bearer ${h.app.uiSessionSecret}`,
    });
    expect(same.status).toBe(200);
    const post = await raw(h.app.port, '/api/ui/status', { authorization: `Bearer ${h.app.uiSessionSecret}` }, 'POST');
    expect(post.status).toBe(405);
    const unknown = await raw(h.app.port, '/api/ui/secrets', { authorization: `Bearer ${h.app.uiSessionSecret}` });
    expect(unknown.status).toBe(404);
  });

  it('leaves the gateway routes alone', async () => {
    const health = await raw(h.app.port, '/healthz');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok', policyHash: h.app.policy.hash });
  });
});

describe('the static renderer', () => {
  it('serves index.html and assets with the strict CSP', async () => {
    const index = await raw(h.app.port, '/ui/');
    expect(index.status).toBe(200);
    expect(index.body).toBe(INDEX_HTML);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['content-security-policy']).toBe(UI_CONTENT_SECURITY_POLICY);
    expect(UI_CONTENT_SECURITY_POLICY).toBe(
      "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    );
    expect(index.headers['x-content-type-options']).toBe('nosniff');

    const script = await raw(h.app.port, '/ui/assets/app.js');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.headers['content-security-policy']).toBe(UI_CONTENT_SECURITY_POLICY);

    const byName = await raw(h.app.port, '/ui/index.html?x=1', { host: `localhost:${h.app.port}` });
    expect(byName.status).toBe(200);

    const redirect = await raw(h.app.port, '/ui');
    expect(redirect.status).toBe(308);
    expect(redirect.headers.location).toBe('/ui/');

    const head = await raw(h.app.port, '/ui/', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('caches hashed assets as immutable and revalidates index.html by its ETag (304 when unchanged, new body after a rebuild)', async () => {
    const script = await raw(h.app.port, '/ui/assets/app.js');
    expect(script.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    const index = await raw(h.app.port, '/ui/');
    expect(index.headers['cache-control']).toBe('no-cache');
    const etag = index.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]{27}"$/);

    for (const tag of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const again = await raw(h.app.port, '/ui/', { 'if-none-match': tag });
      expect(again.status, tag).toBe(304);
      expect(again.body).toBe('');
      expect(again.headers.etag).toBe(etag);
      expect(again.headers['content-security-policy']).toBe(UI_CONTENT_SECURITY_POLICY);
    }
    expect((await raw(h.app.port, '/ui/', { 'if-none-match': '"stale"' })).status).toBe(200);

    // A rebuild writes a new index.html: its old ETag no longer matches and the new body is served.
    const rebuilt = `${INDEX_HTML}<!-- rebuilt -->`;
    writeFileSync(join(rendererDir, 'index.html'), rebuilt);
    try {
      const fresh = await raw(h.app.port, '/ui/', { 'if-none-match': etag });
      expect(fresh.status).toBe(200);
      expect(fresh.body).toBe(rebuilt);
      expect(fresh.headers.etag).not.toBe(etag);
    } finally {
      writeFileSync(join(rendererDir, 'index.html'), INDEX_HTML);
    }
  });

  it('sends text compressed with brotli or gzip when accepted, byte-identical once decoded, and plain otherwise', async () => {
    const path = '/ui/assets/big-0a1b2c.js';
    const decoded = (res: { headers: RawResponse['headers']; bytes: Buffer }) => {
      const encoding = res.headers['content-encoding'];
      if (encoding === 'br') return brotliDecompressSync(res.bytes).toString('utf8');
      if (encoding === 'gzip') return gunzipSync(res.bytes).toString('utf8');
      expect(encoding).toBeUndefined();
      return res.bytes.toString('utf8');
    };
    // Compression runs once per file per encoding on the thread pool; until one is ready the body
    // goes out plain or in another accepted encoding, always decoding to the same bytes.
    const servedAs = async (accept: string, wanted: string) => {
      for (;;) {
        const res = await rawBytes(h.app.port, path, { 'accept-encoding': accept });
        expect(res.status).toBe(200);
        expect(res.headers.vary).toBe('accept-encoding');
        expect(Number(res.headers['content-length'])).toBe(res.bytes.length);
        expect(decoded(res)).toBe(BIG_SCRIPT);
        if (res.headers['content-encoding'] === wanted) return res;
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const br = await servedAs('gzip, deflate, br', 'br');
    expect(br.bytes.length).toBeLessThan(BIG_SCRIPT.length / 4);
    // Preferred when both are ready; gzip for a browser that does not take br (Chromium over plain http).
    expect((await rawBytes(h.app.port, path, { 'accept-encoding': 'gzip, br' })).headers['content-encoding']).toBe('br');
    const gz = await servedAs('gzip, deflate', 'gzip');
    expect(gz.bytes.length).toBeLessThan(BIG_SCRIPT.length / 4);
    // q=0 refuses an encoding.
    expect((await rawBytes(h.app.port, path, { 'accept-encoding': 'br;q=0, gzip' })).headers['content-encoding']).toBe('gzip');

    for (const accept of [undefined, 'identity', 'br;q=0', 'deflate']) {
      const plain = await rawBytes(h.app.port, path, accept === undefined ? {} : { 'accept-encoding': accept });
      expect(plain.headers['content-encoding'], accept).toBeUndefined();
      expect(plain.bytes.toString('utf8')).toBe(BIG_SCRIPT);
    }
    // Too small to be worth it: sent as is, and says nothing of encodings.
    const small = await rawBytes(h.app.port, '/ui/assets/app.js', { 'accept-encoding': 'br, gzip' });
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.headers.vary).toBeUndefined();
  });

  it('never serves a file outside rendererDir, whatever the path encoding', async () => {
    const attempts = [
      '/ui/../package.json',
      '/ui/../secret.txt',
      '/ui/%2e%2e/secret.txt',
      '/ui/%2E%2E/secret.txt',
      '/ui/%2e%2e%2fsecret.txt',
      '/ui/..%2fsecret.txt',
      '/ui/..%2Fsecret.txt',
      '/ui/assets/..%2f..%2fsecret.txt',
      '/ui/assets/%2e%2e/%2e%2e/secret.txt',
      '/ui/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd',
      '/ui/..%5csecret.txt',
      '/ui/%2e%2e%5csecret.txt',
      '/ui/%252e%252e/secret.txt',
      '/ui//etc/passwd',
      '/ui/%2fetc%2fpasswd',
      `/ui/${encodeURIComponent(join(root, 'secret.txt'))}`,
      '/ui/secret.txt%00.html',
      '/ui/%c0%ae%c0%ae/secret.txt',
      '/ui/%e0%80%ae%e0%80%ae/secret.txt',
      '/ui/%',
      '/ui/.env',
      '/ui/%2eenv',
      '/ui/link.txt',
      '/ui/assets',
      '/ui/assets/',
    ];
    for (const path of attempts) {
      const res = await raw(h.app.port, path);
      expect(res.status, path).not.toBe(200);
      expect([400, 404]).toContain(res.status);
      expect(res.body, path).not.toContain(SECRET_MARKER);
      expect(res.body, path).not.toContain('"name": "countersign"');
      expect(res.body, path).not.toContain('root:');
    }
  });
});
