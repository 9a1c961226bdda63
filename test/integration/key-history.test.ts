/**
 * The signing-key history across migration and rotation, with a real SoftHSM2 token and the key
 * ceremony CLI in its own process: a data directory first run on the software key moves to a
 * PKCS#11 key as the README says (its software-signed checkpoint still verifies); a rotation
 * made while the server runs is adopted on the next signature and tokens keep verifying after
 * the overlap ends; a restart after the overlap verifies the checkpoint signed by the retired
 * key, and refuses it once dated after that key's window; a server that cannot open the rotated
 * key refuses to sign rather than sign with a key that is no longer published.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCountersign, type RunningCountersign } from '../../main/core/app.js';
import { CHECKPOINT_FILE } from '../../main/core/audit/checkpoints.js';
import type { Pkcs11Config } from '../../main/core/config.js';
import { AgentClient, type WebSocketLike } from '../../shared/agent-client.js';
import { generateAgentKey, importAgentKey } from '../../shared/agent-keys.js';
import { createEnrollmentRequest, verifyEnrollmentRequest } from '../../shared/enrollment.js';
import { MemoryJtiStore, verifyApprovalToken } from '../../shared/verify-approval-token.js';
import { parseCheckpointText, parseSignedNote } from '../../shared/checkpoint-note.js';
import { generateKeyPairSync } from 'node:crypto';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { DEMO_POLICY_DIR, FINANCE_SCOPE, ensurePeople, tempDir, transferCall } from '../helpers/harness.js';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { jwkThumbprint } from '../../main/core/custody/signer.js';
import { compiledCli } from '../helpers/compiled-script.js';

// The CLI compiled once for the run (test/helpers/compile-scripts.ts), started with plain Node.
const NODE = process.execPath;
const CLI = compiledCli();
const PIN_ENV = 'COUNTERSIGN_KEY_HISTORY_HSM_PIN';
const TTL_SECONDS = 5;

let token: SoftHsmToken;
let pkcs11: Pkcs11Config;
const dirs: string[] = [];

// The CLI's Date.now moved by the test clock's offset, so a key ceremony run while the server's
// clock is ahead dates its key window in the server's time (the CLI reads the real clock).
const SHIFTED_CLOCK = `data:text/javascript,${encodeURIComponent(
  'const offset = Number(process.env.COUNTERSIGN_TEST_CLOCK_OFFSET_MS); const real = Date.now; Date.now = () => real() + offset;',
)}`;

function cli(dataDir: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return cliAt(0, dataDir, ...args);
}

function cliAt(offsetMs: number, dataDir: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [...(offsetMs === 0 ? [] : ['--import', SHIFTED_CLOCK]), CLI, ...args, '--data-dir', dataDir], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, SOFTHSM2_CONF: token.confPath, [PIN_ENV]: token.pin, COUNTERSIGN_TEST_CLOCK_OFFSET_MS: String(offsetMs) },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function writeConfig(dataDir: string, custody: Record<string, unknown> | undefined): void {
  writeFileSync(
    join(dataDir, 'config.json'),
    JSON.stringify({
      gateway: { port: 0 },
      policyDir: DEMO_POLICY_DIR,
      tokens: { ttlSeconds: TTL_SECONDS },
      ...(custody === undefined ? {} : { custody }),
    }),
  );
}

/** A clock the test moves forward (an overlap window passing) without waiting. */
function movableClock(): { now: () => number; advance: (ms: number) => void; offset: () => number } {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    offset: () => offset,
    advance: (ms) => {
      offset += ms;
    },
  };
}

/** One call from a freshly enrolled agent whose clock is the server's. */
async function submitTransfer(
  app: RunningCountersign,
  amount: string,
  clock: () => number = Date.now,
): Promise<{ decision: string; token?: string | undefined }> {
  const agentId = `finance-bot-${amount.replace('.', '-')}`;
  const key = await importAgentKey(await generateAgentKey('EdDSA'));
  ensurePeople(app, FINANCE_SCOPE.owner);
  app.registry.enroll(await verifyEnrollmentRequest(await createEnrollmentRequest(key, agentId, agentId)), FINANCE_SCOPE, clock());
  const client = new AgentClient({
    url: app.url,
    agentId,
    key,
    reconnect: false,
    clock,
    webSocket: (u, p) => new WebSocket(u, p) as unknown as WebSocketLike,
  });
  await client.connect();
  try {
    return await client.submit(transferCall(amount));
  } finally {
    client.close();
  }
}

async function fetchJwks(app: RunningCountersign): Promise<{ keys: PublicJwk[] }> {
  return (await (await fetch(`http://127.0.0.1:${app.port}/.well-known/jwks.json`)).json()) as { keys: PublicJwk[] };
}

const kidOf = (jws: string): string =>
  (JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid: string }).kid;
const checkpointTime = (dataDir: string): number =>
  parseCheckpointText(parseSignedNote(readFileSync(join(dataDir, CHECKPOINT_FILE), 'utf8')).text).time ?? 0;

async function toolServerAccepts(app: RunningCountersign, jws: string, amount: string, now: number): Promise<boolean> {
  try {
    await verifyApprovalToken(jws, {
      call: transferCall(amount),
      audience: 'payments-service',
      keys: await fetchJwks(app),
      jtiStore: new MemoryJtiStore(),
      now: () => now,
    });
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  token = createSoftHsmToken({ label: 'cs-history', pin: '192837', soPin: '56473829' });
  process.env[PIN_ENV] = token.pin;
  pkcs11 = {
    module: token.module,
    tokenLabel: token.label,
    pin: { env: PIN_ENV },
    callTimeoutMs: 5_000,
    reconnectAttempts: 2,
    reconnectDelayMs: 20,
    sessions: 1,
  };
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  token.cleanup();
});

describe('signing keys over time', () => {
  const dataDir = tempDir();
  dirs.push(dataDir);
  const clock = movableClock();
  let softwareKid = '';
  let hsmKid = '';

  it('moves from the software key to a PKCS#11 key as the README says: the software-signed checkpoint still verifies', async () => {
    writeConfig(dataDir, undefined);
    const first = await startCountersign({ dataDir, log: () => undefined, clock: clock.now });
    softwareKid = first.signer.keyId;
    expect(first.signer.custody).toBe('software');
    await first.close();

    writeConfig(dataDir, { requireHardware: true, pkcs11 });
    const init = cli(dataDir, 'keys', 'init');
    expect(init.status, init.stderr).toBe(0);
    hsmKid = (JSON.parse(init.stdout) as { kid: string }).kid;

    const warnings: string[] = [];
    const app = await startCountersign({ dataDir, log: (m) => warnings.push(m), clock: clock.now });
    try {
      expect(app.signer).toMatchObject({ custody: 'pkcs11', keyId: hsmKid });
      expect(warnings.join('\n')).toContain(`signed by the earlier key ${softwareKid}`);
      const result = await submitTransfer(app, '250.00', clock.now);
      expect(result.decision).toBe('allow');
      expect(kidOf(result.token ?? '')).toBe(hsmKid);
    } finally {
      await app.close();
    }
    const verify = cli(dataDir, 'audit', 'verify');
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, externalCheckpoint: { ok: true } });
  }, 240_000);

  it('adopts a rotation made while it runs on the next signature, so tokens still verify after the overlap ends', async () => {
    const log: string[] = [];
    const app = await startCountersign({ dataDir, log: (m) => log.push(m), clock: clock.now });
    try {
      const before = await submitTransfer(app, '251.00', clock.now);
      expect(kidOf(before.token ?? '')).toBe(hsmKid);

      // The shortest overlap asked for is raised to the token lifetime plus a minute.
      const rotate = cliAt(clock.offset(), dataDir, 'keys', 'rotate', '--overlap', '1s');
      expect(rotate.status, rotate.stderr).toBe(0);
      const rotated = JSON.parse(rotate.stdout) as { kid: string; overlapMs: number };
      expect(rotated.overlapMs).toBe(TTL_SECONDS * 1000 + 60_000);

      const after = await submitTransfer(app, '252.00', clock.now);
      expect(kidOf(after.token ?? '')).toBe(rotated.kid);
      expect(app.custody.status().kid).toBe(rotated.kid);
      const adopted = app.audit.entries(1, 100_000).filter((e) => e.kind === 'signing_key.adopted');
      expect(adopted.map((e) => JSON.parse(e.record) as { kid: string; previous: string })).toEqual([
        expect.objectContaining({ kid: rotated.kid, previous: hsmKid }),
      ]);
      // During the overlap both keys are published: the token signed just before still verifies.
      // (Checked at its issue time: the token lifetime here is only 5 s.)
      const issuedAt =
        (JSON.parse(Buffer.from((before.token ?? '').split('.')[1] ?? '', 'base64url').toString('utf8')) as { iat: number }).iat * 1000;
      expect(await toolServerAccepts(app, before.token ?? '', '251.00', issuedAt)).toBe(true);

      clock.advance(rotated.overlapMs + 1_000);
      // The rotated-out key has left the JWKS (the software key from keys init keeps its 24 h overlap).
      const published = (await fetchJwks(app)).keys.map((k) => k.kid);
      expect(published).toContain(rotated.kid);
      expect(published).not.toContain(hsmKid);
      const later = await submitTransfer(app, '253.00', clock.now);
      expect(kidOf(later.token ?? '')).toBe(rotated.kid);
      expect(await toolServerAccepts(app, later.token ?? '', '253.00', clock.now())).toBe(true);
      hsmKid = rotated.kid;
    } finally {
      await app.close();
    }
  }, 240_000);

  it('restarts after the overlap with the checkpoint signed by the key that has since retired, inside its window only', async () => {
    // Rotate while stopped: the checkpoint file is still signed by the previous key.
    const signedBy = hsmKid;
    const rotate = cliAt(clock.offset(), dataDir, 'keys', 'rotate', '--overlap', '1s');
    expect(rotate.status, rotate.stderr).toBe(0);
    const rotated = JSON.parse(rotate.stdout) as { kid: string; overlapMs: number };
    clock.advance(rotated.overlapMs + 1_000);

    // The window is enforced: with the previous key's overlap ended before the checkpoint it
    // signed (a database edit), the checkpoint is refused.
    const at = checkpointTime(dataDir);
    const edit = new Database(join(dataDir, 'countersign.db'));
    const original = edit.prepare('SELECT not_after FROM signing_keys WHERE kid = ?').get(signedBy) as { not_after: number };
    edit.prepare('UPDATE signing_keys SET not_after = ? WHERE kid = ?').run(at - 1, signedBy);
    edit.close();
    await expect(startCountersign({ dataDir, log: () => undefined, clock: clock.now })).rejects.toMatchObject({
      code: 'audit_checkpoint_invalid',
      message: expect.stringContaining('in force only from') as unknown,
    });
    const restore = new Database(join(dataDir, 'countersign.db'));
    restore
      .prepare("UPDATE signing_keys SET status = 'retiring', not_after = ?, retired_at = NULL WHERE kid = ?")
      .run(original.not_after, signedBy);
    restore.close();

    const log: string[] = [];
    const app = await startCountersign({ dataDir, log: (m) => log.push(m), clock: clock.now });
    try {
      expect(app.signingKeys.list().find((k) => k.kid === signedBy)?.status).toBe('retired');
      expect(log.join('\n')).toContain(`signed by the earlier key ${signedBy}`);
      const result = await submitTransfer(app, '254.00', clock.now);
      expect(kidOf(result.token ?? '')).toBe(rotated.kid);
    } finally {
      await app.close();
    }
  }, 240_000);
});

describe('a running server that cannot open the rotated key', () => {
  it('refuses to sign once the previous key is no longer published long enough, and stores nothing', async () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    writeConfig(dataDir, undefined);
    const app = await startCountersign({ dataDir, log: () => undefined });
    try {
      const ok = await submitTransfer(app, '260.00');
      expect(ok.decision).toBe('allow');
      // A PKCS#11 key pinned with no overlap, while this server has no custody.pkcs11 to open it.
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const jwk = { ...(publicKey.export({ format: 'jwk' }) as { kty: 'EC'; crv: 'P-256'; x: string; y: string }), alg: 'ES256' as const };
      const publicJwk = { ...jwk, kid: jwkThumbprint(jwk), use: 'sig' as const };
      app.signingKeys.activate(
        { domain: 'production', custody: 'pkcs11', publicJwk, tokenLabel: 'elsewhere', keyLabel: 'k', keyId: '01' },
        Date.now(),
        0,
      );
      const tokensBefore = (app.db.prepare('SELECT COUNT(*) AS n FROM tokens').get() as { n: number }).n;
      const refused = await submitTransfer(app, '261.00').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toMatchObject({ code: 'signing_key_unpublished' });
      expect((app.db.prepare('SELECT COUNT(*) AS n FROM tokens').get() as { n: number }).n).toBe(tokensBefore);
      expect((await fetchJwks(app)).keys.map((k) => k.kid)).toEqual([publicJwk.kid]);
    } finally {
      await app.close();
    }
  }, 120_000);
});

describe('a pinned key row edited in the database', () => {
  it('refuses to start when a pinned kid carries another public key (no swapped key can vouch for checkpoints or tokens)', async () => {
    const dataDir = tempDir();
    dirs.push(dataDir);
    writeConfig(dataDir, undefined);
    const first = await startCountersign({ dataDir, log: () => undefined });
    const kid = first.signer.keyId;
    await first.close();
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const other = pair.publicKey.export({ format: 'jwk' });
    const swapped = { kty: 'EC', crv: 'P-256', x: other.x, y: other.y, kid, alg: 'ES256', use: 'sig' };
    expect(jwkThumbprint(swapped as PublicJwk)).not.toBe(kid);
    const db = new Database(join(dataDir, 'countersign.db'));
    expect(db.prepare('UPDATE signing_keys SET public_jwk = ? WHERE kid = ?').run(JSON.stringify(swapped), kid).changes).toBe(1);
    db.close();
    await expect(startCountersign({ dataDir, log: () => undefined })).rejects.toMatchObject({
      code: 'hsm_key_mismatch',
      message: expect.stringContaining('does not match its stored public key') as unknown,
    });
  }, 60_000);
});
