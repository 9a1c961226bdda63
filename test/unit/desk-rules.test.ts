/**
 * The desk's shared rules over their vector files: the queue headline
 * (test/vectors/request-headlines.json), flagged characters (test/vectors/text-flags.json) and the
 * fingerprint words co-approvers read to each other (test/vectors/fingerprints.json).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { requestHeadline } from '../../shared/request-headline.js';
import { flagParams, flagText, revealFlagged } from '../../shared/text-flags.js';
import { FINGERPRINT_WORDS, fingerprintWords } from '../../shared/fingerprint.js';
import { computeCallDigest } from '../../shared/approval-token.js';
import { callDigest } from '../../main/core/tokens/call-digest.js';
import type { JsonObject } from '../../shared/canonical-json.js';

const load = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8')) as T;

const headlines = load<{ vectors: Array<{ name: string; tool: string; params: JsonObject; expect: unknown }> }>('request-headlines.json');
const flags = load<{ vectors: Array<{ name: string; text: string; expect: unknown[] }> }>('text-flags.json');
const prints = load<{
  vectors: Array<{ name: string; callSha256: string; words: string[] | null; call?: { tool: string; params: JsonObject } }>;
}>('fingerprints.json');

describe('request headline', () => {
  it.each(headlines.vectors.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    expect(requestHeadline(v.tool, v.params)).toEqual(v.expect);
  });
});

describe('flagged characters', () => {
  it.each(flags.vectors.map((v) => [v.name, v] as const))('%s', (_name, v) => {
    expect(flagText(v.text)).toEqual(v.expect);
  });

  it('finds flags in nested values and member names, with their path', () => {
    const found = flagParams({ lines: [{ name: 'a\u202eb' }], ['me\u200bmo']: 'x' });
    expect(found).toEqual([
      { kind: 'bidi', codePoint: 'U+202E', index: 1, path: 'lines[0].name' },
      { kind: 'invisible', codePoint: 'U+200B', index: 2, path: '(name) me\u200bmo' },
    ]);
  });

  it('reveals invisible and bidi characters as visible markers and leaves look-alikes in place', () => {
    expect(revealFlagged('inv\u202Efdp.exe N\u043e')).toBe('inv⟦U+202E⟧fdp.exe N\u043e');
  });
});

describe('fingerprint words', () => {
  it('has 256 distinct words', () => {
    expect(new Set(FINGERPRINT_WORDS).size).toBe(256);
    expect(FINGERPRINT_WORDS).toHaveLength(256);
  });

  it.each(prints.vectors.map((v) => [v.name, v] as const))('%s', async (_name, v) => {
    expect(fingerprintWords(v.callSha256) ?? null).toEqual(v.words);
    if (v.call !== undefined) {
      // The digest the fingerprint names is the one the core binds and the page recomputes.
      expect(callDigest(v.call.tool, v.call.params)).toBe(v.callSha256);
      expect(await computeCallDigest(v.call.tool, v.call.params)).toBe(v.callSha256);
    }
  });

  it('differs for a look-alike payee', () => {
    const [a, b] = prints.vectors.filter((v) => v.call !== undefined);
    expect(a?.words).not.toEqual(b?.words);
  });
});
