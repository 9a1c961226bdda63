/**
 * Per-call entity slicing. Cedar converts every entity it is handed into its evaluator on every
 * call, so a decision that carried the whole directory cost more with every payee, service or
 * list entry. A call now gets only the entities its evaluation can reach:
 *
 * - the principal (its Agent entity) and its AgentGroup, built per call from enrollment;
 * - the resource: the called tool's Tool entity;
 * - every entity a policy names literally (`Countersign::PayeeList::"known"`), the same for every call;
 * - every entity a call parameter names: a parameter whose schema type is an entity type
 *   (`payee: Payee`) is a lookup, and the agent's string becomes a reference to that entity;
 * - and, for each of those, everything it reaches: its ancestors (parents, transitively) and
 *   the entities its attributes and tags refer to.
 *
 * That is every entity Cedar's evaluation can touch (it reaches entities only through the
 * request, the policies' literals, attribute and tag access, and `in`), so the slice decides
 * exactly as the whole set does; test/unit/entity-slice.test.ts holds the two equal on every
 * example test case and thousands of generated calls. The index is built once per policy load.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { JsonObject, JsonValue } from '../../../shared/canonical-json.js';
import type { LookupEntities } from './lookup-entities.js';

type StaticEntity = cedar.EntityJson;

/** The entities every call to a tool gets, and their keys. */
export interface BaseSlice {
  readonly entities: readonly StaticEntity[];
  readonly keys: ReadonlySet<string>;
}

/** How a parameter value becomes entity references, from the tool's params type in the schema. */
export type LookupNode =
  { kind: 'entity'; type: string } | { kind: 'set'; element: LookupNode } | { kind: 'record'; fields: ReadonlyMap<string, LookupNode> };

export interface EntitySliceIndex {
  /** The static entity whose key (`type` NUL `id`, uidKey) is given, if entities.json holds it. */
  readonly entity: (key: string) => StaticEntity | undefined;
  /** Per tool: its Tool entity plus every policy literal, each with what it reaches (deduplicated). */
  readonly baseSlice: ReadonlyMap<string, BaseSlice>;
  /**
   * Per tool evaluated with a policy subset (action-subsets.ts): its Tool entity plus the literals
   * of that subset's policies only, with what they reach. Cedar never looks at an entity only a
   * policy outside the subset names, and each entity handed over costs some 30 µs per call.
   */
  readonly subsetSlice: ReadonlyMap<string, BaseSlice>;
  /** Per tool: the lookup parameters (absent when the tool's params name no entity type). */
  readonly lookups: ReadonlyMap<string, LookupNode>;
  /** Entity types declared in the schema (fully qualified). */
  readonly entityTypes: ReadonlySet<string>;
}

export function uidKey(type: string, id: string): string {
  return `${type}\u0000${id}`;
}

/** The key of an entity uid in either JSON spelling (`{type,id}` or `{"__entity":{type,id}}`). */
function keyOf(uid: cedar.EntityUidJson): string {
  const plain = '__entity' in uid ? uid.__entity : uid;
  return uidKey(plain.type, plain.id);
}

/**
 * Builds the index for one loaded policy set: entities by uid, the literals each policy names,
 * and which parameters of each tool are lookups.
 */
export function buildEntitySliceIndex(input: {
  schemaJson: cedar.SchemaJson<string>;
  policyTexts: Readonly<Record<string, string>>;
  toolEntities: ReadonlyMap<string, StaticEntity>;
  lookupEntities: LookupEntities;
  /** Per tool, the ids of the policies of the subset its calls are evaluated with (absent: the whole set). */
  toolPolicies?: ReadonlyMap<string, readonly string[]>;
}): EntitySliceIndex {
  // The Tool entities by key; the lookup entities are found in their own compact store (no key
  // string or object per entity is kept here: ADR 0021).
  const tools = new Map<string, StaticEntity>();
  for (const entity of input.toolEntities.values()) tools.set(keyOf(entity.uid), entity);
  const lookupEntities = input.lookupEntities;
  const entity = (key: string): StaticEntity | undefined => {
    const tool = tools.get(key);
    if (tool !== undefined) return tool;
    // Entity type names never hold a NUL (Cedar identifiers), so the first one ends the type.
    const cut = key.indexOf('\u0000');
    return cut < 0 ? undefined : lookupEntities.get(key.slice(0, cut), key.slice(cut + 1));
  };
  const everyKey = function* (): IterableIterator<string> {
    yield* tools.keys();
    for (const uid of lookupEntities.uids()) yield uidKey(uid.type, uid.id);
  };
  const entityTypes = declaredEntityTypes(input.schemaJson);

  // The literals each policy names.
  const policyLiterals = new Map<string, ReadonlySet<string>>();
  for (const [id, text] of Object.entries(input.policyTexts)) {
    const literals = new Set<string>();
    const json = cedar.policyToJson(text);
    // Preparsing already accepted every policy; a failure here would be a Cedar change: then
    // fall back to naming every entity (never a smaller slice than the policies can reach).
    if (json.type === 'failure') for (const key of everyKey()) literals.add(key);
    else collectPolicyLiterals(json.json as unknown as JsonValue, literals);
    policyLiterals.set(id, literals);
  }
  /** The Tool entity and the given policies' literals, each with what it reaches. */
  const sliceOf = (tool: StaticEntity, policyIds: Iterable<string>): BaseSlice => {
    const slice = new Map<string, StaticEntity>();
    for (const id of policyIds) {
      // An id outside the set (never expected) names every entity: never a smaller slice.
      for (const key of policyLiterals.get(id) ?? everyKey()) reach(key, entity, entityTypes, slice);
    }
    reach(keyOf(tool.uid), entity, entityTypes, slice);
    return { entities: [...slice.values()], keys: new Set(slice.keys()) };
  };

  const baseSlice = new Map<string, BaseSlice>();
  const subsetSlice = new Map<string, BaseSlice>();
  for (const [tool, entity] of input.toolEntities) {
    baseSlice.set(tool, sliceOf(entity, policyLiterals.keys()));
    const subset = input.toolPolicies?.get(tool);
    if (subset !== undefined) subsetSlice.set(tool, sliceOf(entity, subset));
  }

  const lookups = new Map<string, LookupNode>();
  for (const tool of input.toolEntities.keys()) {
    const node = paramsLookupNode(input.schemaJson, tool);
    if (node !== undefined) lookups.set(tool, node);
  }
  return { entity, baseSlice, subsetSlice, lookups, entityTypes };
}

/**
 * The Cedar view of a call's params: lookup parameters turned into entity references (copied
 * where changed, never mutating the signed params), and the entities they name with what those
 * reach, beyond the tool's base slice.
 */
export function sliceForCall(
  index: EntitySliceIndex,
  tool: string,
  params: JsonObject,
  baseSlice: BaseSlice | undefined = index.baseSlice.get(tool),
): { params: JsonObject; extra: StaticEntity[] } {
  const node = index.lookups.get(tool);
  if (node === undefined) return { params, extra: [] };
  const named: string[] = [];
  const converted = convert(params, node, named) as JsonObject;
  if (named.length === 0) return { params: converted, extra: [] };
  const base = baseSlice?.keys;
  const out = new Map<string, StaticEntity>();
  for (const key of named) {
    if (base?.has(key) || out.has(key)) continue;
    reach(key, index.entity, index.entityTypes, out, base);
  }
  return { params: converted, extra: [...out.values()] };
}

/** Adds `key`'s entity and everything it reaches to `out` (skipping what `skip` holds). */
function reach(
  start: string,
  entityOf: (key: string) => StaticEntity | undefined,
  entityTypes: ReadonlySet<string>,
  out: Map<string, StaticEntity>,
  skip?: ReadonlySet<string>,
): void {
  const stack = [start];
  while (stack.length > 0) {
    const key = stack.pop()!;
    if (out.has(key) || skip?.has(key)) continue;
    const entity = entityOf(key);
    // An entity that does not exist is simply absent, as it is from the whole set.
    if (entity === undefined) continue;
    out.set(key, entity);
    for (const parent of entity.parents ?? []) stack.push(keyOf(parent));
    collectValueRefs(entity.attrs as JsonValue, entityTypes, stack);
    const tags = (entity as { tags?: JsonValue }).tags;
    if (tags !== undefined) collectValueRefs(tags, entityTypes, stack);
  }
}

/** Entity references inside attribute or tag values: `{"__entity":{type,id}}`, or `{type,id}` of a declared type. */
function collectValueRefs(value: JsonValue | undefined, entityTypes: ReadonlySet<string>, into: string[]): void {
  if (Array.isArray(value)) {
    for (const item of value) collectValueRefs(item, entityTypes, into);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const record: JsonObject = value;
  const ref = record.__entity;
  if (isUid(ref)) {
    into.push(uidKey(ref.type, ref.id));
    return;
  }
  if (isUid(record) && Object.keys(record).length === 2 && entityTypes.has(record.type)) {
    into.push(uidKey(record.type, record.id));
    return;
  }
  for (const item of Object.values(record)) collectValueRefs(item, entityTypes, into);
}

/** Every entity a policy names: `{"__entity":…}` values and the scope's `entity`/`entities`. */
function collectPolicyLiterals(value: JsonValue, into: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) collectPolicyLiterals(item, into);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  for (const key of Object.keys(value)) {
    const item = value[key];
    if ((key === '__entity' || key === 'entity') && isUid(item)) into.add(uidKey(item.type, item.id));
    else if (key === 'entities' && Array.isArray(item)) {
      for (const uid of item) if (isUid(uid)) into.add(uidKey(uid.type, uid.id));
    } else if (item !== undefined) collectPolicyLiterals(item, into);
  }
}

function isUid(value: unknown): value is { type: string; id: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { type?: unknown }).type === 'string' &&
    typeof (value as { id?: unknown }).id === 'string'
  );
}

/** Strings at lookup positions become entity references; everything else is left as it is. */
function convert(value: JsonValue, node: LookupNode, named: string[]): JsonValue {
  switch (node.kind) {
    case 'entity':
      if (typeof value !== 'string') return value; // Cedar's context check reports the bad type.
      named.push(uidKey(node.type, value));
      return { __entity: { type: node.type, id: value } };
    case 'set': {
      if (!Array.isArray(value)) return value;
      return value.map((item) => convert(item, node.element, named));
    }
    case 'record': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
      let copy: JsonObject | undefined;
      for (const [name, field] of node.fields) {
        if (!Object.hasOwn(value, name)) continue;
        const before = value[name]!;
        const after = convert(before, field, named);
        if (after !== before) {
          copy ??= { ...value };
          copy[name] = after;
        }
      }
      return copy ?? value;
    }
  }
}

// ---- schema reading ----------------------------------------------------------------------------

type SchemaType = { type?: string; name?: string; element?: SchemaType; attributes?: Record<string, SchemaType & { required?: boolean }> };
type NamespaceJson = {
  entityTypes?: Record<string, unknown>;
  commonTypes?: Record<string, SchemaType>;
  actions?: Record<string, { appliesTo?: { context?: SchemaType } }>;
};

const PRIMITIVES = new Set(['String', 'Long', 'Bool', 'Boolean', 'decimal', 'datetime', 'duration', 'ipaddr']);

function namespaces(schema: cedar.SchemaJson<string>): Record<string, NamespaceJson> {
  return schema;
}

function qualify(ns: string, local: string): string {
  return ns === '' ? local : `${ns}::${local}`;
}

function declaredEntityTypes(schema: cedar.SchemaJson<string>): Set<string> {
  const out = new Set<string>();
  for (const [ns, body] of Object.entries(namespaces(schema)))
    for (const name of Object.keys(body.entityTypes ?? {})) out.add(qualify(ns, name));
  return out;
}

/** The lookup plan for a tool's `context.params`, or undefined when it names no entity type. */
function paramsLookupNode(schema: cedar.SchemaJson<string>, tool: string): LookupNode | undefined {
  for (const [ns, body] of Object.entries(namespaces(schema))) {
    const context = body.actions?.[tool]?.appliesTo?.context;
    if (context === undefined) continue;
    const contextType = resolveType(schema, ns, context, 0);
    const params = contextType?.attributes?.params;
    return params === undefined ? undefined : lookupNode(schema, ns, params, 0);
  }
  return undefined;
}

/** Follows common-type names to a structural type (a bounded walk: the schema is validated). */
function resolveType(schema: cedar.SchemaJson<string>, ns: string, type: SchemaType, depth: number): SchemaType | undefined {
  if (depth > 32) return undefined;
  if ((type.type === 'EntityOrCommon' || type.type === undefined) && typeof type.name === 'string') {
    const found = findName(schema, ns, type.name);
    if (found?.kind === 'common') return resolveType(schema, found.ns, found.type, depth + 1);
  }
  return type;
}

function findName(
  schema: cedar.SchemaJson<string>,
  ns: string,
  name: string,
): { kind: 'entity'; qualified: string } | { kind: 'common'; ns: string; type: SchemaType } | undefined {
  if (PRIMITIVES.has(name)) return undefined;
  const all = namespaces(schema);
  const cut = name.lastIndexOf('::');
  const candidates = cut >= 0 ? [[name.slice(0, cut), name.slice(cut + 2)] as const] : [[ns, name] as const, ['', name] as const];
  for (const [space, local] of candidates) {
    const body = all[space];
    if (body === undefined) continue;
    const common = body.commonTypes?.[local];
    if (common !== undefined) return { kind: 'common', ns: space, type: common };
    if (body.entityTypes?.[local] !== undefined) return { kind: 'entity', qualified: qualify(space, local) };
  }
  return undefined;
}

function lookupNode(schema: cedar.SchemaJson<string>, ns: string, raw: SchemaType, depth: number): LookupNode | undefined {
  if (depth > 32) return undefined;
  if (raw.type === 'Entity' && typeof raw.name === 'string') {
    const found = findName(schema, ns, raw.name);
    return found?.kind === 'entity' ? { kind: 'entity', type: found.qualified } : undefined;
  }
  if (raw.type === 'EntityOrCommon' && typeof raw.name === 'string') {
    const found = findName(schema, ns, raw.name);
    if (found?.kind === 'entity') return { kind: 'entity', type: found.qualified };
    if (found?.kind === 'common') return lookupNode(schema, found.ns, found.type, depth + 1);
    return undefined;
  }
  if (raw.type === 'Set' && raw.element !== undefined) {
    const element = lookupNode(schema, ns, raw.element, depth + 1);
    return element === undefined ? undefined : { kind: 'set', element };
  }
  if (raw.type === 'Record' && raw.attributes !== undefined) {
    const fields = new Map<string, LookupNode>();
    for (const [name, attr] of Object.entries(raw.attributes)) {
      const node = lookupNode(schema, ns, attr, depth + 1);
      if (node !== undefined) fields.set(name, node);
    }
    return fields.size === 0 ? undefined : { kind: 'record', fields };
  }
  return undefined;
}
