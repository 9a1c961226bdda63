/**
 * The seam the risk scorer plugs into. Until the risk issue lands, calls are scored by
 * `UnscoredRisk`, which says so in its factors; a scorer that throws or returns nonsense is
 * treated as maximum risk, never zero.
 */
import type { ToolCall } from '../../../shared/protocol.js';

export interface RiskAssessment {
  score: number;
  factors: string[];
}

export interface RiskScorer {
  score(input: { agentId: string; call: ToolCall; now: number }): RiskAssessment;
}

export const UnscoredRisk: RiskScorer = {
  score: () => ({ score: 0, factors: ['unscored'] }),
};

export const MAX_RISK: RiskAssessment = { score: 100, factors: ['scorer_fault'] };

export function safeScore(scorer: RiskScorer, input: Parameters<RiskScorer['score']>[0]): RiskAssessment {
  try {
    const result = scorer.score(input);
    if (!Number.isInteger(result.score) || result.score < 0 || result.score > 100 || !Array.isArray(result.factors)) return MAX_RISK;
    return result;
  } catch {
    return MAX_RISK;
  }
}
