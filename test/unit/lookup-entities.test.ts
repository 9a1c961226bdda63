/**
 * The compact store of a policy set's lookup entities (main/core/policy/lookup-entities.ts): every
 * entity of entities.json comes back exactly as written (in Cedar's form: absent attrs and parents
 * read as empty), whether it was kept as an id in its type's map or as an object; ids the map
 * could confuse (a NUL inside, the same id under two types) stay apart; and the slice finds what a
 * call names through it. That the decisions stay those of the whole set is entity-slice.test.ts.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPolicyDirectory } from '../../main/core/policy/policy-set.js';
import { LookupEntities } from '../../main/core/policy/lookup-entities.js';
import { buildEntitySliceIndex, sliceForCall } from '../../main/core/policy/entity-slice.js';

const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Entity = { uid: { type: string; id: string }; attrs?: Record<string, unknown>; parents?: Array<{ type: string; id: string }> };

/** The finance pack with extra entities written to its entities.json. */
function financeWith(extra: Entity[]): { dir: string; written: Entity[] } {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-lookup-'));
  dirs.push(dir);
  cpSync(join(EXAMPLES, 'finance'), dir, { recursive: true, dereference: true });
  const written = [...(JSON.parse(readFileSync(join(dir, 'entities.json'), 'utf8')) as Entity[]), ...extra];
  writeFileSync(join(dir, 'entities.json'), JSON.stringify(written));
  return { dir, written };
}

const KNOWN = { type: 'Countersign::PayeeList', id: 'known' };
const PREFERRED = { type: 'Countersign::PayeeList', id: 'preferred' };

describe('a loaded set keeps its lookup entities compactly', () => {
  it('gives back every entity of entities.json as written, plain or not', async () => {
    const extra: Entity[] = [
      { uid: PREFERRED, attrs: {}, parents: [] },
      // Plain: no attributes, in one list, in two lists, in none, and attrs or parents left out.
      ...Array.from({ length: 200 }, (_, i) => ({ uid: { type: 'Countersign::Payee', id: `Vendor ${i}` }, attrs: {}, parents: [KNOWN] })),
      { uid: { type: 'Countersign::Payee', id: 'Both Lists Ltd' }, attrs: {}, parents: [KNOWN, PREFERRED] },
      { uid: { type: 'Countersign::Payee', id: 'In No List' }, parents: [] },
      { uid: { type: 'Countersign::Payee', id: 'No Attrs Written' }, parents: [KNOWN] },
      { uid: { type: 'Countersign::Payee', id: 'No Parents Written' }, attrs: {} },
      // Ids the keys could confuse: a NUL inside, and an id that is also a list's id.
      { uid: { type: 'Countersign::Payee', id: 'Nul\u0000Inside' }, attrs: {}, parents: [KNOWN] },
      { uid: { type: 'Countersign::Payee', id: 'known' }, attrs: {}, parents: [PREFERRED] },
    ];
    const { dir, written } = financeWith(extra);
    const set = await loadPolicyDirectory(dir);
    const lookups = written.filter((e) => e.uid.type !== 'Countersign::Tool');
    expect(set.lookupEntities.size).toBe(lookups.length);
    for (const e of lookups) {
      const kept = set.lookupEntities.get(e.uid.type, e.uid.id);
      expect(kept, `${e.uid.type}::${e.uid.id}`).toEqual({ uid: e.uid, attrs: e.attrs ?? {}, parents: e.parents ?? [] });
    }
    // An entity with attributes (the sanctioned list's codes) keeps them.
    expect(set.lookupEntities.get('Countersign::JurisdictionList', 'sanctioned')?.attrs).toEqual({ codes: ['CU', 'IR', 'KP', 'SY'] });
    expect(set.lookupEntities.get('Countersign::Payee', 'Nobody')).toBeUndefined();
    expect(set.lookupEntities.get('Countersign::PayeeList', 'Vendor 1')).toBeUndefined();
    // Every entity once, in full, for the reference evaluation.
    const key = (e: { uid: unknown }) => JSON.stringify(e.uid);
    expect(set.lookupEntities.all().map(key).sort()).toEqual(lookups.map(key).sort());
    expect([...set.lookupEntities.uids()].map((uid) => JSON.stringify(uid)).sort()).toEqual(lookups.map(key).sort());

    // The slice reaches a named payee through the store, a NUL in its id included, with its lists.
    const index = buildEntitySliceIndex(set);
    const params = { amount: '10.00', currency: 'USD', payee: 'Nul\u0000Inside', memo: '' };
    expect(sliceForCall(index, 'payments.transfer', params).extra.map((e) => e.uid)).toEqual([
      { type: 'Countersign::Payee', id: 'Nul\u0000Inside' },
    ]);
    const both = sliceForCall(index, 'payments.transfer', { ...params, payee: 'Both Lists Ltd' }).extra.map((e) => e.uid);
    expect(both).toEqual([{ type: 'Countersign::Payee', id: 'Both Lists Ltd' }, PREFERRED]);
  });

  it('never lets a caller change a kept entity through what it was given', () => {
    const store = new LookupEntities();
    const parents = Object.freeze([Object.freeze({ ...KNOWN })]) as unknown as Array<{ type: string; id: string }>;
    store.add({ uid: { type: 'Countersign::Payee', id: 'Acme Ltd' }, attrs: Object.freeze({}), parents });
    const first = store.get('Countersign::Payee', 'Acme Ltd')!;
    expect(Object.isFrozen(first.attrs)).toBe(true);
    expect(Object.isFrozen(first.parents)).toBe(true);
    // The entity object itself is made per call: changing one leaves the next as stored.
    (first.uid as { id: string }).id = 'Changed';
    expect(store.get('Countersign::Payee', 'Acme Ltd')!.uid).toEqual({ type: 'Countersign::Payee', id: 'Acme Ltd' });
    // A parent list that is not frozen is kept with its entity as given (never shared).
    const open = [{ ...KNOWN }];
    store.add({ uid: { type: 'Countersign::Payee', id: 'Open Parents' }, attrs: {}, parents: open });
    expect(store.get('Countersign::Payee', 'Open Parents')!.parents).toBe(open);
    expect(store.size).toBe(2);
  });

  it('keeps the tags of a lookup entity that has tags and no attributes (review8 F5)', async () => {
    const { dir } = financeWith([]);
    const schema = join(dir, 'schema.cedarschema');
    const declared = readFileSync(schema, 'utf8').replace('entity Payee in [PayeeList];', 'entity Payee in [PayeeList] tags String;');
    expect(declared).toContain('tags String');
    writeFileSync(schema, declared);
    const entities = JSON.parse(readFileSync(join(dir, 'entities.json'), 'utf8')) as unknown[];
    const tagged = { uid: { type: 'Countersign::Payee', id: 'Tagged Ltd' }, parents: [KNOWN], tags: { tier: 'gold' } };
    writeFileSync(join(dir, 'entities.json'), JSON.stringify([...entities, tagged]));
    const set = await loadPolicyDirectory(dir);
    // Not the compact form (an id in its list): Cedar must get the tags with the entity.
    expect((set.lookupEntities.get('Countersign::Payee', 'Tagged Ltd') as { tags?: unknown } | undefined)?.tags).toEqual({ tier: 'gold' });
  });
});
