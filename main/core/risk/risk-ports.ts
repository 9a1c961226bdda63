/**
 * The seams between the decision path and the risk scorer (main/core/risk/). A scorer that
 * throws or returns nonsense (NaN, out of range, malformed factors) is treated as maximum risk,
 * never zero, and the fault is recorded as the `scorer_fault` factor.
 */
import type { SessionRead, ToolCall } from '../../../shared/protocol.js';
import { faultAssessment, riskAssessmentProblem, type RiskAssessment } from '../../../shared/risk.js';
import type { SubmissionState } from './agent-profile.js';

export interface RiskInput {
  agent: {
    id: string;
    dataClasses: readonly string[];
    jurisdictions: readonly string[];
    model?: string | undefined;
    agentVersion?: string | undefined;
  };
  call: ToolCall;
  callSha256: string;
  now: number;
}

export interface RiskScorer {
  score(input: RiskInput): RiskAssessment;
}

/**
 * Keeps baselines in step with what happened. Each method runs inside the transaction that
 * records the event; if that transaction fails, the caller calls `forget(agentId)`.
 */
export interface RiskLearner {
  /** A request row was written with this state (an `allowed` call is executed: learn from it). */
  submitted(agentId: string, requestId: string, call: ToolCall, callSha256: string, at: number, state: SubmissionState): void;
  /** A held request reached a final state (`approved` is executed: learn from it). */
  settled(
    agentId: string,
    request: { id: string; call: ToolCall; callSha256: string; createdAt: number },
    state: SubmissionState,
    now: number,
  ): void;
  /**
   * The host reported what an agent session read (session.report): keep the value digests for
   * the data-flow factor. Returns how many values were found. Optional: a learner without it
   * ignores reports.
   */
  reported?(agentId: string, sessionId: string, reads: readonly SessionRead[], at: number): number;
  /** Drop what memory holds for the agent (its transaction rolled back). */
  forget(agentId: string): void;
}

/** Scores nothing and learns nothing: `risk.enabled: false` (and benchmarks' no-scoring arm). */
export const UnscoredRisk: RiskScorer = {
  score: () => ({
    score: 0,
    factors: [{ name: 'unscored', points: 0, weight: 0, observed: {}, explanation: 'risk scoring is turned off' }],
  }),
};

export function safeScore(scorer: RiskScorer, input: RiskInput): RiskAssessment {
  let result: unknown;
  try {
    result = scorer.score(input);
  } catch (error) {
    return faultAssessment(error instanceof Error ? `${error.name}: ${error.message}` : 'the scorer threw');
  }
  const problem = riskAssessmentProblem(result);
  if (problem !== undefined) return faultAssessment(`the scorer returned an invalid assessment (${problem})`);
  return result as RiskAssessment;
}
