/**
 * The one reader of JSON this installation wrote itself: SQLite columns filled with
 * JSON.stringify and the data-directory lock's holder file. It is never signed or network input
 * (that is read with parseStrictJson from shared/canonical-json.ts, which refuses duplicate
 * members, unsafe integers and lone surrogates); the text was produced by JSON.stringify in this
 * code, so the plain parser reads it back exactly, and the decision path does not pay for the
 * strict one. The banned-pattern lint (eslint.config.js) allows JSON.parse only here.
 */
export function parseStoredJson(text: string): unknown {
  // eslint-disable-next-line no-restricted-syntax -- the one exit for JSON this code wrote (see above)
  return JSON.parse(text) as unknown;
}
