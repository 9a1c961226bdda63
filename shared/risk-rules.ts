/**
 * The risk assessment's closed list of factor names and its hand-written check, without zod:
 * shared/risk.ts builds the schema (`riskAssessmentSchema`, the source of truth) from these names
 * and re-exports both; the core checks every scorer's answer with `riskAssessmentProblem` (cheaper
 * than the schema), and so does the desk's first paint (shared/desk-first-answers.ts), whose
 * script must not load zod. test/unit/risk-scorer.test.ts and test/unit/desk-first-answers.test.ts
 * hold the check equal to the schema.
 */
import { lengthWithin } from './string-length.js';

/** Every factor the scorer can name (closed: policies match on these strings). */
export const RISK_FACTOR_NAMES = [
  'amount_vs_baseline',
  'new_destination',
  'call_rate',
  'repeated_call',
  'call_depth',
  'unusual_sequence',
  'untrusted_provenance',
  'off_hours',
  'data_scope',
  'agent_version',
  'split_transaction',
  'new_effect',
  'new_recipient',
  'memo_exfiltration',
  'tainted_access_change',
  'bulk_action',
  'data_flow',
  'baseline_learning',
  'scorer_fault',
  'unscored',
] as const;

const FACTOR_NAMES = new Set<string>(RISK_FACTOR_NAMES);
const isPoints = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 100;

/**
 * The same rules as `riskAssessmentSchema`, checked by hand: this runs on every decision, and
 * the schema parser costs tens of microseconds where this costs one. Returns why it is not one.
 */
export function riskAssessmentProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const { score, factors, ...rest } = value as Record<string, unknown>;
  if (Object.keys(rest).length > 0) return `unknown member ${JSON.stringify(Object.keys(rest)[0])}`;
  if (!isPoints(score)) return 'score: not a whole number from 0 to 100';
  if (!Array.isArray(factors) || factors.length > RISK_FACTOR_NAMES.length) return 'factors: not a list of factors';
  for (const [i, f] of (factors as unknown[]).entries()) {
    if (typeof f !== 'object' || f === null) return `factors.${i}: not an object`;
    const { name, points, weight, observed, explanation, ...more } = f as Record<string, unknown>;
    if (Object.keys(more).length > 0) return `factors.${i}: unknown member`;
    if (typeof name !== 'string' || !FACTOR_NAMES.has(name)) return `factors.${i}.name: not a factor name`;
    if (!isPoints(points) || !isPoints(weight)) return `factors.${i}: points and weight must be whole numbers from 0 to 100`;
    if (typeof explanation !== 'string' || !lengthWithin(explanation, 0, 1024))
      return `factors.${i}.explanation: not a sentence of at most 1024 characters`;
    if (!isPlainRecord(observed)) return `factors.${i}.observed: not an object`;
    // As zod reads a record: own enumerable keys, `__proto__` skipped, a symbol key refused.
    for (const k of Reflect.ownKeys(observed)) {
      if (k === '__proto__' || !Object.prototype.propertyIsEnumerable.call(observed, k)) continue;
      if (typeof k !== 'string' || !lengthWithin(k, 0, 64)) return `factors.${i}.observed: a key is too long`;
      const v = (observed as Record<string, unknown>)[k];
      if (!(typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && lengthWithin(v, 0, 256))))
        return `factors.${i}.observed.${k}: not a short string, finite number or boolean`;
    }
  }
  return undefined;
}

/** zod's plain-object test for a record (its util.isPlainObject), so both accept the same values. */
function isPlainRecord(o: unknown): o is object {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return false;
  const ctor = (o as { constructor?: unknown }).constructor;
  if (ctor === undefined || typeof ctor !== 'function') return true;
  const prot: unknown = (ctor as { prototype?: unknown }).prototype;
  if (typeof prot !== 'object' || prot === null || Array.isArray(prot)) return false;
  return Object.prototype.hasOwnProperty.call(prot, 'isPrototypeOf');
}
