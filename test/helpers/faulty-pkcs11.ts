/**
 * A Pkcs11Api around the real (SoftHSM) one that injects the faults SoftHSM cannot produce on
 * demand: a device error or lost session in C_Sign, a sign that never answers, token removal
 * and reinsertion, another token answering to the label, a locked PIN (SoftHSM never locks: it accepts any number of wrong PINs),
 * and a corrupted or truncated signature. Everything else is passed through to the real module.
 *
 * Injected errors have exactly the shape pkcs11js throws: a `Pkcs11Error` built from
 * "CKR_NAME:value", so `.name` is 'Pkcs11Error', `.message` the CKR name and `.code` the value.
 * Each method call is counted (`count('C_Login')`), injected or not.
 */
import pkcs11js from 'pkcs11js';
import type { KeyPair, Mechanism, SessionInfo, Template, TemplateResult, TokenInfo } from 'pkcs11js';
import { makePkcs11Error } from '../../main/core/custody/pkcs11-api.js';
import type { Pkcs11Api, Pkcs11Handle } from '../../main/core/custody/pkcs11-api.js';

export type SignatureCorruption = 'flip' | 'truncate';

export class FaultyPkcs11 implements Pkcs11Api {
  readonly #real: Pkcs11Api;
  readonly #counts = new Map<string, number>();
  /** session hex → slot hex, for sessions opened through this wrapper. */
  readonly #sessionSlots = new Map<string, string>();
  readonly #slots = new Map<string, Pkcs11Handle>();
  readonly #removed = new Set<string>();
  /** slot hex → the label that slot's token pretends to have. */
  readonly #aliases = new Map<string, string>();
  #nextSignFailure: number | undefined;
  #removeOnNextSign = false;
  #hang: { started: () => void; gate: Promise<void> } | undefined;
  #corruption: SignatureCorruption | undefined;
  #pinLock: 'login' | 'flag' | undefined;

  constructor(real: Pkcs11Api) {
    this.#real = real;
  }

  get libPath(): string {
    return this.#real.libPath;
  }

  /** How many times `method` was called through this wrapper. */
  count(method: keyof Pkcs11Api): number {
    return this.#counts.get(method) ?? 0;
  }

  #count(method: keyof Pkcs11Api): void {
    this.#counts.set(method, this.count(method) + 1);
  }

  // --- fault switches ------------------------------------------------------------------------

  /** The next C_Sign does run on the device, then reports `value` (e.g. CKR_GENERAL_ERROR). */
  failNextSign(value: number): void {
    this.#nextSignFailure = value;
  }

  /**
   * The next C_Sign does not answer until `release()`; then the real signature is computed and
   * returned (late). `started` resolves when the hung call has begun.
   */
  hangNextSign(): { started: Promise<void>; release: () => void } {
    let release!: () => void;
    let started!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const startedPromise = new Promise<void>((resolve) => {
      started = resolve;
    });
    this.#hang = { started, gate };
    return { started: startedPromise, release };
  }

  /** The next signature comes back with one bit flipped, or cut short. */
  corruptNextSignature(kind: SignatureCorruption): void {
    this.#corruption = kind;
  }

  /** 'login': C_Login answers CKR_PIN_LOCKED. 'flag': the token info also says CKF_USER_PIN_LOCKED. */
  lockPin(mode: 'login' | 'flag' | undefined): void {
    this.#pinLock = mode;
  }

  /**
   * Pull the token(s) out: every session on them is closed for real (the device forgot them),
   * slot lists and token info stop showing them, opening a session answers
   * CKR_TOKEN_NOT_PRESENT and calls on their sessions CKR_DEVICE_REMOVED, until reinsertToken().
   * Without a label: every slot this wrapper has opened sessions on.
   */
  removeToken(label?: string): void {
    const slots =
      label === undefined ? [...this.#slots.values()] : this.#real.C_GetSlotList(true).filter((slot) => this.#labelOf(slot) === label);
    for (const slot of slots) {
      const key = slot.toString('hex');
      this.#slots.set(key, slot);
      this.#removed.add(key);
      this.#real.C_CloseAllSessions(slot);
    }
  }

  /** The next C_Sign is the moment the token is pulled out: it fails with CKR_DEVICE_REMOVED. */
  removeTokenOnNextSign(): void {
    this.#removeOnNextSign = true;
  }

  /**
   * Another device answers to the label: the token labelled `label` is removed and the one
   * labelled `impostorLabel` reports `label` from now on, until reinsertToken().
   */
  swapToken(label: string, impostorLabel: string): void {
    const impostor = this.#real.C_GetSlotList(true).find((slot) => this.#labelOf(slot) === impostorLabel);
    if (impostor === undefined) throw new Error(`no token labelled ${impostorLabel}`);
    this.removeToken(label);
    this.#aliases.set(impostor.toString('hex'), label);
  }

  reinsertToken(): void {
    this.#removed.clear();
    this.#aliases.clear();
  }

  /**
   * Sleep/resume: the module forgets every session (closed for real, so the next call on an
   * old handle gets SoftHSM's own CKR_SESSION_HANDLE_INVALID) and with them the login.
   */
  invalidateSessions(): void {
    for (const slot of this.#slots.values()) this.#real.C_CloseAllSessions(slot);
  }

  // --- helpers ------------------------------------------------------------------------------

  #labelOf(slot: Pkcs11Handle): string | undefined {
    try {
      return this.#real.C_GetTokenInfo(slot).label.replace(/[ \0]+$/u, '');
    } catch {
      return undefined;
    }
  }

  #checkSlot(slot: Pkcs11Handle, method: string): void {
    if (this.#removed.has(slot.toString('hex'))) throw makePkcs11Error(pkcs11js.CKR_TOKEN_NOT_PRESENT, method);
  }

  #checkSession(session: Pkcs11Handle, method: string): void {
    const slot = this.#sessionSlots.get(session.toString('hex'));
    if (slot !== undefined && this.#removed.has(slot)) throw makePkcs11Error(pkcs11js.CKR_DEVICE_REMOVED, method);
  }

  // --- Pkcs11Api ------------------------------------------------------------------------------

  C_GetSlotList(tokenPresent?: boolean): Pkcs11Handle[] {
    this.#count('C_GetSlotList');
    const slots = this.#real.C_GetSlotList(tokenPresent);
    return tokenPresent === true ? slots.filter((slot) => !this.#removed.has(slot.toString('hex'))) : slots;
  }

  C_GetTokenInfo(slot: Pkcs11Handle): TokenInfo {
    this.#count('C_GetTokenInfo');
    this.#checkSlot(slot, 'C_GetTokenInfo');
    const info = this.#real.C_GetTokenInfo(slot);
    const alias = this.#aliases.get(slot.toString('hex'));
    return {
      ...info,
      ...(alias === undefined ? {} : { label: alias.padEnd(32, ' ') }),
      ...(this.#pinLock === 'flag' ? { flags: info.flags | pkcs11js.CKF_USER_PIN_LOCKED } : {}),
    };
  }

  C_OpenSession(slot: Pkcs11Handle, flags: number): Pkcs11Handle {
    this.#count('C_OpenSession');
    this.#checkSlot(slot, 'C_OpenSession');
    const session = this.#real.C_OpenSession(slot, flags);
    const key = slot.toString('hex');
    this.#slots.set(key, slot);
    this.#sessionSlots.set(session.toString('hex'), key);
    return session;
  }

  C_CloseSession(session: Pkcs11Handle): void {
    this.#count('C_CloseSession');
    this.#checkSession(session, 'C_CloseSession');
    this.#real.C_CloseSession(session);
  }

  C_CloseAllSessions(slot: Pkcs11Handle): void {
    this.#count('C_CloseAllSessions');
    this.#checkSlot(slot, 'C_CloseAllSessions');
    this.#real.C_CloseAllSessions(slot);
  }

  C_GetSessionInfo(session: Pkcs11Handle): SessionInfo {
    this.#count('C_GetSessionInfo');
    this.#checkSession(session, 'C_GetSessionInfo');
    return this.#real.C_GetSessionInfo(session);
  }

  C_Login(session: Pkcs11Handle, userType: number, pin?: string): void {
    this.#count('C_Login');
    this.#checkSession(session, 'C_Login');
    if (this.#pinLock !== undefined) throw makePkcs11Error(pkcs11js.CKR_PIN_LOCKED, 'C_Login');
    this.#real.C_Login(session, userType, pin);
  }

  C_Logout(session: Pkcs11Handle): void {
    this.#count('C_Logout');
    this.#checkSession(session, 'C_Logout');
    this.#real.C_Logout(session);
  }

  C_FindObjectsInit(session: Pkcs11Handle, template: Template): void {
    this.#count('C_FindObjectsInit');
    this.#checkSession(session, 'C_FindObjectsInit');
    this.#real.C_FindObjectsInit(session, template);
  }

  C_FindObjects(session: Pkcs11Handle, maxObjectCount: number): Pkcs11Handle[] {
    this.#count('C_FindObjects');
    this.#checkSession(session, 'C_FindObjects');
    return this.#real.C_FindObjects(session, maxObjectCount);
  }

  C_FindObjectsFinal(session: Pkcs11Handle): void {
    this.#count('C_FindObjectsFinal');
    this.#checkSession(session, 'C_FindObjectsFinal');
    this.#real.C_FindObjectsFinal(session);
  }

  C_GetAttributeValue(session: Pkcs11Handle, object: Pkcs11Handle, template: Template): TemplateResult {
    this.#count('C_GetAttributeValue');
    this.#checkSession(session, 'C_GetAttributeValue');
    return this.#real.C_GetAttributeValue(session, object, template);
  }

  C_GenerateKeyPair(session: Pkcs11Handle, mechanism: Mechanism, publicTemplate: Template, privateTemplate: Template): KeyPair {
    this.#count('C_GenerateKeyPair');
    this.#checkSession(session, 'C_GenerateKeyPair');
    return this.#real.C_GenerateKeyPair(session, mechanism, publicTemplate, privateTemplate);
  }

  C_DestroyObject(session: Pkcs11Handle, object: Pkcs11Handle): void {
    this.#count('C_DestroyObject');
    this.#checkSession(session, 'C_DestroyObject');
    this.#real.C_DestroyObject(session, object);
  }

  C_SignInit(session: Pkcs11Handle, mechanism: Mechanism, key: Pkcs11Handle): void {
    this.#count('C_SignInit');
    this.#checkSession(session, 'C_SignInit');
    this.#real.C_SignInit(session, mechanism, key);
  }

  async C_SignAsync(session: Pkcs11Handle, inData: Buffer, outData: Buffer): Promise<Buffer> {
    this.#count('C_SignAsync');
    this.#checkSession(session, 'C_Sign');
    if (this.#removeOnNextSign) {
      this.#removeOnNextSign = false;
      const slot = this.#sessionSlots.get(session.toString('hex'));
      const handle = slot === undefined ? undefined : this.#slots.get(slot);
      if (handle !== undefined) {
        this.#removed.add(slot ?? '');
        this.#real.C_CloseAllSessions(handle);
      }
      throw makePkcs11Error(pkcs11js.CKR_DEVICE_REMOVED, 'C_Sign');
    }
    const hang = this.#hang;
    if (hang !== undefined) {
      this.#hang = undefined;
      hang.started();
      await hang.gate;
    }
    const failure = this.#nextSignFailure;
    if (failure !== undefined) {
      this.#nextSignFailure = undefined;
      // The device did run (and so ended) the operation, then reported the error.
      await this.#real.C_SignAsync(session, inData, outData).catch(() => undefined);
      throw makePkcs11Error(failure, 'C_Sign');
    }
    const signature = await this.#real.C_SignAsync(session, inData, outData);
    const corruption = this.#corruption;
    if (corruption === undefined) return signature;
    this.#corruption = undefined;
    if (corruption === 'truncate') return signature.subarray(0, signature.length - 1);
    const flipped = Buffer.from(signature);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 0x01;
    return flipped;
  }

  close(): void {
    this.#count('close');
    this.#real.close();
  }
}
