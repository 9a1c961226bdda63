/**
 * Policy loading reads entities.json an element at a time and hashes the set as it goes, so a
 * directory of 100,000 entities never becomes a tree of the whole file or one string of its
 * canonical form (bench BENCH_ONLY=decision-path, memory). Both shortcuts must be invisible:
 * the element reader accepts exactly the arrays the strict parser accepts, with the same values
 * (and gives up, leaving the strict parser to decide and explain, on anything else), and the
 * streamed hash is the SHA-256 of canonicalize({schema, policies, entities}).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalize, parseStrictJson, type JsonValue } from '../../shared/canonical-json.js';
import { forEachStrictArrayElement, PolicyHasher, policyHash } from '../../main/core/policy/policy-set.js';
import { prng } from '../helpers/prng.js';

function elements(text: string): { ok: boolean; values: JsonValue[] } {
  const values: JsonValue[] = [];
  const ok = forEachStrictArrayElement(text, (value, i) => {
    expect(i).toBe(values.length);
    values.push(value);
  });
  return { ok, values };
}

function strict(text: string): { ok: true; value: JsonValue } | { ok: false; code: string } {
  try {
    return { ok: true, value: parseStrictJson(text) };
  } catch (error) {
    return { ok: false, code: (error as { code: string }).code };
  }
}

const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

/** Arrays the element reader must read exactly as the strict parser does. */
const ACCEPTED = [
  '[]',
  ' \t\r\n[ \n ] \n',
  '[1]',
  '[1,2,3]',
  '[ 1 , 2 ,\n3 ]',
  '[{"uid":{"type":"Countersign::Payee","id":"Acme, Ltd [EU]"},"attrs":{},"parents":[]}]',
  '["a,b", "c]d", "e[f", "g{h", "i}j"]',
  '["quote \\" inside", "backslash \\\\", "\\\\\\"", "unicode \\u00e9 \\ud83d\\ude00"]',
  '[[1,[2,[3]]],{"a":[{"b":{}}]},null,true,false,-0.5e3,"x"]',
  '[{"k":"]"},{"k":"}"},{"k":","}]',
  `[${nested(63)}]`, // 64 levels in all: the strict parser's limit
];

/** Texts that are not strict JSON arrays: the reader must say so (false), never read a value the parser refuses. */
const REFUSED = [
  '',
  '{}',
  '1',
  '"[1]"',
  '[',
  '[1',
  '[1,]',
  '[,1]',
  '[1,,2]',
  '[1 2]',
  '[1] x',
  '[1]]',
  '[{"a":1]',
  '[1}',
  '[1,2}',
  '[{"a":1,"a":2}]',
  '["\\ud800"]',
  '[9007199254740993]',
  '[{"__proto__":1}]',
  '["unterminated]',
  '[01]',
  `[${nested(64)}]`, // 65 levels
  '\ufeff[1]',
];

describe('reading entities.json an element at a time', () => {
  it('reads every accepted array exactly as the strict parser does', () => {
    for (const text of ACCEPTED) {
      const whole = strict(text);
      expect(whole.ok, text).toBe(true);
      const read = elements(text);
      expect(read.ok, text).toBe(true);
      expect(read.values, text).toEqual((whole as { value: JsonValue[] }).value);
    }
  });

  it('gives up on every text the strict parser refuses, or that is not an array', () => {
    for (const text of REFUSED) {
      const whole = strict(text);
      const read = elements(text);
      expect(read.ok, JSON.stringify(text)).toBe(false);
      expect(whole.ok && Array.isArray(whole.value), JSON.stringify(text)).toBe(false);
    }
  });

  it('agrees with the strict parser on 20,000 generated arrays and their one-character corruptions', () => {
    const rng = prng(0x5eed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
    const atoms = ['0', '-1.5', 'true', 'null', '"a,b"', '"]"', '"\\""', '"\\\\"', '"{"', '"x\\u005d"'];
    const value = (depth: number): string => {
      const r = rng();
      if (depth > 3 || r < 0.4) return pick(atoms);
      const n = Math.floor(rng() * 4);
      if (r < 0.7) return `[${Array.from({ length: n }, () => value(depth + 1)).join(pick([',', ' , ', ',\n']))}]`;
      return `{${Array.from({ length: n }, (_, i) => `"k${i}"${pick([':', ' : '])}${value(depth + 1)}`).join(',')}}`;
    };
    const noise = [',', ']', '[', '{', '}', '"', '\\', ' ', 'x'];
    for (let k = 0; k < 20_000; k++) {
      let text = `[${Array.from({ length: 1 + Math.floor(rng() * 5) }, () => value(1)).join(',')}]`;
      if (k % 2 === 1) {
        const at = Math.floor(rng() * text.length);
        text = text.slice(0, at) + pick(noise) + text.slice(at + 1);
      }
      const whole = strict(text);
      const read = elements(text);
      if (read.ok) {
        expect(whole.ok, text).toBe(true);
        expect(read.values, text).toEqual((whole as { value: JsonValue }).value);
      } else {
        expect(whole.ok && Array.isArray(whole.value), text).toBe(false);
      }
    }
  });
});

describe('the policy hash, streamed', () => {
  const sha = (text: string) => `sha256:${createHash('sha256').update(text, 'utf8').digest('hex')}`;
  const schema = 'namespace Countersign { entity Payee; }\n';
  const policies = { 'p:b': 'permit (principal, action, resource);', 'p:a': 'forbid (principal, action, resource) when { false };' };

  it('is the SHA-256 of the canonical {schema, policies, entities}', () => {
    for (const entities of [
      [],
      [{ uid: { type: 'Countersign::Payee', id: 'Acme' }, attrs: {}, parents: [] }],
      [
        {
          uid: { id: 'é ✓ 😀', type: 'Countersign::Payee' },
          parents: [{ type: 'Countersign::PayeeList', id: 'known' }],
          attrs: { z: 1, a: [true, null] },
        },
        { uid: { type: 'Countersign::PayeeList', id: 'known' } },
      ],
    ] as JsonValue[][]) {
      expect(policyHash(schema, policies, entities)).toBe(sha(canonicalize({ schema, policies, entities })));
      const hasher = new PolicyHasher();
      for (const entity of entities) hasher.entity(entity);
      expect(hasher.finish(schema, policies)).toBe(sha(canonicalize({ schema, policies, entities })));
    }
  });

  it('changes when an entity, a policy or the schema changes', () => {
    const entities: JsonValue[] = [{ uid: { type: 'Countersign::Payee', id: 'Acme' }, attrs: {}, parents: [] }];
    const base = policyHash(schema, policies, entities);
    expect(policyHash(schema, policies, [{ uid: { type: 'Countersign::Payee', id: 'Acme2' }, attrs: {}, parents: [] }])).not.toBe(base);
    expect(policyHash(schema, { ...policies, 'p:a': 'permit (principal, action, resource);' }, entities)).not.toBe(base);
    expect(policyHash(`${schema} `, policies, entities)).not.toBe(base);
  });
});
