/**
 * The second Cedar evaluator (ADR 0023, docs/policy.md "Two evaluators"): a policy set's JSON
 * form (Cedar's EST, from cedar-wasm's policyToJson) compiled into closures when the set loads,
 * evaluated in the event loop without converting the call into cedar-wasm.
 *
 * It is sound by refusal, never by approximation:
 * - compile() refuses any set with a construct outside its subset (the reason says which), and
 *   the whole load then stays on cedar-wasm;
 * - evaluate() answers only a call whose context it can read exactly as cedar-wasm reads it with
 *   the schema (every attribute declared, every value of its declared type, in Cedar's own
 *   spelling) and whose policies all evaluate without an error. Anything else (a missing
 *   attribute, a value it cannot parse, a Long outside the safe range, a lone surrogate, an
 *   operator on types it does not handle) makes it answer `undefined`: the engine hands that call
 *   to cedar-wasm, which produces the decision and its errors. It never makes an error of its own.
 *
 * The engine checks it against cedar-wasm on every load (the pack's tests and generated calls)
 * and by shadow evaluation of a sample of calls in production; any disagreement puts the set back
 * on cedar-wasm (policy-engine.ts).
 */
import type { JsonObject, JsonValue } from '../../../shared/canonical-json.js';
import type { LookupEntities } from './lookup-entities.js';

// ---- values ------------------------------------------------------------------------------------

export class EntityV {
  constructor(
    readonly type: string,
    readonly id: string,
  ) {}
}
export class SetV {
  constructor(readonly items: readonly Value[]) {}
}
export class RecordV {
  constructor(readonly attrs: ReadonlyMap<string, Value>) {}
}
/** A Cedar decimal: the value times 10^4, in i64 range. */
export class DecimalV {
  constructor(readonly scaled: bigint) {}
}
/** A Cedar datetime: milliseconds since the epoch. */
export class DatetimeV {
  constructor(readonly ms: number) {}
}
export type Value = boolean | number | string | EntityV | SetV | RecordV | DecimalV | DatetimeV;

/** Thrown inside evaluation when the call must go to cedar-wasm (an error, or anything unsure). */
class Unsure extends Error {}
const unsure = (why: string): never => {
  throw new Unsure(why);
};

/** Thrown by compile() for a construct outside the subset. */
export class Unsupported extends Error {}

/** No lone surrogate (Cedar strings are Unicode scalar values; wasm would see U+FFFD). */
const LONE_SURROGATE = /\p{Cs}/u;
export const wellFormed = (s: string): boolean => !LONE_SURROGATE.test(s);

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

export function valueEquals(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof EntityV) return b instanceof EntityV && a.type === b.type && a.id === b.id;
  if (a instanceof DecimalV) return b instanceof DecimalV && a.scaled === b.scaled;
  if (a instanceof DatetimeV) return b instanceof DatetimeV && a.ms === b.ms;
  if (a instanceof SetV) {
    if (!(b instanceof SetV)) return false;
    return a.items.every((x) => setHas(b, x)) && b.items.every((x) => setHas(a, x));
  }
  if (a instanceof RecordV) {
    if (!(b instanceof RecordV) || a.attrs.size !== b.attrs.size) return false;
    for (const [k, v] of a.attrs) {
      const w = b.attrs.get(k);
      if (w === undefined || !valueEquals(v, w)) return false;
    }
    return true;
  }
  return false;
}

function setHas(set: SetV, x: Value): boolean {
  for (const item of set.items) if (valueEquals(item, x)) return true;
  return false;
}

/**
 * Cedar's decimal(): an optional `-`, digits, a point, one to four digits, in i64 range once
 * scaled by 10^4 ("-0.5" is negative: cedar-wasm 4.13 reads it so, and the differential tests
 * hold the two equal). Anything else (a leading `+`, an exponent, spaces) is not parsed here
 * (undefined: cedar-wasm decides and reports).
 */
export function parseDecimal(text: string): DecimalV | undefined {
  const m = /^(-?)([0-9]+)\.([0-9]{1,4})$/.exec(text);
  if (m === null) return undefined;
  const whole = BigInt(m[2]!);
  const frac = BigInt(m[3]!.padEnd(4, '0'));
  const magnitude = whole * 10000n + frac;
  const scaled = m[1] === '-' ? -magnitude : magnitude;
  if (scaled < I64_MIN || scaled > I64_MAX) return undefined;
  return new DecimalV(scaled);
}

/**
 * Cedar's datetime(), for the spellings this evaluator reads: `YYYY-MM-DD`, `YYYY-MM-DDThh:mm:ssZ`
 * and `YYYY-MM-DDThh:mm:ss.SSSZ` (what Date#toISOString writes). Offsets and anything that is
 * not a real calendar time are left to cedar-wasm (undefined).
 */
export function parseDatetime(text: string): DatetimeV | undefined {
  const m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{3}))?Z)?$/.exec(text);
  if (m === null) return undefined;
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, ms = 0] = [
    m[1],
    m[2],
    m[3],
    m[4] ?? '00',
    m[5] ?? '00',
    m[6] ?? '00',
    m[7] ?? '000',
  ].map(Number);
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, ms);
  if (
    date.getUTCFullYear() !== y ||
    date.getUTCMonth() !== mo - 1 ||
    date.getUTCDate() !== d ||
    date.getUTCHours() !== h ||
    date.getUTCMinutes() !== mi ||
    date.getUTCSeconds() !== s
  )
    return undefined;
  return new DatetimeV(date.getTime());
}

/** Cedar's `like`: `*` matches any run of characters; literals match themselves (code-unit matching is exact on well-formed strings). */
export function likeMatches(text: string, segments: readonly string[]): boolean {
  // segments: literal runs split at each wildcard; length 1 means no wildcard.
  if (segments.length === 1) return text === segments[0];
  const first = segments[0]!;
  const last = segments[segments.length - 1]!;
  if (text.length < first.length + last.length || !text.startsWith(first) || !text.endsWith(last)) return false;
  let at = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < segments.length - 1; i++) {
    const seg = segments[i]!;
    if (seg.length === 0) continue;
    const found = text.indexOf(seg, at);
    if (found < 0 || found + seg.length > end) return false;
    at = found + seg.length;
  }
  return true;
}

// ---- schema types ------------------------------------------------------------------------------

export type SType =
  | { k: 'string' }
  | { k: 'long' }
  | { k: 'bool' }
  | { k: 'decimal' }
  | { k: 'datetime' }
  | { k: 'entity'; type: string; enumIds?: ReadonlySet<string> }
  | { k: 'set'; element: SType }
  | { k: 'record'; attrs: ReadonlyMap<string, { type: SType; required: boolean }> };

type RawType = { type?: string; name?: string; element?: RawType; attributes?: Record<string, RawType & { required?: boolean }> };
type RawEntityType = { memberOfTypes?: string[]; shape?: RawType; enum?: string[]; tags?: unknown };
type RawNamespace = {
  entityTypes?: Record<string, RawEntityType>;
  commonTypes?: Record<string, RawType>;
  actions?: Record<
    string,
    {
      memberOf?: { id: string; type?: string }[];
      appliesTo?: { principalTypes?: string[]; resourceTypes?: string[]; context?: RawType };
      attributes?: unknown;
    }
  >;
};

const PRIMITIVE: Record<string, SType> = {
  String: { k: 'string' },
  Long: { k: 'long' },
  Bool: { k: 'bool' },
  Boolean: { k: 'bool' },
  decimal: { k: 'decimal' },
  datetime: { k: 'datetime' },
};

class SchemaReader {
  constructor(readonly namespaces: Record<string, RawNamespace>) {}

  private find(
    ns: string,
    name: string,
  ): { kind: 'entity'; qualified: string; raw: RawEntityType } | { kind: 'common'; ns: string; raw: RawType } | undefined {
    const cut = name.lastIndexOf('::');
    const candidates: [string, string][] =
      cut >= 0
        ? [[name.slice(0, cut), name.slice(cut + 2)]]
        : [
            [ns, name],
            ['', name],
          ];
    for (const [space, local] of candidates) {
      const body = this.namespaces[space];
      if (body === undefined) continue;
      const common = body.commonTypes?.[local];
      if (common !== undefined) return { kind: 'common', ns: space, raw: common };
      const entity = body.entityTypes?.[local];
      if (entity !== undefined) return { kind: 'entity', qualified: space === '' ? local : `${space}::${local}`, raw: entity };
    }
    return undefined;
  }

  entityType(qualified: string): RawEntityType | undefined {
    const cut = qualified.lastIndexOf('::');
    const [ns, local] = cut >= 0 ? [qualified.slice(0, cut), qualified.slice(cut + 2)] : ['', qualified];
    return this.namespaces[ns]?.entityTypes?.[local];
  }

  resolve(ns: string, raw: RawType, depth = 0): SType {
    if (depth > 32) throw new Unsupported('a schema type nests too deeply');
    const name = typeof raw.name === 'string' ? raw.name.replace(/^__cedar::/, '') : undefined;
    switch (raw.type) {
      case 'String':
      case 'Long':
      case 'Bool':
      case 'Boolean':
        return PRIMITIVE[raw.type]!;
      case 'Extension':
        if (name !== undefined && (name === 'decimal' || name === 'datetime')) return PRIMITIVE[name]!;
        throw new Unsupported(`the schema uses the extension type ${String(name)}`);
      case 'Set':
        if (raw.element === undefined) throw new Unsupported('a schema Set has no element type');
        return { k: 'set', element: this.resolve(ns, raw.element, depth + 1) };
      case 'Record': {
        const attrs = new Map<string, { type: SType; required: boolean }>();
        for (const [key, attr] of Object.entries(raw.attributes ?? {})) {
          attrs.set(key, { type: this.resolve(ns, attr, depth + 1), required: attr.required !== false });
        }
        if ((raw as { additionalAttributes?: boolean }).additionalAttributes === true)
          throw new Unsupported('a schema record allows additional attributes');
        return { k: 'record', attrs };
      }
      case 'Entity':
      case 'EntityOrCommon':
      case undefined: {
        if (name === undefined) throw new Unsupported('a schema type has no name');
        const found = this.find(ns, name);
        if (found === undefined && raw.type !== 'Entity' && PRIMITIVE[name] !== undefined) return PRIMITIVE[name];
        if (found?.kind === 'common' && raw.type !== 'Entity') return this.resolve(found.ns, found.raw, depth + 1);
        if (found?.kind === 'entity') {
          return found.raw.enum === undefined
            ? { k: 'entity', type: found.qualified }
            : { k: 'entity', type: found.qualified, enumIds: new Set(found.raw.enum) };
        }
        throw new Unsupported(`the schema type ${name} is outside the fast evaluator's subset`);
      }
      default:
        throw new Unsupported(`the schema type ${String(raw.type)} is outside the fast evaluator's subset`);
    }
  }

  /** Every action: its namespace-qualified uid, context type and memberOf. */
  *actions(): Generator<{ ns: string; id: string; raw: NonNullable<RawNamespace['actions']>[string] }> {
    for (const [ns, body] of Object.entries(this.namespaces))
      for (const [id, raw] of Object.entries(body.actions ?? {})) yield { ns, id, raw };
  }
}

// ---- reading values as Cedar does with the schema -------------------------------------------------

/**
 * `raw` read as a value of schema type `t`, exactly as cedar-wasm's schema-based parsing reads it,
 * or Unsure when this evaluator cannot be certain (cedar-wasm then decides, and reports).
 * `lookups`: a string at an entity position is a lookup (entity-slice.ts turns it into a reference
 * in Cedar's view of the call); otherwise only `{"__entity":{type,id}}` or `{type,id}` (entities.json).
 */
function readValue(raw: unknown, t: SType, lookups: boolean): Value {
  switch (t.k) {
    case 'string':
      if (typeof raw !== 'string' || !wellFormed(raw)) return unsure('a string value');
      return raw;
    case 'long':
      if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || Object.is(raw, -0)) return unsure('a Long value');
      return raw;
    case 'bool':
      if (typeof raw !== 'boolean') return unsure('a Bool value');
      return raw;
    case 'decimal': {
      const text = typeof raw === 'string' ? raw : extensionArg(raw, 'decimal');
      const d = text === undefined ? undefined : parseDecimal(text);
      return d ?? unsure('a decimal value');
    }
    case 'datetime': {
      const text = typeof raw === 'string' ? raw : extensionArg(raw, 'datetime');
      const d = text === undefined ? undefined : parseDatetime(text);
      return d ?? unsure('a datetime value');
    }
    case 'entity': {
      let id: unknown;
      let type: unknown = t.type;
      if (typeof raw === 'string' && lookups) id = raw;
      else if (!lookups && typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
        const r = raw as Record<string, unknown>;
        const uid = (Object.keys(r).length === 1 && typeof r.__entity === 'object' && r.__entity !== null ? r.__entity : r) as Record<
          string,
          unknown
        >;
        if (Object.keys(uid).length !== 2) return unsure('an entity reference');
        id = uid.id;
        type = uid.type;
      }
      if (typeof id !== 'string' || type !== t.type || !wellFormed(id)) return unsure('an entity reference');
      if (t.enumIds !== undefined && !t.enumIds.has(id)) return unsure('an enumerated entity');
      return new EntityV(t.type, id);
    }
    case 'set': {
      if (!Array.isArray(raw)) return unsure('a set value');
      return new SetV(raw.map((item) => readValue(item, t.element, lookups)));
    }
    case 'record': {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return unsure('a record value');
      const attrs = new Map<string, Value>();
      const r = raw as Record<string, unknown>;
      for (const key of Object.keys(r)) {
        const decl = t.attrs.get(key);
        if (decl === undefined) return unsure('an undeclared attribute');
        const v = r[key];
        if (v === undefined) return unsure('an undefined attribute');
        attrs.set(key, readValue(v, decl.type, lookups));
      }
      for (const [key, decl] of t.attrs) if (decl.required && !attrs.has(key)) return unsure('a missing attribute');
      return new RecordV(attrs);
    }
  }
}

/** The call's context: lookups (strings at entity positions) are read only inside `params`, as entity-slice.ts converts them. */
function readContext(raw: JsonObject, t: SType): RecordV {
  if (t.k !== 'record') return unsure('a context that is not a record');
  const attrs = new Map<string, Value>();
  for (const key of Object.keys(raw)) {
    const decl = t.attrs.get(key);
    const v = raw[key];
    if (decl === undefined || v === undefined) return unsure('an undeclared context attribute');
    attrs.set(key, readValue(v, decl.type, key === 'params'));
  }
  for (const [key, decl] of t.attrs) if (decl.required && !attrs.has(key)) return unsure('a missing context attribute');
  return new RecordV(attrs);
}

function extensionArg(raw: unknown, fn: string): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const extn = (raw as { __extn?: { fn?: unknown; arg?: unknown } }).__extn;
  if (Object.keys(raw).length !== 1 || typeof extn !== 'object' || extn === null) return undefined;
  return extn.fn === fn && typeof extn.arg === 'string' && Object.keys(extn).length === 2 ? extn.arg : undefined;
}

// ---- entities ----------------------------------------------------------------------------------

interface EntityData {
  attrs: RecordV;
  /** Every ancestor's key (`type` NUL `id`), transitively. */
  ancestors: ReadonlySet<string>;
}

const keyOf = (type: string, id: string): string => `${type}\u0000${id}`;

// ---- compiled expressions ------------------------------------------------------------------------

interface Env {
  principal: EntityV;
  action: EntityV;
  resource: EntityV;
  context: RecordV;
  entity: (e: EntityV) => EntityData | undefined;
}
type Expr = (env: Env) => Value;

const asBool = (v: Value): boolean => (typeof v === 'boolean' ? v : unsure('a non-boolean operand'));
const asEntity = (v: Value): EntityV => (v instanceof EntityV ? v : unsure('a non-entity operand'));
const asSet = (v: Value): SetV => (v instanceof SetV ? v : unsure('a non-set operand'));
const asDecimal = (v: Value): DecimalV => (v instanceof DecimalV ? v : unsure('a non-decimal operand'));

function isIn(env: Env, e: EntityV, target: EntityV): boolean {
  if (e.type === target.type && e.id === target.id) return true;
  return env.entity(e)?.ancestors.has(keyOf(target.type, target.id)) ?? false;
}

/** `<`-family comparisons: Long with Long, datetime with datetime; anything else is left to cedar-wasm. */
function compare(a: Value, b: Value): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (a instanceof DatetimeV && b instanceof DatetimeV) return a.ms - b.ms;
  return unsure('a comparison of these types');
}

function literalValue(json: JsonValue): Value {
  if (typeof json === 'boolean' || typeof json === 'string') {
    if (typeof json === 'string' && !wellFormed(json)) throw new Unsupported('an ill-formed string literal');
    return json;
  }
  if (typeof json === 'number') {
    if (!Number.isSafeInteger(json)) throw new Unsupported('a Long literal outside the safe range');
    return json;
  }
  if (Array.isArray(json)) return new SetV(json.map(literalValue));
  if (json !== null && typeof json === 'object') {
    const ent = json.__entity;
    if (ent !== undefined) {
      if (typeof ent !== 'object' || ent === null || Array.isArray(ent) || typeof ent.type !== 'string' || typeof ent.id !== 'string')
        throw new Unsupported('a malformed entity literal');
      return new EntityV(ent.type, ent.id);
    }
    if (json.__extn !== undefined) throw new Unsupported('an extension literal');
    return new RecordV(new Map(Object.entries(json).map(([k, v]) => [k, literalValue(v)])));
  }
  throw new Unsupported('a null literal');
}

const BINARY = new Set(['==', '!=', '<', '<=', '>', '>=', '&&', '||', 'in', 'contains', 'containsAll', 'containsAny']);
const DECIMAL_METHODS: Record<string, (c: number) => boolean> = {
  lessThan: (c) => c < 0,
  lessThanOrEqual: (c) => c <= 0,
  greaterThan: (c) => c > 0,
  greaterThanOrEqual: (c) => c >= 0,
};

function compileExpr(node: JsonValue, facts: CompileFacts): Expr {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) throw new Unsupported('a malformed expression');
  const keys = Object.keys(node);
  if (keys.length !== 1) throw new Unsupported('a malformed expression');
  const op = keys[0]!;
  const body = node[op]!;
  if (op === 'Value') {
    const v = literalValue(body);
    return () => v;
  }
  if (op === 'Var') {
    switch (body) {
      case 'principal':
        return (env) => env.principal;
      case 'action':
        return (env) => env.action;
      case 'resource':
        return (env) => env.resource;
      case 'context':
        return (env) => env.context;
    }
    throw new Unsupported(`the variable ${JSON.stringify(body)}`);
  }
  if (op === '!') {
    const arg = compileExpr(field(body, 'arg'), facts);
    return (env) => !asBool(arg(env));
  }
  if (op === 'isEmpty') {
    const arg = compileExpr(field(body, 'arg'), facts);
    return (env) => asSet(arg(env)).items.length === 0;
  }
  if (BINARY.has(op)) {
    const left = compileExpr(field(body, 'left'), facts);
    const right = compileExpr(field(body, 'right'), facts);
    switch (op) {
      case '==':
        return (env) => valueEquals(left(env), right(env));
      case '!=':
        return (env) => !valueEquals(left(env), right(env));
      case '<':
        return (env) => compare(left(env), right(env)) < 0;
      case '<=':
        return (env) => compare(left(env), right(env)) <= 0;
      case '>':
        return (env) => compare(left(env), right(env)) > 0;
      case '>=':
        return (env) => compare(left(env), right(env)) >= 0;
      case '&&':
        return (env) => asBool(left(env)) && asBool(right(env));
      case '||':
        return (env) => asBool(left(env)) || asBool(right(env));
      case 'in':
        return (env) => {
          const e = asEntity(left(env));
          const r = right(env);
          if (r instanceof SetV) {
            // Cedar checks every element is an entity, whatever it finds first.
            const targets = r.items.map(asEntity);
            return targets.some((t) => isIn(env, e, t));
          }
          return isIn(env, e, asEntity(r));
        };
      case 'contains':
        return (env) => {
          const s = asSet(left(env));
          return setHas(s, right(env));
        };
      case 'containsAll':
        return (env) => {
          const s = asSet(left(env));
          const o = asSet(right(env));
          return o.items.every((x) => setHas(s, x));
        };
      case 'containsAny':
        return (env) => {
          const s = asSet(left(env));
          const o = asSet(right(env));
          return o.items.some((x) => setHas(s, x));
        };
    }
  }
  if (op === '.') {
    const left = compileExpr(field(body, 'left'), facts);
    const attr = stringField(body, 'attr');
    return (env) => {
      const v = left(env);
      let rec: RecordV;
      if (v instanceof RecordV) rec = v;
      else if (v instanceof EntityV) {
        const data = env.entity(v);
        if (data === undefined) return unsure('an attribute of an entity that does not exist');
        rec = data.attrs;
      } else return unsure('an attribute of a non-record');
      const got = rec.attrs.get(attr);
      return got === undefined ? unsure('a missing attribute') : got;
    };
  }
  if (op === 'has') {
    const left = compileExpr(field(body, 'left'), facts);
    const attr = stringField(body, 'attr');
    return (env) => {
      const v = left(env);
      if (v instanceof RecordV) return v.attrs.has(attr);
      if (v instanceof EntityV) return env.entity(v)?.attrs.attrs.has(attr) ?? false;
      return unsure('has on a non-record');
    };
  }
  if (op === 'is') {
    const left = compileExpr(field(body, 'left'), facts);
    const type = stringField(body, 'entity_type');
    const inner = (body as JsonObject).in;
    const inExpr = inner === undefined ? undefined : compileExpr(inner, facts);
    return (env) => {
      const e = asEntity(left(env));
      if (e.type !== type) return false;
      if (inExpr === undefined) return true;
      const r = inExpr(env);
      if (r instanceof SetV) return r.items.map(asEntity).some((t) => isIn(env, e, t));
      return isIn(env, e, asEntity(r));
    };
  }
  if (op === 'like') {
    const left = compileExpr(field(body, 'left'), facts);
    const pattern = field(body, 'pattern');
    if (!Array.isArray(pattern)) throw new Unsupported('a malformed like pattern');
    const segments: string[] = [''];
    for (const element of pattern) {
      if (element === 'Wildcard') segments.push('');
      else if (typeof element === 'object' && element !== null && !Array.isArray(element) && typeof element.Literal === 'string') {
        segments[segments.length - 1] += element.Literal;
      } else throw new Unsupported('a malformed like pattern');
    }
    if (!segments.every((s) => wellFormed(s))) throw new Unsupported('an ill-formed like pattern');
    return (env) => {
      const v = left(env);
      if (typeof v !== 'string') return unsure('like on a non-string');
      return likeMatches(v, segments);
    };
  }
  if (op === 'if-then-else') {
    const cond = compileExpr(field(body, 'if'), facts);
    const then = compileExpr(field(body, 'then'), facts);
    const otherwise = compileExpr(field(body, 'else'), facts);
    return (env) => (asBool(cond(env)) ? then(env) : otherwise(env));
  }
  if (op === 'Set') {
    if (!Array.isArray(body)) throw new Unsupported('a malformed set literal');
    const items = body.map((item) => compileExpr(item, facts));
    return (env) => new SetV(items.map((item) => item(env)));
  }
  if (op === 'Record') {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Unsupported('a malformed record literal');
    const fields = Object.entries(body).map(([k, v]) => [k, compileExpr(v, facts)] as const);
    return (env) => new RecordV(new Map(fields.map(([k, f]) => [k, f(env)])));
  }
  if (op === 'decimal') {
    const args = callArgs(body, 1);
    const arg = args[0]!;
    const literal = literalOf(arg);
    if (literal !== undefined) {
      const d = typeof literal === 'string' ? parseDecimal(literal) : undefined;
      if (d === undefined) throw new Unsupported('a decimal literal this evaluator does not parse');
      return () => d;
    }
    const f = compileExpr(arg, facts);
    return (env) => {
      const v = f(env);
      return (typeof v === 'string' ? parseDecimal(v) : undefined) ?? unsure('decimal() of this value');
    };
  }
  if (op in DECIMAL_METHODS) {
    const args = callArgs(body, 2);
    const a = compileExpr(args[0]!, facts);
    const b = compileExpr(args[1]!, facts);
    const test = DECIMAL_METHODS[op]!;
    return (env) => {
      const x = asDecimal(a(env)).scaled;
      const y = asDecimal(b(env)).scaled;
      return test(x < y ? -1 : x > y ? 1 : 0);
    };
  }
  throw new Unsupported(`the operator ${quoteOp(op)} is outside the fast evaluator's subset`);
}

function quoteOp(op: string): string {
  return JSON.stringify(op.slice(0, 40));
}

function field(body: JsonValue, name: string): JsonValue {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || body[name] === undefined)
    throw new Unsupported('a malformed expression');
  return body[name]!;
}

function stringField(body: JsonValue, name: string): string {
  const v = field(body, name);
  if (typeof v !== 'string') throw new Unsupported('a malformed expression');
  return v;
}

function callArgs(body: JsonValue, n: number): JsonValue[] {
  if (!Array.isArray(body) || body.length !== n) throw new Unsupported('an extension call with the wrong number of arguments');
  return body;
}

function literalOf(node: JsonValue): JsonValue | undefined {
  return typeof node === 'object' && node !== null && !Array.isArray(node) && Object.keys(node).length === 1 && 'Value' in node
    ? node.Value
    : undefined;
}

type CompileFacts = Record<string, never>;

// ---- scopes and policies ---------------------------------------------------------------------------

type Scope = (env: Env, e: EntityV) => boolean;

function compileScope(raw: JsonValue, which: 'principal' | 'action' | 'resource'): Scope {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Unsupported(`a malformed ${which} scope`);
  const uid = (v: JsonValue | undefined): EntityV => {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof v.type !== 'string' || typeof v.id !== 'string')
      throw new Unsupported(`a ${which} scope outside the subset (a template slot?)`);
    return new EntityV(v.type, v.id);
  };
  switch (raw.op) {
    case 'All':
      return () => true;
    case '==': {
      const target = uid(raw.entity);
      return (_env, e) => e.type === target.type && e.id === target.id;
    }
    case 'in': {
      if (Array.isArray(raw.entities)) {
        const targets = raw.entities.map(uid);
        return (env, e) => targets.some((t) => isIn(env, e, t));
      }
      const target = uid(raw.entity);
      return (env, e) => isIn(env, e, target);
    }
    case 'is': {
      if (typeof raw.entity_type !== 'string') throw new Unsupported(`a malformed ${which} scope`);
      const type = raw.entity_type;
      const inner = raw.in;
      if (inner === undefined) return (_env, e) => e.type === type;
      const target = uid((inner as JsonObject).entity);
      return (env, e) => e.type === type && isIn(env, e, target);
    }
  }
  throw new Unsupported(`a ${which} scope outside the subset`);
}

interface CompiledPolicy {
  id: string;
  effect: 'permit' | 'forbid';
  principal: Scope;
  action: Scope;
  resource: Scope;
  conditions: { when: boolean; body: Expr }[];
}

function compilePolicy(id: string, est: JsonValue): CompiledPolicy {
  if (typeof est !== 'object' || est === null || Array.isArray(est)) throw new Unsupported('a malformed policy');
  const effect = est.effect;
  if (effect !== 'permit' && effect !== 'forbid') throw new Unsupported('a malformed policy effect');
  const conditions = Array.isArray(est.conditions) ? est.conditions : [];
  const facts: CompileFacts = {};
  return {
    id,
    effect,
    principal: compileScope(est.principal!, 'principal'),
    action: compileScope(est.action!, 'action'),
    resource: compileScope(est.resource!, 'resource'),
    conditions: conditions.map((c) => {
      if (typeof c !== 'object' || c === null || Array.isArray(c) || (c.kind !== 'when' && c.kind !== 'unless'))
        throw new Unsupported('a malformed condition');
      return { when: c.kind === 'when', body: compileExpr(c.body!, facts) };
    }),
  };
}

// ---- the evaluator -------------------------------------------------------------------------------

export interface FastInput {
  schemaJson: unknown;
  /** id -> EST (cedar-wasm policyToJson) of every policy of the set. */
  policyJson: ReadonlyMap<string, JsonValue>;
  toolEntities: ReadonlyMap<string, { uid: unknown; attrs?: unknown; parents?: unknown }>;
  lookupEntities: LookupEntities;
  namespace: string;
}

/** What the engine hands the evaluator per call (the same fields it builds Cedar's call from). */
export interface FastCall {
  agent: { id: string; owner: string; group: string; dataClasses: readonly string[]; jurisdictions: readonly string[] };
  tool: string;
  /** The raw context, exactly as the engine builds it for Cedar, before lookup conversion. */
  context: JsonObject;
}

export interface FastAnswer {
  decision: 'allow' | 'deny';
  /** Sorted, distinct. */
  determiningPolicies: string[];
}

interface ToolPlan {
  contextType: SType;
  action: EntityV;
  actionAncestors: ReadonlySet<string>;
  resource: EntityV;
  policies: CompiledPolicy[];
}

export class FastEvaluator {
  /** The ESTs it was compiled from (the load check harvests their literals). */
  readonly policyJson: readonly JsonValue[];
  private readonly tools = new Map<string, ToolPlan>();
  /** Every action of the schema -> its ancestors (an action literal in a condition can name any of them). */
  private readonly actions = new Map<string, EntityData>();
  private readonly entityTypes: SchemaReader;
  private readonly lookups: LookupEntities;
  private readonly staticTools = new Map<string, EntityData>();
  /** Each Tool entity's parents as entities.json gives them (an ancestor walk goes through Tools too). */
  private readonly toolParents = new Map<string, unknown>();
  private readonly rich = new Map<string, EntityData | null>();
  private readonly agentType: string;
  private readonly groupType: string;
  private readonly agentShape: SType;

  /** Compiles a set; throws Unsupported (with the reason) for anything outside the subset. */
  constructor(input: FastInput) {
    this.policyJson = [...input.policyJson.values()];
    const reader = new SchemaReader(input.schemaJson as Record<string, RawNamespace>);
    this.entityTypes = reader;
    this.lookups = input.lookupEntities;
    const ns = input.namespace;
    this.agentType = `${ns}::Agent`;
    this.groupType = `${ns}::AgentGroup`;
    const actionType = `${ns}::Action`;
    const toolType = `${ns}::Tool`;

    // The per-call principal (Agent, child of its AgentGroup) must be exactly what the engine builds.
    const agent = reader.entityType(this.agentType);
    const group = reader.entityType(this.groupType);
    if (agent === undefined || group === undefined) throw new Unsupported('the schema lacks Agent or AgentGroup');
    if (agent.enum !== undefined || group.enum !== undefined || agent.tags !== undefined || group.tags !== undefined)
      throw new Unsupported('Agent or AgentGroup is enumerated or tagged');
    if (!(agent.memberOfTypes ?? []).some((t) => t === 'AgentGroup' || t === this.groupType))
      throw new Unsupported('Agent is not declared in AgentGroup');
    this.agentShape = reader.resolve(ns, agent.shape ?? { type: 'Record', attributes: {} });
    const groupShape = reader.resolve(ns, group.shape ?? { type: 'Record', attributes: {} });
    if (groupShape.k !== 'record' || [...groupShape.attrs.values()].some((a) => a.required))
      throw new Unsupported('AgentGroup has required attributes');

    // Action ancestors from the schema's memberOf.
    const actionParents = new Map<string, string[]>();
    const contexts = new Map<string, RawType | undefined>();
    for (const { ns: space, id, raw } of reader.actions()) {
      if (space !== ns) throw new Unsupported('actions outside the Countersign namespace');
      if (raw.attributes !== undefined) throw new Unsupported('action attributes');
      actionParents.set(
        id,
        (raw.memberOf ?? []).map((m) => {
          if (m.type !== undefined && m.type !== actionType && m.type !== 'Action')
            throw new Unsupported('an action group of another type');
          return m.id;
        }),
      );
      const applies = raw.appliesTo;
      const okTypes = (list: string[] | undefined, want: string) =>
        list !== undefined && list.length === 1 && (list[0] === want || `${ns}::${list[0]}` === want);
      if (!okTypes(applies?.principalTypes, this.agentType) || !okTypes(applies?.resourceTypes, toolType)) {
        contexts.set(id, undefined); // Cedar refuses such calls: this tool always goes to cedar-wasm.
      } else contexts.set(id, applies?.context);
    }
    const ancestorsOf = (id: string): Set<string> => {
      const out = new Set<string>();
      const stack = [...(actionParents.get(id) ?? [])];
      while (stack.length > 0) {
        const p = stack.pop()!;
        const key = keyOf(actionType, p);
        if (out.has(key)) continue;
        out.add(key);
        stack.push(...(actionParents.get(p) ?? []));
      }
      return out;
    };

    const policies: CompiledPolicy[] = [];
    for (const [id, est] of input.policyJson) {
      try {
        policies.push(compilePolicy(id, est));
      } catch (error) {
        if (error instanceof Unsupported) throw new Unsupported(`policy ${JSON.stringify(id)}: ${error.message}`);
        throw error;
      }
    }

    for (const id of actionParents.keys()) this.actions.set(id, { attrs: EMPTY_RECORD, ancestors: ancestorsOf(id) });

    for (const [name, entity] of input.toolEntities) this.toolParents.set(keyOf(toolType, name), entity.parents);
    for (const [name, entity] of input.toolEntities) {
      this.staticTools.set(keyOf(toolType, name), this.readStatic(toolType, entity) ?? this.unsupportedEntity(toolType, name));
      const raw = contexts.get(name);
      if (raw === undefined) continue;
      const contextType = reader.resolve(ns, raw);
      if (contextType.k !== 'record') throw new Unsupported(`the context of ${name} is not a record`);
      const action = new EntityV(actionType, name);
      const actionAncestors = ancestorsOf(name);
      // Only the policies whose action scope admits this action (action scopes never error).
      const env = {
        entity: (e: EntityV) =>
          e.type === actionType && e.id === name ? { attrs: new RecordV(new Map()), ancestors: actionAncestors } : undefined,
      } as Env;
      this.tools.set(name, {
        contextType,
        action,
        actionAncestors,
        resource: new EntityV(toolType, name),
        policies: policies.filter((p) => p.action(env, action)),
      });
    }
  }

  private unsupportedEntity(type: string, id: string): never {
    throw new Unsupported(`the entity ${type}::${JSON.stringify(id)} is outside the fast evaluator's subset`);
  }

  /** An entities.json entity read with its schema type (undefined: not readable here). */
  private readStatic(type: string, entity: { attrs?: unknown; parents?: unknown; tags?: unknown }): EntityData | undefined {
    const declared = this.entityTypes.entityType(type);
    if (declared === undefined || entity.tags !== undefined) return undefined;
    try {
      const ns = type.slice(0, type.lastIndexOf('::'));
      const shape = this.entityTypes.resolve(ns, declared.shape ?? { type: 'Record', attributes: {} });
      const attrs = readValue(entity.attrs ?? {}, shape, false);
      if (!(attrs instanceof RecordV)) return undefined;
      return { attrs, ancestors: this.ancestorsOf(entity.parents) };
    } catch (error) {
      if (error instanceof Unsure || error instanceof Unsupported) return undefined;
      throw error;
    }
  }

  private ancestorsOf(parents: unknown): Set<string> {
    const out = new Set<string>();
    const stack: unknown[] = Array.isArray(parents) ? [...(parents as unknown[])] : [];
    let guard = 0;
    while (stack.length > 0) {
      if (++guard > 100_000) throw new Unsure('an entity hierarchy too deep');
      const p = stack.pop() as { type?: unknown; id?: unknown; __entity?: { type?: unknown; id?: unknown } };
      const uid = p?.__entity ?? p;
      if (typeof uid?.type !== 'string' || typeof uid.id !== 'string') throw new Unsure('a malformed parent');
      // An agent's parents are its group, which only the call knows: such a hierarchy goes to cedar-wasm.
      if (uid.type === this.agentType) throw new Unsure('an entity whose parent is an agent');
      const key = keyOf(uid.type, uid.id);
      if (out.has(key)) continue;
      out.add(key);
      // Cedar's hierarchy runs through every entity: a lookup entity's parent may be a Tool with
      // parents of its own (review9 F1), and a walk that stopped there would read `in` as false.
      const entity = this.lookups.get(uid.type, uid.id);
      const parents = entity !== undefined ? entity.parents : this.toolParents.get(key);
      if (parents !== undefined && !Array.isArray(parents)) throw new Unsure('malformed parents');
      if (parents !== undefined) stack.push(...(parents as unknown[]));
    }
    return out;
  }

  private staticEntity(e: EntityV): EntityData | undefined {
    const key = keyOf(e.type, e.id);
    const tool = this.staticTools.get(key);
    if (tool !== undefined) return tool;
    const entity = this.lookups.get(e.type, e.id);
    if (entity === undefined) return undefined;
    const attrs = entity.attrs as Record<string, unknown> | undefined;
    if ((attrs === undefined || Object.keys(attrs).length === 0) && (entity as { tags?: unknown }).tags === undefined) {
      // A plain entity (most of a directory): nothing to read but its ancestors, not cached.
      return { attrs: EMPTY_RECORD, ancestors: this.ancestorsOf(entity.parents) };
    }
    let data = this.rich.get(key);
    if (data === undefined) {
      data = this.readStatic(e.type, entity) ?? null;
      this.rich.set(key, data);
    }
    return data ?? unsure('an entity this evaluator does not read');
  }

  /** The context type of `tool`'s calls as the schema declares it (the load check's generator reads it). */
  contextType(tool: string): SType | undefined {
    return this.tools.get(tool)?.contextType;
  }

  /** Whether calls to `tool` can be answered here at all. */
  handles(tool: string): boolean {
    return this.tools.has(tool);
  }

  /**
   * The decision for one call, or undefined when cedar-wasm must decide it (an evaluation error,
   * a value it cannot read exactly as Cedar does, or anything it is unsure of).
   */
  evaluate(call: FastCall): FastAnswer | undefined {
    const plan = this.tools.get(call.tool);
    if (plan === undefined) return undefined;
    try {
      const { agent } = call;
      const principal = new EntityV(this.agentType, agent.id);
      const groupKey = keyOf(this.groupType, agent.group);
      // An entities.json entity with the principal's or its group's uid would be a duplicate for Cedar.
      if (this.lookups.get(this.agentType, agent.id) !== undefined || this.lookups.get(this.groupType, agent.group) !== undefined)
        return undefined;
      const agentAttrs = readValue(
        { owner: agent.owner, group: agent.group, dataClasses: agent.dataClasses, jurisdictions: agent.jurisdictions },
        this.agentShape,
        false,
      ) as RecordV;
      if (!wellFormed(agent.group) || !wellFormed(agent.id)) return undefined;
      const principalData: EntityData = { attrs: agentAttrs, ancestors: new Set([groupKey]) };
      const groupData: EntityData = { attrs: EMPTY_RECORD, ancestors: EMPTY_SET };
      const context = readContext(call.context, plan.contextType);
      const actionData: EntityData = { attrs: EMPTY_RECORD, ancestors: plan.actionAncestors };
      const env: Env = {
        principal,
        action: plan.action,
        resource: plan.resource,
        context,
        entity: (e) => {
          if (e.type === this.agentType && e.id === agent.id) return principalData;
          if (e.type === this.groupType && e.id === agent.group) return groupData;
          if (e.type === plan.action.type) return e.id === plan.action.id ? actionData : this.actions.get(e.id);
          return this.staticEntity(e);
        },
      };
      const permits: string[] = [];
      const forbids: string[] = [];
      // Every policy is evaluated (Cedar does: an error in any of them must reach cedar-wasm).
      for (const policy of plan.policies) {
        if (!policy.principal(env, principal) || !policy.resource(env, plan.resource)) continue;
        let satisfied = true;
        for (const c of policy.conditions) {
          const v = asBool(c.body(env));
          if (v !== c.when) {
            satisfied = false;
            break;
          }
        }
        if (satisfied) (policy.effect === 'forbid' ? forbids : permits).push(policy.id);
      }
      if (forbids.length > 0) return { decision: 'deny', determiningPolicies: [...new Set(forbids)].sort() };
      if (permits.length > 0) return { decision: 'allow', determiningPolicies: [...new Set(permits)].sort() };
      return { decision: 'deny', determiningPolicies: [] };
    } catch (error) {
      if (error instanceof Unsure) return undefined;
      // Anything unexpected is also cedar-wasm's to decide, never a decision made here.
      return undefined;
    }
  }
}

const EMPTY_RECORD = new RecordV(new Map());
const EMPTY_SET: ReadonlySet<string> = new Set();
