/**
 * The desk's first answers checked by hand, without zod: who is signed in (getSession), the
 * queue's page (listQueue) and the approvers (listApprovers), plus the HTTP API's error body.
 * The desk's first paint shows these, and building the bridge's zod schemas was most of a fresh
 * desk's script time (bench desk-paint), so the first paint checks them here and zod loads after
 * it, for every other method (renderer/src/deferred-bridge.ts).
 *
 * The zod schemas stay the source of truth (deskSessionResponseSchema, pendingApprovalsResponseSchema,
 * approverListResponseSchema, httpErrorBodySchema): each check here accepts exactly what its
 * schema accepts, read the way zod reads it (a member's presence is `key in value`, a strict
 * object's unknown members are those `for…in` yields, integers are safe integers, lengths are
 * code points). test/unit/desk-first-answers.test.ts holds each equal to its schema on the
 * vectors and a few thousand generated and mutated answers; change a schema and that test says
 * what to change here. Only types are imported from the schema modules.
 */
import type { ApprovalRequest, ApproverSummary } from './bridge.js';
import type { DeskSessionView } from './desk-session.js';
import { CountersignError, isErrorCode, type ErrorCode } from './errors.js';
import { MAX_GROUP_FOLLOWERS } from './group-limits.js';
import { riskAssessmentProblem } from './risk-rules.js';
import { lengthWithin } from './string-length.js';
import type { BridgeRoute } from './bridge-http-transport.js';

/** Why a value is not one (`path: reason`), or undefined when it is. */
type Check = (value: unknown, path: string) => string | undefined;

const at = (path: string, key: string | number) => (path === '' ? String(key) : `${path}.${key}`);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** z.string() with .max(max), .min(min), .length(n) and .regex(re) as given. */
function str(max: number, options: { min?: number; pattern?: RegExp; refine?: (s: string) => boolean } = {}): Check {
  const min = options.min ?? 0;
  return (v, path) => {
    if (typeof v !== 'string') return `${path}: not a string`;
    if (!lengthWithin(v, min, max)) return `${path}: length out of range`;
    if (options.pattern !== undefined && !options.pattern.test(v)) return `${path}: does not match its pattern`;
    if (options.refine !== undefined && !options.refine(v)) return `${path}: refused`;
    return undefined;
  };
}

/** z.int().min(min).max(max): a safe integer in range. */
const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (v, path) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max ? undefined : `${path}: not a whole number in range`;

/** z.number().nonnegative(): finite and at least 0. */
const nonNegative: Check = (v, path) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? undefined : `${path}: not a number ≥ 0`);
const bool: Check = (v, path) => (typeof v === 'boolean' ? undefined : `${path}: not a boolean`);
const literalTrue: Check = (v, path) => (v === true ? undefined : `${path}: not true`);

function oneOf(values: readonly string[]): Check {
  const set = new Set(values);
  return (v, path) => (typeof v === 'string' && set.has(v) ? undefined : `${path}: not one of ${values.join(', ')}`);
}

const nullable =
  (inner: Check): Check =>
  (v, path) =>
    v === null ? undefined : inner(v, path);

function list(item: Check, max: number, min = 0): Check {
  return (v, path) => {
    if (!Array.isArray(v)) return `${path}: not a list`;
    if (v.length > max || v.length < min) return `${path}: length out of range`;
    for (let i = 0; i < v.length; i++) {
      const problem = item(v[i], at(path, i));
      if (problem !== undefined) return problem;
    }
    return undefined;
  };
}

/** A member of a strict object: required, or optional (absent or undefined). */
interface Member {
  readonly check: Check;
  readonly optional: boolean;
}
const req = (check: Check): Member => ({ check, optional: false });
const opt = (check: Check): Member => ({ check, optional: true });

/** z.strictObject(shape): every member as its check says, no other (enumerable, inherited too) key. */
function strict(shape: Record<string, Member>): Check {
  const keys = Object.keys(shape);
  return (v, path) => {
    if (!isObject(v)) return `${path}: not an object`;
    for (const key of keys) {
      const member = shape[key]!;
      const value = v[key];
      if (member.optional && value === undefined) continue; // absent, or present and undefined (over IPC)
      const problem = member.check(value, at(path, key));
      if (problem !== undefined) return problem;
    }
    for (const key in v) if (!Object.hasOwn(shape, key)) return `${at(path, key)}: unknown member`;
    return undefined;
  };
}

const text = (max: number) => str(max);
const label = (max: number) => str(max, { min: 1 });
const epochMs = int(0);
const B64URL = /^[A-Za-z0-9_-]+$/;

// ---- the session (shared/desk-session.ts deskSessionResponseSchema) ----

const deskSession = strict({
  approverId: req(str(128, { min: 1, refine: (id) => id !== '.' && id !== '..' })),
  displayName: req(str(200, { min: 1 })),
  admin: req(bool),
  credentialId: req(str(1400, { min: 1, pattern: B64URL })),
  signedInAt: req(epochMs),
  expiresAt: req(epochMs),
  idleExpiresAt: req(epochMs),
});
const sessionAnswer = strict({ session: req(nullable(deskSession)) });

// ---- the approvers (shared/bridge.ts approverListResponseSchema) ----

const approverSummary = strict({
  id: req(label(128)),
  displayName: req(text(200)),
  groups: req(list(label(128), 64)),
  virtual: req(bool),
  status: req(oneOf(['active', 'disabled'])),
  createdAt: req(epochMs),
});
const approverListAnswer = strict({ approvers: req(list(approverSummary, 10_000)) });

// ---- the queue's page (shared/bridge.ts pendingApprovalsResponseSchema) ----

const verdict = oneOf(['approve', 'deny']);
const requestState = oneOf(['allowed', 'denied', 'pending', 'approved', 'expired']);
const risk: Check = (v, path) => {
  const problem = riskAssessmentProblem(v);
  return problem === undefined ? undefined : `${path}: ${problem}`;
};
const approvalRequest = strict({
  requestId: req(label(128)),
  agentId: req(label(128)),
  agentDisplayName: opt(text(256)),
  agentOwner: opt(text(256)),
  tool: req(label(128)),
  // Any JSON object, passed through as parsed (jsonObjectSchema).
  params: req((v, path) => (isObject(v) ? undefined : `${path}: not an object`)),
  dataClass: req(label(128)),
  jurisdiction: req(label(128)),
  provenance: req(list(label(128), 16)),
  callSha256: req(str(43, { min: 43, pattern: B64URL })),
  policyHash: req(label(256)),
  determiningPolicies: req(list(text(256), 1024)),
  reasons: req(list(text(4096), 64)),
  obligation: req(
    strict({
      approvals: req(int(0, 64)),
      groups: req(list(list(label(128), 64, 1), 64)),
      ttlSeconds: req(nonNegative),
      userVerification: req(oneOf(['required', 'preferred'])),
    }),
  ),
  risk: req(risk),
  state: req(requestState),
  createdAt: req(epochMs),
  expiresAt: req(epochMs),
  decidedAt: opt(epochMs),
  approvals: req(
    list(
      strict({
        approverId: req(label(128)),
        displayName: req(text(200)),
        verdict: req(verdict),
        at: req(epochMs),
        reason: opt(text(500)),
      }),
      1024,
    ),
  ),
  count: opt(int(1, MAX_GROUP_FOLLOWERS + 1)),
  followers: opt(list(label(128), MAX_GROUP_FOLLOWERS)),
  excludedApprovers: opt(list(strict({ approverId: req(label(128)), reason: req(oneOf(['owner', 'requester', 'policy'])) }), 1024)),
  ownerUnresolved: opt(literalTrue),
});
const queuePageAnswer = strict({ pending: req(list(approvalRequest, 10_000)), total: opt(int(0)) });

// ---- the HTTP API's error body (shared/bridge.ts httpErrorBodySchema) ----

const httpErrorBody = strict({
  error: req(strict({ code: req(str(64, { refine: (code) => isErrorCode(code) })), message: req(text(2048)) })),
});

/** What each check accepts, by name (the equality test runs every one against its schema). */
export const FIRST_ANSWER_CHECKS = {
  getSession: sessionAnswer,
  listQueue: queuePageAnswer,
  listApprovers: approverListAnswer,
  httpErrorBody,
} as const satisfies Record<string, Check>;

/** The bridge methods the first paint calls, each with the answer it yields once checked. */
export interface FirstAnswers {
  getSession: { session: DeskSessionView | null };
  listQueue: { pending: ApprovalRequest[]; total?: number | undefined };
  listApprovers: { approvers: ApproverSummary[] };
}
export type FirstAnswerMethod = keyof FirstAnswers;
export const FIRST_ANSWER_METHODS: readonly FirstAnswerMethod[] = ['getSession', 'listQueue', 'listApprovers'];

/**
 * Where each first-answer method travels over HTTP: the same as its row in the bridge table
 * (shared/bridge-table.ts; test/unit/desk-first-answers.test.ts holds them equal).
 */
export const FIRST_ANSWER_ROUTES = {
  getSession: { args: [], http: { verb: 'GET', path: '/api/session' } },
  listQueue: {
    args: [
      { name: 'limit', in: 'query' },
      { name: 'offset', in: 'query' },
    ],
    http: { verb: 'GET', path: '/api/ui/queue' },
  },
  listApprovers: { args: [], http: { verb: 'GET', path: '/api/approvers' } },
} as const satisfies Record<FirstAnswerMethod, BridgeRoute>;

/** Why `value` is not an answer of `kind`, or undefined when it is one. */
export function firstAnswerProblem(kind: keyof typeof FIRST_ANSWER_CHECKS, value: unknown): string | undefined {
  return FIRST_ANSWER_CHECKS[kind](value, '');
}

/**
 * The answer of `method` once checked, or schema_invalid, as parseBridgeResult refuses an answer
 * that does not match. What is handed on is the value itself (a fresh JSON parse or IPC copy,
 * ours to change) with the one member zod's output would not have taken out: an own
 * `"__proto__"` member of a risk factor's `observed` record, which zod's record skips (and
 * riskAssessmentProblem skips with it) and leaves out of what it yields. A strict object's own
 * `"__proto__"` is refused by both, and `params` (any JSON object) is passed through by both.
 */
export function checkFirstAnswer<M extends FirstAnswerMethod>(method: M, value: unknown): FirstAnswers[M] {
  const problem = firstAnswerProblem(method, value);
  if (problem !== undefined) {
    const path = problem.slice(0, problem.indexOf(':'));
    throw new CountersignError('schema_invalid', `the bridge response does not match its schema at ${JSON.stringify(path)}`);
  }
  if (method === 'listQueue')
    for (const request of (value as FirstAnswers['listQueue']).pending)
      for (const factor of request.risk.factors)
        if (Object.hasOwn(factor.observed, '__proto__')) Reflect.deleteProperty(factor.observed, '__proto__');
  return value as FirstAnswers[M];
}

/** The HTTP API's error body when it is one of ours (a known code), else undefined. */
export function httpErrorOf(value: unknown): { code: ErrorCode; message: string } | undefined {
  if (httpErrorBody(value, '') !== undefined) return undefined;
  return (value as { error: { code: ErrorCode; message: string } }).error;
}
