/**
 * A signer whose private key lives in a file. For first runs and CI only: it announces on every
 * open that approval tokens are not hardware-backed. Production uses the PKCS#11 signer.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CountersignError, quote } from '../../../shared/errors.js';
import { jwkThumbprint } from './signer.js';
import { isErrno, readPrivateFile } from './private-file.js';
import type { PublicJwk, Signer, SigningAlgorithm } from './signer.js';

export const SOFTWARE_KEY_DIR = 'keys';
export const SOFTWARE_KEY_FILE = 'software-signing-key.pem';

/** The key file of a key domain: test-domain tokens are signed by a different key. */
export function softwareKeyFileName(domain: 'production' | 'test' = 'production'): string {
  return domain === 'production' ? SOFTWARE_KEY_FILE : 'software-signing-key.test.pem';
}

export interface SoftwareSignerOptions {
  /** Key domain (default production); each domain has its own key file. */
  domain?: 'production' | 'test';
  /** Algorithm for a newly created key (default ES256). An existing key must match it if given. */
  algorithm?: SigningAlgorithm;
  /** Where the software-custody warning goes (default console.warn). Never receives key material. */
  log?: (message: string) => void;
}

function keyAlgorithm(key: KeyObject): SigningAlgorithm | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  return undefined;
}

function publicJwkOf(privateKey: KeyObject, algorithm: SigningAlgorithm): PublicJwk {
  const exported = createPublicKey(privateKey).export({ format: 'jwk' });
  if (typeof exported.x !== 'string') throw new CountersignError('signer_failed', 'the software key has no public component');
  const base =
    algorithm === 'ES256'
      ? { kty: 'EC' as const, crv: 'P-256' as const, x: exported.x, y: exported.y ?? '' }
      : { kty: 'OKP' as const, crv: 'Ed25519' as const, x: exported.x };
  return { ...base, kid: jwkThumbprint(base), alg: algorithm, use: 'sig' };
}

function readKeyFile(file: string): Promise<string | undefined> {
  return readPrivateFile(file, 'signing key', 64 * 1024);
}

/** Write the key atomically: temp file (0600, exclusive) then link(2), which fails if a key exists. */
async function writeKeyFile(dir: string, file: string, pem: string): Promise<boolean> {
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(8).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, 'wx', 0o600);
  try {
    await handle.chmod(0o600); // independent of the umask
    await handle.writeFile(pem, { encoding: 'utf8' });
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.link(tmp, file);
    return true;
  } catch (err) {
    if (isErrno(err, 'EEXIST')) return false; // another process created it first: use theirs
    throw err;
  } finally {
    await fs.unlink(tmp).catch(() => undefined);
    const dirHandle = await fs.open(dir, 'r').catch(() => undefined);
    if (dirHandle !== undefined) {
      await dirHandle.sync().catch(() => undefined);
      await dirHandle.close();
    }
  }
}

export class SoftwareSigner implements Signer {
  readonly custody = 'software' as const;
  readonly keyId: string;
  readonly algorithm: SigningAlgorithm;
  readonly publicJwk: PublicJwk;
  /** Where the key file lives (a path, never the key). */
  readonly keyPath: string;
  readonly #privateKey: KeyObject;

  private constructor(privateKey: KeyObject, algorithm: SigningAlgorithm, keyPath: string) {
    this.#privateKey = privateKey;
    this.algorithm = algorithm;
    this.keyPath = keyPath;
    this.publicJwk = Object.freeze(publicJwkOf(privateKey, algorithm));
    this.keyId = this.publicJwk.kid;
  }

  /** Open `<dataDir>/keys/software-signing-key.pem`, creating it (0600, dir 0700) if absent. */
  static async openOrCreate(dataDir: string, options: SoftwareSignerOptions = {}): Promise<SoftwareSigner> {
    // eslint-disable-next-line no-console -- the default sink when the caller injects no log function
    const log = options.log ?? ((message: string) => console.warn(message));
    if (options.algorithm !== undefined && options.algorithm !== 'ES256' && options.algorithm !== 'EdDSA') {
      throw new CountersignError('config_invalid', `the signing algorithm ${quote(options.algorithm)} is not supported`);
    }
    const dir = path.join(dataDir, SOFTWARE_KEY_DIR);
    const file = path.join(dir, softwareKeyFileName(options.domain));
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });

    let pem = await readKeyFile(file);
    if (pem === undefined) {
      const algorithm = options.algorithm ?? 'ES256';
      const pair = algorithm === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
      const created = await writeKeyFile(dir, file, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
      pem = await readKeyFile(file); // load what is on disk, whoever wrote it
      if (pem === undefined)
        throw new CountersignError('config_invalid', `the signing key file ${quote(file, 200)} disappeared while it was being created`);
      if (created) log(`created a new ${algorithm} software signing key at ${file}`);
    }

    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: pem, format: 'pem' });
    } catch (err) {
      throw new CountersignError('config_invalid', `the signing key file ${quote(file, 200)} does not hold a PKCS#8 PEM private key`, {
        cause: err,
      });
    }
    const algorithm = keyAlgorithm(privateKey);
    if (algorithm === undefined) {
      throw new CountersignError('config_invalid', `the signing key file ${quote(file, 200)} holds neither a P-256 nor an Ed25519 key`);
    }
    if (options.algorithm !== undefined && options.algorithm !== algorithm) {
      throw new CountersignError(
        'config_invalid',
        `the signing key file ${quote(file, 200)} holds an ${algorithm} key, but ${options.algorithm} was requested`,
      );
    }

    const signer = new SoftwareSigner(privateKey, algorithm, file);
    log(
      `warning: signing key is held in software at ${file}; approval tokens are not hardware-backed. ` +
        'configure a PKCS#11 token for production.',
    );
    return signer;
  }

  /** Token issuance verifies every signature against the published key before release. */
  sign(data: Uint8Array): Promise<Uint8Array> {
    try {
      const signature = new Uint8Array(
        this.algorithm === 'ES256'
          ? sign('sha256', data, { key: this.#privateKey, dsaEncoding: 'ieee-p1363' })
          : sign(null, data, this.#privateKey),
      );
      return Promise.resolve(signature);
    } catch (err) {
      if (err instanceof CountersignError) return Promise.reject(err);
      return Promise.reject(new CountersignError('signer_failed', undefined, { cause: err, details: { kid: this.keyId } }));
    }
  }

  /** Never serialize or print key material. */
  toJSON(): { keyId: string; algorithm: SigningAlgorithm; custody: 'software'; keyPath: string } {
    return { keyId: this.keyId, algorithm: this.algorithm, custody: this.custody, keyPath: this.keyPath };
  }
}
