/**
 * C2SP signed notes (c2sp.org/signed-note) carrying tlog checkpoints (c2sp.org/tlog-checkpoint):
 *
 *   <origin>\n<tree size>\n<base64 root hash>\n[time <ISO 8601>\n]\n— <key name> <base64(key id || signature)>\n
 *
 * Formatting and parsing only (pure): signatures are made and checked by the caller, because
 * the algorithms need a crypto library. docs/audit.md describes the whole format.
 */
import { CountersignError } from './errors.js';
import { base64url, fromBase64url } from './encoding.js';

export interface Checkpoint {
  origin: string;
  size: number;
  /** Base64 (standard, padded) root hash, 32 bytes. */
  rootHash: string;
  /** Milliseconds since the epoch, from the `time` extension line. */
  time?: number | undefined;
}

export interface NoteSignature {
  keyName: string;
  /** The first 4 bytes of the decoded signature line. */
  keyId: Uint8Array;
  signature: Uint8Array;
}

export interface SignedNote {
  /** The signed text, final newline included. */
  text: string;
  signatures: NoteSignature[];
}

const MAX_NOTE_BYTES = 16 * 1024;
const MAX_SIGNATURES = 16;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function invalid(message: string): never {
  throw new CountersignError('audit_checkpoint_invalid', message);
}

/** Standard, padded base64 (RFC 4648 §4), as the note formats use. */
export function fromBase64(s: string): Uint8Array {
  if (!B64.test(s) || s.length % 4 !== 0) invalid('a checkpoint field is not base64');
  const bytes = fromBase64url(s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'));
  if (bytes === undefined) invalid('a checkpoint field is not base64');
  return bytes;
}

export function toBase64(bytes: Uint8Array): string {
  const url = base64url(bytes).replace(/-/g, '+').replace(/_/g, '/');
  return url + '='.repeat((4 - (url.length % 4)) % 4);
}

/** The note text of a checkpoint (what is signed). */
export function checkpointText(c: Checkpoint): string {
  if (/[\s+]/.test(c.origin) || c.origin === '') invalid('the origin must be non-empty, without spaces or plus signs');
  const lines = [c.origin, String(c.size), c.rootHash];
  if (c.time !== undefined) lines.push(`time ${new Date(c.time).toISOString()}`);
  return `${lines.join('\n')}\n`;
}

export function formatSignedNote(text: string, signatures: NoteSignature[]): string {
  const lines = signatures.map((s) => {
    const blob = new Uint8Array(4 + s.signature.length);
    blob.set(s.keyId, 0);
    blob.set(s.signature, 4);
    return `\u2014 ${s.keyName} ${toBase64(blob)}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

export function parseSignedNote(note: string): SignedNote {
  if (note.length > MAX_NOTE_BYTES) invalid('the checkpoint is too large');
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) invalid('the checkpoint contains control characters');
  if (!note.endsWith('\n')) invalid('the checkpoint does not end with a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) invalid('the checkpoint has no signature block');
  const text = note.slice(0, split + 1);
  const signatureLines = note.slice(split + 2, -1).split('\n');
  if (signatureLines.length === 0 || signatureLines.length > MAX_SIGNATURES) invalid('the checkpoint has no signatures or too many');
  const signatures = signatureLines.map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) invalid('a checkpoint signature line is malformed');
    const blob = fromBase64(m[2]!);
    if (blob.length < 5) invalid('a checkpoint signature is too short');
    return { keyName: m[1]!, keyId: blob.slice(0, 4), signature: blob.slice(4) };
  });
  return { text, signatures };
}

export function parseCheckpointText(text: string): Checkpoint {
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) invalid('a checkpoint has at least three lines');
  const [origin, sizeText, rootHash, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin === '' || /[\s+]/.test(origin)) invalid('the checkpoint origin is malformed');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) invalid('the checkpoint tree size is malformed');
  if (fromBase64(rootHash).length !== 32) invalid('the checkpoint root hash is not 32 bytes');
  let time: number | undefined;
  for (const ext of extensions) {
    if (ext === '') invalid('a checkpoint extension line is empty');
    const t = /^time (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)$/.exec(ext);
    if (t) time = Date.parse(t[1]!);
  }
  return { origin, size: Number(sizeText), rootHash, time };
}
