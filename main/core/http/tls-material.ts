/**
 * TLS material as the listener serves it: a PEM certificate and key, checked once at start
 * (parsed, the key belongs to the certificate, not expired, names the public host) with the two
 * digests people and clients check it by: the certificate's SHA-256 fingerprint and the base64
 * SHA-256 of its public key (SPKI).
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { CountersignError, quote } from '../../../shared/errors.js';

/** The certificate and key the listener serves, and what a desk user checks it by. */
export interface TlsMaterial {
  /** PEM certificate chain (leaf first) and PEM private key. */
  readonly cert: string;
  readonly key: string;
  /** SHA-256 of the leaf certificate's DER, colon-separated upper-case hex (as browsers show it). */
  readonly fingerprint256: string;
  /** base64 SHA-256 of the leaf's SubjectPublicKeyInfo (Chromium's --ignore-certificate-errors-spki-list, HPKP-style pins). */
  readonly spkiSha256: string;
  /** `files`: gateway.tls.certFile/keyFile; `development`: made in the data directory on first run. */
  readonly source: 'files' | 'development';
  readonly certFile: string;
  /** The leaf's expiry (epoch ms). */
  readonly validTo: number;
}

/** The TLS material of a PEM certificate and key: parsed, matched, checked for expiry and the host name. */
export function tlsMaterialOf(
  cert: string,
  key: string,
  hostName: string,
  now: number,
  where: { source: TlsMaterial['source']; certFile: string; keyFile: string },
): TlsMaterial {
  const invalid = (message: string, cause?: unknown) =>
    new CountersignError('tls_certificate_invalid', message, { cause, details: { path: where.certFile } });
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (cause) {
    throw invalid(`the certificate file ${quote(where.certFile)} is not a PEM certificate`, cause);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (cause) {
    throw invalid(`the key file ${quote(where.keyFile)} is not a PEM private key`, cause);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw invalid(`the key in ${quote(where.keyFile)} does not belong to the certificate ${quote(where.certFile)}`);
  }
  const validTo = Date.parse(leaf.validTo);
  if (!(validTo > now)) throw invalid(`the certificate ${quote(where.certFile)} expired on ${new Date(validTo).toISOString()}`);
  if (leaf.checkHost(hostName, { subject: 'never' }) === undefined) {
    throw invalid(
      `the certificate ${quote(where.certFile)} does not name the host ${quote(hostName)} (${leaf.subjectAltName ?? 'no subject alternative names'})`,
    );
  }
  const spki = leaf.publicKey.export({ type: 'spki', format: 'der' });
  return {
    cert,
    key,
    fingerprint256: leaf.fingerprint256,
    spkiSha256: sha256Base64(spki),
    source: where.source,
    certFile: where.certFile,
    validTo,
  };
}

function sha256Base64(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('base64');
}
