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
import {
  addSubmission,
  destinationKey,
  emptyProfile,
  learnExecuted,
  trimRecent,
  type AgentProfile,
  type Learned,
  type SubmissionState,
} from './agent-profile.js';
import { ProfileStore } from './profile-store.js';
import { scoreCall, type ScoredAgent } from './risk-scorer.js';
import type { RiskEvent, RiskEventLog, RiskEventRead, RiskInput, RiskLearner, RiskScorer } from './risk-ports.js';
import { mergeBaseline, profileState, restoreProfile, type ProfileState } from './profile-state.js';

export interface RiskEngineOptions {
  /** Profiles kept in memory (each is rebuilt from the database when needed again). */
  maxCachedAgents?: number;
  /** Team mode: events read between an agent's snapshots (default 500). */
  snapshotEvery?: number;
}

export class RiskEngine implements RiskScorer, RiskLearner {
  private readonly profiles = new Map<string, AgentProfile>();
  private readonly store: ProfileStore;
  private readonly maxCached: number;
  private events: RiskEventLog | undefined;
  /** Team mode: per agent, the position of the last read of the team's events. */
  private readonly positions = new Map<string, string>();
  /** Team mode: per agent, the read in flight (reads of one agent run one after another). */
  private readonly reading = new Map<string, Promise<void>>();
  /** Team mode: per agent, events read since this hub last stored (or tried to store) a snapshot. */
  private readonly sinceSnapshot = new Map<string, number>();
  /** Team mode: agents whose snapshot this hub is storing now. */
  private readonly snapshotting = new Set<string>();
  /** Team mode: store an agent's snapshot after this many events (a fresh read replays at most about as many). */
  private readonly snapshotEvery: number;
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
    this.snapshotEvery = Math.max(1, options.snapshotEvery ?? 500);
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

  /**
   * A team hub (before it serves): baselines come from the team's risk events
   * (risk/pg-risk-log.ts), written in each decision's PostgreSQL transaction and replayed here
   * with the same rules; `prepare` reads what any hub committed for the agent since the last read.
   * Reported reads (session.report) stay per hub.
   */
  useEventLog(events: RiskEventLog): void {
    this.events = events;
    this.profiles.clear();
  }

  /**
   * Team mode: read what any hub committed for the agent since the last read. Without memory of
   * the agent: its latest snapshot and the events after it (all of them when it has none); when
   * that replay applied `snapshotEvery` events or more, the result is stored as its new snapshot.
   */
  prepare(agentId: string, now: number): Promise<void> {
    if (this.events === undefined) return Promise.resolve();
    const events = this.events;
    const run = (this.reading.get(agentId) ?? Promise.resolve()).then(async () => {
      let profile = this.profiles.get(agentId);
      let from = profile === undefined ? null : (this.positions.get(agentId) ?? null);
      // A fresh replay builds new memory: this hub's own events count again when read.
      if (from === null) events.forget(agentId);
      let read = await events.read(agentId, from);
      if (read.stale) {
        // Events this hub had not read yet were pruned under a newer snapshot: start from that snapshot.
        from = null;
        events.forget(agentId);
        read = await events.read(agentId, null);
      }
      profile = this.profiles.get(agentId);
      if (from === null) {
        // A fresh replay: whatever memory was made meanwhile is rebuilt from the log. Forget again
        // now: an own event applied meanwhile to the memory being replaced (after a stale read)
        // was marked applied; if it committed after this read, the next read must apply it.
        events.forget(agentId);
        profile = this.replay(read);
        if (read.events.length >= this.snapshotEvery) {
          void events
            .saveSnapshot(agentId, read.base?.position ?? null, read.position, profileState(profile), read.events.length)
            .catch(() => false);
          this.sinceSnapshot.set(agentId, 0);
        } else this.sinceSnapshot.set(agentId, read.events.length);
        this.store.loadFlows(profile, agentId, now);
        this.cache(agentId, profile);
      } else if (profile === undefined)
        return; // forgotten meanwhile: the next prepare replays
      else {
        for (const event of read.events) this.apply(profile, event);
        const since = (this.sinceSnapshot.get(agentId) ?? 0) + read.seen;
        this.sinceSnapshot.set(agentId, since);
        if (since >= this.snapshotEvery && !this.snapshotting.has(agentId)) {
          this.sinceSnapshot.set(agentId, 0);
          this.snapshotting.add(agentId);
          // In the background: a snapshot that fails is tried again after as many events.
          void this.snapshot(agentId)
            .catch(() => false)
            .finally(() => this.snapshotting.delete(agentId));
        }
      }
      trimRecent(profile, now, this.recentWindowMs);
      this.positions.set(agentId, read.position);
    });
    const settled = run.catch(() => undefined);
    this.reading.set(agentId, settled);
    void settled.then(() => {
      if (this.reading.get(agentId) === settled) this.reading.delete(agentId);
    });
    return run;
  }

  /** The profile a fresh read gives: its snapshot (or nothing) with the events after it applied in order. */
  private replay(read: RiskEventRead): AgentProfile {
    const profile = read.base === undefined ? emptyProfile() : restoreProfile(read.base.state);
    for (const event of read.events) this.apply(profile, event);
    return profile;
  }

  /**
   * Team mode: store the agent's baseline as a new snapshot (its latest snapshot and the events
   * after it, replayed apart from the memory this hub holds). False when another hub's snapshot
   * came first or there was nothing to fold.
   */
  async snapshot(agentId: string): Promise<boolean> {
    if (this.events === undefined) return false;
    const read = await this.events.read(agentId, null);
    if (read.events.length === 0) return false;
    return this.events.saveSnapshot(
      agentId,
      read.base?.position ?? null,
      read.position,
      profileState(this.replay(read)),
      read.events.length,
    );
  }

  /**
   * This hub's SQLite baselines (what it learned before its team shared baselines), one state per
   * agent, for the import into the team's log (pg-risk-log.ts importBaselines). Their recent
   * windows are left out: the team's recent window is its own log's.
   */
  sqliteBaselines(now: number): Array<{ agentId: string; baseline: ProfileState }> {
    return this.store.agentsWithBaselines().map((agentId) => {
      const profile = this.store.load(agentId, now);
      profile.recent = [];
      return { agentId, baseline: profileState(profile) };
    });
  }

  score(input: RiskInput): RiskAssessment {
    const profile = this.profile(input.agent.id, input.now);
    const agent: ScoredAgent = input.agent;
    return scoreCall(this.config, profile, agent, input.call, this.features(input.call, input.callSha256), input.now);
  }

  submitted(agentId: string, requestId: string, call: ToolCall, callSha256: string, at: number, state: SubmissionState): void {
    if (this.events !== undefined) {
      this.teamEvent(agentId, { kind: 'submitted', requestId, call, callSha256, at, state });
      return;
    }
    const profile = this.profile(agentId, at);
    const learned = this.applySubmitted(profile, requestId, call, callSha256, at, state);
    if (learned) this.store.writeExecuted(agentId, learned.f, at, learned.learned);
  }

  /**
   * Team mode: queue the event for the unit's transaction (pg-risk-log.ts) and apply it to the
   * memory held for the agent, if any (otherwise the next read replays it once committed).
   */
  private teamEvent(agentId: string, event: RiskEvent): void {
    const profile = this.profiles.get(agentId);
    this.events!.queue(agentId, event, profile !== undefined);
    if (profile !== undefined) this.apply(profile, event);
  }

  /** Apply one event to a profile: the same rules whether it happens here or is replayed from the team's log. */
  private apply(profile: AgentProfile, event: RiskEvent): void {
    if (event.kind === 'submitted') this.applySubmitted(profile, event.requestId, event.call, event.callSha256, event.at, event.state);
    else if (event.kind === 'settled') this.applySettled(profile, event.request, event.state);
    else mergeBaseline(profile, event.baseline, this.config.maxKnownPerKind);
  }

  private applySubmitted(
    profile: AgentProfile,
    requestId: string,
    call: ToolCall,
    callSha256: string,
    at: number,
    state: SubmissionState,
  ): { f: CallFeatures; learned: Learned } | undefined {
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
    return state === 'allowed' ? { f, learned: this.learnInMemory(profile, f, at) } : undefined;
  }

  private applySettled(
    profile: AgentProfile,
    request: { id: string; call: ToolCall; callSha256: string; createdAt: number },
    state: SubmissionState,
  ): { f: CallFeatures; learned: Learned } | undefined {
    const entry = profile.recent.find((s) => s.requestId === request.id);
    if (entry) entry.state = state;
    if (state !== 'approved') return undefined;
    const f = this.features(request.call, request.callSha256);
    return { f, learned: this.learnInMemory(profile, f, request.createdAt) };
  }

  settled(
    agentId: string,
    request: { id: string; call: ToolCall; callSha256: string; createdAt: number },
    state: SubmissionState,
    now: number,
  ): void {
    if (this.events !== undefined) {
      this.teamEvent(agentId, { kind: 'settled', request, state, now });
      return;
    }
    const learned = this.applySettled(this.profile(agentId, now), request, state);
    if (learned) this.store.writeExecuted(agentId, learned.f, request.createdAt, learned.learned);
  }

  /** What an agent session read, as the host reported it (session.report). */
  reported(agentId: string, sessionId: string, reads: readonly SessionRead[], at: number): number {
    // A team hub keeps reports per hub: stored here, in memory when it holds the agent (else loaded with it).
    const profile = this.events === undefined ? this.profile(agentId, at) : (this.profiles.get(agentId) ?? emptyProfile());
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
    this.positions.delete(agentId);
    this.sinceSnapshot.delete(agentId);
    this.events?.forget(agentId);
  }

  prune(now: number): number {
    return this.store.prune(now);
  }

  private learnInMemory(profile: AgentProfile, f: CallFeatures, at: number): Learned {
    return learnExecuted(profile, f, at, this.config.factors.unusual_sequence.gapMs, this.config.maxKnownPerKind);
  }

  private profile(agentId: string, now: number): AgentProfile {
    let profile = this.profiles.get(agentId);
    if (profile) {
      // Most recently used last: re-insert.
      this.profiles.delete(agentId);
      this.profiles.set(agentId, profile);
      return profile;
    }
    // A team hub's baselines are read by prepare (asynchronously, from the team's log): never score blind.
    if (this.events !== undefined) throw new Error(`the team baseline of agent ${JSON.stringify(agentId)} was not read before scoring`);
    profile = this.store.load(agentId, now);
    this.cache(agentId, profile);
    return profile;
  }

  private cache(agentId: string, profile: AgentProfile): void {
    this.profiles.delete(agentId);
    this.profiles.set(agentId, profile);
    if (this.profiles.size > this.maxCached) this.forget(this.profiles.keys().next().value as string);
  }
}
