/**
 * The generated calls every policy load checks the fast evaluator against cedar-wasm with
 * (policy-engine.ts verifyEvaluator, ADR 0023), beside the pack's own tests. Deterministic (a
 * fixed seed), built from the set itself: every tool, params of the schema's types with the
 * policies' own literals at and around their boundaries (decimals ±0.0001, Longs ±1, strings the
 * `like` patterns match and miss), invalid values (bad decimal strings, wrong types, undeclared
 * and missing attributes, Longs out of range), lookup ids in and out of the directory, the
 * policies' agent groups and others, the schema's data classes and jurisdictions, risk scores
 * across 0-100 and the datetimes the entities name.
 */
import type { JsonObject, JsonValue } from '../../../shared/canonical-json.js';
import type { LoadedPolicySet } from './policy-set.js';
import type { PolicyRequest } from './policy-engine.js';
import type { FastEvaluator, SType } from './fast-evaluator.js';
import { AGENT_GROUP_TYPE, NAMESPACE } from './policy-set.js';
import { prng } from '../../../shared/prng.js';

interface Pools {
  strings: string[];
  longs: number[];
  decimals: string[];
  datetimes: string[];
  groups: string[];
  /** Entity type -> ids that exist (a sample) and that do not. */
  ids: Map<string, string[]>;
}

function walk(value: JsonValue, visit: (node: JsonObject) => void): void {
  if (Array.isArray(value)) for (const item of value) walk(item, visit);
  else if (typeof value === 'object' && value !== null) {
    visit(value);
    for (const item of Object.values(value)) walk(item, visit);
  }
}

function formatDecimal(scaled: bigint): string {
  const negative = scaled < 0n;
  const abs = negative ? -scaled : scaled;
  return `${negative ? '-' : ''}${abs / 10000n}.${(abs % 10000n).toString().padStart(4, '0')}`;
}

function harvest(set: LoadedPolicySet, policyJson: readonly JsonValue[]): Pools {
  const strings = new Set<string>(['', 'USD', 'EUR', 'x', 'a*b', 'ünïcödé', '😀', '\\*', 'CHG-', 'production', 'secret']);
  const longs = new Set<number>([0, 1, -1, 100, 2 ** 53 - 1, -(2 ** 53) + 1]);
  const decimals = new Set<string>([
    '0.00',
    '0.0001',
    '-1.00',
    '1.0',
    '-0.5',
    '-0.0',
    '+1.00',
    '1.00001',
    '1',
    'abc',
    '1e3',
    ' 1.00',
    '922337203685477.5807',
    '922337203685477.5808',
    '-922337203685477.5808',
  ]);
  const datetimes = new Set<string>(['2025-06-02T10:00:00.000Z', '2030-01-01T00:00:00.000Z']);
  const groups = new Set<string>(['other-agents']);
  const ids = new Map<string, Set<string>>();
  const addId = (type: string, id: string): void => {
    let s = ids.get(type);
    if (s === undefined) ids.set(type, (s = new Set()));
    s.add(id);
  };
  for (const est of policyJson) {
    walk(est, (node) => {
      const v = node.Value;
      if (typeof v === 'string') strings.add(v);
      if (typeof v === 'number') for (const d of [-1, 0, 1]) longs.add(v + d);
      for (const fn of ['decimal'] as const) {
        const args = node[fn];
        if (
          Array.isArray(args) &&
          typeof args[0] === 'object' &&
          args[0] !== null &&
          !Array.isArray(args[0]) &&
          typeof args[0].Value === 'string'
        ) {
          const text = args[0].Value;
          decimals.add(text);
          const m = /^(-?)([0-9]+)\.([0-9]{1,4})$/.exec(text);
          if (m !== null) {
            const scaled = BigInt(`${m[1]}${m[2]}${m[3]!.padEnd(4, '0')}`);
            for (const d of [-10000n, -100n, -1n, 1n, 100n]) decimals.add(formatDecimal(scaled + d));
          }
        }
      }
      const pattern = (node.like as JsonObject | undefined)?.pattern;
      if (Array.isArray(pattern)) {
        const lit = (p: JsonValue): string =>
          typeof p === 'object' && p !== null && !Array.isArray(p) && typeof p.Literal === 'string' ? p.Literal : '';
        const filled = pattern.map((p) => (p === 'Wildcard' ? 'zz' : lit(p))).join('');
        const empty = pattern.map((p) => (p === 'Wildcard' ? '' : lit(p))).join('');
        strings.add(filled).add(empty).add(filled.slice(1)).add(`${filled}*`).add(filled.toUpperCase());
      }
      for (const uid of [node.__entity, node.entity, ...(Array.isArray(node.entities) ? node.entities : [])]) {
        if (typeof uid === 'object' && uid !== null && !Array.isArray(uid) && typeof uid.type === 'string' && typeof uid.id === 'string') {
          if (uid.type === AGENT_GROUP_TYPE) groups.add(uid.id);
          addId(uid.type, uid.id);
          const entity = set.lookupEntities.get(uid.type, uid.id);
          walk((entity?.attrs ?? {}) as JsonValue, (attrs) => {
            for (const a of Object.values(attrs)) {
              if (typeof a === 'string') {
                strings.add(a);
                if (/^\d{4}-\d{2}-\d{2}/.test(a)) {
                  const t = Date.parse(a);
                  if (!Number.isNaN(t)) for (const d of [-1, 0, 1, 86_400_000]) datetimes.add(new Date(t + d).toISOString());
                }
              }
            }
          });
          for (const code of Object.values(entity?.attrs ?? {}))
            if (Array.isArray(code)) for (const c of code) if (typeof c === 'string') strings.add(c);
        }
      }
    });
  }
  // A sample of the directory's ids per type (in the list, and so on), plus ids it does not hold.
  const perType = new Map<string, number>();
  for (const uid of set.lookupEntities.uids()) {
    const n = perType.get(uid.type) ?? 0;
    if (n >= 20) continue;
    perType.set(uid.type, n + 1);
    addId(uid.type, uid.id);
  }
  const schema = set.schemaJson as unknown as Record<string, { entityTypes?: Record<string, { enum?: string[] }> }>;
  for (const [ns, body] of Object.entries(schema)) {
    for (const [name, type] of Object.entries(body.entityTypes ?? {})) {
      const qualified = ns === '' ? name : `${ns}::${name}`;
      for (const id of type.enum ?? []) {
        addId(qualified, id);
        strings.add(id);
      }
      addId(qualified, 'Nobody Known Ltd');
    }
  }
  return {
    strings: [...strings],
    longs: [...longs],
    decimals: [...decimals],
    datetimes: [...datetimes],
    groups: [...groups],
    ids: new Map([...ids].map(([t, s]) => [t, [...s]])),
  };
}

/** `count` calls spread over every tool of the set, for the load-time check. */
export function generatedCheckRequests(set: LoadedPolicySet, fast: FastEvaluator, count: number, seed = 0x5eed_cedf): PolicyRequest[] {
  if (count <= 0) return [];
  const policyJson = fast.policyJson;
  const pools = harvest(set, policyJson);
  // Seeded (shared/prng.ts): the same calls on every load of the same set.
  const random = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const some = <T>(list: readonly T[], max: number): T[] => {
    const n = Math.floor(random() * (max + 1));
    return [...new Set(Array.from({ length: n }, () => pick(list)))];
  };
  const tools = [...set.toolEntities.keys()].sort();
  const enumOf = (name: string): string[] => pools.ids.get(`${NAMESPACE}::${name}`)?.filter((id) => id !== 'Nobody Known Ltd') ?? [];
  const dataClasses = [...enumOf('DataClass'), 'other-class'];
  const jurisdictions = [...enumOf('Jurisdiction'), 'ZZ'];

  const valueOf = (t: SType, depth: number): JsonValue => {
    const r = random();
    // Now and then a value of the wrong type: the fast evaluator must hand it to cedar-wasm.
    if (r < 0.03) return pick<JsonValue>([5, 'text', true, null, [], {}, 1.5, 2 ** 63]);
    switch (t.k) {
      case 'string':
        return pick(pools.strings);
      case 'long':
        return pick(pools.longs);
      case 'bool':
        return random() < 0.5;
      case 'decimal':
        return pick(pools.decimals);
      case 'datetime':
        return pick(pools.datetimes);
      case 'entity': {
        const ids = pools.ids.get(t.type) ?? ['Nobody Known Ltd'];
        return pick(ids);
      }
      case 'set':
        return depth > 4 ? [] : Array.from({ length: Math.floor(random() * 3) }, () => valueOf(t.element, depth + 1));
      case 'record': {
        const out: JsonObject = {};
        for (const [name, decl] of t.attrs) {
          // Optional attributes come and go; a required one is left out now and then.
          if (!decl.required && random() < 0.4) continue;
          if (decl.required && random() < 0.01) continue;
          out[name] = depth > 4 ? null : valueOf(decl.type, depth + 1);
        }
        if (random() < 0.01) out.undeclared = 'x';
        return out;
      }
    }
  };

  const out: PolicyRequest[] = [];
  for (let i = 0; i < count; i++) {
    const tool = tools[i % tools.length]!;
    const contextType = fast.contextType(tool);
    const paramsType = contextType?.k === 'record' ? contextType.attrs.get('params')?.type : undefined;
    const params = paramsType === undefined ? {} : valueOf(paramsType, 0);
    const group = pick(pools.groups);
    out.push({
      agent: {
        id: `check-agent-${i % 7}`,
        owner: 'owner@example.com',
        group,
        dataClasses: some(dataClasses, 3),
        jurisdictions: some(jurisdictions, 3),
      },
      tool,
      params: typeof params === 'object' && params !== null && !Array.isArray(params) ? params : { value: params },
      dataClass: pick(dataClasses),
      jurisdiction: pick(jurisdictions),
      provenance: some(['user-request', 'web', 'tool-output'], 2),
      risk: {
        score: pick([0, 10, 39, 40, 41, 59, 60, 61, 89, 90, 91, 100, Math.floor(random() * 101)]),
        factors: some(['loop', 'untrusted-input'], 2),
      },
      now: new Date(pick(pools.datetimes)),
    });
  }
  return out;
}
