/**
 * The risk assessment recorded with every decision and shown to approvers: a score from 0 to
 * 100 and the factors that produced it. Policies see the score and the factor names
 * (`context.risk.score`, `context.risk.factors`); people see the sentences. docs/risk.md
 * explains every factor.
 */
import { z } from 'zod';

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
export type RiskFactorName = (typeof RISK_FACTOR_NAMES)[number];

export interface RiskFactor {
  name: RiskFactorName;
  /** Points this factor adds to the score: round(weight × strength). */
  points: number;
  /** The configured weight (points at full strength). */
  weight: number;
  /** What was observed, as data (e.g. `{ "ratio": 4.1, "median": 1200 }`). */
  observed: Record<string, string | number | boolean>;
  /** One sentence an approver understands. */
  explanation: string;
}

export interface RiskAssessment {
  score: number;
  factors: RiskFactor[];
}

const text = (max: number) => z.string().max(max);

export const riskFactorSchema = z.strictObject({
  name: z.enum(RISK_FACTOR_NAMES),
  points: z.int().min(0).max(100),
  weight: z.int().min(0).max(100),
  observed: z.record(text(64), z.union([text(256), z.number(), z.boolean()])),
  explanation: text(1024),
});

export const riskAssessmentSchema = z.strictObject({
  score: z.int().min(0).max(100),
  factors: z.array(riskFactorSchema).max(RISK_FACTOR_NAMES.length),
});

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
    if (typeof explanation !== 'string' || explanation.length > 1024)
      return `factors.${i}.explanation: not a sentence of at most 1024 characters`;
    if (typeof observed !== 'object' || observed === null || Array.isArray(observed)) return `factors.${i}.observed: not an object`;
    for (const [k, v] of Object.entries(observed)) {
      if (k.length > 64) return `factors.${i}.observed: a key is too long`;
      if (!(typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length <= 256)))
        return `factors.${i}.observed.${k}: not a short string, finite number or boolean`;
    }
  }
  return undefined;
}

/** What Cedar sees: the score and the names of the factors that added points. */
export function riskContext(assessment: RiskAssessment): { score: number; factors: string[] } {
  return {
    score: assessment.score,
    factors: assessment.factors.filter((f) => f.points > 0 || f.name === 'scorer_fault' || f.name === 'unscored').map((f) => f.name),
  };
}

/**
 * Read a stored assessment. Rows written before the scorer existed hold factor names only
 * (`["unscored"]`); they read as zero-point factors. Anything unreadable reads as a fault
 * (maximum risk), never as no risk.
 */
export function parseStoredRisk(json: string): RiskAssessment {
  try {
    // eslint-disable-next-line no-restricted-syntax -- a stored row this code wrote with JSON.stringify (shared/ cannot reach core's parseStoredJson); the schema below checks it
    const value = JSON.parse(json) as unknown;
    const parsed = riskAssessmentSchema.safeParse(value);
    if (parsed.success) return parsed.data;
    const legacy = z.strictObject({ score: z.int().min(0).max(100), factors: z.array(z.string()) }).safeParse(value);
    if (legacy.success) {
      return {
        score: legacy.data.score,
        factors: legacy.data.factors.map((name) => ({
          name: (RISK_FACTOR_NAMES as readonly string[]).includes(name) ? (name as RiskFactorName) : 'unscored',
          points: 0,
          weight: 0,
          observed: {},
          explanation: `recorded before factors were explained: ${name}`,
        })),
      };
    }
  } catch {
    // fall through
  }
  return faultAssessment('the stored risk assessment could not be read');
}

/** A scorer fault counts as maximum risk, never as zero. */
export function faultAssessment(why: string): RiskAssessment {
  return {
    score: 100,
    factors: [
      {
        name: 'scorer_fault',
        points: 100,
        weight: 100,
        observed: { fault: why.slice(0, 256) },
        explanation: `the risk scorer failed (${why.slice(0, 200)}), so the call is treated as maximum risk`,
      },
    ],
  };
}
