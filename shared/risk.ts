/**
 * The risk assessment recorded with every decision and shown to approvers: a score from 0 to
 * 100 and the factors that produced it. Policies see the score and the factor names
 * (`context.risk.score`, `context.risk.factors`); people see the sentences. docs/risk.md
 * explains every factor.
 */
import { z } from 'zod';

import { RISK_FACTOR_NAMES } from './risk-rules.js';

// The factor names and the hand-written check of an assessment live in risk-rules.ts (no zod: the
// desk's first paint checks the queue's risk with it); re-exported here for everyone else.
export { RISK_FACTOR_NAMES, riskAssessmentProblem } from './risk-rules.js';
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
