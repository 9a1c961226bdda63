/**
 * Characters an approver cannot see or may misread in a call's parameters: invisible ones
 * (zero-width, format and control characters), bidirectional controls (a right-to-left override
 * can make `exe.txt` read `txt.exe`) and confusables (Cyrillic or Greek letters that look Latin,
 * for example a payee `Nоrthwind` with a Cyrillic `о`). One rule for the renderer's request view;
 * test/vectors/text-flags.json holds its vectors (test/unit/text-flags.test.ts).
 */
import type { JsonValue } from './canonical-json.js';

export type TextFlagKind = 'invisible' | 'bidi' | 'confusable';

export interface TextFlag {
  readonly kind: TextFlagKind;
  /** `U+202E` */
  readonly codePoint: string;
  /** Index in code points (not UTF-16 units) within the text. */
  readonly index: number;
}

/** Bidirectional controls: embeddings, overrides, isolates and the implicit marks. */
const BIDI = /^[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]$/u;
/** Invisible: C0/C1 controls except tab and newline, soft hyphen, zero-width and other format characters, fillers, variation selectors, tags. */
const INVISIBLE =
  /^[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200d\u2060-\u2064\u206a-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]$/u;
/**
 * Letters of other scripts that render like Latin letters in common fonts (Cyrillic, Greek,
 * fullwidth Latin, mathematical letters via NFKC below). Kept short and literal on purpose.
 */
const CONFUSABLE =
  /^[\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u04bb\u0501\u051b\u051d\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406\u0408\u0405\u03bf\u03b1\u03bd\u03c1\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u0131\u0269\u01c0\u2010\u2011\u2012\u2013\u2212]$/u;

function flagOf(ch: string): TextFlagKind | undefined {
  if (BIDI.test(ch)) return 'bidi';
  if (INVISIBLE.test(ch)) return 'invisible';
  if (CONFUSABLE.test(ch)) return 'confusable';
  // Fullwidth and mathematical letters fold to ASCII under NFKC: they look like the letter they are not.
  const cp = ch.codePointAt(0) ?? 0;
  if (cp > 0x7f && /^[A-Za-z0-9]$/.test(ch.normalize('NFKC'))) return 'confusable';
  return undefined;
}

/** Every flagged character of `text`, in order. */
export function flagText(text: string): TextFlag[] {
  const out: TextFlag[] = [];
  let index = 0;
  for (const ch of text) {
    const kind = flagOf(ch);
    if (kind !== undefined) out.push({ kind, codePoint: codePointName(ch), index });
    index++;
  }
  return out;
}

/** `U+202E` for one character. */
export function codePointName(ch: string): string {
  return `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

export interface ParamFlag extends TextFlag {
  /** Where in the parameters: `payee`, `lines[2].name`, or `(name) memo` for a member name. */
  readonly path: string;
}

/** Every flagged character in a JSON value's strings and member names, with where it is. */
export function flagParams(value: JsonValue, path = ''): ParamFlag[] {
  if (typeof value === 'string') return flagText(value).map((f) => ({ ...f, path }));
  if (Array.isArray(value)) return value.flatMap((item, i) => flagParams(item, `${path}[${i}]`));
  if (value !== null && typeof value === 'object') {
    const out: ParamFlag[] = [];
    for (const [name, member] of Object.entries(value)) {
      const at = path.length === 0 ? name : `${path}.${name}`;
      out.push(...flagText(name).map((f) => ({ ...f, path: `(name) ${at}` })));
      out.push(...flagParams(member, at));
    }
    return out;
  }
  return [];
}

/**
 * `text` with every flagged character replaced by a visible `⟦U+202E⟧` marker, so what the page
 * renders cannot reorder or hide anything (the raw JSON view escapes them too).
 */
export function revealFlagged(text: string): string {
  let out = '';
  for (const ch of text) out += flagOf(ch) === undefined || flagOf(ch) === 'confusable' ? ch : `⟦${codePointName(ch)}⟧`;
  return out;
}
