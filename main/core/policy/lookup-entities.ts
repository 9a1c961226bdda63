/**
 * The lookup entities of a loaded policy set (every static entity that is not a Tool), held
 * compactly. A directory is mostly entities with nothing but an id and a list they are in
 * (`Payee::"Vendor 7"` in `PayeeList::"known"`): such a "plain" entity is kept as its id in a map
 * of its type, pointing at its (shared, frozen) parent list, and its Cedar form is made again
 * when a call names it. Every other entity (attributes or tags) is kept as its Cedar form.
 *
 * Why (ADR 0021): one object for the entity, one for its uid and a `type NUL id` key string per
 * entity made the 100,000-payee index of the bench 22 MB of the server's live heap; held this
 * way it is a third of that. The Cedar form made again is the one loading made (uid, the shared
 * frozen empty attribute record, the shared frozen parent list; no tags), so Cedar is handed the
 * same entity either way: test/unit/entity-slice.test.ts holds the slice's decisions equal to
 * the whole set's, and test/unit/lookup-entities.test.ts the entities equal to the file's.
 */
import type * as cedar from '@cedar-policy/cedar-wasm/nodejs';

type StaticEntity = cedar.EntityJson;
type Uid = { type: string; id: string };

/** The one empty attribute record every plain entity is given (frozen: nothing may add to it). */
const EMPTY_ATTRS: Record<string, cedar.CedarValueJson> = Object.freeze({});

export class LookupEntities {
  /** type -> id -> parent list, for entities without attributes or tags. */
  private readonly plain = new Map<string, Map<string, cedar.EntityUidJson[]>>();
  /** type -> id -> Cedar form, for every other entity. */
  private readonly rich = new Map<string, Map<string, StaticEntity>>();
  private count = 0;

  /** Adds one entity in its Cedar form (`uid` as `{type,id}`; parents shared and frozen, as loading makes them). */
  add(entity: StaticEntity & { uid: Uid }): void {
    const { type, id } = entity.uid;
    const attrs = entity.attrs as Record<string, unknown> | undefined;
    const plain = (attrs === undefined || Object.keys(attrs).length === 0) && (entity as { tags?: unknown }).tags === undefined;
    if (plain && Object.isFrozen(entity.parents ?? [])) {
      let ids = this.plain.get(type);
      if (ids === undefined) this.plain.set(type, (ids = new Map<string, cedar.EntityUidJson[]>()));
      ids.set(id, entity.parents ?? []);
    } else {
      let ids = this.rich.get(type);
      if (ids === undefined) this.rich.set(type, (ids = new Map<string, StaticEntity>()));
      ids.set(id, entity);
    }
    this.count++;
  }

  get size(): number {
    return this.count;
  }

  /** The entity `type`/`id` in its Cedar form, or undefined when the set holds none. */
  get(type: string, id: string): StaticEntity | undefined {
    const parents = this.plain.get(type)?.get(id);
    if (parents !== undefined) return { uid: { type, id }, attrs: EMPTY_ATTRS, parents };
    return this.rich.get(type)?.get(id);
  }

  /** Every entity's uid. */
  *uids(): IterableIterator<Uid> {
    for (const [type, ids] of this.plain) for (const id of ids.keys()) yield { type, id };
    for (const [type, ids] of this.rich) for (const id of ids.keys()) yield { type, id };
  }

  /** Every entity in its Cedar form, made anew (the reference evaluation hands Cedar all of them). */
  all(): StaticEntity[] {
    const out: StaticEntity[] = [];
    for (const [type, ids] of this.plain) for (const [id, parents] of ids) out.push({ uid: { type, id }, attrs: EMPTY_ATTRS, parents });
    for (const ids of this.rich.values()) for (const entity of ids.values()) out.push(entity);
    return out;
  }
}
