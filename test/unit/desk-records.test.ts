/**
 * The shared rules of the desk's History and Policies views (shared/desk-records.ts): a policy
 * load problem split into file:line (vectors in test/vectors/policy-problem-places.json), and the
 * history query schema's refusals.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyQuerySchema, policyProblemPlace } from '../../shared/desk-records.js';

const vectors = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'vectors', 'policy-problem-places.json'), 'utf8')) as {
  vectors: Array<{ problem: string; file: string | null; line: number | null; message: string }>;
};

describe('policyProblemPlace', () => {
  for (const v of vectors.vectors) {
    it(`places ${JSON.stringify(v.problem)}`, () => {
      expect(policyProblemPlace(v.problem)).toEqual({ file: v.file, line: v.line, message: v.message });
    });
  }
});

describe('historyQuerySchema', () => {
  it('accepts filters, a search of 3 characters or more and a cursor a page returned', () => {
    expect(historyQuerySchema.safeParse({ states: ['approved'], text: 'acm', cursor: '1700000000000:r-1', limit: 100 }).success).toBe(true);
  });
  it('refuses a pending state, a short search, a reversed range, a big page, a foreign cursor and an unknown member', () => {
    for (const bad of [
      { states: ['pending'] },
      { text: '  ab ' },
      { since: 2, until: 1 },
      { limit: 101 },
      { cursor: 'r-1' },
      { order: 'asc' },
    ])
      expect(historyQuerySchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
  });
});
