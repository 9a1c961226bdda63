/**
 * Signing and checking checkpoint notes with the custody key (c2sp.org/signed-note):
 *  - EdDSA keys: signature type 0x01; key id = SHA-256(name || 0x0A || 0x01 || 32-byte key)[:4];
 *    the signature is Ed25519 over the note text.
 *  - ES256 keys: signature type 0x02 (ECDSA as transparency-dev/witness); key id =
 *    SHA-256(DER SubjectPublicKeyInfo)[:4]; the signature is ASN.1 DER ECDSA P-256 over
 *    SHA-256(note text).
 * The note text starts with the log's origin line and contains newlines, so it can never be
 * mistaken for a token's JWS signing input (base64url, no newlines): one key, two domains.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import type { PublicJwk, Signer } from '../custody/signer.js';
import { fromBase64url } from '../../../shared/encoding.js';
import type { NoteSignature } from '../../../shared/checkpoint-note.js';

export function noteKeyId(keyName: string, jwk: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>): Uint8Array {
  const hash = createHash('sha256');
  if (jwk.kty === 'OKP') {
    hash
      .update(keyName, 'utf8')
      .update(Uint8Array.of(0x0a, 0x01))
      .update(fromBase64url(jwk.x) ?? new Uint8Array(0));
  } else {
    hash.update(
      createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, format: 'jwk' }).export({ type: 'spki', format: 'der' }),
    );
  }
  return new Uint8Array(hash.digest().subarray(0, 4));
}

/** JWS r||s (64 bytes) → ASN.1 DER ECDSA signature. */
function derFromRaw(raw: Uint8Array): Uint8Array {
  const integer = (bytes: Uint8Array) => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    let v = bytes.subarray(i);
    if (v[0]! & 0x80) v = Uint8Array.of(0, ...v);
    return Uint8Array.of(0x02, v.length, ...v);
  };
  const r = integer(raw.subarray(0, 32));
  const s = integer(raw.subarray(32, 64));
  return Uint8Array.of(0x30, r.length + s.length, ...r, ...s);
}

export async function signNote(signer: Signer, keyName: string, text: string): Promise<NoteSignature> {
  const raw = await signer.sign(new Uint8Array(Buffer.from(text, 'utf8')));
  const signature = signer.algorithm === 'ES256' ? derFromRaw(raw) : raw;
  return { keyName, keyId: noteKeyId(keyName, signer.publicJwk), signature };
}

/** Whether one note signature is by `jwk` under `keyName` and verifies over `text`. */
export function verifyNoteSignature(
  jwk: Pick<PublicJwk, 'kty' | 'crv' | 'x' | 'y'>,
  keyName: string,
  text: string,
  sig: NoteSignature,
): boolean {
  try {
    if (sig.keyName !== keyName || !Buffer.from(noteKeyId(keyName, jwk)).equals(sig.keyId)) return false;
    const key = createPublicKey({
      key: jwk.kty === 'OKP' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
      format: 'jwk',
    });
    const data = Buffer.from(text, 'utf8');
    return jwk.kty === 'OKP' ? verify(null, data, key, sig.signature) : verify('sha256', data, { key, dsaEncoding: 'der' }, sig.signature);
  } catch {
    return false;
  }
}
