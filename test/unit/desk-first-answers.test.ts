/**
 * The desk's hand-written checks of its first answers (shared/desk-first-answers.ts: the session,
 * the queue's page, the approvers, the HTTP error body) accept exactly what their zod schemas
 * accept: on answers built from the vectors (test/vectors: request headlines' calls, quorum
 * requirements and approvals, flagged text as names and reasons) and on a few thousand generated
 * mutations of them (wrong types, missing and extra members, undefined members as IPC carries
 * them, boundary lengths and numbers, patterns, enum values, long lists, own "__proto__" members
 * as JSON.parse makes them), and what the desk is handed is what zod yields. The schemas stay the
 * source of truth: a schema change this check does not follow fails here. Also: the first
 * answers travel the routes of their rows in the bridge table, and a refused answer is
 * schema_invalid as parseBridgeResult says it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { approverListResponseSchema, httpErrorBodySchema, pendingApprovalsResponseSchema } from '../../shared/bridge.js';
import { BRIDGE_METHODS } from '../../shared/bridge-table.js';
import { deskSessionResponseSchema } from '../../shared/desk-session.js';
import {
  checkFirstAnswer,
  FIRST_ANSWER_METHODS,
  FIRST_ANSWER_ROUTES,
  firstAnswerProblem,
  httpErrorOf,
  type FirstAnswerMethod,
} from '../../shared/desk-first-answers.js';
import { ERROR_CODES, isCountersignError } from '../../shared/errors.js';
import { RISK_FACTOR_NAMES } from '../../shared/risk.js';
import { MAX_GROUP_FOLLOWERS } from '../../shared/approvals.js';
import { prng } from '../../shared/prng.js';
import type { JsonObject } from '../../shared/canonical-json.js';

const load = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), 'utf8')) as T;
const headlines = load<{ vectors: Array<{ tool: string; params: JsonObject }> }>('request-headlines.json');
const flags = load<{ vectors: Array<{ text: string }> }>('text-flags.json');
const quorum = load<{
  quorum: Array<{ requirement: { approvals: number; groups: string[][] }; approvals: Array<{ approverId: string; groups: string[] }> }>;
}>('quorum.json');

const SCHEMAS = {
  getSession: deskSessionResponseSchema,
  listQueue: pendingApprovalsResponseSchema,
  listApprovers: approverListResponseSchema,
  httpErrorBody: httpErrorBodySchema,
} as const satisfies Record<string, z.ZodType>;
type Kind = keyof typeof SCHEMAS;

const texts = flags.vectors.map((v) => v.text);
const CALL_SHA = 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sBbDwCgg';

// ---- valid answers built from the vectors ----

function seeds(): Array<[Kind, unknown]> {
  const out: Array<[Kind, unknown]> = [];
  out.push(['getSession', { session: null }]);
  texts.forEach((name, i) =>
    out.push([
      'getSession',
      {
        session: {
          approverId: i % 2 === 0 ? 'alice' : name.slice(0, 128),
          displayName: name.slice(0, 200),
          admin: i % 3 === 0,
          credentialId: 'naigcCZevqPnC1_Ekn4ntsBd6Pp8eWssk-6NFHVm1uk',
          signedInAt: 1_764_900_000_000 + i,
          expiresAt: 1_764_910_000_000,
          idleExpiresAt: 1_764_901_000_000,
        },
      },
    ]),
  );
  const approvers = quorum.quorum.flatMap((q, i) =>
    q.approvals.map((a, j) => ({
      id: a.approverId.length > 0 ? a.approverId : 'x',
      displayName: texts[(i + j) % texts.length]!,
      groups: a.groups,
      virtual: j % 2 === 1,
      status: (i + j) % 4 === 0 ? 'disabled' : 'active',
      createdAt: 1_764_000_000_000 + i,
    })),
  );
  out.push(['listApprovers', { approvers: [] }], ['listApprovers', { approvers }]);
  const requests = headlines.vectors.map((h, i) => {
    const q = quorum.quorum[i % quorum.quorum.length]!;
    const request: Record<string, unknown> = {
      requestId: `req-${i}`,
      agentId: 'finance-bot',
      tool: h.tool,
      params: h.params,
      dataClass: 'financial',
      jurisdiction: 'EU',
      provenance: i % 2 === 0 ? ['user'] : ['email:external', 'web'],
      callSha256: CALL_SHA,
      policyHash: 'sha256:5f1c',
      determiningPolicies: ['policy0', texts[i % texts.length]!],
      reasons: [texts[(i + 1) % texts.length]!],
      obligation: { ...q.requirement, ttlSeconds: i % 2 === 0 ? 600 : 0.5, userVerification: i % 2 === 0 ? 'required' : 'preferred' },
      risk: {
        score: (i * 17) % 101,
        factors: [
          {
            name: RISK_FACTOR_NAMES[i % RISK_FACTOR_NAMES.length],
            points: i % 101,
            weight: 40,
            observed: { ratio: 4.1, payee: texts[i % texts.length]!, newPayee: true },
            explanation: texts[(i + 2) % texts.length]!,
          },
        ],
      },
      state: 'pending',
      createdAt: 1_764_900_000_000,
      expiresAt: 1_764_900_600_000,
      approvals: q.approvals.map((a, j) => ({
        approverId: a.approverId.length > 0 ? a.approverId : 'x',
        displayName: texts[j % texts.length]!,
        verdict: j % 3 === 2 ? 'deny' : 'approve',
        at: 1_764_900_100_000 + j,
        ...(j % 2 === 1 ? { reason: texts[j % texts.length]! } : {}),
      })),
    };
    // The optional members, each present in some requests.
    if (i % 2 === 1) request.agentDisplayName = 'Finance bot';
    if (i % 3 === 1) request.agentOwner = 'carol';
    if (i % 4 === 1) request.decidedAt = 1_764_900_200_000;
    if (i % 3 === 2) {
      request.count = 3;
      request.followers = ['req-f1', 'req-f2'];
    }
    if (i % 5 === 2) request.excludedApprovers = [{ approverId: 'carol', reason: 'owner' }];
    if (i % 7 === 3) request.ownerUnresolved = true;
    return request;
  });
  out.push(
    ['listQueue', { pending: [] }],
    ['listQueue', { pending: requests, total: 1000 }],
    ['listQueue', { pending: requests.slice(0, 3) }],
  );
  for (const code of ['approver_conflicted', 'not_signed_in', 'internal_error'])
    out.push(['httpErrorBody', { error: { code, message: 'the request is refused' } }]);
  return out;
}

// ---- mutations ----

const LENGTHS = [
  0, 1, 42, 43, 44, 63, 64, 65, 127, 128, 129, 199, 200, 201, 255, 256, 257, 499, 500, 501, 1023, 1024, 1025, 1399, 1400, 1401, 2048, 2049,
];
const CHARS = ['a', 'Z', '0', '_', '-', '.', ' ', '+', '/', '=', 'é', '\u202e', '😀', '\u0000'];
const NUMBERS = [-1, 0, 1, 0.5, -0, 20, 21, 31, 32, 33, 63, 64, 65, 99, 100, 101, 2 ** 53 - 1, 2 ** 53, 1e21, NaN, Infinity, -Infinity];
const WORDS = [
  '.',
  '..',
  'approve',
  'deny',
  'active',
  'disabled',
  'allowed',
  'denied',
  'pending',
  'approved',
  'expired',
  'owner',
  'requester',
  'policy',
  'required',
  'preferred',
  'made_up',
  'ok',
  ...RISK_FACTOR_NAMES,
  ...Object.keys(ERROR_CODES).slice(0, 12),
];
const ODD = (): unknown[] => [null, undefined, true, false, 0, 'x', '', [], {}, [1], { a: 1 }];
const EXTRA_KEYS = ['extra', 'reason', 'count', 'total', 'session', 'id', 'score', 'constructor', 'toString'];
const LIST_LENGTHS = [16, 17, 20, 21, MAX_GROUP_FOLLOWERS, MAX_GROUP_FOLLOWERS + 1, 64, 65, 1024, 1025];

type Rand = () => number;
const pick = <T>(rand: Rand, list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;

/** Every [container, key] inside `value` (the root as [holder, 'v']). */
function places(root: { v: unknown }): Array<[Record<string | number, unknown>, string | number]> {
  const out: Array<[Record<string | number, unknown>, string | number]> = [[root, 'v']];
  const walk = (value: unknown) => {
    if (Array.isArray(value)) {
      // Long lists: a few places, not every one.
      const n = value.length;
      for (const i of n > 8 ? [0, 1, n - 1] : value.keys()) {
        out.push([value as unknown as Record<number, unknown>, i]);
        walk(value[i]);
      }
    } else if (typeof value === 'object' && value !== null) {
      for (const key of Object.keys(value)) {
        out.push([value as Record<string, unknown>, key]);
        walk((value as Record<string, unknown>)[key]);
      }
    }
  };
  walk(root.v);
  return out;
}

/**
 * Gives `object` an own member named "__proto__" (JSON text `value`), as JSON.parse of an answer
 * with such a member makes it. Assigning it (`object.__proto__ = …`, Object.assign) would call the
 * prototype setter instead and add no member at all.
 */
function addOwnProtoMember(object: object, value: string): void {
  const parsed = JSON.parse(`{"__proto__":${value}}`) as object;
  Object.defineProperty(object, '__proto__', Object.getOwnPropertyDescriptor(parsed, '__proto__')!);
}

/** Where an object has an own "__proto__" member (toEqual does not see one). */
function ownProtoPaths(v: unknown, path = '', out: string[] = []): string[] {
  if (typeof v !== 'object' || v === null) return out;
  if (!Array.isArray(v) && Object.hasOwn(v, '__proto__')) out.push(path);
  for (const k of Object.keys(v)) ownProtoPaths((v as Record<string, unknown>)[k], `${path}.${k}`, out);
  return out;
}

function mutate(rand: Rand, root: { v: unknown }): void {
  const [holder, key] = pick(rand, places(root));
  const current = holder[key];
  const roll = rand();
  if (typeof current === 'string' && roll < 0.5) {
    if (rand() < 0.5) holder[key] = pick(rand, CHARS).repeat(pick(rand, LENGTHS));
    else if (rand() < 0.5) holder[key] = pick(rand, WORDS);
    else holder[key] = `${current}${pick(rand, CHARS)}`;
  } else if (typeof current === 'number' && roll < 0.5) {
    holder[key] = pick(rand, NUMBERS);
  } else if (Array.isArray(current) && roll < 0.5) {
    const r = rand();
    if (r < 0.3) holder[key] = [];
    else if (r < 0.7 && current.length > 0) {
      const n = pick(rand, LIST_LENGTHS);
      holder[key] = Array.from({ length: n }, (_, i) => structuredClone((current as unknown[])[i % current.length]));
    } else (current as unknown[]).push(pick(rand, [...ODD(), ...WORDS]));
  } else if (typeof current === 'object' && current !== null && !Array.isArray(current) && roll < 0.6) {
    const object = current as Record<string, unknown>;
    const keys = Object.keys(object);
    const r = rand();
    if (r < 0.35 && keys.length > 0) delete object[pick(rand, keys)];
    else if (r < 0.55 && keys.length > 0) object[pick(rand, keys)] = undefined;
    else if (r < 0.65) addOwnProtoMember(object, pick(rand, ['1', '"x"', '{}', '{"a":[1]}']));
    else object[pick(rand, EXTRA_KEYS)] = pick(rand, ODD());
  } else {
    holder[key] = pick(rand, [...ODD(), ...NUMBERS.slice(0, 6), pick(rand, WORDS)]);
  }
}

function agree(kind: Kind, value: unknown, label: string): boolean {
  const parsed = SCHEMAS[kind].safeParse(value);
  const problem = firstAnswerProblem(kind, value);
  expect(problem === undefined, `${label}: ${problem ?? 'accepted by hand'}; zod ${parsed.success ? 'accepts' : 'refuses'}`).toBe(
    parsed.success,
  );
  // What the desk is handed is what zod would have yielded, own key by own key.
  if (parsed.success) {
    const handed = kind === 'httpErrorBody' ? value : checkFirstAnswer(kind, value);
    expect(handed, `${label}: handed on`).toEqual(parsed.data);
    expect(ownProtoPaths(handed), `${label}: own "__proto__" members handed on`).toEqual(ownProtoPaths(parsed.data));
  }
  return parsed.success;
}

describe("the desk's first answers, checked by hand", () => {
  it('accept every answer built from the vectors, as their schemas do', () => {
    for (const [i, [kind, value]] of seeds().entries()) expect(agree(kind, value, `seed ${i}`)).toBe(true);
  });

  it('agree with their schemas on a few thousand mutated answers, valid and not', () => {
    const rand = prng(0x5eed13);
    const base = seeds();
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 4000; i++) {
      const [kind, seed] = pick(rand, base);
      const root = { v: structuredClone(seed) };
      const times = 1 + Math.floor(rand() * 3);
      for (let m = 0; m < times; m++) mutate(rand, root);
      if (agree(kind, root.v, `mutation ${i} (${kind})`)) accepted++;
      else refused++;
    }
    // Both sides were exercised: many mutations stay valid (a length within bounds, an optional member dropped).
    expect(accepted).toBeGreaterThan(300);
    expect(refused).toBeGreaterThan(2000);
  });

  // Its own timeout: every single change at every place, each checked by hand and by zod, takes 4.5 s on a
  // quiet 2-core machine and 11-12 s at load 15-25, too near vitest's 20 s default for a busier one.
  it('agree on every single change at every place of one answer of each kind (each boundary, type and member)', () => {
    const [, page] = seeds().find(([kind, v]) => kind === 'listQueue' && (v as { pending: unknown[] }).pending.length > 3)!;
    const pending = (page as { pending: Array<Record<string, unknown>> }).pending;
    // One request with every optional member present, the page's total too.
    const full = { ...pending[1]!, ...pending[2]!, ...pending[3]!, ...pending[5]! };
    const bases: Array<[Kind, unknown]> = [
      ['listQueue', { pending: [full], total: 3 }],
      ...seeds().filter(([kind, v]) => kind !== 'listQueue' && JSON.stringify(v).length < 2000 && JSON.stringify(v) !== '{"session":null}'),
    ];
    let count = 0;
    for (const [kind, base] of bases.slice(0, 8)) {
      const at = places({ v: base }).length;
      for (let p = 0; p < at; p++) {
        const changes: Array<(value: unknown, holder: Record<string | number, unknown>, key: string | number) => void> = [
          ...ODD().map((odd) => (_v: unknown, h: Record<string | number, unknown>, k: string | number) => void (h[k] = odd)),
          ...NUMBERS.map(
            (n) => (v: unknown, h: Record<string | number, unknown>, k: string | number) => void (typeof v === 'number' && (h[k] = n)),
          ),
          ...WORDS.map(
            (w) => (v: unknown, h: Record<string | number, unknown>, k: string | number) => void (typeof v === 'string' && (h[k] = w)),
          ),
          ...LENGTHS.flatMap((n) =>
            ['a', '_', '.', '😀'].map(
              (c) => (v: unknown, h: Record<string | number, unknown>, k: string | number) =>
                void (typeof v === 'string' && (h[k] = c.repeat(n))),
            ),
          ),
          (_v, h, k) => void (Array.isArray(h) ? h.splice(Number(k), 1) : delete h[k]),
          (v) => void (typeof v === 'object' && v !== null && !Array.isArray(v) && ((v as Record<string, unknown>).extra = 1)),
          ...['1', '"x"', '{"a":[1]}'].map(
            (member) => (v: unknown) => void (typeof v === 'object' && v !== null && !Array.isArray(v) && addOwnProtoMember(v, member)),
          ),
          (v) => void (Array.isArray(v) && v.length > 0 && v.push(...new Array<unknown>(MAX_GROUP_FOLLOWERS + 1).fill(v[0]))),
        ];
        for (const change of changes) {
          const root = { v: structuredClone(base) };
          const [holder, key] = places(root)[p]!;
          change(holder[key], holder, key);
          agree(kind, root.v, `place ${p} of ${kind}`);
          count++;
        }
      }
    }
    expect(count).toBeGreaterThan(5000);
  }, 120_000);

  it('agree at the lists’ ends: 10,000 requests or approvers, and one more', () => {
    const [, page] = seeds().find(([kind, v]) => kind === 'listQueue' && (v as { pending: unknown[] }).pending.length > 3)!;
    const one = (page as { pending: unknown[] }).pending[0];
    for (const n of [10_000, 10_001]) agree('listQueue', { pending: new Array(n).fill(one) }, `${n} requests`);
    const person = { id: 'a', displayName: 'A', groups: [], virtual: false, status: 'active', createdAt: 0 };
    for (const n of [10_000, 10_001]) agree('listApprovers', { approvers: new Array(n).fill(person) }, `${n} approvers`);
  });

  it('refuse what is not an answer at all, as their schemas do', () => {
    for (const kind of Object.keys(SCHEMAS) as Kind[])
      for (const [i, value] of [...ODD(), 'text', 42, new Date(0), new Map(), Object.create(null) as object].entries())
        agree(kind, value, `${kind} odd value ${i}`);
  });

  it('an answer that fails its check is schema_invalid, naming where', () => {
    let caught: unknown;
    try {
      checkFirstAnswer('listQueue', { pending: [{ requestId: 'r1' }], total: 1 });
    } catch (error) {
      caught = error;
    }
    expect(isCountersignError(caught, 'schema_invalid')).toBe(true);
    expect((caught as Error).message).toContain('"pending.0.agentId"');
    expect(checkFirstAnswer('getSession', { session: null })).toEqual({ session: null });
  });

  it("reads the server's error body only when its code is a known one", () => {
    expect(httpErrorOf({ error: { code: 'approver_conflicted', message: 'no' } })).toEqual({ code: 'approver_conflicted', message: 'no' });
    expect(httpErrorOf({ error: { code: 'made_up', message: 'no' } })).toBeUndefined();
    expect(httpErrorOf({ error: { code: 'approver_conflicted', message: 'no', more: 1 } })).toBeUndefined();
  });

  it('travel the routes of their rows in the bridge table', () => {
    for (const method of FIRST_ANSWER_METHODS as FirstAnswerMethod[]) {
      const row = BRIDGE_METHODS[method];
      expect(FIRST_ANSWER_ROUTES[method].http).toEqual(row.http);
      expect(FIRST_ANSWER_ROUTES[method].args).toEqual(row.args.map((a) => ({ name: a.name, in: a.in })));
    }
  });
});
