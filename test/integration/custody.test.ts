/**
 * Hardware custody end to end, with a real SoftHSM2 token: the key ceremony CLI in its own
 * process, the app signing tokens in the token, tool-side verification with the exported key
 * (jose via verifyApprovalToken, and node:crypto with the PEM), rotation with an overlap
 * window, refusals at start, and a token pulled out mid-sign (injected with FaultyPkcs11, since
 * SoftHSM has no removable device) that loses nothing and recovers.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, sign as signWith, verify } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHECKPOINT_FILE, auditOrigin, verifyCheckpointNote } from '../../main/core/audit/checkpoints.js';
import { noteKeyId } from '../../main/core/audit/note-keys.js';
import { checkpointText, formatSignedNote, parseCheckpointText, parseSignedNote } from '../../shared/checkpoint-note.js';
import { jwkThumbprint } from '../../main/core/custody/signer.js';
import Database from 'better-sqlite3';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { loadPkcs11Module } from '../../main/core/custody/pkcs11-api.js';
import { Pkcs11Token } from '../../main/core/custody/pkcs11-token.js';
import { readPin } from '../../main/core/custody/pin-source.js';
import type { Pkcs11Config } from '../../main/core/config.js';
import { AgentClient, type WebSocketLike } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey, type AgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { fromBase64url, utf8 } from '../../shared/encoding.js';
import { isCountersignError } from '../../shared/errors.js';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { FaultyPkcs11 } from '../helpers/faulty-pkcs11.js';
import { FINANCE_SCOPE, DEMO_POLICY_DIR, tempDir, transferCall, ensurePeople } from '../helpers/harness.js';
import { RawClient, errorCode, signedEnvelope } from '../helpers/raw-client.js';
import { compiledCli } from '../helpers/compiled-script.js';

// The CLI compiled once for the run (test/helpers/compile-scripts.ts), started with plain Node.
const NODE = process.execPath;
const CLI = compiledCli();
const PIN_ENV = 'COUNTERSIGN_TEST_HSM_PIN';

let token: SoftHsmToken;
let dataDir: string;
let pkcs11: Pkcs11Config;

function writeConfig(custody: Record<string, unknown>): void {
  writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ gateway: { port: 0 }, policyDir: DEMO_POLICY_DIR, custody }));
}

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args, '--data-dir', dataDir], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, SOFTHSM2_CONF: token.confPath, [PIN_ENV]: token.pin },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function start(extra: Parameters<typeof startCountersign>[0] extends infer O ? Partial<O> : never = {}): Promise<RunningCountersign> {
  return startCountersign({ dataDir, log: () => undefined, ...extra });
}

async function enrollAndConnect(app: RunningCountersign, agentId: string): Promise<{ key: AgentKey; client: AgentClient }> {
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  ensurePeople(app, FINANCE_SCOPE.owner);
  app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, agentId, agentId)), FINANCE_SCOPE);
  const client = new AgentClient({
    url: app.url,
    agentId,
    key,
    reconnect: false,
    webSocket: (u, p) => new WebSocket(u, p) as unknown as WebSocketLike,
  });
  await client.connect();
  return { key, client };
}

async function fetchJwks(app: RunningCountersign): Promise<{ keys: Array<{ kid: string; alg: string }> }> {
  return (await (await fetch(`http://127.0.0.1:${app.port}/.well-known/jwks.json`)).json()) as {
    keys: Array<{ kid: string; alg: string }>;
  };
}

function headerOf(jws: string): { kid: string; alg: string } {
  return JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid: string; alg: string };
}

beforeAll(() => {
  token = createSoftHsmToken({ label: 'cs-custody', pin: '246810', soPin: '13579111' });
  process.env[PIN_ENV] = token.pin;
  dataDir = tempDir();
  pkcs11 = {
    module: token.module,
    tokenLabel: token.label,
    pin: { env: PIN_ENV },
    callTimeoutMs: 2_000,
    reconnectAttempts: 2,
    reconnectDelayMs: 20,
    sessions: 2,
  };
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
  token.cleanup();
});

describe('hardware custody over PKCS#11', () => {
  let firstKid = '';
  let firstToken = '';
  const firstCall = transferCall('250.00');

  it('refuses to start before the key ceremony when hardware custody is required', async () => {
    writeConfig({ requireHardware: true, pkcs11 });
    const error = await start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(error, 'hsm_key_not_found')).toBe(true);
    writeConfig({ requireHardware: true });
    const noToken = await start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(noToken, 'hardware_custody_required')).toBe(true);
  });

  it('makes the key in the token with keys init, and the app signs tokens that verify with the exported key', async () => {
    writeConfig({ requireHardware: true, pkcs11 });
    const init = cli('keys', 'init');
    expect(init.stderr).not.toContain(token.pin);
    expect(init.status).toBe(0);
    const made = JSON.parse(init.stdout) as { kid: string; alg: string; label: string };
    expect(made).toMatchObject({ alg: 'ES256', domain: 'production' });
    expect(made.label).toMatch(/^countersign-production-/);
    firstKid = made.kid;
    expect(cli('keys', 'init').stderr).toContain('use keys rotate');

    const app = await start();
    try {
      expect(app.signer.custody).toBe('pkcs11');
      expect(app.custody.status()).toMatchObject({ custody: 'pkcs11', kid: firstKid, tokenPresent: true, loggedIn: true });
      const { client } = await enrollAndConnect(app, 'finance-bot');
      const result = await client.submit(firstCall);
      client.close();
      expect(result.decision).toBe('allow');
      firstToken = result.token ?? '';
      const jwks = await fetchJwks(app);
      expect(jwks.keys.map((k) => k.kid)).toEqual([firstKid]);
      const verified = await verifyApprovalToken(firstToken, {
        call: firstCall,
        audience: 'payments-service',
        keys: jwks,
        jtiStore: new MemoryJtiStore(),
      });
      expect(verified.sub).toBe('finance-bot');
      expect(headerOf(firstToken).kid).toBe(firstKid);
    } finally {
      await app.close();
    }

    // node:crypto with the PEM from keys export-public, as a tool server in another stack would.
    const pem = cli('keys', 'export-public', '--format', 'pem');
    expect(pem.status).toBe(0);
    const [header, payload, signature] = firstToken.split('.') as [string, string, string];
    const key = createPublicKey(pem.stdout.slice(pem.stdout.indexOf('-----BEGIN')));
    expect(verify('sha256', utf8(`${header}.${payload}`), { key, dsaEncoding: 'ieee-p1363' }, fromBase64url(signature)!)).toBe(true);
    expect(verify('sha256', utf8(`${header}.${payload}x`), { key, dsaEncoding: 'ieee-p1363' }, fromBase64url(signature)!)).toBe(false);

    // The audit checkpoint written at shutdown is signed in the token too (ECDSA signed note).
    const note = readFileSync(join(dataDir, CHECKPOINT_FILE), 'utf8');
    const jwk = key.export({ format: 'jwk' }) as unknown as PublicJwk;
    expect(verifyCheckpointNote(note, auditOrigin('countersign-local'), [jwk]).size).toBeGreaterThan(0);

    const status = cli('keys', 'status');
    expect(status.status).toBe(0);
    const reported = JSON.parse(status.stdout) as Record<string, unknown>;
    expect(reported).toMatchObject({
      ok: true,
      custody: 'pkcs11',
      kid: firstKid,
      tokenPresent: true,
      loggedIn: true,
      keyMatchesPin: true,
      extractable: false,
    });
    expect(reported.lastSignatureAt).toBeTypeOf('number');
  }, 180_000);

  it('rotates: the new key signs, the old one stays published for the overlap and its tokens still verify', async () => {
    const rotate = cli('keys', 'rotate', '--alg', 'EdDSA', '--overlap', '1h');
    expect(rotate.status).toBe(0);
    const rotated = JSON.parse(rotate.stdout) as { kid: string; alg: string; previous: { kid: string } };
    expect(rotated).toMatchObject({ alg: 'EdDSA', previous: { kid: firstKid } });
    expect(rotated.kid).not.toBe(firstKid);
    const listed = JSON.parse(cli('keys', 'list', '--json').stdout) as Array<{ kid: string; status: string }>;
    expect(listed.map((k) => [k.kid, k.status])).toEqual([
      [firstKid, 'retiring'],
      [rotated.kid, 'active'],
    ]);

    const app = await start();
    try {
      const jwks = await fetchJwks(app);
      expect(jwks.keys.map((k) => k.kid).sort()).toEqual([firstKid, rotated.kid].sort());
      const old = await verifyApprovalToken(firstToken, {
        call: firstCall,
        audience: 'payments-service',
        keys: jwks,
        jtiStore: new MemoryJtiStore(),
        clockToleranceSeconds: 60,
        now: () => (JSON.parse(Buffer.from(firstToken.split('.')[1] ?? '', 'base64url').toString()) as { iat: number }).iat * 1000,
      });
      expect(old.jti).toBeTypeOf('string');
      expect(headerOf(firstToken).kid).toBe(firstKid);
      const { client } = await enrollAndConnect(app, 'finance-bot-2');
      const result = await client.submit(transferCall('300.00'));
      client.close();
      const fresh = await verifyApprovalToken(result.token ?? '', {
        call: transferCall('300.00'),
        audience: 'payments-service',
        keys: jwks,
        jtiStore: new MemoryJtiStore(),
      });
      expect(fresh.sub).toBe('finance-bot-2');
      expect(headerOf(result.token ?? '')).toMatchObject({ kid: rotated.kid, alg: 'EdDSA' });
    } finally {
      await app.close();
    }
  }, 180_000);

  it('never falls back to software: a pinned token key without custody.pkcs11 refuses to start', async () => {
    writeConfig({});
    const error = await start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(error, 'hardware_custody_required')).toBe(true);
    writeConfig({ requireHardware: true, pkcs11 });
  });

  it('refuses to start when the PIN is wrong, and tries it only once', async () => {
    let faulty: FaultyPkcs11 | undefined;
    const error = await start({
      openToken: (config) => {
        faulty = new FaultyPkcs11(loadPkcs11Module(config.module));
        return Pkcs11Token.open(config, { readPin: () => Promise.resolve('000000'), api: faulty });
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCountersignError(error, 'hsm_pin_incorrect')).toBe(true);
    expect(faulty?.count('C_Login')).toBe(1);
  });

  it('a token pulled out mid-sign: no token, nothing stored, the same envelope succeeds once it is back', async () => {
    // One wrapper per session of the pool; an idle pool signs with its first session.
    const wrappers: FaultyPkcs11[] = [];
    const app = await start({
      openToken: (config) => {
        const faulty = new FaultyPkcs11(loadPkcs11Module(config.module));
        wrappers.push(faulty);
        return Pkcs11Token.open(config, { readPin: () => readPin(config.pin), api: faulty });
      },
    });
    const faulty = wrappers[0];
    expect(wrappers).toHaveLength(2);
    try {
      const key = await importAgentKey(await generateAgentKey('EdDSA'));
      ensurePeople(app, FINANCE_SCOPE.owner);
      app.registry.enroll(
        await verifyEnrollmentRequest(await createEnrollmentRequest(key, 'finance-bot-3', 'finance-bot-3')),
        FINANCE_SCOPE,
      );
      const c = await RawClient.connect(app.url);
      await c.authenticate('finance-bot-3', key);
      const envelope = await signedEnvelope(key, 'finance-bot-3', transferCall('125.00'));
      const count = (t: string) => (app.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
      const before = [count('requests'), count('tokens'), count('seen_nonces')];
      faulty!.removeTokenOnNextSign();
      const refused = await c.call('call.submit', { envelope });
      expect(errorCode(refused)).toBe('signer_unavailable');
      expect([count('requests'), count('tokens'), count('seen_nonces')]).toEqual(before);
      expect(app.custody.status().tokenPresent).toBe(false);

      faulty!.reinsertToken();
      const retried = await c.call('call.submit', { envelope });
      expect(retried.result).toMatchObject({ decision: 'allow' });
      expect([count('requests'), count('tokens')]).toEqual([before[0]! + 1, before[1]! + 1]);
      c.close();
    } finally {
      await app.close();
    }
  });

  it('with hardware custody required, a checkpoint signed by a key pinned only in the database is refused', async () => {
    const file = join(dataDir, CHECKPOINT_FILE);
    const genuine = readFileSync(file, 'utf8');
    const honest = parseCheckpointText(parseSignedNote(genuine).text);
    // The attacker pins a key of their own (a row in the database) and signs a checkpoint with it.
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const jwk = { ...(publicKey.export({ format: 'jwk' }) as { kty: 'OKP'; crv: 'Ed25519'; x: string }), alg: 'EdDSA' as const };
    const kid = jwkThumbprint(jwk);
    const origin = auditOrigin('countersign-local');
    const text = checkpointText(honest);
    writeFileSync(
      file,
      formatSignedNote(text, [
        { keyName: origin, keyId: noteKeyId(origin, jwk), signature: new Uint8Array(signWith(null, Buffer.from(text), privateKey)) },
      ]),
    );
    const db = new Database(join(dataDir, 'countersign.db'));
    db.prepare(
      "INSERT INTO signing_keys (kid, domain, custody, alg, public_jwk, status, created_at, retired_at) VALUES (?, 'production', 'software', 'EdDSA', ?, 'retired', 0, 0)",
    ).run(kid, JSON.stringify({ ...jwk, kid }));
    db.close();
    await expect(start()).rejects.toMatchObject({
      code: 'audit_checkpoint_invalid',
      message: expect.stringContaining('not signed by a pinned signing key') as unknown,
    });
    writeFileSync(file, genuine);
    const app = await start();
    await app.close();
  });
});
