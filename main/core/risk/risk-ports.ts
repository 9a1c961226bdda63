/**
 * The seams between the decision path and the risk scorer (main/core/risk/). A scorer that
 * throws or returns nonsense (NaN, out of range, malformed factors) is treated as maximum risk,
 * never zero, and the fault is recorded as the `scorer_fault` factor.
 */
import type { SessionRead, ToolCall } from '../../../shared/protocol.js';
import { faultAssessment, riskAssessmentProblem, type RiskAssessment } from '../../../shared/risk.js';
import type { SubmissionState } from './agent-profile.js';
import type { ProfileState } from './profile-state.js';

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
  /**
   * Bring the agent's baseline up to date before `score` (a team hub reads what other hubs
   * committed for it since its last read: risk-engine.ts). Absent: nothing to read.
   */
  prepare?(agentId: string, now: number): Promise<void>;
}

/** One event a baseline learns from, as a team stores it and every hub replays it (risk-engine.ts). */
export type RiskEvent =
  | { kind: 'submitted'; requestId: string; call: ToolCall; callSha256: string; at: number; state: SubmissionState }
  | {
      kind: 'settled';
      request: { id: string; call: ToolCall; callSha256: string; createdAt: number };
      state: SubmissionState;
      now: number;
    }
  /** A hub's SQLite baseline from before its team shared baselines, imported once (added to the profile). */
  | { kind: 'imported'; hub: string; baseline: ProfileState };

/** What a read of an agent's team events returns (risk/pg-risk-log.ts). */
export interface RiskEventRead {
  /** The events to apply, oldest first. */
  events: RiskEvent[];
  /** Where the next read starts. */
  position: string;
  /** Rows read (the events plus this hub's own events skipped because memory holds them). */
  seen: number;
  /** A fresh read (from null): the agent's latest snapshot, which `events` continue, and its position. */
  base?: { state: ProfileState; position: string } | undefined;
  /** Events after `from` that this hub had not read were pruned: read again from null. */
  stale: boolean;
}

/**
 * Where a team's risk events live (risk/pg-risk-log.ts). The learner queues each event while
 * the decision's unit runs; the store writes the queue in that unit's transaction; every hub
 * reads an agent's committed events from a position (null: from the start).
 */
export interface RiskEventLog {
  /** `inMemory`: the learner already applied it to the memory it holds for the agent. */
  queue(agentId: string, event: RiskEvent, inMemory: boolean): void;
  /** From a position: the events committed since (this hub's own, already applied, skipped); from null: the latest snapshot and the events after it. */
  read(agentId: string, from: string | null): Promise<RiskEventRead>;
  /**
   * This hub's memory no longer holds what it queued for the agent: its own events count again when
   * read, and events still queued for it (a learner hook that threw) are dropped, never written.
   */
  forget(agentId: string): void;
  /**
   * Store a snapshot: `state` is the snapshot at `basePosition` (null: none) with the `folded`
   * events after it applied, as of `position`. Kept only if the agent's snapshot is still the one at
   * `basePosition` (false otherwise); events the replaced snapshot covered are pruned.
   */
  saveSnapshot(agentId: string, basePosition: string | null, position: string, state: ProfileState, folded: number): Promise<boolean>;
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
