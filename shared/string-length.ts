/**
 * A string's length as zod measures it for .min/.max/.length: in Unicode code points (a surrogate
 * pair is one, a lone surrogate one), not UTF-16 units. The hand-written checks that must accept
 * exactly what a schema accepts (shared/risk-rules.ts, shared/desk-first-answers.ts) use it.
 */
export function codePointLength(text: string): number {
  let count = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    if ((text.charCodeAt(i) & 0xfc00) === 0xd800 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      count--;
      i++;
    }
  }
  return count;
}

/** Whether `text` is `min` to `max` code points long (counted only when its UTF-16 length leaves it in doubt). */
export function lengthWithin(text: string, min: number, max: number): boolean {
  const units = text.length;
  if (units < min) return false;
  if (units <= max && units >= 2 * min) return true;
  const length = codePointLength(text);
  return length >= min && length <= max;
}
