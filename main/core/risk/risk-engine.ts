/**
 * The risk scorer the decision path uses: per-agent profiles cached in memory (least recently
 * used dropped past a bound), loaded from the database on first use, kept in step by the
 * decision and approval transactions. Scoring itself is `scoreCall` (pure).
 *
 * Keeping memory and database in step: every change is made in memory and written inside the
 * caller's transaction; if that transaction fails, the caller calls `forget`, and the profile is
 * rebuilt from what did commit.
 */
import { createHash } from 'node:crypto';
import type { Db } from '../store/database.js';
import { canonicalize } from '../../../shared/canonical-json.js';
import type { SessionRead, ToolCall } from '../../../shared/protocol.js';
import type { RiskAssessment } from '../../../shared/risk.js';
import { recentWindowMs, type RiskConfig } from './risk-config.js';
import { callFeatures, clip, type CallFeatures } from './call-features.js';
import { MAX_FLOW_SESSIONS, MAX_VALUES_PER_READ, addRead, digestKey, emptyFlow, valueKeys } from './data-flow.js';
import { addSubmission, destinationKey, learnExecuted, type AgentProfile, type SubmissionState } from './agent-profile.js';
import { ProfileStore } from './profile-store.js';
import { scoreCall, type ScoredAgent } from './risk-scorer.js';
import type { RiskInput, RiskLearner, RiskScorer } from './risk-ports.js';

export interface RiskEngineOptions {
  /** Profiles kept in memory (each is rebuilt from the database when needed again). */
  maxCachedAgents?: number;
}

export class RiskEngine implements RiskScorer, RiskLearner {
  private readonly profiles = new Map<string, AgentProfile>();
  private readonly store: ProfileStore;
  private readonly maxCached: number;
  /** How far back the recent window reaches: the longest window any factor looks at. */
  readonly recentWindowMs: number;
  /** SHA-256 of the settings in canonical JSON: recorded in the audit log at start. */
  readonly settingsHash: string;

  constructor(
    db: Db,
    readonly config: RiskConfig,
    options: RiskEngineOptions = {},
  ) {
    this.recentWindowMs = recentWindowMs(config);
    this.store = new ProfileStore(db, config, this.recentWindowMs);
    this.maxCached = Math.max(1, options.maxCachedAgents ?? 20_000);
    this.settingsHash = `sha256:${createHash('sha256').update(canonicalize(config)).digest('hex')}`;
  }

  /** The decision path scores a call and then records it: extract its features once. */
  private readonly featureCache = new WeakMap<ToolCall, CallFeatures>();

  features(call: ToolCall, callSha256: string): CallFeatures {
    const cached = this.featureCache.get(call);
    if (cached && cached.digest === callSha256) return cached;
    const f = callFeatures(this.config, call, callSha256);
    this.featureCache.set(call, f);
    return f;
  }

  score(input: RiskInput): RiskAssessment {
    const profile = this.profile(input.agent.id, input.now);
    const agent: ScoredAgent = input.agent;
    return scoreCall(this.config, profile, agent, input.call, this.features(input.call, input.callSha256), input.now);
  }

  submitted(agentId: string, requestId: string, call: ToolCall, callSha256: string, at: number, state: SubmissionState): void {
    const profile = this.profile(agentId, at);
    const f = this.features(call, callSha256);
    addSubmission(
      profile,
      {
        requestId,
        at,
        tool: f.tool,
        digest: f.digest,
        shape: f.shape,
        series: f.series,
        amount: f.amount,
        sessionId: f.sessionId,
        destinations: destinationKey(f),
        state,
      },
      this.recentWindowMs,
    );
    if (state === 'allowed') this.learn(agentId, profile, f, at);
  }

  settled(
    agentId: string,
    request: { id: string; call: ToolCall; callSha256: string; createdAt: number },
    state: SubmissionState,
    now: number,
  ): void {
    const profile = this.profile(agentId, now);
    const entry = profile.recent.find((s) => s.requestId === request.id);
    if (entry) entry.state = state;
    if (state === 'approved') this.learn(agentId, profile, this.features(request.call, request.callSha256), request.createdAt);
  }

  /** What an agent session read, as the host reported it (session.report). */
  reported(agentId: string, sessionId: string, reads: readonly SessionRead[], at: number): number {
    const profile = this.profile(agentId, at);
    // Sessions quiet for longer than the recent window no longer count (nor would they be reloaded).
    for (const [id, f] of profile.flows) if (f.reportAt.last < at - this.recentWindowMs) profile.flows.delete(id);
    let flow = profile.flows.get(sessionId);
    if (!flow) {
      profile.flows.set(sessionId, (flow = emptyFlow(at)));
      if (profile.flows.size > MAX_FLOW_SESSIONS) {
        // Drop the session that was quiet longest.
        let oldest: string | undefined;
        for (const [id, f] of profile.flows)
          if (oldest === undefined || f.reportAt.last < profile.flows.get(oldest)!.reportAt.last) oldest = id;
        if (oldest !== undefined) profile.flows.delete(oldest);
      }
    }
    let values = 0;
    for (const read of reads) {
      const trusted = read.trust === 'trusted';
      // Names are matched only against destinations and recipients, so every read keeps them.
      const digests = valueKeys(read.content, true).slice(0, MAX_VALUES_PER_READ).map(digestKey);
      const what = clip(
        read.origin === undefined ? read.source : `${read.source} ${JSON.stringify(clip(read.origin, 120, '…'))}`,
        200,
        '…',
      );
      addRead(flow, trusted, digests, at, what);
      this.store.writeRead(agentId, sessionId, at, trusted, what, digests);
      values += digests.length;
    }
    return values;
  }

  forget(agentId: string): void {
    this.profiles.delete(agentId);
  }

  prune(now: number): number {
    return this.store.prune(now);
  }

  private learn(agentId: string, profile: AgentProfile, f: CallFeatures, at: number): void {
    const learned = learnExecuted(profile, f, at, this.config.factors.unusual_sequence.gapMs, this.config.maxKnownPerKind);
    this.store.writeExecuted(agentId, f, at, learned);
  }

  private profile(agentId: string, now: number): AgentProfile {
    let profile = this.profiles.get(agentId);
    if (profile) {
      // Most recently used last: re-insert.
      this.profiles.delete(agentId);
      this.profiles.set(agentId, profile);
      return profile;
    }
    profile = this.store.load(agentId, now);
    this.profiles.set(agentId, profile);
    if (this.profiles.size > this.maxCached) this.profiles.delete(this.profiles.keys().next().value as string);
    return profile;
  }
}
