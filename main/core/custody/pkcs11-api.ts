/**
 * The PKCS#11 surface Countersign uses, the one place a vendor module is loaded, and the
 * mapping from PKCS#11 return values (CKR_*) to Countersign error codes.
 *
 * A vendor module is process-global state: dlopen() hands every loader the same library and
 * C_Initialize/C_Finalize act on all of its users at once. So each module path is loaded and
 * initialized once per process and shared by reference count; the last user to close it
 * finalizes and unloads it.
 */
import { realpathSync, statSync } from 'node:fs';
import type { Stats } from 'node:fs';
import pkcs11js from 'pkcs11js';
import type { InitializationOptions, KeyPair, Mechanism, SessionInfo, Template, TemplateResult, TokenInfo } from 'pkcs11js';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { ErrorCode } from '../../../shared/errors.js';

/** A slot, session or object handle as pkcs11js represents it (a native-endian CK_ULONG). */
export type Pkcs11Handle = Buffer;

/**
 * The subset of pkcs11js's `PKCS11` that a token needs once its module is loaded and
 * initialized. `close()` releases this user's reference (see {@link loadPkcs11Module}).
 * Tests wrap it to inject faults a real module cannot produce on demand.
 */
export interface Pkcs11Api {
  /** The module path as loaded (the real path; never a secret). */
  readonly libPath: string;
  C_GetSlotList(tokenPresent?: boolean): Pkcs11Handle[];
  C_GetTokenInfo(slot: Pkcs11Handle): TokenInfo;
  C_OpenSession(slot: Pkcs11Handle, flags: number): Pkcs11Handle;
  C_CloseSession(session: Pkcs11Handle): void;
  C_CloseAllSessions(slot: Pkcs11Handle): void;
  C_GetSessionInfo(session: Pkcs11Handle): SessionInfo;
  C_Login(session: Pkcs11Handle, userType: number, pin?: string): void;
  C_Logout(session: Pkcs11Handle): void;
  C_FindObjectsInit(session: Pkcs11Handle, template: Template): void;
  C_FindObjects(session: Pkcs11Handle, maxObjectCount: number): Pkcs11Handle[];
  C_FindObjectsFinal(session: Pkcs11Handle): void;
  C_GetAttributeValue(session: Pkcs11Handle, object: Pkcs11Handle, template: Template): TemplateResult;
  C_GenerateKeyPair(session: Pkcs11Handle, mechanism: Mechanism, publicTemplate: Template, privateTemplate: Template): KeyPair;
  C_DestroyObject(session: Pkcs11Handle, object: Pkcs11Handle): void;
  C_SignInit(session: Pkcs11Handle, mechanism: Mechanism, key: Pkcs11Handle): void;
  /** Runs on the libuv thread pool, so the event loop stays free while the device works. */
  C_SignAsync(session: Pkcs11Handle, inData: Buffer, outData: Buffer): Promise<Buffer>;
  /** Release this reference; the last release finalizes and unloads the module. */
  close(): void;
}

/** What the loader needs from a raw pkcs11js `PKCS11` instance (which satisfies it). */
export interface Pkcs11Library extends Omit<Pkcs11Api, 'libPath' | 'close'> {
  load(path: string): void;
  C_Initialize(options?: InitializationOptions): void;
  C_Finalize(): void;
  /** Unloads the library (dlclose). */
  close(): void;
}

export interface LoadPkcs11ModuleOptions {
  /** Creates the raw library object (default: `new PKCS11()` from pkcs11js). */
  create?: () => Pkcs11Library;
}

// ---------------------------------------------------------------------------------------------
// Return values

/** PKCS#11 return values by name, from pkcs11js's exported constants. */
const CKR_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(pkcs11js as unknown as Record<string, unknown>)
    .filter((entry): entry is [string, number] => entry[0].startsWith('CKR_') && typeof entry[1] === 'number')
    .map(([name, value]) => [value, name] as const),
);

/** Not exported by pkcs11js 2.1 (PKCS#11 2.40 / 3.0 values). */
export const CKR_CURVE_NOT_SUPPORTED = 0x140;

/** The numeric CKR_* value of an error pkcs11js threw (a `Pkcs11Error`), or undefined. */
export function pkcs11ReturnValue(err: unknown): number | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'number' || !Number.isInteger(code) || code <= 0) return undefined;
  if (err instanceof pkcs11js.Pkcs11Error || err.name === 'Pkcs11Error') return code;
  return undefined;
}

/** `CKR_PIN_INCORRECT` for 0xa0; `CKR_0x…` for a vendor-defined value. */
export function pkcs11ReturnName(value: number): string {
  return CKR_NAMES.get(value) ?? `CKR_0x${value.toString(16).padStart(8, '0')}`;
}

/** Return values after which a fresh session (and login, and key lookup) may succeed. */
const RECONNECT_VALUES: ReadonlySet<number> = new Set([
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_SLOT_ID_INVALID,
  // The key handle belongs to a session or login that is gone: find the key again.
  pkcs11js.CKR_OBJECT_HANDLE_INVALID,
  pkcs11js.CKR_KEY_HANDLE_INVALID,
  // A previous operation was left active (e.g. abandoned): only a new session clears it.
  pkcs11js.CKR_OPERATION_ACTIVE,
]);

const PIN_INCORRECT_VALUES: ReadonlySet<number> = new Set([
  pkcs11js.CKR_PIN_INCORRECT,
  pkcs11js.CKR_PIN_INVALID,
  pkcs11js.CKR_PIN_LEN_RANGE,
  pkcs11js.CKR_USER_PIN_NOT_INITIALIZED,
]);

const PIN_LOCKED_VALUES: ReadonlySet<number> = new Set([pkcs11js.CKR_PIN_LOCKED, pkcs11js.CKR_PIN_EXPIRED]);

const UNSUPPORTED_VALUES: ReadonlySet<number> = new Set([
  pkcs11js.CKR_MECHANISM_INVALID,
  pkcs11js.CKR_MECHANISM_PARAM_INVALID,
  pkcs11js.CKR_DOMAIN_PARAMS_INVALID,
  CKR_CURVE_NOT_SUPPORTED,
]);

/** True when the error says the session, login, token or key handle went away. */
export function isReconnectableError(err: unknown): boolean {
  const value = pkcs11ReturnValue(err);
  return value !== undefined && RECONNECT_VALUES.has(value);
}

/** The Countersign code for a PKCS#11 return value, with `fallback` for plain failures. */
export function pkcs11ErrorCode(value: number, fallback: ErrorCode): ErrorCode {
  if (PIN_INCORRECT_VALUES.has(value)) return 'hsm_pin_incorrect';
  if (PIN_LOCKED_VALUES.has(value)) return 'hsm_pin_locked';
  if (RECONNECT_VALUES.has(value) || value === pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED) return 'signer_unavailable';
  if (UNSUPPORTED_VALUES.has(value)) return 'config_invalid';
  return fallback; // CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED, CKR_DEVICE_MEMORY, vendor values …
}

const MESSAGES: Partial<Record<ErrorCode, string>> = {
  hsm_pin_incorrect: 'the token rejected the PIN; it was not retried, so the token does not count further failures',
  hsm_pin_locked: "the token PIN is locked or expired; unlock or change it with the token vendor's tool",
  signer_unavailable: 'the signing token or its session is not available',
  config_invalid: 'the token does not support the requested key type or mechanism',
};

/**
 * Map anything a PKCS#11 call threw to a CountersignError. A CountersignError passes through;
 * a pkcs11js `Pkcs11Error` maps by its return value (named in `details.pkcs11`); anything else
 * becomes `fallback`. Never includes a PIN: pkcs11js messages carry only the CKR name.
 */
export function mapPkcs11Error(err: unknown, fallback: ErrorCode, message?: string): CountersignError {
  if (err instanceof CountersignError) return err;
  const value = pkcs11ReturnValue(err);
  if (value === undefined) return new CountersignError(fallback, message, { cause: err });
  const code = pkcs11ErrorCode(value, fallback);
  return new CountersignError(code, code === fallback && message !== undefined ? message : (MESSAGES[code] ?? message), {
    cause: err,
    details: { pkcs11: pkcs11ReturnName(value) },
  });
}

/** Build an error of the exact shape pkcs11js throws (used for closed handles and by tests). */
export function makePkcs11Error(value: number, method = ''): Error {
  return new pkcs11js.Pkcs11Error(`${pkcs11ReturnName(value)}:${value}`, value, method);
}

// ---------------------------------------------------------------------------------------------
// Loading

interface LoadedModule {
  readonly path: string;
  readonly library: Pkcs11Library;
  /** False when another loader in this process had already initialized the module. */
  readonly ownsInitialize: boolean;
  references: number;
}

const loaded = new Map<string, LoadedModule>();

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function resolveModulePath(path: string): string {
  if (typeof path !== 'string' || path.length === 0)
    throw new CountersignError('hsm_module_invalid', 'no PKCS#11 module path is configured');
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) {
      throw new CountersignError('hsm_module_invalid', `the PKCS#11 module ${quote(path, 200)} does not exist`, { cause: err });
    }
    throw new CountersignError('hsm_module_invalid', `the PKCS#11 module ${quote(path, 200)} cannot be read`, { cause: err });
  }
  let stat: Stats;
  try {
    stat = statSync(real);
  } catch (err) {
    throw new CountersignError('hsm_module_invalid', `the PKCS#11 module ${quote(path, 200)} cannot be read`, { cause: err });
  }
  if (!stat.isFile()) throw new CountersignError('hsm_module_invalid', `the PKCS#11 module ${quote(path, 200)} is not a regular file`);
  // Loading a library runs its code in this process: one that other users can replace is refused.
  if ((stat.mode & 0o022) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
    throw new CountersignError(
      'hsm_module_invalid',
      `the PKCS#11 module ${quote(path, 200)} has mode ${mode}, which lets other users replace it; refusing to load it`,
      { details: { mode } },
    );
  }
  return real;
}

/** One user's reference to a loaded module. Calls after `close()` fail like an unloaded module. */
class ModuleReference implements Pkcs11Api {
  readonly libPath: string;
  #module: LoadedModule | undefined;

  constructor(module: LoadedModule) {
    this.#module = module;
    this.libPath = module.path;
  }

  #lib(method: string): Pkcs11Library {
    if (this.#module === undefined) throw makePkcs11Error(pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED, method);
    return this.#module.library;
  }

  C_GetSlotList(tokenPresent?: boolean): Pkcs11Handle[] {
    return this.#lib('C_GetSlotList').C_GetSlotList(tokenPresent);
  }
  C_GetTokenInfo(slot: Pkcs11Handle): TokenInfo {
    return this.#lib('C_GetTokenInfo').C_GetTokenInfo(slot);
  }
  C_OpenSession(slot: Pkcs11Handle, flags: number): Pkcs11Handle {
    return this.#lib('C_OpenSession').C_OpenSession(slot, flags);
  }
  C_CloseSession(session: Pkcs11Handle): void {
    this.#lib('C_CloseSession').C_CloseSession(session);
  }
  C_CloseAllSessions(slot: Pkcs11Handle): void {
    this.#lib('C_CloseAllSessions').C_CloseAllSessions(slot);
  }
  C_GetSessionInfo(session: Pkcs11Handle): SessionInfo {
    return this.#lib('C_GetSessionInfo').C_GetSessionInfo(session);
  }
  C_Login(session: Pkcs11Handle, userType: number, pin?: string): void {
    this.#lib('C_Login').C_Login(session, userType, pin);
  }
  C_Logout(session: Pkcs11Handle): void {
    this.#lib('C_Logout').C_Logout(session);
  }
  C_FindObjectsInit(session: Pkcs11Handle, template: Template): void {
    this.#lib('C_FindObjectsInit').C_FindObjectsInit(session, template);
  }
  C_FindObjects(session: Pkcs11Handle, maxObjectCount: number): Pkcs11Handle[] {
    return this.#lib('C_FindObjects').C_FindObjects(session, maxObjectCount);
  }
  C_FindObjectsFinal(session: Pkcs11Handle): void {
    this.#lib('C_FindObjectsFinal').C_FindObjectsFinal(session);
  }
  C_GetAttributeValue(session: Pkcs11Handle, object: Pkcs11Handle, template: Template): TemplateResult {
    return this.#lib('C_GetAttributeValue').C_GetAttributeValue(session, object, template);
  }
  C_GenerateKeyPair(session: Pkcs11Handle, mechanism: Mechanism, publicTemplate: Template, privateTemplate: Template): KeyPair {
    return this.#lib('C_GenerateKeyPair').C_GenerateKeyPair(session, mechanism, publicTemplate, privateTemplate);
  }
  C_DestroyObject(session: Pkcs11Handle, object: Pkcs11Handle): void {
    this.#lib('C_DestroyObject').C_DestroyObject(session, object);
  }
  C_SignInit(session: Pkcs11Handle, mechanism: Mechanism, key: Pkcs11Handle): void {
    this.#lib('C_SignInit').C_SignInit(session, mechanism, key);
  }
  C_SignAsync(session: Pkcs11Handle, inData: Buffer, outData: Buffer): Promise<Buffer> {
    try {
      return this.#lib('C_Sign').C_SignAsync(session, inData, outData);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  close(): void {
    const module = this.#module;
    if (module === undefined) return;
    this.#module = undefined;
    module.references -= 1;
    if (module.references > 0) return;
    loaded.delete(module.path);
    if (module.ownsInitialize) {
      try {
        module.library.C_Finalize();
      } catch {
        // Finalizing a module that lost its device may fail; unloading still proceeds.
      }
    }
    try {
      module.library.close();
    } catch {
      // Nothing useful to do: the process keeps the mapping.
    }
  }
}

function initialize(library: Pkcs11Library): boolean {
  try {
    // Async calls run on worker threads: the module must do its own locking.
    library.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    return true;
  } catch (err) {
    const value = pkcs11ReturnValue(err);
    if (value === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) return false;
    if (value !== pkcs11js.CKR_CANT_LOCK) throw err;
  }
  try {
    library.C_Initialize();
    return true;
  } catch (err) {
    if (pkcs11ReturnValue(err) === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) return false;
    throw err;
  }
}

/**
 * Load and initialize the PKCS#11 module at `path`, or share the copy this process already
 * loaded. Each call returns a reference; `close()` on it releases that reference.
 * A missing path, a file that is not a PKCS#11 library, a module others can replace, or a
 * failing C_Initialize → hsm_module_invalid.
 */
export function loadPkcs11Module(path: string, options: LoadPkcs11ModuleOptions = {}): Pkcs11Api {
  const real = resolveModulePath(path);
  const existing = loaded.get(real);
  if (existing !== undefined) {
    existing.references += 1;
    return new ModuleReference(existing);
  }
  const library = options.create?.() ?? new pkcs11js.PKCS11();
  try {
    library.load(real);
  } catch (err) {
    throw new CountersignError('hsm_module_invalid', `${quote(path, 200)} is not a loadable PKCS#11 module`, { cause: err });
  }
  let ownsInitialize: boolean;
  try {
    ownsInitialize = initialize(library);
  } catch (err) {
    try {
      library.close();
    } catch {
      // already failing
    }
    const value = pkcs11ReturnValue(err);
    throw new CountersignError('hsm_module_invalid', `the PKCS#11 module ${quote(path, 200)} failed to initialize`, {
      cause: err,
      ...(value === undefined ? {} : { details: { pkcs11: pkcs11ReturnName(value) } }),
    });
  }
  const module: LoadedModule = { path: real, library, ownsInitialize, references: 1 };
  loaded.set(real, module);
  return new ModuleReference(module);
}

/** How many references the loaded copy of `path` has (0 when not loaded). For tests and status. */
export function pkcs11ModuleReferences(path: string): number {
  try {
    return loaded.get(realpathSync(path))?.references ?? 0;
  } catch {
    return 0;
  }
}
