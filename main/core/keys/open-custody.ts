/**
 * Chooses and opens the signer for a key domain, and refuses to start rather than fall back:
 *   - custody.pkcs11 configured: the domain's active key must be a PKCS#11 key pinned in the
 *     store (made by `keys init`); the token's key must match the pin and be non-extractable.
 *   - otherwise the software key of the domain (first runs and tests), unless
 *     custody.requireHardware is set or the domain's active key is a PKCS#11 key: then there is
 *     no signer and no token, never a silent software fallback.
 */
import type { CountersignConfig, Pkcs11Config } from '../config.js';
import type { Signer, SigningAlgorithm } from '../custody/signer.js';
import { SoftwareSigner } from '../custody/software-signer.js';
import { SignerPool } from '../custody/signer-pool.js';
import type { SigningKeyRegistry } from './signing-keys.js';
import { type SigningKeyRecord } from './signing-keys.js';
import { Pkcs11Token } from '../custody/pkcs11-token.js';
import { readPin } from '../custody/pin-source.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { randomBytes } from 'node:crypto';

export interface CustodyStatus {
  custody: 'software' | 'pkcs11';
  kid: string;
  algorithm: SigningAlgorithm;
  tokenLabel?: string;
  tokenPresent?: boolean;
  loggedIn?: boolean;
  lastSignatureAt?: number;
}

export interface OpenCustody {
  signer: Signer;
  status(): CustodyStatus;
  close(): Promise<void>;
}

export interface OpenCustodyOptions {
  dataDir: string;
  config: CountersignConfig;
  keys: SigningKeyRegistry;
  log: (message: string) => void;
  now: () => number;
  /** For tests: how PKCS#11 tokens are opened (fault injection). */
  openToken?: (config: Pkcs11Config) => Promise<Pkcs11Token>;
}

export function defaultOpenToken(config: Pkcs11Config, log: (m: string) => void): Promise<Pkcs11Token> {
  // An env var or file is read again after a lost login (it may have been rotated); a PIN typed
  // at the prompt is kept in this closure only, so a reconnect never blocks on a terminal.
  let typed: Promise<string> | undefined;
  const pin = 'prompt' in config.pin ? () => (typed ??= readPin(config.pin)) : () => readPin(config.pin);
  return Pkcs11Token.open(config, { readPin: pin, log });
}

export async function openCustody(options: OpenCustodyOptions): Promise<OpenCustody> {
  const { config, keys, log } = options;
  const domain = config.domain;
  const active = keys.active(domain);
  const pkcs11 = config.custody.pkcs11;

  if (pkcs11 === undefined) {
    if (config.custody.requireHardware) {
      throw new CountersignError(
        'hardware_custody_required',
        'the configuration requires a hardware-held signing key (custody.requireHardware) but no custody.pkcs11 token is configured; no tokens will be issued',
      );
    }
    if (active?.custody === 'pkcs11') {
      throw new CountersignError(
        'hardware_custody_required',
        `the ${domain} signing key ${quote(active.kid)} is held on PKCS#11 token ${quote(active.tokenLabel ?? '')}, but no custody.pkcs11 is configured; refusing to fall back to a software key`,
      );
    }
    const signer = await SoftwareSigner.openOrCreate(options.dataDir, { log, domain });
    if (active === undefined) {
      keys.activate({ domain, custody: 'software', publicJwk: signer.publicJwk }, options.now(), 0);
    } else if (active.kid !== signer.keyId) {
      throw new CountersignError(
        'hsm_key_mismatch',
        `the software signing key at ${quote(signer.keyPath, 200)} does not match the ${domain} key pinned in the store (${quote(active.kid)}); refusing to sign`,
      );
    }
    return {
      signer,
      status: () => ({ custody: 'software', kid: signer.keyId, algorithm: signer.algorithm, ...lastSignature(keys, signer.keyId) }),
      close: () => Promise.resolve(),
    };
  }

  if (active === undefined || active.custody !== 'pkcs11') {
    throw new CountersignError(
      'hsm_key_not_found',
      `no PKCS#11 signing key is pinned for the ${domain} domain; run: countersign keys init${domain === 'test' ? ' --domain test' : ''}`,
    );
  }
  const open = options.openToken ?? ((c: Pkcs11Config) => defaultOpenToken(c, log));
  const tokens: Pkcs11Token[] = [];
  const closeAll = async () => {
    for (const t of tokens.splice(0).reverse()) await t.close();
  };
  try {
    const signers = [];
    // The first session proves the PIN and the key; the others reuse the same login.
    for (let i = 0; i < pkcs11.sessions; i++) {
      const token = await open(pkcs11);
      tokens.push(token);
      signers.push(await token.openSigner(pkcs11RefOf(active)));
    }
    const signer = new SignerPool(signers);
    const first = tokens[0]!;
    log(
      `signing ${domain} tokens with PKCS#11 key ${active.kid} (${active.keyLabel ?? ''} on token ${active.tokenLabel ?? ''}, ${pkcs11.sessions} session(s))`,
    );
    return {
      signer,
      status: () => {
        const live = first.status();
        const lastSignatureAt = Math.max(0, ...tokens.map((t) => t.status().lastSignatureAt ?? 0));
        return {
          custody: 'pkcs11',
          kid: active.kid,
          algorithm: active.algorithm,
          ...(active.tokenLabel === undefined ? {} : { tokenLabel: active.tokenLabel }),
          tokenPresent: live.tokenPresent,
          loggedIn: live.loggedIn,
          ...lastSignature(keys, active.kid, lastSignatureAt || undefined),
        };
      },
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

export function pkcs11RefOf(key: SigningKeyRecord): { label: string; id: string; algorithm: SigningAlgorithm; pinnedKid: string } {
  if (key.keyLabel === undefined || key.keyId === undefined) {
    throw new CountersignError('hsm_key_not_found', `the pinned key ${quote(key.kid)} has no PKCS#11 label and id`);
  }
  return { label: key.keyLabel, id: key.keyId, algorithm: key.algorithm, pinnedKid: key.kid };
}

/** A fresh label and CKA_ID for a key made by the ceremony: the domain is part of the label. */
export function newPkcs11KeyName(domain: 'production' | 'test', now: number): { label: string; id: string } {
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return { label: `countersign-${domain}-${stamp}`, id: randomBytes(16).toString('hex') };
}

function lastSignature(keys: SigningKeyRegistry, kid: string, live?: number): { lastSignatureAt?: number } {
  const stored = keys.lastSignatureAt(kid);
  const at = Math.max(stored ?? 0, live ?? 0);
  return at > 0 ? { lastSignatureAt: at } : {};
}
