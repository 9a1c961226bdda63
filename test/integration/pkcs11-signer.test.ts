/**
 * The PKCS#11 signer against a real SoftHSM2 token. Faults SoftHSM cannot produce on demand
 * (device errors, removal, a hung device, a locked PIN, a bad signature) go through
 * FaultyPkcs11, and each such test says "injected". Everything else is SoftHSM's own behaviour.
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { existsSync } from 'node:fs';
import { compactVerify, importJWK } from 'jose';
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pkcs11Config } from '../../main/core/config.js';
import { loadPkcs11Module, pkcs11ModuleReferences, pkcs11ReturnValue } from '../../main/core/custody/pkcs11-api.js';
import { readPin } from '../../main/core/custody/pin-source.js';
import { Pkcs11Token, publicJwkFromEcPoint } from '../../main/core/custody/pkcs11-token.js';
import type { Pkcs11Signer } from '../../main/core/custody/pkcs11-token.js';
import { jwkThumbprint } from '../../main/core/custody/signer.js';
import type { PublicJwk } from '../../main/core/custody/signer.js';
import { CountersignError } from '../../shared/errors.js';
import type { ErrorCode } from '../../shared/errors.js';
import { FaultyPkcs11 } from '../helpers/faulty-pkcs11.js';
import { createSoftHsmToken, SOFTHSM_MODULE } from '../helpers/softhsm.js';
import type { SoftHsmToken } from '../helpers/softhsm.js';

const PIN = '4711-0815';
const SO_PIN = '9999-1111';
const KEY = { label: 'countersign-signing', id: 'c5' } as const;
const FAULT_KEY = { label: 'countersign-fault', id: 'fa' } as const;

let mainToken: SoftHsmToken; // keys for the happy path and the pin checks
let otherToken: SoftHsmToken; // second keys with the same labels and ids
let faultToken: SoftHsmToken; // fault tests: removal and resume close every session on it
let pinToken: SoftHsmToken; // never logged in by anything else: a wrong PIN really reaches C_Login

function configFor(token: { label: string } | { slot: number }, overrides: Partial<Pkcs11Config> = {}): Pkcs11Config {
  return {
    module: SOFTHSM_MODULE,
    ...('label' in token ? { tokenLabel: token.label } : { slot: token.slot }),
    pin: { env: 'COUNTERSIGN_TEST_PIN' },
    callTimeoutMs: 2_000,
    reconnectAttempts: 3,
    reconnectDelayMs: 20,
    sessions: 1,
    ...overrides,
  };
}

/** The real PIN source (an environment variable), counting how often it is read. */
function pinReader(pin = PIN): { read: () => Promise<string>; reads: () => number; setPin: (value: string) => void } {
  let reads = 0;
  let current = pin;
  return {
    read: () => {
      reads += 1;
      return readPin({ env: 'COUNTERSIGN_TEST_PIN' }, { env: { COUNTERSIGN_TEST_PIN: current } });
    },
    reads: () => reads,
    setPin: (value) => {
      current = value;
    },
  };
}

const quiet = (): void => undefined;

async function failure(promise: Promise<unknown>, code: ErrorCode): Promise<CountersignError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(CountersignError);
  const error = caught as CountersignError;
  expect(error.code, error.message).toBe(code);
  expect(error.message).not.toContain(PIN);
  expect(JSON.stringify(error.details ?? {})).not.toContain(PIN);
  return error;
}

function verifiesWithNode(jwk: PublicJwk, data: Uint8Array, signature: Uint8Array): boolean {
  const members = jwk.kty === 'EC' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
  const key = createPublicKey({ key: members, format: 'jwk' });
  return jwk.alg === 'ES256' ? verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature) : verify(null, data, key, signature);
}

/** A second, raw pkcs11js handle on the same (already initialized) library, for what the app never does. */
function rawModule(): PKCS11 {
  const raw = new pkcs11js.PKCS11();
  raw.load(SOFTHSM_MODULE);
  try {
    raw.C_Initialize();
  } catch (err) {
    if (pkcs11ReturnValue(err) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw err;
  }
  return raw;
}

function rawSession(raw: PKCS11, label: string): Buffer {
  const slot = raw.C_GetSlotList(true).find((candidate) => raw.C_GetTokenInfo(candidate).label.trim() === label);
  if (slot === undefined) throw new Error(`no token ${label}`);
  const session = raw.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  try {
    raw.C_Login(session, pkcs11js.CKU_USER, PIN);
  } catch (err) {
    if (pkcs11ReturnValue(err) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw err;
  }
  return session;
}

function findOne(raw: PKCS11, session: Buffer, objectClass: number, label: string, id: string): Buffer {
  raw.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: objectClass },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'hex') },
  ]);
  const [handle] = raw.C_FindObjects(session, 2);
  raw.C_FindObjectsFinal(session);
  if (handle === undefined) throw new Error(`no object ${label}/${id}`);
  return handle;
}

const P256 = Buffer.from('06082a8648ce3d030107', 'hex');

/** C_GenerateKeyPair directly, with whatever private-key custody attributes the test wants. */
function generateRaw(
  raw: PKCS11,
  session: Buffer,
  label: string,
  id: string,
  custody: { sensitive: boolean; extractable: boolean },
): PublicJwk {
  const common = [
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_LABEL, value: label },
    { type: pkcs11js.CKA_ID, value: Buffer.from(id, 'hex') },
  ];
  const pair = raw.C_GenerateKeyPair(
    session,
    { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [...common, { type: pkcs11js.CKA_VERIFY, value: true }, { type: pkcs11js.CKA_EC_PARAMS, value: P256 }],
    [
      ...common,
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: custody.sensitive },
      { type: pkcs11js.CKA_EXTRACTABLE, value: custody.extractable },
    ],
  );
  const [point] = raw.C_GetAttributeValue(session, pair.publicKey, [{ type: pkcs11js.CKA_EC_POINT }]);
  if (point === undefined) throw new Error('no EC point');
  return publicJwkFromEcPoint('ES256', point.value);
}

beforeAll(() => {
  // Every token first: SoftHSM scans its token directory only when the module is initialized.
  mainToken = createSoftHsmToken({ label: 'cs-main', pin: PIN, soPin: SO_PIN });
  otherToken = createSoftHsmToken({ label: 'cs-other', pin: PIN, soPin: SO_PIN });
  faultToken = createSoftHsmToken({ label: 'cs-fault', pin: PIN, soPin: SO_PIN });
  pinToken = createSoftHsmToken({ label: 'cs-pin', pin: PIN, soPin: SO_PIN });
});

afterAll(() => {
  for (const token of [mainToken, otherToken, faultToken, pinToken]) token.cleanup();
});

describe('loading the module and finding the token', () => {
  const libc = ['/lib/x86_64-linux-gnu/libc.so.6', '/lib/aarch64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/libc.so.6'].find((path) =>
    existsSync(path),
  );

  it('a missing path, a non-library file and a library that is not PKCS#11 are hsm_module_invalid', async () => {
    const missing = await failure(
      Promise.resolve().then(() => loadPkcs11Module('/nonexistent/libpkcs11.so')),
      'hsm_module_invalid',
    );
    expect(missing.message).toContain('does not exist');
    await failure(
      Promise.resolve().then(() => loadPkcs11Module('/etc/hostname')),
      'hsm_module_invalid',
    );
    if (libc !== undefined) {
      const notPkcs11 = await failure(
        Promise.resolve().then(() => loadPkcs11Module(libc)),
        'hsm_module_invalid',
      );
      expect(notPkcs11.message).toContain('not a loadable PKCS#11 module');
    }
    await failure(
      Pkcs11Token.open(configFor(mainToken, { module: '/etc/hostname' }), { readPin: pinReader().read, log: quiet }),
      'hsm_module_invalid',
    );
    expect(pkcs11ModuleReferences('/etc/hostname')).toBe(0);
  });

  it('loads each module once per process and unloads it with the last reference', () => {
    const first = loadPkcs11Module(SOFTHSM_MODULE);
    const second = loadPkcs11Module(SOFTHSM_MODULE);
    expect(pkcs11ModuleReferences(SOFTHSM_MODULE)).toBe(2);
    expect(first.C_GetSlotList(true).length).toBeGreaterThanOrEqual(4);
    first.close();
    first.close(); // idempotent per reference
    expect(pkcs11ModuleReferences(SOFTHSM_MODULE)).toBe(1);
    expect(second.C_GetSlotList(true).length).toBeGreaterThanOrEqual(4);
    second.close();
    expect(pkcs11ModuleReferences(SOFTHSM_MODULE)).toBe(0);
    expect(() => second.C_GetSlotList(true)).toThrow(/CKR_CRYPTOKI_NOT_INITIALIZED/);
  });

  it('an unknown token label or slot is hsm_token_not_found', async () => {
    const byLabel = await failure(
      Pkcs11Token.open(configFor({ label: 'no-such-token' }), { readPin: pinReader().read, log: quiet }),
      'hsm_token_not_found',
    );
    expect(byLabel.message).toContain('"no-such-token"');
    await failure(Pkcs11Token.open(configFor({ slot: 424242 }), { readPin: pinReader().read, log: quiet }), 'hsm_token_not_found');
    expect(pkcs11ModuleReferences(SOFTHSM_MODULE)).toBe(0);
  });

  it('finds a token by its slot id too (the id SoftHSM assigned, never an index)', async () => {
    const api = loadPkcs11Module(SOFTHSM_MODULE);
    const slot = api.C_GetSlotList(true).find((candidate) => api.C_GetTokenInfo(candidate).label.trim() === mainToken.label);
    expect(slot).toBeDefined();
    const slotId = Number(slot?.readBigUInt64LE(0));
    api.close();
    const token = await Pkcs11Token.open(configFor({ slot: slotId }), { readPin: pinReader().read, log: quiet });
    expect(token.status()).toMatchObject({ tokenPresent: true, loggedIn: true });
    await token.close();
  });
});

describe('keys on a real SoftHSM token', () => {
  let token: Pkcs11Token;
  let es256: PublicJwk;
  let eddsa: PublicJwk;
  let es256Signer: Pkcs11Signer;
  let eddsaSigner: Pkcs11Signer;
  let raw: PKCS11;
  let rawMain: Buffer;

  beforeAll(async () => {
    token = await Pkcs11Token.open(configFor(mainToken), { readPin: pinReader().read, log: quiet });
    es256 = await token.generateSigningKey({ ...KEY, algorithm: 'ES256' });
    eddsa = await token.generateSigningKey({ label: 'countersign-eddsa', id: 'ed', algorithm: 'EdDSA' });
    es256Signer = await token.openSigner({ ...KEY, algorithm: 'ES256', pinnedKid: es256.kid });
    eddsaSigner = await token.openSigner({ label: 'countersign-eddsa', id: 'ed', algorithm: 'EdDSA', pinnedKid: eddsa.kid });
    raw = rawModule();
    rawMain = rawSession(raw, mainToken.label);
  });

  afterAll(async () => {
    raw.C_CloseSession(rawMain);
    raw.close(); // dlclose of the extra handle only: the module stays loaded for the token
    await token.close();
  });

  it('generates ES256 and EdDSA keys and returns their public JWKs with alg and thumbprint kid', () => {
    expect(es256).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(es256.x).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(es256.y).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(es256.kid).toBe(jwkThumbprint(es256));
    expect(eddsa).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    expect(eddsa.y).toBeUndefined();
    expect(eddsa.kid).toBe(jwkThumbprint(eddsa));
    expect(es256Signer).toMatchObject({ custody: 'pkcs11', algorithm: 'ES256', keyId: es256.kid });
    expect(eddsaSigner).toMatchObject({ custody: 'pkcs11', algorithm: 'EdDSA', keyId: eddsa.kid });
  });

  it('ES256 signatures are raw r||s (JWS format) and verify with node:crypto and jose, no DER conversion', async () => {
    const data = new TextEncoder().encode('transfer 48000.00 USD to Acme Ltd');
    const signature = await es256Signer.sign(data);
    expect(signature).toHaveLength(64);
    expect(verifiesWithNode(es256, data, signature)).toBe(true);
    // The same bytes read as DER do not verify: they are not DER, and need no conversion.
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: es256.x, y: es256.y }, format: 'jwk' });
    let derVerifies = false;
    try {
      derVerifies = verify('sha256', data, { key, dsaEncoding: 'der' }, signature);
    } catch {
      derVerifies = false;
    }
    expect(derVerifies).toBe(false);
    expect(verifiesWithNode(es256, new TextEncoder().encode('transfer 48000.00 USD to Evil Ltd'), signature)).toBe(false);

    // A compact JWS signed on the token verifies with an independent JOSE implementation.
    const header = Buffer.from(JSON.stringify({ alg: 'ES256', kid: es256.kid, typ: 'test+jwt' })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ sub: 'agent-1' })).toString('base64url');
    const jws = `${header}.${payload}.${Buffer.from(await es256Signer.sign(new TextEncoder().encode(`${header}.${payload}`))).toString('base64url')}`;
    const verified = await compactVerify(jws, await importJWK(es256, 'ES256'));
    expect(new TextDecoder().decode(verified.payload)).toBe('{"sub":"agent-1"}');
  });

  it('EdDSA signatures verify with node:crypto and jose', async () => {
    const data = new TextEncoder().encode('deploy build 1842 to production');
    const signature = await eddsaSigner.sign(data);
    expect(signature).toHaveLength(64);
    expect(verifiesWithNode(eddsa, data, signature)).toBe(true);
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: eddsa.kid })).toString('base64url');
    const payload = Buffer.from('{}').toString('base64url');
    const jws = `${header}.${payload}.${Buffer.from(await eddsaSigner.sign(new TextEncoder().encode(`${header}.${payload}`))).toString('base64url')}`;
    await expect(compactVerify(jws, await importJWK(eddsa, 'EdDSA'))).resolves.toBeDefined();
  });

  it('signs concurrent requests one at a time in one session, all valid', async () => {
    const messages = Array.from({ length: 200 }, (_, i) => new TextEncoder().encode(`call-${i}`));
    const [ecdsa, ed] = await Promise.all([
      Promise.all(messages.map((message) => es256Signer.sign(message))),
      Promise.all(messages.map((message) => eddsaSigner.sign(message))),
    ]);
    messages.forEach((message, i) => {
      expect(verifiesWithNode(es256, message, ecdsa[i] ?? new Uint8Array())).toBe(true);
      expect(verifiesWithNode(eddsa, message, ed[i] ?? new Uint8Array())).toBe(true);
    });
    const status = token.status();
    expect(status).toMatchObject({ tokenPresent: true, loggedIn: true });
    expect(status.lastSignatureAt).toBeGreaterThan(Date.now() - 10_000);
  });

  it('lists both keys as sensitive and non-extractable', async () => {
    const keys = await token.listKeys();
    expect(keys).toEqual(
      expect.arrayContaining([
        { ...KEY, algorithm: 'ES256', publicJwk: es256, extractable: false, sensitive: true },
        { label: 'countersign-eddsa', id: 'ed', algorithm: 'EdDSA', publicJwk: eddsa, extractable: false, sensitive: true },
      ]),
    );
  });

  it('the private keys cannot be read or made extractable (checked with a raw PKCS#11 session)', () => {
    for (const [label, id] of [
      [KEY.label, KEY.id],
      ['countersign-eddsa', 'ed'],
    ] as const) {
      const privateKey = findOne(raw, rawMain, pkcs11js.CKO_PRIVATE_KEY, label, id);
      expect(() => raw.C_GetAttributeValue(rawMain, privateKey, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      expect(() => raw.C_SetAttributeValue(rawMain, privateKey, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }])).toThrow(
        /CKR_ATTRIBUTE_READ_ONLY/,
      );
      const flags = raw.C_GetAttributeValue(rawMain, privateKey, [
        { type: pkcs11js.CKA_ALWAYS_SENSITIVE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
        { type: pkcs11js.CKA_LOCAL },
        { type: pkcs11js.CKA_TOKEN },
        { type: pkcs11js.CKA_PRIVATE },
      ]);
      expect(flags.map((attribute) => attribute.value[0])).toEqual([1, 1, 1, 1, 1]);
    }
  });

  // pkcs11-tool comes with Debian's opensc (.ci/run installs it): a check from outside the process.
  it('pkcs11-tool sees the same non-extractable keys from outside the process', () => {
    const listing = execFileSync(
      'pkcs11-tool',
      ['--module', SOFTHSM_MODULE, '--token-label', mainToken.label, '--login', '--pin', PIN, '--list-objects', '--type', 'privkey'],
      { env: { ...process.env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    expect(listing).toContain(KEY.label);
    expect(listing).toContain('countersign-eddsa');
    expect(listing).toMatch(/Access:.*sensitive.*never extractable/);
    // Generated for signing only (SoftHSM would default decrypt and unwrap to true).
    const ours = listing.split('Private Key Object').filter((block) => block.includes('countersign-'));
    expect(ours).toHaveLength(2);
    for (const block of ours) expect(block).toMatch(/Usage: +sign\n/);
  });

  it('refuses to generate a second key with the same label and id', async () => {
    await failure(token.generateSigningKey({ ...KEY, algorithm: 'ES256' }), 'config_invalid');
  });

  it('a pin that does not match the key on the token is hsm_key_mismatch (real: wrong kid)', async () => {
    const error = await failure(token.openSigner({ ...KEY, algorithm: 'ES256', pinnedKid: eddsa.kid }), 'hsm_key_mismatch');
    expect(error.details).toMatchObject({ expectedKid: eddsa.kid, foundKid: es256.kid });
  });

  it('the same label and id on another token with a different key is hsm_key_mismatch (real)', async () => {
    const other = await Pkcs11Token.open(configFor(otherToken), { readPin: pinReader().read, log: quiet });
    try {
      const otherJwk = await other.generateSigningKey({ ...KEY, algorithm: 'ES256' });
      expect(otherJwk.kid).not.toBe(es256.kid);
      await failure(other.openSigner({ ...KEY, algorithm: 'ES256', pinnedKid: es256.kid }), 'hsm_key_mismatch');
    } finally {
      await other.close();
    }
  });

  it('a public key object swapped in front of another private key is hsm_key_mismatch (real: test signature)', async () => {
    // A pair "swap"/5a whose public object is replaced by a copy of the pinned ES256 public key:
    // the fingerprint matches, but the private key cannot produce signatures for it.
    generateRaw(raw, rawMain, 'swap', '5a', { sensitive: true, extractable: false });
    raw.C_DestroyObject(rawMain, findOne(raw, rawMain, pkcs11js.CKO_PUBLIC_KEY, 'swap', '5a'));
    const mainPublic = findOne(raw, rawMain, pkcs11js.CKO_PUBLIC_KEY, KEY.label, KEY.id);
    const [point] = raw.C_GetAttributeValue(rawMain, mainPublic, [{ type: pkcs11js.CKA_EC_POINT }]);
    raw.C_CreateObject(rawMain, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: 'swap' },
      { type: pkcs11js.CKA_ID, value: Buffer.from('5a', 'hex') },
      { type: pkcs11js.CKA_EC_PARAMS, value: P256 },
      { type: pkcs11js.CKA_EC_POINT, value: point?.value ?? Buffer.alloc(0) },
    ]);
    const error = await failure(
      token.openSigner({ label: 'swap', id: '5a', algorithm: 'ES256', pinnedKid: es256.kid }),
      'hsm_key_mismatch',
    );
    expect(error.message).toContain('does not match its public key');
  });

  it('an extractable or non-sensitive key is hsm_key_extractable (real: made with C_GenerateKeyPair)', async () => {
    const extractable = generateRaw(raw, rawMain, 'exportable', '0e', { sensitive: true, extractable: true });
    const plain = generateRaw(raw, rawMain, 'plain', '0f', { sensitive: false, extractable: false });
    const first = await failure(
      token.openSigner({ label: 'exportable', id: '0e', algorithm: 'ES256', pinnedKid: extractable.kid }),
      'hsm_key_extractable',
    );
    expect(first.details).toMatchObject({ extractable: true });
    const second = await failure(
      token.openSigner({ label: 'plain', id: '0f', algorithm: 'ES256', pinnedKid: plain.kid }),
      'hsm_key_extractable',
    );
    expect(second.details).toMatchObject({ sensitive: false });
    const listed = await token.listKeys();
    expect(listed.find((key) => key.label === 'exportable')).toMatchObject({ extractable: true, sensitive: true });
    expect(listed.find((key) => key.label === 'plain')).toMatchObject({ extractable: false, sensitive: false });
  });

  it('a key that is not on the token (label, or id, or algorithm) is hsm_key_not_found', async () => {
    await failure(token.openSigner({ label: 'absent', id: KEY.id, algorithm: 'ES256', pinnedKid: es256.kid }), 'hsm_key_not_found');
    await failure(token.openSigner({ label: KEY.label, id: 'c6', algorithm: 'ES256', pinnedKid: es256.kid }), 'hsm_key_not_found');
    await failure(token.openSigner({ ...KEY, algorithm: 'EdDSA', pinnedKid: es256.kid }), 'hsm_key_not_found');
  });
});

describe('faults', () => {
  let faultKid: string;

  beforeAll(async () => {
    const setup = await Pkcs11Token.open(configFor(faultToken), { readPin: pinReader().read, log: quiet });
    faultKid = (await setup.generateSigningKey({ ...FAULT_KEY, algorithm: 'ES256' })).kid;
    await setup.close();
    // The impostor for the swapped-token test: same label and id, another key.
    const impostor = await Pkcs11Token.open(configFor(otherToken), { readPin: pinReader().read, log: quiet });
    await impostor.generateSigningKey({ ...FAULT_KEY, algorithm: 'ES256' });
    await impostor.close();
  });

  async function openFaulty(
    overrides: Partial<Pkcs11Config> = {},
    reader = pinReader(),
  ): Promise<{
    faulty: FaultyPkcs11;
    token: Pkcs11Token;
    signer: Pkcs11Signer;
    reader: ReturnType<typeof pinReader>;
    sign: (text: string) => Promise<Uint8Array>;
  }> {
    const faulty = new FaultyPkcs11(loadPkcs11Module(SOFTHSM_MODULE));
    const token = await Pkcs11Token.open(configFor(faultToken, overrides), { readPin: reader.read, api: faulty, log: quiet });
    const signer = await token.openSigner({ ...FAULT_KEY, algorithm: 'ES256', pinnedKid: faultKid });
    const sign = async (text: string): Promise<Uint8Array> => {
      const data = new TextEncoder().encode(text);
      const signature = await signer.sign(data);
      expect(verifiesWithNode(signer.publicJwk, data, signature)).toBe(true);
      return signature;
    };
    return { faulty, token, signer, reader, sign };
  }

  it('a wrong PIN is hsm_pin_incorrect after exactly one C_Login (real SoftHSM rejection)', async () => {
    const faulty = new FaultyPkcs11(loadPkcs11Module(SOFTHSM_MODULE)); // counting only, nothing injected
    const reader = pinReader('0000-0000');
    const error = await failure(
      Pkcs11Token.open(configFor(pinToken), { readPin: reader.read, api: faulty, log: quiet }),
      'hsm_pin_incorrect',
    );
    expect(error.details).toEqual({ pkcs11: 'CKR_PIN_INCORRECT' });
    expect(faulty.count('C_Login')).toBe(1);
    expect(reader.reads()).toBe(1);
    expect(faulty.count('close')).toBe(1); // the failed open released the module
  });

  it('a PIN that became wrong is not retried when reconnecting after resume (real rejection)', async () => {
    const { faulty, token, signer, reader } = await openFaulty();
    try {
      reader.setPin('0000-0000');
      faulty.invalidateSessions(); // injected: sleep/resume (the module forgets sessions and login)
      const logins = faulty.count('C_Login');
      await failure(signer.sign(new Uint8Array([1])), 'hsm_pin_incorrect');
      expect(faulty.count('C_Login')).toBe(logins + 1); // one attempt, not reconnectAttempts
      await failure(signer.sign(new Uint8Array([2])), 'hsm_pin_incorrect');
      expect(faulty.count('C_Login')).toBe(logins + 1); // and never again from this token object
    } finally {
      await token.close();
    }
  });

  it('a locked PIN is hsm_pin_locked (injected: SoftHSM never locks a PIN)', async () => {
    // Real SoftHSM 2.6 accepts any number of wrong PINs without locking, so the lock is injected.
    const atLogin = new FaultyPkcs11(loadPkcs11Module(SOFTHSM_MODULE));
    atLogin.lockPin('login');
    await failure(Pkcs11Token.open(configFor(pinToken), { readPin: pinReader().read, api: atLogin, log: quiet }), 'hsm_pin_locked');
    expect(atLogin.count('C_Login')).toBe(1);

    // A token that already reports CKF_USER_PIN_LOCKED is not even offered the PIN.
    const flagged = new FaultyPkcs11(loadPkcs11Module(SOFTHSM_MODULE));
    flagged.lockPin('flag');
    const reader = pinReader();
    await failure(Pkcs11Token.open(configFor(pinToken), { readPin: reader.read, api: flagged, log: quiet }), 'hsm_pin_locked');
    expect(flagged.count('C_Login')).toBe(0);
    expect(reader.reads()).toBe(0);
  });

  it('token removed mid-sign → signer_unavailable, then signs again after reinsertion (injected removal)', async () => {
    const { faulty, token, sign, reader } = await openFaulty();
    try {
      await sign('before');
      expect(token.status()).toMatchObject({ tokenPresent: true, loggedIn: true });
      faulty.removeTokenOnNextSign();
      const sessionsBefore = faulty.count('C_OpenSession');
      const started = performance.now();
      const error = await failure(sign('while removed'), 'signer_unavailable');
      expect(error.details).toMatchObject({ attempts: 3 });
      expect(performance.now() - started).toBeLessThan(1_000); // 0 + 20 + 40 ms of backoff
      expect(token.status()).toMatchObject({ tokenPresent: false, loggedIn: false });
      await failure(sign('still removed'), 'signer_unavailable');

      faulty.reinsertToken();
      const readsBefore = reader.reads();
      await sign('after reinsertion');
      expect(faulty.count('C_OpenSession')).toBe(sessionsBefore + 1);
      expect(reader.reads()).toBe(readsBefore + 1); // logged in again with the PIN read again
      expect(token.status()).toMatchObject({ tokenPresent: true, loggedIn: true });
    } finally {
      await token.close();
    }
  });

  it('sessions lost across sleep/resume → reconnects transparently and signs (real CKR_SESSION_HANDLE_INVALID)', async () => {
    const { faulty, token, sign, reader } = await openFaulty();
    try {
      await sign('before sleep');
      const sessions = faulty.count('C_OpenSession');
      const logins = faulty.count('C_Login');
      const reads = reader.reads();
      faulty.invalidateSessions(); // injected: the module closes every session (SoftHSM answers the rest itself)
      await sign('after resume');
      expect(faulty.count('C_OpenSession')).toBe(sessions + 1);
      expect(faulty.count('C_Login')).toBe(logins + 1);
      expect(reader.reads()).toBe(reads + 1);
      await sign('and again, in the new session');
      expect(faulty.count('C_OpenSession')).toBe(sessions + 1);
    } finally {
      await token.close();
    }
  });

  it('another token answering to the label after a reconnect → hsm_key_mismatch, never its signature (injected swap)', async () => {
    const { faulty, token, sign } = await openFaulty();
    try {
      await sign('the real token');
      faulty.swapToken(faultToken.label, otherToken.label);
      const signs = faulty.count('C_SignAsync');
      const error = await failure(sign('to the impostor'), 'hsm_key_mismatch');
      expect(error.details).toMatchObject({ expectedKid: faultKid });
      await failure(sign('still the impostor'), 'hsm_key_mismatch');
      expect(faulty.count('C_SignAsync')).toBe(signs); // the impostor key was never asked to sign
      faulty.reinsertToken();
      await sign('the real token is back');
    } finally {
      await token.close();
    }
  });

  it('CKR_SESSION_HANDLE_INVALID / CKR_DEVICE_REMOVED from C_Sign → reconnect and retry once (injected)', async () => {
    const { faulty, token, sign } = await openFaulty();
    try {
      for (const value of [pkcs11js.CKR_SESSION_HANDLE_INVALID, pkcs11js.CKR_DEVICE_REMOVED, pkcs11js.CKR_DEVICE_ERROR]) {
        const sessions = faulty.count('C_OpenSession');
        faulty.failNextSign(value);
        await sign(`retry after ${value}`);
        expect(faulty.count('C_OpenSession')).toBe(sessions + 1);
      }
    } finally {
      await token.close();
    }
  });

  it('CKR_GENERAL_ERROR / CKR_FUNCTION_FAILED from C_Sign → signer_failed, no signature (injected)', async () => {
    const { faulty, token, sign } = await openFaulty();
    try {
      for (const [value, name] of [
        [pkcs11js.CKR_GENERAL_ERROR, 'CKR_GENERAL_ERROR'],
        [pkcs11js.CKR_FUNCTION_FAILED, 'CKR_FUNCTION_FAILED'],
      ] as const) {
        const sessions = faulty.count('C_OpenSession');
        faulty.failNextSign(value);
        const error = await failure(sign('fails'), 'signer_failed');
        expect(error.details).toEqual({ pkcs11: name });
        expect(faulty.count('C_OpenSession')).toBe(sessions); // not a reason to reconnect
        await sign('the next one works');
      }
    } finally {
      await token.close();
    }
  });

  it('a corrupted or truncated signature is never returned: signer_failed (injected)', async () => {
    const { faulty, token, sign } = await openFaulty();
    try {
      faulty.corruptNextSignature('flip');
      expect((await failure(sign('flipped'), 'signer_failed')).message).toContain('does not verify');
      faulty.corruptNextSignature('truncate');
      expect((await failure(sign('short'), 'signer_failed')).message).toContain('63-byte');
      await sign('fine again');
    } finally {
      await token.close();
    }
  });

  it('a hung sign → signer_timeout in ~callTimeoutMs, the event loop stays free, the late answer is discarded (injected hang)', async () => {
    const callTimeoutMs = 300;
    const { faulty, token, sign } = await openFaulty({ callTimeoutMs });
    try {
      await sign('warm up');
      const hang = faulty.hangNextSign();
      let ticks = 0;
      let maxGap = 0;
      let last = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        ticks += 1;
      }, 5);
      const signsBefore = faulty.count('C_SignAsync');
      const started = performance.now();
      const hung = failure(sign('hangs'), 'signer_timeout');
      const queued = failure(sign('queued behind the hung call'), 'signer_timeout');
      await hang.started;
      const [hungError, queuedError] = await Promise.all([hung, queued]);
      const elapsed = performance.now() - started;
      clearInterval(ticker);
      expect(hungError.details).toEqual({ timeoutMs: callTimeoutMs });
      expect(queuedError.message).toContain('busy');
      expect(elapsed).toBeGreaterThanOrEqual(callTimeoutMs - 5);
      expect(elapsed).toBeLessThan(callTimeoutMs + 250);
      expect(ticks).toBeGreaterThan(20); // timers kept firing while the device hung
      expect(maxGap).toBeLessThan(150);
      expect(faulty.count('C_SignAsync')).toBe(signsBefore + 1); // the queued request never reached the device

      // The next request uses a fresh session while the hung call is still outstanding.
      const sessions = faulty.count('C_OpenSession');
      await sign('after the timeout');
      expect(faulty.count('C_OpenSession')).toBe(sessions + 1);

      // The late answer arrives: discarded, and its abandoned session is closed.
      const closes = faulty.count('C_CloseSession');
      hang.release();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(faulty.count('C_CloseSession')).toBe(closes + 1);
      await sign('still fine');
    } finally {
      await token.close();
    }
  });

  it('after two calls that never answered, signing fails fast instead of piling up (injected hangs)', async () => {
    const { faulty, token, sign } = await openFaulty({ callTimeoutMs: 150 });
    const releases: Array<() => void> = [];
    try {
      for (let i = 0; i < 2; i += 1) {
        releases.push(faulty.hangNextSign().release);
        await failure(sign(`hang ${i}`), 'signer_timeout');
      }
      const started = performance.now();
      const error = await failure(sign('refused'), 'signer_unavailable');
      expect(error.details).toEqual({ abandonedCalls: 2 });
      expect(performance.now() - started).toBeLessThan(100);
      for (const release of releases) release();
      await new Promise((resolve) => setTimeout(resolve, 50));
      await sign('the device answered again');
    } finally {
      for (const release of releases) release();
      await token.close();
    }
  });

  it('with reconnection disabled a lost session is signer_unavailable at once (injected)', async () => {
    const { faulty, token, sign } = await openFaulty({ reconnectAttempts: 0 });
    try {
      faulty.failNextSign(pkcs11js.CKR_SESSION_HANDLE_INVALID);
      await failure(sign('no reconnect'), 'signer_unavailable');
      await sign('a later call connects again');
    } finally {
      await token.close();
    }
  });

  it('after close: signing is signer_unavailable and status() does not throw', async () => {
    const { token, signer, faulty } = await openFaulty();
    await token.close();
    await failure(signer.sign(new Uint8Array([1])), 'signer_unavailable');
    expect(token.status()).toEqual({ tokenPresent: false, loggedIn: false });
    expect(faulty.count('close')).toBe(1);
  });

  it('every token released its module reference', () => {
    expect(pkcs11ModuleReferences(SOFTHSM_MODULE)).toBe(0);
  });
});
