/**
 * The PKCS#11 custody path: one token (found by label, or by slot id), one logged-in session,
 * non-extractable signing keys pinned by their JWK thumbprint.
 *
 * - Every operation on the session is serialized: a PKCS#11 session runs one operation at a time.
 * - Signing runs C_SignAsync (thread pool) raced against `callTimeoutMs`; a call that does not
 *   answer in time fails with signer_timeout, its session is abandoned (never reused, closed
 *   once the late answer arrives, which is discarded) and the next call opens a fresh session.
 * - A lost session, login or token (sleep/resume, unplugged) triggers bounded reconnection:
 *   find the token by label again, open a session, log in with the PIN read again from its
 *   source, find the key again and re-check it against its pin, then retry the signature once.
 *   A rejected PIN is never retried (it would count down the token's retry counter).
 * - Every signature is checked against the pinned public key before it is returned, so bytes
 *   that are not the token's signature over exactly this input are never released.
 * - There is no software fallback: failure is an error, never a silent downgrade.
 */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import pkcs11js from 'pkcs11js';
import type { Template, TokenInfo } from 'pkcs11js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import type { ErrorCode } from '../../../shared/errors.js';
import type { Pkcs11Config } from '../config.js';
import { isReconnectableError, loadPkcs11Module, mapPkcs11Error, pkcs11ReturnName, pkcs11ReturnValue } from './pkcs11-api.js';
import type { Pkcs11Api, Pkcs11Handle } from './pkcs11-api.js';
import { jwkThumbprint, verifyWithJwk } from './signer.js';
import type { PublicJwk, Signer, SigningAlgorithm } from './signer.js';

// Not exported by pkcs11js 2.1.
const CKK_EC_EDWARDS = 0x40;
const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
const CKM_EDDSA = 0x1057;
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

/** DER: OID 1.2.840.10045.3.1.7 (P-256), OID 1.3.101.112 (Ed25519), PrintableString "edwards25519". */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
const ED25519_PARAMS = Buffer.from('06032b6570', 'hex');
const ED25519_NAMED_PARAMS = Buffer.concat([Buffer.from([0x13, 0x0c]), Buffer.from('edwards25519', 'ascii')]);

const SIGNATURE_LENGTH = 64;
/** Room for any signature a module might return (a DER ECDSA one is refused, not truncated). */
const SIGNATURE_BUFFER = 512;
/** Sessions whose device call never answered; past this, calls fail fast instead of piling up. */
const MAX_ABANDONED_CALLS = 2;
const MAX_LABEL_BYTES = 128;
const MAX_ID_BYTES = 64;

export interface Pkcs11TokenOptions {
  /** Reads the user PIN from its configured source; called at open and again after a lost login. */
  readPin: () => Promise<string>;
  /** The loaded module (default: loadPkcs11Module(config.module)). The token closes it. */
  api?: Pkcs11Api;
  /** Operational messages (reconnects, warnings). Never receives a PIN or key material. */
  log?: (message: string) => void;
  /** Clock for lastSignatureAt (default Date.now). */
  now?: () => number;
}

export interface Pkcs11KeySpec {
  label: string;
  /** CKA_ID as hex. */
  id: string;
  algorithm: SigningAlgorithm;
}

export interface Pkcs11KeyInfo extends Pkcs11KeySpec {
  publicJwk: PublicJwk;
  extractable: boolean;
  sensitive: boolean;
}

export interface Pkcs11TokenStatus {
  tokenPresent: boolean;
  loggedIn: boolean;
  lastSignatureAt?: number;
}

/** What a signer needs from its token; the token keeps the session and the key handles. */
interface KeyBinding {
  readonly spec: Pkcs11KeySpec;
  readonly pinnedKid: string;
  readonly idBytes: Buffer;
  /** Which session generation `handle` was found in. */
  generation: number;
  handle: Pkcs11Handle | undefined;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tokenLabelOf(info: TokenInfo): string {
  return info.label.replace(/[ \0]+$/u, '');
}

function slotNumberOf(handle: Pkcs11Handle): bigint {
  const le = endianness() === 'LE';
  if (handle.length === 8) return le ? handle.readBigUInt64LE(0) : handle.readBigUInt64BE(0);
  if (handle.length === 4) return BigInt(le ? handle.readUInt32LE(0) : handle.readUInt32BE(0));
  return -1n;
}

function readBool(value: Buffer | undefined): boolean | undefined {
  return value === undefined || value.length === 0 ? undefined : value[0] !== 0;
}

function readUlong(value: Buffer | undefined): number | undefined {
  if (value === undefined) return undefined;
  const le = endianness() === 'LE';
  if (value.length === 8) return Number(le ? value.readBigUInt64LE(0) : value.readBigUInt64BE(0));
  if (value.length === 4) return le ? value.readUInt32LE(0) : value.readUInt32BE(0);
  return undefined;
}

function validateSpec(spec: Pkcs11KeySpec): Buffer {
  if (spec.algorithm !== 'ES256' && spec.algorithm !== 'EdDSA') {
    throw new CountersignError('config_invalid', `the signing algorithm ${quote(spec.algorithm)} is not supported`);
  }
  if (typeof spec.label !== 'string' || spec.label.length === 0 || Buffer.byteLength(spec.label, 'utf8') > MAX_LABEL_BYTES) {
    throw new CountersignError('config_invalid', `the key label ${quote(spec.label)} must be 1 to ${MAX_LABEL_BYTES} bytes`);
  }
  if (typeof spec.id !== 'string' || !/^(?:[0-9a-fA-F]{2}){1,64}$/u.test(spec.id)) {
    throw new CountersignError('config_invalid', `the key id ${quote(spec.id)} must be 1 to ${MAX_ID_BYTES} bytes of hex`);
  }
  return Buffer.from(spec.id, 'hex');
}

function keyTypeOf(algorithm: SigningAlgorithm): number {
  return algorithm === 'ES256' ? pkcs11js.CKK_EC : CKK_EC_EDWARDS;
}

function algorithmOf(keyType: number | undefined, params: Buffer | undefined): SigningAlgorithm | undefined {
  if (params === undefined) return undefined;
  if (keyType === pkcs11js.CKK_EC && params.equals(P256_PARAMS)) return 'ES256';
  if (keyType === CKK_EC_EDWARDS && (params.equals(ED25519_PARAMS) || params.equals(ED25519_NAMED_PARAMS))) return 'EdDSA';
  return undefined;
}

/**
 * CKA_EC_POINT → public JWK. The value is a DER OCTET STRING (P-256: 04 41 04||X||Y;
 * Ed25519: 04 20 ||A); some modules return the bare point, which is accepted too.
 */
export function publicJwkFromEcPoint(algorithm: SigningAlgorithm, ecPoint: Buffer): PublicJwk {
  let base: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>;
  if (algorithm === 'ES256') {
    const point = ecPoint.length === 67 && ecPoint[0] === 0x04 && ecPoint[1] === 0x41 ? ecPoint.subarray(2) : ecPoint;
    if (point.length !== 65 || point[0] !== 0x04)
      throw new CountersignError('signer_failed', 'the token returned a malformed P-256 public key');
    base = { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') };
  } else {
    const point = ecPoint.length === 34 && ecPoint[0] === 0x04 && ecPoint[1] === 0x20 ? ecPoint.subarray(2) : ecPoint;
    if (point.length !== 32) throw new CountersignError('signer_failed', 'the token returned a malformed Ed25519 public key');
    base = { kty: 'OKP', crv: 'Ed25519', x: point.toString('base64url') };
  }
  try {
    createPublicKey({ key: { ...base }, format: 'jwk' }); // rejects a point that is not on the curve
  } catch (err) {
    throw new CountersignError('signer_failed', 'the token returned a public key that is not a valid curve point', { cause: err });
  }
  return { ...base, kid: jwkThumbprint(base), alg: algorithm, use: 'sig' };
}

// ---------------------------------------------------------------------------------------------

/** A signer whose key never leaves a PKCS#11 token. Created by {@link Pkcs11Token.openSigner}. */
export class Pkcs11Signer implements Signer {
  readonly custody = 'pkcs11' as const;
  readonly keyId: string;
  readonly algorithm: SigningAlgorithm;
  readonly publicJwk: PublicJwk;
  readonly label: string;
  readonly id: string;
  readonly #sign: (data: Uint8Array) => Promise<Uint8Array>;
  readonly #status: () => Pkcs11TokenStatus;

  /** Internal: use Pkcs11Token.openSigner. */
  constructor(init: {
    spec: Pkcs11KeySpec;
    publicJwk: PublicJwk;
    sign: (data: Uint8Array) => Promise<Uint8Array>;
    status: () => Pkcs11TokenStatus;
  }) {
    this.algorithm = init.spec.algorithm;
    this.label = init.spec.label;
    this.id = init.spec.id;
    this.publicJwk = Object.freeze({ ...init.publicJwk });
    this.keyId = this.publicJwk.kid;
    this.#sign = init.sign;
    this.#status = init.status;
  }

  /** ES256: SHA-256 here, CKM_ECDSA on the token (raw r||s); EdDSA: CKM_EDDSA over the data. */
  sign(data: Uint8Array): Promise<Uint8Array> {
    return this.#sign(data);
  }

  status(): Pkcs11TokenStatus {
    return this.#status();
  }

  toJSON(): { keyId: string; algorithm: SigningAlgorithm; custody: 'pkcs11'; label: string; id: string } {
    return { keyId: this.keyId, algorithm: this.algorithm, custody: this.custody, label: this.label, id: this.id };
  }
}

export class Pkcs11Token {
  readonly #api: Pkcs11Api;
  readonly #config: Pkcs11Config;
  readonly #readPin: () => Promise<string>;
  readonly #log: (message: string) => void;
  readonly #now: () => number;

  #session: Pkcs11Handle | undefined;
  /** Bumped on every new session, so key handles found in an older one are looked up again. */
  #generation = 0;
  #queue: Promise<void> = Promise.resolve();
  /** Sessions with a device call that timed out and has not answered yet. */
  readonly #abandoned = new Set<Pkcs11Handle>();
  /** A rejected or locked PIN: sticky, so it is never presented again by this token object. */
  #pinFailure: CountersignError | undefined;
  #closed = false;
  #moduleReleased = false;
  #lastSignatureAt: number | undefined;

  private constructor(api: Pkcs11Api, config: Pkcs11Config, options: Pkcs11TokenOptions) {
    this.#api = api;
    this.#config = config;
    this.#readPin = options.readPin;
    // eslint-disable-next-line no-console -- the default sink when the caller injects no log function
    this.#log = options.log ?? ((message: string) => console.warn(message));
    this.#now = options.now ?? Date.now;
  }

  /**
   * Load the module, find the token, open one read-write session and log in once.
   * Errors: hsm_module_invalid, hsm_token_not_found, hsm_pin_incorrect (no retry),
   * hsm_pin_locked, config_invalid (PIN source), signer_unavailable.
   */
  static async open(config: Pkcs11Config, options: Pkcs11TokenOptions): Promise<Pkcs11Token> {
    if ((config.tokenLabel === undefined) === (config.slot === undefined)) {
      throw new CountersignError('config_invalid', 'set exactly one of the token label and the slot');
    }
    const api = options.api ?? loadPkcs11Module(config.module);
    const token = new Pkcs11Token(api, config, options);
    try {
      await token.#exclusive(() => token.#connect());
    } catch (err) {
      await token.close();
      throw mapPkcs11Error(err, 'signer_unavailable', 'the signing token could not be opened');
    }
    return token;
  }

  /** Generate a non-extractable signing key pair on the token; returns its public JWK. */
  generateSigningKey(spec: Pkcs11KeySpec): Promise<PublicJwk> {
    const idBytes = validateSpec(spec);
    return this.#exclusive(async () => {
      try {
        const session = await this.#ensureSession();
        return this.#generate(session, spec, idBytes);
      } catch (err) {
        throw mapPkcs11Error(err, 'signer_failed', `the token could not generate the ${spec.algorithm} key ${quote(spec.label)}`);
      }
    });
  }

  /** Private keys (ES256 / EdDSA) that have a matching public key on the token. */
  listKeys(): Promise<Pkcs11KeyInfo[]> {
    return this.#exclusive(() =>
      this.#withRecovery(async () => {
        const session = await this.#ensureSession();
        return this.#listKeys(session);
      }, 'signer_failed'),
    );
  }

  /**
   * Open a signer for the key with this label AND id. The token's public key must hash to
   * `pinnedKid` (hsm_key_mismatch), the private key must be sensitive and non-extractable
   * (hsm_key_extractable), and a test signature must verify against the pinned key.
   */
  openSigner(spec: Pkcs11KeySpec & { pinnedKid: string }): Promise<Pkcs11Signer> {
    const idBytes = validateSpec(spec);
    if (typeof spec.pinnedKid !== 'string' || spec.pinnedKid.length === 0) {
      throw new CountersignError('config_invalid', 'the signing key has no pinned fingerprint');
    }
    const binding: KeyBinding = {
      spec: { label: spec.label, id: spec.id.toLowerCase(), algorithm: spec.algorithm },
      pinnedKid: spec.pinnedKid,
      idBytes,
      generation: -1,
      handle: undefined,
    };
    return this.#exclusive(() =>
      this.#withRecovery(async () => {
        const session = await this.#ensureSession();
        const publicJwk = await this.#bind(session, binding);
        return new Pkcs11Signer({
          spec: binding.spec,
          publicJwk,
          sign: (data) => this.#signRequest(binding, publicJwk, data),
          status: () => this.status(),
        });
      }, 'signer_failed'),
    );
  }

  /** Live token and session state. Never throws. */
  status(): Pkcs11TokenStatus {
    const result: Pkcs11TokenStatus = { tokenPresent: false, loggedIn: false };
    if (this.#lastSignatureAt !== undefined) result.lastSignatureAt = this.#lastSignatureAt;
    if (this.#closed) return result;
    try {
      result.tokenPresent = this.#findSlot() !== undefined;
    } catch {
      result.tokenPresent = false;
    }
    const session = this.#session;
    if (result.tokenPresent && session !== undefined) {
      try {
        const state = this.#api.C_GetSessionInfo(session).state;
        result.loggedIn = state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
      } catch {
        result.loggedIn = false;
      }
    }
    return result;
  }

  /** Close the session and release the module. Signers of this token fail afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    this.#dropSession();
    this.#releaseModuleWhenIdle();
  }

  // -------------------------------------------------------------------------------------------
  // Serialization, sessions, login

  #exclusive<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.#queue.then(fn);
    this.#queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Find the configured token's slot now; undefined when it is not present. */
  #findSlot(): Pkcs11Handle | undefined {
    const slots = this.#api.C_GetSlotList(true);
    const label = this.#config.tokenLabel;
    if (label === undefined) {
      const wanted = BigInt(this.#config.slot ?? -1);
      const slot = slots.find((candidate) => slotNumberOf(candidate) === wanted);
      if (slot === undefined) return undefined;
      this.#api.C_GetTokenInfo(slot); // throws when the slot has no usable token
      return slot;
    }
    const matches = slots.filter((candidate) => {
      try {
        return tokenLabelOf(this.#api.C_GetTokenInfo(candidate)) === label;
      } catch {
        return false; // a slot whose token vanished while we looked
      }
    });
    if (matches.length > 1) {
      throw new CountersignError('config_invalid', `${matches.length} tokens are labelled ${quote(label)}; give each token a unique label`);
    }
    return matches[0];
  }

  #tokenNotFound(): CountersignError {
    const label = this.#config.tokenLabel;
    return label !== undefined
      ? new CountersignError('hsm_token_not_found', `no token labelled ${quote(label)} is present`, { details: { tokenLabel: label } })
      : new CountersignError('hsm_token_not_found', `no token is present in slot ${String(this.#config.slot)}`, {
          details: { slot: this.#config.slot ?? -1 },
        });
  }

  /** Find the token, open a read-write session and make sure it is logged in. */
  async #connect(): Promise<Pkcs11Handle> {
    if (this.#closed) throw new CountersignError('signer_unavailable', 'the signing token has been closed');
    const slot = this.#findSlot();
    if (slot === undefined) throw this.#tokenNotFound();
    const session = this.#api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      await this.#login(slot, session);
    } catch (err) {
      this.#closeQuietly(session);
      throw err;
    }
    this.#session = session;
    this.#generation += 1;
    return session;
  }

  async #login(slot: Pkcs11Handle, session: Pkcs11Handle): Promise<void> {
    if (this.#pinFailure !== undefined) throw this.#pinFailure;
    // Login state belongs to the application, not the session: another open session may hold it.
    const state = this.#api.C_GetSessionInfo(session).state;
    if (state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS) return;
    const flags = this.#api.C_GetTokenInfo(slot).flags;
    if ((flags & pkcs11js.CKF_USER_PIN_LOCKED) !== 0) {
      this.#pinFailure = new CountersignError('hsm_pin_locked', "the token PIN is locked; unlock it with the token vendor's tool");
      throw this.#pinFailure;
    }
    if ((flags & pkcs11js.CKF_USER_PIN_FINAL_TRY) !== 0) {
      this.#log('warning: the token allows only one more PIN attempt before it locks');
    }
    const pin = await this.#readPin();
    try {
      this.#api.C_Login(session, pkcs11js.CKU_USER, pin);
    } catch (err) {
      const value = pkcs11ReturnValue(err);
      if (value === pkcs11js.CKR_USER_ALREADY_LOGGED_IN) return;
      const mapped = mapPkcs11Error(err, 'signer_unavailable', 'the token refused the login');
      if (mapped.code === 'hsm_pin_incorrect' || mapped.code === 'hsm_pin_locked') this.#pinFailure = mapped;
      throw value !== undefined && isReconnectableError(err) ? err : mapped;
    }
  }

  async #ensureSession(): Promise<Pkcs11Handle> {
    if (this.#closed) throw new CountersignError('signer_unavailable', 'the signing token has been closed');
    if (this.#abandoned.size >= MAX_ABANDONED_CALLS) {
      throw new CountersignError(
        'signer_unavailable',
        `the signing device has ${this.#abandoned.size} calls that never answered; check the device and restart`,
        { details: { abandonedCalls: this.#abandoned.size } },
      );
    }
    return this.#session ?? (await this.#connect());
  }

  #closeQuietly(session: Pkcs11Handle): void {
    try {
      this.#api.C_CloseSession(session);
    } catch {
      // already gone with its token
    }
  }

  /** Forget the current session (closing it unless a device call still runs in it). */
  #dropSession(): void {
    const session = this.#session;
    this.#session = undefined;
    if (session !== undefined && !this.#abandoned.has(session)) this.#closeQuietly(session);
  }

  #releaseModuleWhenIdle(): void {
    // Unloading the library while a worker thread is inside it would crash the process.
    if (!this.#closed || this.#moduleReleased || this.#abandoned.size > 0) return;
    this.#moduleReleased = true;
    this.#api.close();
  }

  /** Whether a failure should be met by reconnecting (and never for PIN or key-pin errors). */
  #shouldReconnect(err: unknown): boolean {
    if (this.#closed) return false;
    if (isCountersignError(err, 'hsm_token_not_found')) return true;
    return isReconnectableError(err);
  }

  /**
   * Up to `reconnectAttempts` times: drop the session, find the token again, open a session and
   * log in (PIN read again). The first attempt is immediate, then `reconnectDelayMs` doubling.
   */
  async #reconnect(cause: unknown): Promise<void> {
    const attempts = this.#config.reconnectAttempts;
    const reason = pkcs11ReturnValue(cause);
    this.#log(
      `the signing token session was lost${reason === undefined ? '' : ` (${pkcs11ReturnName(reason)})`}; reconnecting (up to ${attempts} attempts)`,
    );
    if (attempts === 0) {
      this.#dropSession();
      throw new CountersignError('signer_unavailable', 'the signing token session was lost and reconnection is disabled', { cause });
    }
    let last: unknown = cause;
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      if (attempt > 0) await sleep(this.#config.reconnectDelayMs * 2 ** (attempt - 1));
      this.#dropSession();
      try {
        await this.#connect();
        this.#log(`reconnected to the signing token (attempt ${attempt + 1})`);
        return;
      } catch (err) {
        if (
          this.#closed ||
          isCountersignError(err, 'hsm_pin_incorrect') ||
          isCountersignError(err, 'hsm_pin_locked') ||
          isCountersignError(err, 'config_invalid')
        ) {
          throw err;
        }
        last = err;
      }
    }
    const lastValue = pkcs11ReturnValue(last);
    throw new CountersignError('signer_unavailable', `the signing token could not be reached after ${attempts} reconnection attempts`, {
      cause: last,
      details: { attempts, ...(lastValue === undefined ? {} : { pkcs11: pkcs11ReturnName(lastValue) }) },
    });
  }

  /** Run `fn`; on a lost session/token, reconnect and run it once more. */
  async #withRecovery<T>(fn: () => Promise<T>, fallback: ErrorCode): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!this.#shouldReconnect(err)) throw mapPkcs11Error(err, fallback);
      await this.#reconnect(err);
      try {
        return await fn();
      } catch (retryErr) {
        if (this.#shouldReconnect(retryErr)) {
          this.#dropSession();
          throw new CountersignError('signer_unavailable', 'the signing token failed again right after reconnecting', { cause: retryErr });
        }
        throw mapPkcs11Error(retryErr, fallback);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Objects

  #find(session: Pkcs11Handle, template: Template, max = 16): Pkcs11Handle[] {
    this.#api.C_FindObjectsInit(session, template);
    try {
      const found: Pkcs11Handle[] = [];
      for (;;) {
        const batch = this.#api.C_FindObjects(session, Math.min(max - found.length, 64));
        found.push(...batch);
        if (batch.length === 0 || found.length >= max) return found;
      }
    } finally {
      try {
        this.#api.C_FindObjectsFinal(session);
      } catch {
        // the search ends with the session anyway
      }
    }
  }

  #attribute(session: Pkcs11Handle, object: Pkcs11Handle, type: number): Buffer | undefined {
    try {
      return this.#api.C_GetAttributeValue(session, object, [{ type }])[0]?.value;
    } catch (err) {
      if (isReconnectableError(err)) throw err;
      return undefined; // not supported by this module, or sensitive
    }
  }

  #keyTemplate(objectClass: number, spec: Pkcs11KeySpec, idBytes: Buffer): Template {
    return [
      { type: pkcs11js.CKA_CLASS, value: objectClass },
      { type: pkcs11js.CKA_KEY_TYPE, value: keyTypeOf(spec.algorithm) },
      { type: pkcs11js.CKA_LABEL, value: spec.label },
      { type: pkcs11js.CKA_ID, value: idBytes },
    ];
  }

  #publicJwkOf(session: Pkcs11Handle, publicKey: Pkcs11Handle, algorithm: SigningAlgorithm): PublicJwk {
    const params = this.#attribute(session, publicKey, pkcs11js.CKA_EC_PARAMS);
    const keyType = readUlong(this.#attribute(session, publicKey, pkcs11js.CKA_KEY_TYPE));
    if (algorithmOf(keyType, params) !== algorithm) {
      throw new CountersignError('hsm_key_mismatch', `the public key on the token is not an ${algorithm} key`);
    }
    const point = this.#attribute(session, publicKey, pkcs11js.CKA_EC_POINT);
    if (point === undefined) throw new CountersignError('signer_failed', 'the token did not return the public key');
    return publicJwkFromEcPoint(algorithm, point);
  }

  #generate(session: Pkcs11Handle, spec: Pkcs11KeySpec, idBytes: Buffer): PublicJwk {
    const existing = this.#find(
      session,
      [
        { type: pkcs11js.CKA_LABEL, value: spec.label },
        { type: pkcs11js.CKA_ID, value: idBytes },
      ],
      1,
    );
    if (existing.length > 0) {
      throw new CountersignError(
        'config_invalid',
        `a key labelled ${quote(spec.label)} with id ${quote(spec.id)} already exists on the token`,
      );
    }
    const params = spec.algorithm === 'ES256' ? P256_PARAMS : ED25519_PARAMS;
    const mechanism = spec.algorithm === 'ES256' ? pkcs11js.CKM_EC_KEY_PAIR_GEN : CKM_EC_EDWARDS_KEY_PAIR_GEN;
    const publicTemplate: Template = [
      ...this.#keyTemplate(pkcs11js.CKO_PUBLIC_KEY, spec, idBytes),
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: false },
      { type: pkcs11js.CKA_VERIFY, value: true },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_EC_PARAMS, value: params },
    ];
    const privateTemplate: Template = [
      ...this.#keyTemplate(pkcs11js.CKO_PRIVATE_KEY, spec, idBytes),
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      // Signing only: modules default other usages to true (SoftHSM: decrypt and unwrap).
      { type: pkcs11js.CKA_SIGN, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ];
    const pair = this.#api.C_GenerateKeyPair(session, { mechanism }, publicTemplate, privateTemplate);
    try {
      // Trust, but check: a module that ignored the template must not leave a usable key behind.
      const sensitive = readBool(this.#attribute(session, pair.privateKey, pkcs11js.CKA_SENSITIVE));
      const extractable = readBool(this.#attribute(session, pair.privateKey, pkcs11js.CKA_EXTRACTABLE));
      if (sensitive !== true || extractable !== false) {
        throw new CountersignError('hsm_key_extractable', 'the token created the key as extractable despite the request; it was destroyed');
      }
      return this.#publicJwkOf(session, pair.publicKey, spec.algorithm);
    } catch (err) {
      for (const handle of [pair.privateKey, pair.publicKey]) {
        try {
          this.#api.C_DestroyObject(session, handle);
        } catch {
          // best effort
        }
      }
      throw err;
    }
  }

  #listKeys(session: Pkcs11Handle): Pkcs11KeyInfo[] {
    const keys: Pkcs11KeyInfo[] = [];
    const privateKeys = this.#find(session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }], 1024);
    for (const privateKey of privateKeys) {
      const keyType = readUlong(this.#attribute(session, privateKey, pkcs11js.CKA_KEY_TYPE));
      const algorithm = algorithmOf(keyType, this.#attribute(session, privateKey, pkcs11js.CKA_EC_PARAMS));
      const labelBytes = this.#attribute(session, privateKey, pkcs11js.CKA_LABEL);
      const idBytes = this.#attribute(session, privateKey, pkcs11js.CKA_ID);
      if (algorithm === undefined || labelBytes === undefined || idBytes === undefined || idBytes.length === 0) continue;
      const spec: Pkcs11KeySpec = { label: labelBytes.toString('utf8'), id: idBytes.toString('hex'), algorithm };
      const [publicKey] = this.#find(session, this.#keyTemplate(pkcs11js.CKO_PUBLIC_KEY, spec, idBytes), 1);
      if (publicKey === undefined) continue;
      let publicJwk: PublicJwk;
      try {
        publicJwk = this.#publicJwkOf(session, publicKey, algorithm);
      } catch (err) {
        if (isReconnectableError(err)) throw err;
        continue;
      }
      keys.push({
        ...spec,
        publicJwk,
        extractable: readBool(this.#attribute(session, privateKey, pkcs11js.CKA_EXTRACTABLE)) ?? true,
        sensitive: readBool(this.#attribute(session, privateKey, pkcs11js.CKA_SENSITIVE)) ?? false,
      });
    }
    return keys;
  }

  /**
   * Find the key pair by label AND id in the current session and check it against its pin:
   * fingerprint of the token's public key, custody attributes of the private key, and a test
   * signature that must verify against the pinned public key. Returns the public JWK.
   */
  async #bind(session: Pkcs11Handle, binding: KeyBinding): Promise<PublicJwk> {
    const { spec, idBytes } = binding;
    const privateKeys = this.#find(session, this.#keyTemplate(pkcs11js.CKO_PRIVATE_KEY, spec, idBytes), 2);
    const publicKeys = this.#find(session, this.#keyTemplate(pkcs11js.CKO_PUBLIC_KEY, spec, idBytes), 2);
    const where = `labelled ${quote(spec.label)} with id ${quote(spec.id)}`;
    const [privateKey] = privateKeys;
    const [publicKey] = publicKeys;
    if (privateKey === undefined) {
      throw new CountersignError('hsm_key_not_found', `no ${spec.algorithm} private key ${where} is on the token`, {
        details: { label: spec.label, id: spec.id },
      });
    }
    if (publicKey === undefined) {
      throw new CountersignError('hsm_key_not_found', `the ${spec.algorithm} key ${where} has no public key on the token`, {
        details: { label: spec.label, id: spec.id },
      });
    }
    if (privateKeys.length > 1 || publicKeys.length > 1) {
      throw new CountersignError('hsm_key_mismatch', `several keys on the token are ${where}; refusing to choose one`);
    }
    const publicJwk = this.#publicJwkOf(session, publicKey, spec.algorithm);
    if (publicJwk.kid !== binding.pinnedKid) {
      throw new CountersignError('hsm_key_mismatch', `the key ${where} does not match its pinned fingerprint`, {
        details: { expectedKid: binding.pinnedKid, foundKid: publicJwk.kid },
      });
    }
    const sensitive = readBool(this.#attribute(session, privateKey, pkcs11js.CKA_SENSITIVE));
    const extractable = readBool(this.#attribute(session, privateKey, pkcs11js.CKA_EXTRACTABLE));
    if (extractable !== false || sensitive !== true) {
      throw new CountersignError(
        'hsm_key_extractable',
        `the key ${where} can leave the token (${extractable !== false ? 'extractable' : 'not sensitive'}); generate a non-extractable key`,
        { details: { extractable: extractable ?? true, sensitive: sensitive ?? false } },
      );
    }
    const alwaysSensitive = readBool(this.#attribute(session, privateKey, pkcs11js.CKA_ALWAYS_SENSITIVE));
    const neverExtractable = readBool(this.#attribute(session, privateKey, pkcs11js.CKA_NEVER_EXTRACTABLE));
    if (alwaysSensitive !== true || neverExtractable !== true) {
      this.#log(`warning: the key ${where} was not always sensitive and non-extractable; a copy may exist outside the token`);
    }
    // The public object could have been replaced: prove the private key is its partner.
    const challenge = randomBytes(32);
    const signature = await this.#deviceSign(session, privateKey, spec.algorithm, this.#tokenInput(spec.algorithm, challenge));
    if (!verifyWithJwk(publicJwk, challenge, signature)) {
      throw new CountersignError('hsm_key_mismatch', `the private key ${where} does not match its public key`);
    }
    binding.handle = privateKey;
    binding.generation = this.#generation;
    return publicJwk;
  }

  // -------------------------------------------------------------------------------------------
  // Signing

  #tokenInput(algorithm: SigningAlgorithm, data: Uint8Array): Buffer {
    return algorithm === 'ES256' ? createHash('sha256').update(data).digest() : Buffer.from(data);
  }

  /**
   * One C_SignInit + C_SignAsync, raced against callTimeoutMs. On timeout the session is
   * abandoned: never reused, and closed (its late answer discarded) when the call returns.
   */
  #deviceSign(session: Pkcs11Handle, key: Pkcs11Handle, algorithm: SigningAlgorithm, input: Buffer): Promise<Buffer> {
    const mechanism = algorithm === 'ES256' ? pkcs11js.CKM_ECDSA : CKM_EDDSA;
    this.#api.C_SignInit(session, { mechanism }, key);
    const call = this.#api.C_SignAsync(session, input, Buffer.alloc(SIGNATURE_BUFFER));
    const timeoutMs = this.#config.callTimeoutMs;
    return new Promise<Buffer>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        this.#abandon(session);
        reject(
          new CountersignError('signer_timeout', `the signing device did not answer within ${timeoutMs} ms; no signature was released`, {
            details: { timeoutMs },
          }),
        );
      }, timeoutMs);
      call.then(
        (signature) => {
          if (timedOut) return this.#abandonedCallReturned(session); // late answer: discarded
          clearTimeout(timer);
          resolve(Buffer.from(signature));
        },
        (err: unknown) => {
          if (timedOut) return this.#abandonedCallReturned(session);
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  #abandon(session: Pkcs11Handle): void {
    this.#abandoned.add(session);
    if (this.#session === session) this.#session = undefined;
  }

  #abandonedCallReturned(session: Pkcs11Handle): void {
    this.#abandoned.delete(session);
    this.#closeQuietly(session);
    this.#releaseModuleWhenIdle();
  }

  async #signOnce(binding: KeyBinding, publicJwk: PublicJwk, input: Buffer): Promise<Buffer> {
    const session = await this.#ensureSession();
    if (binding.handle === undefined || binding.generation !== this.#generation) {
      try {
        const current = await this.#bind(session, binding);
        if (current.kid !== publicJwk.kid) throw new CountersignError('hsm_key_mismatch', 'the signing key changed on the token');
      } catch (err) {
        // Maybe another token answers to the label (swapped device): look for it afresh next time.
        if (isCountersignError(err, 'hsm_key_mismatch') || isCountersignError(err, 'hsm_key_not_found')) this.#dropSession();
        throw err;
      }
    }
    const handle = binding.handle;
    if (handle === undefined) throw new CountersignError('hsm_key_not_found', 'the signing key is not on the token');
    return this.#deviceSign(session, handle, binding.spec.algorithm, input);
  }

  /** Nothing leaves the signer unless it is a signature by the pinned key over exactly `data`. */
  #checkSignature(publicJwk: PublicJwk, data: Buffer, signature: Buffer): Uint8Array {
    if (signature.length !== SIGNATURE_LENGTH) {
      throw new CountersignError(
        'signer_failed',
        `the token returned a ${signature.length}-byte signature instead of ${SIGNATURE_LENGTH}; it was discarded`,
      );
    }
    if (!verifyWithJwk(publicJwk, data, signature)) {
      throw new CountersignError(
        'signer_failed',
        'the token returned a signature that does not verify against the pinned key; it was discarded',
      );
    }
    return new Uint8Array(signature);
  }

  /**
   * Queue one signature. The wait for the queue and the device call are each bounded by
   * callTimeoutMs; a request that gave up in the queue never reaches the device.
   */
  #signRequest(binding: KeyBinding, publicJwk: PublicJwk, data: Uint8Array): Promise<Uint8Array> {
    if (!(data instanceof Uint8Array)) return Promise.reject(new CountersignError('signer_failed', 'only bytes can be signed'));
    const message = Buffer.from(data); // a private copy: the caller may reuse its buffer
    const input = this.#tokenInput(binding.spec.algorithm, message);
    const timeoutMs = this.#config.callTimeoutMs;
    return new Promise<Uint8Array>((resolve, reject) => {
      let state: 'queued' | 'running' | 'gave_up' = 'queued';
      const queueTimer = setTimeout(() => {
        if (state !== 'queued') return;
        state = 'gave_up';
        reject(
          new CountersignError('signer_timeout', `the signing device was busy for more than ${timeoutMs} ms; no signature was made`, {
            details: { timeoutMs },
          }),
        );
      }, timeoutMs);
      this.#exclusive(async () => {
        clearTimeout(queueTimer);
        if (state === 'gave_up') return undefined;
        state = 'running';
        return this.#withRecovery(() => this.#signOnce(binding, publicJwk, input), 'signer_failed');
      }).then(
        (signature) => {
          if (signature === undefined) return;
          // Checked outside the queue, after the next request has gone to the device.
          setImmediate(() => {
            try {
              resolve(this.#checkSignature(publicJwk, message, signature));
            } catch (err) {
              reject(mapPkcs11Error(err, 'signer_failed'));
              return;
            }
            this.#lastSignatureAt = this.#now();
          });
        },
        (err: unknown) => reject(mapPkcs11Error(err, 'signer_failed', 'the signing token could not sign')),
      );
    });
  }
}
