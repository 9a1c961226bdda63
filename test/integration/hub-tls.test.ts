/**
 * A hub on a host name over TLS, with real parts: the core started on a data directory with
 * `gateway.publicHost = countersign.test` and `gateway.tls = {}` makes its development
 * certificate (@peculiar/x509, ECDSA P-256) on the first run and serves the HTTP edge as https and
 * the agent socket as wss. A real `ws` agent that pins the printed fingerprint (or trusts the
 * certificate file as its CA, with OpenSSL's host name check) gets a decision; a wrong pin, plain
 * http and plain ws, a foreign Host or Origin are refused; a non-loopback bind or a public host
 * name without TLS does not start. `countersign.test` is resolved to 127.0.0.1 by the client's own
 * `lookup` (the test's one stand-in: no DNS here), so the Host header and SNI carry the real name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { LookupFunction } from 'node:net';
import { WebSocket } from 'ws';
import { startCountersign } from '../../main/core/app.js';
import { parseConfig } from '../../main/core/config.js';
import { loadOrCreateDevCertificate, DEV_CERT_DIR, DEV_CERT_FILE, DEV_KEY_FILE } from '../../main/core/http/dev-certificate.js';
import { readTlsTrust, tlsWebSocketFactory, getJson } from '../../main/mcp/tls-trust.js';
import { DEMO_POLICY_DIR, startHarness, tempDir, transferCall, type Harness } from '../helpers/harness.js';
import { isCountersignError, type CountersignError } from '../../shared/errors.js';
import { WS_PATH, WS_SUBPROTOCOL } from '../../shared/protocol.js';

const HOST = 'countersign.test';

/** Resolve countersign.test to loopback (Node asks with `all: true` when it races address families). */
const toLoopback: LookupFunction = (_hostname, options, callback) => {
  if ((options as { all?: boolean }).all)
    (callback as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
};

let h: Harness;
const logs: string[] = [];

beforeAll(async () => {
  h = await startHarness({
    config: { domain: 'test', gateway: { publicHost: HOST, tls: {} } },
    start: { log: (m) => logs.push(m) },
  });
}, 60_000);

afterAll(async () => {
  await h?.close();
});

/** One https request to the hub (client `lookup` maps the name to loopback), trusting its certificate file. */
function hubRequest(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: { error?: { code: string } } & Record<string, unknown>; setCookie?: string[] }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: HOST, servername: HOST, port: h.app.port, path, lookup: toLoopback, ca: h.app.edge.tls!.cert, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code: string } },
            ...(res.headers['set-cookie'] === undefined ? {} : { setCookie: res.headers['set-cookie'] }),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('a hub on a host name over TLS', () => {
  it('makes a development certificate on first run: key file 0600, the fingerprint printed, the RP id and origins from the host name', () => {
    const tls = h.app.edge.tls!;
    expect(tls.source).toBe('development');
    const dir = join(h.dataDir, DEV_CERT_DIR);
    expect(statSync(join(dir, DEV_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, DEV_CERT_FILE), 'utf8')).toBe(tls.cert);
    expect(tls.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(logs.some((line) => line.includes(`SHA-256 fingerprint ${tls.fingerprint256}`))).toBe(true);
    expect(h.app.approvers.rpId).toBe(HOST);
    expect(h.app.url).toBe(`wss://${HOST}:${h.app.port}`);
    expect(h.app.deskUrl).toBe(`https://${HOST}:${h.app.port}`);
    expect(h.app.edge.approvalOrigins(h.app.port)).toEqual([`https://${HOST}:${h.app.port}`]);
  });

  it('reuses the stored development certificate on later runs, and makes a new one for another host name', async () => {
    const dir = join(tempDir('countersign-devcert-'), DEV_CERT_DIR);
    try {
      const first = await loadOrCreateDevCertificate(dir, HOST);
      const again = await loadOrCreateDevCertificate(dir, HOST);
      expect(again.fingerprint256).toBe(first.fingerprint256);
      expect(again.key).toBe(first.key);
      const renamed: string[] = [];
      const other = await loadOrCreateDevCertificate(dir, 'hub-b.countersign.test', { log: (m) => renamed.push(m) });
      expect(other.fingerprint256).not.toBe(first.fingerprint256);
      expect(renamed.join('\n')).toContain('does not name the host "hub-b.countersign.test"');
      expect(statSync(join(dir, DEV_KEY_FILE)).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(join(dir, '..'), { recursive: true, force: true });
    }
  });

  it('gives a real agent over wss, pinning the printed fingerprint, its decision', async () => {
    const key = await h.enroll('agent-pinned');
    const trust = readTlsTrust({ fingerprint256: h.app.edge.tls!.fingerprint256.replaceAll(':', '').toLowerCase() });
    const client = h.client('agent-pinned', key, { url: h.app.url, webSocket: tlsWebSocketFactory(trust, { lookup: toLoopback }) });
    const result = await client.submit(transferCall('250.00'));
    expect(result.decision).toBe('allow');
    expect(typeof result.token).toBe('string');
  });

  it('gives an agent trusting the certificate file as its CA (OpenSSL checks chain and host name) its decision', async () => {
    const key = await h.enroll('agent-ca');
    const trust = readTlsTrust({ caFile: join(h.dataDir, DEV_CERT_DIR, DEV_CERT_FILE) });
    const client = h.client('agent-ca', key, { url: h.app.url, webSocket: tlsWebSocketFactory(trust, { lookup: toLoopback }) });
    expect((await client.submit(transferCall('251.00'))).decision).toBe('allow');
    // The JWKS (what the MCP proxy verifies tokens with) comes over the same trust.
    const jwks = await getJson(`https://127.0.0.1:${h.app.port}/.well-known/jwks.json`, trust);
    expect(jwks.status).toBe(200);
    expect(Array.isArray((jwks.body as { keys: unknown[] }).keys)).toBe(true);
  });

  it('refuses a server whose certificate is not the pinned one, before the agent signs anything', async () => {
    const key = await h.enroll('agent-wrong-pin');
    const refused: CountersignError[] = [];
    const trust = readTlsTrust({ fingerprint256: 'AB'.repeat(32) });
    const client = h.client('agent-wrong-pin', key, {
      url: h.app.url,
      webSocket: tlsWebSocketFactory(trust, { lookup: toLoopback, onRefused: (e) => refused.push(e) }),
    });
    const before = (h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind LIKE 'request.%'").get() as { n: number }).n;
    const error = await client.submit(transferCall('252.00')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(error) && error.code).toBe('connection_closed');
    expect(refused.map((e) => e.code)).toEqual(['tls_certificate_invalid']);
    expect(refused[0]!.message).toContain(h.app.edge.tls!.fingerprint256);
    const after = (h.app.db.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE kind LIKE 'request.%'").get() as { n: number }).n;
    expect(after).toBe(before);
    // Without a pin or a CA, Node's default store does not know the development certificate.
    const untrusted = await getJson(`https://127.0.0.1:${h.app.port}/healthz`, readTlsTrust({})).then(
      () => 'read',
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    expect(untrusted).toMatch(/could not be read/);
  });

  it('refuses plain http and plain ws on the TLS port: no answer, no upgrade', async () => {
    const plainHttp = await new Promise<string>((resolve) => {
      const req = httpGet({ host: '127.0.0.1', port: h.app.port, path: '/healthz', timeout: 5_000 }, (res) =>
        resolve(`answered ${res.statusCode}`),
      );
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      req.on('timeout', () => req.destroy(new Error('timeout')));
    });
    expect(plainHttp).toMatch(/^(ECONNRESET|EPIPE|HPE_INVALID_CONSTANT)$/);
    const plainWs = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${h.app.port}${WS_PATH}`, [WS_SUBPROTOCOL]);
      ws.on('open', () => resolve('opened'));
      ws.on('error', (e) => resolve(`error: ${e.message}`));
    });
    expect(plainWs).toMatch(/^error: /);
  });

  it('refuses a foreign Host (421) and a foreign Origin (403) over https; the hub origin passes', async () => {
    const port = h.app.port;
    expect((await hubRequest('/healthz')).status).toBe(200);
    const badHost = await hubRequest('/healthz', { host: `evil.example:${port}` });
    expect([badHost.status, badHost.body.error?.code]).toEqual([421, 'host_not_allowed']);
    const bearer = { authorization: `Bearer ${h.app.uiSessionSecret}` };
    const foreign = await hubRequest('/api/ui/status', { ...bearer, origin: `https://evil.example:${port}` });
    expect([foreign.status, foreign.body.error?.code]).toEqual([403, 'origin_not_allowed']);
    // An http page of the same name is another origin than the https hub.
    const downgraded = await hubRequest('/api/ui/status', { ...bearer, origin: `http://${HOST}:${port}` });
    expect([downgraded.status, downgraded.body.error?.code]).toEqual([403, 'origin_not_allowed']);
    expect((await hubRequest('/api/ui/status', { ...bearer, origin: `https://${HOST}:${port}` })).status).toBe(200);
    // The agent socket: a browser page on another site cannot open it.
    const upgrade = await new Promise<number | string>((resolve) => {
      const ws = new WebSocket(`${h.app.url}${WS_PATH}`, [WS_SUBPROTOCOL], {
        lookup: toLoopback,
        ca: h.app.edge.tls!.cert,
        origin: 'https://evil.example',
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve('opened'));
      ws.on('error', (e) => resolve(e.message));
    });
    expect(upgrade).toBe(403);
  });

  it('sets the desk session cookie Secure over TLS', async () => {
    // A sign-out answer clears the cookie: its attributes are those of every session cookie.
    const res = await new Promise<string[]>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: HOST,
          port: h.app.port,
          path: '/api/session/sign-out',
          method: 'POST',
          lookup: toLoopback,
          ca: h.app.edge.tls!.cert,
          agent: false,
          headers: { authorization: `Bearer ${h.app.uiSessionSecret}`, 'content-type': 'application/json' },
        },
        (r) => {
          r.resume();
          resolve(r.headers['set-cookie'] ?? []);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    expect(res.join('\n')).toMatch(/HttpOnly; SameSite=Strict; Max-Age=0; Secure$/);
  });
});

describe('binding beyond loopback needs TLS', () => {
  async function startWith(gateway: Record<string, unknown>) {
    const dataDir = tempDir();
    writeFileSync(
      join(dataDir, 'config.json'),
      JSON.stringify(parseConfig({ policyDir: DEMO_POLICY_DIR, gateway: { port: 0, ...gateway } })),
    );
    try {
      const error = await startCountersign({ dataDir, log: () => undefined }).then(
        async (app) => {
          await app.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      return { error, wroteStore: existsSync(join(dataDir, 'countersign.db')) };
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }

  it('refuses 0.0.0.0 without TLS with tls_required, before the store is opened', async () => {
    const { error, wroteStore } = await startWith({ host: '0.0.0.0' });
    expect(isCountersignError(error) && error.code).toBe('tls_required');
    expect((error as Error).message).toContain('"0.0.0.0"');
    expect(wroteStore).toBe(false);
  });

  it('refuses a public host name without TLS with tls_required', async () => {
    const { error } = await startWith({ publicHost: HOST });
    expect(isCountersignError(error) && error.code).toBe('tls_required');
  });

  it('refuses certificate files that do not name the host with tls_certificate_invalid', async () => {
    const dir = tempDir('countersign-certs-');
    try {
      await loadOrCreateDevCertificate(dir, 'elsewhere.test');
      const { error } = await startWith({
        publicHost: HOST,
        tls: { certFile: join(dir, DEV_CERT_FILE), keyFile: join(dir, DEV_KEY_FILE) },
      });
      expect(isCountersignError(error) && error.code).toBe('tls_certificate_invalid');
      expect((error as Error).message).toContain(`"${HOST}"`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
