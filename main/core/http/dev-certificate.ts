/**
 * The development TLS certificate: when TLS is asked for without certificate files, a
 * self-signed ECDSA P-256 certificate for the public host name is made on the first run in
 * `<dataDir>/tls/` (key file mode 0600) and reused on later runs; a new one is made only when the
 * stored one does not name the host any more or is about to expire. Its SHA-256 fingerprint is
 * printed at every start so a desk user can compare it with what their browser shows, and agents
 * can pin it.
 *
 * X.509 encoding is @peculiar/x509's (pinned in package.json), signed with Node's WebCrypto;
 * nothing here writes ASN.1 by hand. The library needs the reflect-metadata polyfill, so both are
 * imported only when a certificate is actually made.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { join } from 'node:path';
import { isCountersignError } from '../../../shared/errors.js';
import { tlsMaterialOf, type TlsMaterial } from './tls-material.js';

/** The directory under the data directory that holds the development certificate. */
export const DEV_CERT_DIR = 'tls';
export const DEV_CERT_FILE = 'dev-cert.pem';
export const DEV_KEY_FILE = 'dev-key.pem';

/** 397 days: the longest lifetime browsers accept for a server certificate. */
const LIFETIME_MS = 397 * 24 * 3600_000;
/** A stored certificate that ends within this is replaced at start rather than expiring mid-run. */
const RENEW_BEFORE_MS = 30 * 24 * 3600_000;

export interface DevCertificateOptions {
  now?: number;
  /** Told when a certificate is made (first run, new host name, renewal). */
  log?: (message: string) => void;
}

/** The development certificate for `hostName` in `dir`: the stored one if it still fits, else a new one. */
export async function loadOrCreateDevCertificate(dir: string, hostName: string, options: DevCertificateOptions = {}): Promise<TlsMaterial> {
  const now = options.now ?? Date.now();
  const certFile = join(dir, DEV_CERT_FILE);
  const keyFile = join(dir, DEV_KEY_FILE);
  if (existsSync(certFile) && existsSync(keyFile)) {
    try {
      const material = tlsMaterialOf(readFileSync(certFile, 'utf8'), readFileSync(keyFile, 'utf8'), hostName, now, {
        source: 'development',
        certFile,
        keyFile,
      });
      if (material.validTo - now > RENEW_BEFORE_MS) return material;
      options.log?.(`tls: the development certificate ends ${new Date(material.validTo).toISOString()}; making a new one`);
    } catch (error) {
      // Another host name, or an expired one: replace it. Anything else (unreadable) is the operator's to see.
      if (!isCountersignError(error) || error.code !== 'tls_certificate_invalid') throw error;
      options.log?.(`tls: ${error.message}; making a new development certificate`);
    }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { cert, key } = await makeSelfSigned(hostName, now);
  // Key first, each file complete before it takes its name: a crash leaves no half-written file in use.
  writeAtomically(keyFile, key, 0o600);
  writeAtomically(certFile, cert, 0o644);
  return tlsMaterialOf(cert, key, hostName, now, { source: 'development', certFile, keyFile });
}

function writeAtomically(file: string, text: string, mode: number): void {
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temporary, text, { mode, flag: 'wx' });
  renameSync(temporary, file);
}

/** A self-signed ECDSA P-256 server certificate naming `hostName`, localhost, 127.0.0.1 and ::1. */
async function makeSelfSigned(hostName: string, now: number): Promise<{ cert: string; key: string }> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // Node's WebCrypto, passed to each call rather than installed as the library's global provider.
  // (The library types it as the DOM's Crypto, which this project's Node types do not declare.)
  const crypto = webcrypto;
  const libraryCrypto = webcrypto as never;
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const names = [...new Set([hostName, 'localhost'])].map((value) => ({ type: 'dns' as const, value }));
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f; // a positive INTEGER
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: [{ CN: [hostName] }, { O: ['Countersign development certificate'] }],
      // A minute back for clocks slightly behind this one.
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + LIFETIME_MS),
      signingAlgorithm: algorithm,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([...names, { type: 'ip', value: '127.0.0.1' }, { type: 'ip', value: '::1' }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, libraryCrypto),
      ],
    },
    libraryCrypto,
  );
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { cert: certificate.toString('pem'), key };
}
